"""Read-only by construction: every source connection is opened so that the database refuses writes.

Per backend: SQLite opens the file with ``mode=ro``; PostgreSQL sets ``default_transaction_read_only``;
MariaDB/MySQL set ``SESSION TRANSACTION READ ONLY``; Oracle starts each transaction read-only; ODBC
reads run in read-only transactions that are rolled back (``sql.OdbcReader``). On top of that, a
statement guard parses every statement (sqlglot) and refuses anything but one reading statement before
it reaches any driver, so a backend without a read-only mode is still never written to by healthqa.

None of this binds the database server itself: a function a source's view calls runs with the view
owner's rights, and what it does over other connections (``dblink_exec``) no client can stop. The real
guarantee is a database role that may only SELECT (docs/promises.md).
"""

from __future__ import annotations

import functools
import logging
import re

import sqlglot
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine, make_url
from sqlglot import exp

from healthqa.errors import ReadOnlyViolation

from .timeouts import Deadline, is_closed, psycopg_connection_class, pymysql_connection_class

# sqlglot says so on its logger when it keeps a statement it cannot parse as an opaque Command; the
# guard refuses such statements itself (or allows the few it knows), so the notice is noise.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

# backend (SQLAlchemy) or DBMS (ODBC SQL_DBMS_NAME) -> the sqlglot dialect that parses its SQL
_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite",
             "oracle": "oracle", "mssql": "tsql", "microsoft sql server": "tsql"}

# The session settings healthqa itself issues, and nothing else: ``SET … READ WRITE`` or
# ``SET default_transaction_read_only = off`` would undo the read-only session.
_OWN_SETTINGS = re.compile(
    r"SET (SESSION )?(CHARACTERISTICS AS )?TRANSACTION READ ONLY"
    r"|SET (SESSION )?(statement_timeout|max_statement_time|max_execution_time) ?= ?\d+", re.I)

# Anything of these anywhere in a statement writes, locks or changes the session.
_WRITING = (exp.DML, exp.DDL, exp.Into, exp.Lock, exp.Command, exp.Set, exp.Drop, exp.Alter,
            exp.TruncateTable, exp.Transaction, exp.Commit, exp.Rollback, exp.Grant, exp.Use,
            exp.Analyze, exp.Cache, exp.LoadData)
# Functions that change the session or write by themselves when merely selected. The list cannot be
# complete (any user function may write): the read-only transaction is what stops those.
_WRITING_FUNCTIONS = {"set_config", "dblink_exec", "dblink", "nextval", "setval", "lo_import", "lo_export",
                      "lo_unlink", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
                      "pg_advisory_lock", "pg_advisory_xact_lock", "pg_notify", "pg_switch_wal",
                      "sleep", "benchmark", "get_lock", "load_file"}
# pyformat, format and qmark parameters -> a literal, which every dialect parses in every position
# (sqlglot reads neither ``%(name)s`` in MySQL nor ``?::VARCHAR`` in PostgreSQL)
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\?")


def guard(statement: str, backend: str | None = None) -> None:
    """Refuse (ReadOnlyViolation) anything but a single reading statement: a query (CTEs included)
    that contains no writing clause, ``SHOW`` / ``DESCRIBE`` / a reading ``PRAGMA``, or one of the
    read-only session settings healthqa issues. A statement the parser cannot read is refused too."""
    _check(" ".join((statement or "").split()), backend)


