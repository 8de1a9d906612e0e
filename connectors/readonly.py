"""Read-only by construction: every source connection is opened so that the database refuses writes.

Per backend: SQLite opens the file with ``mode=ro``; PostgreSQL sets ``default_transaction_read_only``;
MariaDB/MySQL set ``SESSION TRANSACTION READ ONLY``; Oracle starts each transaction read-only. On top of
that, a statement guard refuses anything but reading statements before it reaches any driver, so a
backend without a read-only mode is still never written to by healthqa.
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from healthqa.errors import ReadOnlyViolation

_READING = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|SET|PRAGMA|EXPLAIN|DESCRIBE|VALUES)\b", re.I)


def guard(statement: str) -> None:
    if not _READING.match(statement or ""):
        first = (statement or "").strip().split(None, 1)[0:1]
        raise ReadOnlyViolation(f"refused a non-reading statement on a read-only source: {first[0] if first else '?'}")


def readonly_engine(url: str, *, max_connections: int, statement_timeout_s: int, connect_timeout_s: int) -> Engine:
    """A SQLAlchemy engine whose connections cannot write, with a pool cap and a statement timeout."""
    u = make_url(url)
    backend = u.get_backend_name()
    # max_overflow=0: never more connections to a production database than configured
    kw: dict = {"pool_size": max_connections, "max_overflow": 0, "pool_timeout": 60}
    connect_args: dict = {}
    session_sql: list[str] = []
    if backend == "sqlite":
        # No statement timeout in SQLite: it is a local file, and mode=ro is the guard that matters.
        db = u.database or ""
        if db in ("", ":memory:"):
            raise ValueError("a SQLite source needs a database file")
        if not db.startswith("file:"):
            db = f"file:{db}"
        u = u.set(database=db, query={**u.query, "mode": "ro", "uri": "true"})
        connect_args["timeout"] = connect_timeout_s
    elif backend == "postgresql":
        connect_args["options"] = (f"-c default_transaction_read_only=on "
                                   f"-c statement_timeout={statement_timeout_s * 1000}")
        connect_args["connect_timeout"] = connect_timeout_s
    elif backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = connect_timeout_s
        session_sql.append("SET SESSION TRANSACTION READ ONLY")
    engine = create_engine(u, connect_args=connect_args, **kw)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        try:
            for sql in session_sql:
                cur.execute(sql)
            if backend in ("mysql", "mariadb"):
                _mysql_timeout(cur, statement_timeout_s)
        finally:
            cur.close()

    if backend == "oracle":
        @event.listens_for(engine, "begin")
        def _ro_txn(conn):
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    @event.listens_for(engine, "before_cursor_execute", retval=False)
    def _guard(conn, cursor, statement, params, context, executemany):
        guard(statement)

    return engine


def _mysql_timeout(cur, seconds: int) -> None:
    """MariaDB names it max_statement_time (seconds), MySQL max_execution_time (ms, SELECT only)."""
    cur.execute("SELECT VERSION()")
    version = str(cur.fetchone()[0])
    if "mariadb" in version.lower():
        cur.execute(f"SET SESSION max_statement_time={int(seconds)}")
    else:
        cur.execute(f"SET SESSION max_execution_time={int(seconds) * 1000}")


ODBC_SESSION_SQL = {
    # DBMS name as SQLGetInfo(SQL_DBMS_NAME) reports it -> statements that make the session read-only
    "postgresql": ["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"],
    "mysql": ["SET SESSION TRANSACTION READ ONLY"],
    "mariadb": ["SET SESSION TRANSACTION READ ONLY"],
}


def odbc_timeout_sql(dbms: str, seconds: int) -> list[str]:
    if dbms == "postgresql":
        return [f"SET statement_timeout = {int(seconds) * 1000}"]
    if dbms == "mariadb":
        return [f"SET SESSION max_statement_time={int(seconds)}"]
    if dbms == "mysql":
        return [f"SET SESSION max_execution_time={int(seconds) * 1000}"]
    return []
