"""Issue 12 case 11: read-only holds against a hostile source, and the statement guard parses.

A source's view can call any function its owner wrote. Over ODBC in autocommit, a view calling
``set_config('default_transaction_read_only', 'off', false)`` made the session read-write and a second
view then inserted rows through healthqa's own connection. Reads now run in read-only transactions that
are rolled back, and the guard refuses by parsing, not by a statement's first word.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from healthqa.connectors.readonly import guard
from healthqa.connectors.sources import reader
from healthqa.errors import ReadOnlyViolation

from .test_connectors import _odbc_string, source_cfg

REFUSED = [
    ("postgresql", "SET TRANSACTION READ WRITE"),
    ("postgresql", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
    ("postgresql", "SET default_transaction_read_only = off"),
    ("postgresql", "set transaction_read_only to off"),
    ("postgresql", "RESET default_transaction_read_only"),
    ("postgresql", "SELECT 1; DELETE FROM t_grda"),
    ("postgresql", "SELECT 1; SELECT 2"),
    ("postgresql", "WITH gone AS (DELETE FROM t_grda RETURNING *) SELECT count(*) FROM gone"),
    ("postgresql", "WITH x AS (SELECT 1) INSERT INTO t_grda SELECT * FROM x"),
    ("postgresql", "SELECT * INTO copy_of_t_grda FROM t_grda"),
    ("postgresql", "SELECT * FROM t_grda FOR UPDATE"),
    ("postgresql", "SELECT set_config('default_transaction_read_only', 'off', false)"),
    ("postgresql", "SELECT dblink_exec('dbname=mpi', 'DELETE FROM t_grda')"),
    ("postgresql", "EXPLAIN ANALYZE DELETE FROM t_grda"),
    ("postgresql", "COPY t_grda TO '/tmp/all-residents.csv'"),
    ("postgresql", "CALL purge()"),
    ("postgresql", "DO $$ BEGIN DELETE FROM t_grda; END $$"),
    ("postgresql", "LOCK TABLE t_grda"),
    ("postgresql", "/* looks harmless */ UPDATE t_grda SET xm = ''"),
    ("postgresql", "COMMIT"),
    ("mysql", "SET SESSION TRANSACTION READ WRITE"),
    ("mysql", "SELECT * FROM T_GRDA INTO OUTFILE '/tmp/all-residents.csv'"),
    ("mysql", "REPLACE INTO T_GRDA SELECT * FROM T_GRDA"),
    ("sqlite", "PRAGMA writable_schema = 1"),
    ("sqlite", "ATTACH DATABASE '/tmp/x.db' AS x"),
    (None, "SELECT FROM WHERE ((("),  # what the guard cannot parse it does not pass
]

ALLOWED = [
    ("postgresql", 'SELECT "DABH", "XM" FROM t_grda WHERE "DABH" IN (%(k_1)s, %(k_2)s) LIMIT %(param_1)s'),
    ("postgresql", "SELECT relname FROM pg_catalog.pg_class WHERE relname != %(n)s::VARCHAR"),
    ("postgresql", "WITH a AS (SELECT 1 AS n) SELECT n FROM a UNION ALL SELECT 2"),
    ("postgresql", "SHOW statement_timeout"),
    ("postgresql", "SET statement_timeout = 7000"),
    ("postgresql", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
    ("mysql", "SELECT `DABH` FROM `T_GRDA` WHERE `DABH` IN (%(k_1)s) LIMIT %(p)s"),
    ("mysql", "SET SESSION TRANSACTION READ ONLY"),
    ("mysql", "SET SESSION max_statement_time=300"),
    ("mysql", "SHOW FULL TABLES FROM `mpi`"),
    ("sqlite", 'PRAGMA main.table_info("T_GRDA")'),
    ("sqlite", 'SELECT "DABH" FROM "T_GRDA" WHERE "DABH" IN (?, ?)'),
    (None, "VALUES (1)"),
]


@pytest.mark.parametrize("backend, sql", REFUSED)
def test_guard_refuses_what_is_not_one_reading_statement(backend, sql):
    with pytest.raises(ReadOnlyViolation) as e:
        guard(sql, backend)
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("backend, sql", ALLOWED)
def test_guard_passes_reading_statements_and_own_settings(backend, sql):
    guard(sql, backend)


@pytest.fixture
def hostile_views(pg_db):
    """A source whose owner wrote two views: one turns the session's read-only default off, the
    other inserts 500 rows when selected."""
    admin = create_engine(pg_db, isolation_level="AUTOCOMMIT")
    ddl = """
        CREATE TABLE hq_victim (n int);
        CREATE FUNCTION hq_off() RETURNS text LANGUAGE sql VOLATILE AS
            $$ SELECT set_config('default_transaction_read_only', 'off', false) $$;
        CREATE VIEW v_settings AS SELECT hq_off() AS x;
        CREATE FUNCTION hq_fill() RETURNS int LANGUAGE sql VOLATILE AS
            $$ INSERT INTO hq_victim SELECT generate_series(1, 500); SELECT 500 $$;
        CREATE VIEW v_summary AS SELECT hq_fill() AS n;
    """
    with admin.connect() as c:
        c.exec_driver_sql(ddl)

    def victims() -> int:
        with admin.connect() as c:
            return c.execute(text("SELECT count(*) FROM hq_victim")).scalar()

    yield victims
    with admin.connect() as c:
        c.exec_driver_sql("DROP VIEW v_summary; DROP VIEW v_settings; DROP FUNCTION hq_fill(); "
                          "DROP FUNCTION hq_off(); DROP TABLE hq_victim")
    admin.dispose()


@pytest.mark.odbc
def test_odbc_view_cannot_switch_read_only_off(pg_db, odbc_driver, hostile_views):
    import pyodbc

    with reader("qc", source_cfg("odbc", connection_string=_odbc_string(pg_db), tables=["person"])) as r:
        r.cursor().execute("SELECT x FROM v_settings").fetchall()
        with pytest.raises(pyodbc.Error, match="read-only transaction"):
            r.cursor().execute("SELECT n FROM v_summary").fetchall()
        # and the session is still read-only for whatever comes next
        assert r.cursor().execute("SELECT current_setting('transaction_read_only')").fetchone()[0] == "on"
    assert hostile_views() == 0


@pytest.mark.odbc
def test_odbc_guard_refuses_setting_read_write(pg_db, odbc_driver):
    with reader("qc", source_cfg("odbc", connection_string=_odbc_string(pg_db), tables=["person"])) as r:
        for sql in ("SET TRANSACTION READ WRITE", "SET default_transaction_read_only = off"):
            with pytest.raises(ReadOnlyViolation):
                r.cursor().execute(sql)


@pytest.mark.postgres
def test_sqlalchemy_view_cannot_write_either(pg_db, hostile_views):
    """Through SQLAlchemy every read's transaction is rolled back when its connection returns to the
    pool, so even a read-write transaction would keep nothing; and a reading one refuses the insert."""
    from sqlalchemy.exc import DBAPIError

    with reader("mpi", source_cfg("sqlalchemy", url=pg_db, tables=["person"])) as r:
        with r.engine.connect() as c:
            c.execute(text("SELECT x FROM v_settings")).fetchall()
        with pytest.raises(DBAPIError, match="read-only transaction"), r.engine.connect() as c:
            c.execute(text("SELECT n FROM v_summary")).fetchall()
    assert hostile_views() == 0