@functools.lru_cache(maxsize=256)
def _check(sql: str, backend: str | None) -> None:
    # cached: a draw fetches its rows in batches whose SQL is the same text every time (parsing a
    # 1,000-key IN list takes ~40 ms); a refusal raises and is not cached
    if _OWN_SETTINGS.fullmatch(sql.rstrip(";").strip()):
        return
    try:
        parsed = [e for e in sqlglot.parse(_PLACEHOLDER.sub("0", sql), read=_DIALECTS.get(backend or "")) if e]
    except sqlglot.errors.SqlglotError:
        raise ReadOnlyViolation(f"refused a statement the read-only guard cannot parse: {_first_word(sql)}") from None
    if len(parsed) != 1:
        raise ReadOnlyViolation(f"refused {len(parsed)} statements in one on a read-only source")
    stmt = parsed[0]
    if isinstance(stmt, (exp.Show, exp.Describe)) or (isinstance(stmt, exp.Pragma) and "=" not in sql):
        return
    if isinstance(stmt, exp.Command) and str(stmt.this).upper() in ("SHOW", "DESCRIBE", "DESC"):
        return
    if not isinstance(stmt, (exp.Query, exp.Values)):
        raise ReadOnlyViolation(f"refused a non-reading statement on a read-only source: {_first_word(sql)}")
    for node in stmt.walk():
        if isinstance(node, _WRITING):
            raise ReadOnlyViolation(f"refused a statement with a writing clause ({type(node).__name__.upper()}) "
                                    f"on a read-only source")
        if isinstance(node, exp.Func) and _function_name(node) in _WRITING_FUNCTIONS:
            raise ReadOnlyViolation(f"refused a statement calling {_function_name(node)}() on a read-only source")


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _first_word(sql: str) -> str:
    return (sql.split(None, 1) or ["?"])[0][:30]


def readonly_engine(url: str, *, max_connections: int, statement_timeout_s: int, connect_timeout_s: int,
                    deadline: Deadline | None = None) -> Engine:
    """A SQLAlchemy engine whose connections cannot write, with a pool cap, a statement timeout and,
    given a ``deadline``, client-side bounds on every wait (``timeouts.py``)."""
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
        if deadline is not None:
            # a peer that vanished is noticed by TCP: keepalive probes on an idle connection, and
            # tcp_user_timeout (ms) for data sent but never acknowledged
            connect_args.update(keepalives=1, keepalives_idle=60, keepalives_interval=10, keepalives_count=3,
                                tcp_user_timeout=int(deadline.read_timeout_s * 1000))
    elif backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = connect_timeout_s
        if deadline is not None:
            connect_args.update(read_timeout=deadline.read_timeout_s, write_timeout=deadline.read_timeout_s)
        session_sql.append("SET SESSION TRANSACTION READ ONLY")
    engine = create_engine(u, connect_args=connect_args, **kw)

    watched = None
    if deadline is not None and (backend, u.get_driver_name()) == ("postgresql", "psycopg"):
        watched = psycopg_connection_class().connect
    elif deadline is not None and backend in ("mysql", "mariadb") and u.get_driver_name() == "pymysql":
        watched = pymysql_connection_class()
    if watched is not None:
        @event.listens_for(engine, "do_connect")
        def _watched_connect(_dialect, _record, cargs, cparams):
            seconds, _why = deadline.budget()  # past the deadline: no new connection either
            cparams["connect_timeout"] = max(1, min(int(cparams.get("connect_timeout") or seconds), int(seconds)))
            conn = watched(*cargs, **cparams)
            conn.deadline = deadline
            return conn

        @event.listens_for(engine, "checkout")
        def _live(dbapi_conn, _record, _proxy):
            deadline.budget()
            if is_closed(dbapi_conn):  # given up on a time limit: the pool replaces it
                raise exc.DisconnectionError()

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
        guard(statement, backend)

    return engine


def _mysql_timeout(cur, seconds: int) -> None:
    """MariaDB names it max_statement_time (seconds), MySQL max_execution_time (ms, SELECT only)."""
    cur.execute("SELECT VERSION()")
    version = str(cur.fetchone()[0])
    if "mariadb" in version.lower():
        cur.execute(f"SET SESSION max_statement_time={int(seconds)}")
    else:
        cur.execute(f"SET SESSION max_execution_time={int(seconds) * 1000}")


# Statements that make the next transaction read-only, whatever a source's view did to the session's
# default since (PostgreSQL: the first statement of the transaction; MySQL/MariaDB: the next one).
ODBC_TRANSACTION_SQL = {
    "postgresql": "SET TRANSACTION READ ONLY",
    "mysql": "SET TRANSACTION READ ONLY",
    "mariadb": "SET TRANSACTION READ ONLY",
    "oracle": "SET TRANSACTION READ ONLY",
}

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
