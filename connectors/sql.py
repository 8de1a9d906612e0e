"""Readers for databases: SQLAlchemy URLs and ODBC (pyodbc) DSNs or connection strings.

Both build their statements with SQLAlchemy Core, so filters, limits and key lists become SQL in the
source's own dialect; the ODBC reader compiles them for the DBMS the driver reports and runs them
through pyodbc.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import and_, column, func, inspect, or_, select, table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError

from healthqa import canonical
from healthqa.config import Source
from healthqa.errors import SourceError, SourceUnreachable, one_line

from .readers import Reader, empty_frame
from .readonly import ODBC_SESSION_SQL, ODBC_TRANSACTION_SQL, guard, odbc_timeout_sql, readonly_engine
from .sampling import Scope
from .timeouts import Deadline

_TEXT_TYPES = ("char", "text", "string", "clob", "varchar", "nvarchar", "character")


class _SqlBuilder(Reader):
    """Statement building shared by the SQLAlchemy and ODBC readers."""

    _text_columns: dict[str, set[str]]
    _aware_columns: dict[str, set[str]]  # columns whose type carries a time zone
    _actual_names: dict[str, str]  # canonical table -> physical name as the database spells it

    def _table(self, t: str, physical_cols):
        tm = self.mapping(t)
        return table(self._actual_names.get(t, tm.table), *[column(c) for c in physical_cols], schema=tm.schema_)

    @staticmethod
    def _match(wanted: str, names) -> str | None:
        """Databases fold unquoted names (PostgreSQL to lower, Oracle to upper case): match either way."""
        names = list(names)
        if wanted in names:
            return wanted
        return next((n for n in names if n.lower() == wanted.lower()), None)

    def _bind_time(self, t: str, phys_col: str, value: datetime):
        """Dates are often text in vendor schemas: compare ISO text with text, timestamps with timestamps.
        Bounds are local time of the configuration's timezone; a column with a time zone (timestamptz)
        is compared with the bound as that local time, whatever the session's time zone."""
        if phys_col.lower() in self._text_columns.get(t, set()):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        if phys_col.lower() in self._aware_columns.get(t, set()) and value.tzinfo is None:
            return value.replace(tzinfo=self.tz)
        return value

    def _text_times(self, t: str, phys_col: str) -> bool:
        """Whether the column's times are compared as text: a text column, or any column of SQLite
        (which keeps times as text whatever the declared type)."""
        return phys_col.lower() in self._text_columns.get(t, set()) or self._dbms() == "sqlite"

    def _dbms(self) -> str:
        return getattr(self, "dbms", "") or (self.engine.dialect.name if getattr(self, "engine", None) else "")

    def _where(self, t: str, scope: Scope) -> list:
        cols = self.present_columns(t)
        conds = []
        org = canonical.table(t).org
        if scope.orgs or scope.org_missing:
            if not org or org not in cols:
                raise SourceError(self.name, f"tables.{t}: no institution column to filter by")
            c = column(cols[org])
            conds.append(or_(c.in_(list(scope.orgs)), c.is_(None)) if scope.org_missing else c.in_(list(scope.orgs)))
        lo, hi = scope.time_window
        if lo or hi:
            tc = self.time_column(t, scope)
            if not tc or tc not in cols:
                raise SourceError(self.name, f"tables.{t}: no time column {tc or ''} to filter a window or watermark by")
            c = column(cols[tc])
            if lo:
                after = c > self._bind_time(t, cols[tc], lo)
                # LTRIM/RTRIM are in every dialect, and Oracle's blank is NULL
                bare = func.ltrim(func.rtrim(c))
                if scope.undated:  # blank text too
                    blank = [bare == "", bare.is_(None)] if cols[tc].lower() in self._text_columns.get(t, set()) else []
                    after = or_(after, c.is_(None), *blank)
                elif scope.fresh_only and self._text_times(t, cols[tc]):
                    # text in another format than ISO (2025/06/03 08:00) does not compare with the
                    # bound as text: such rows are fetched and the reader compares their times as
                    # times, and counts a time it cannot read once (``Reader.read``)
                    after = or_(after, and_(c.is_not(None), bare != "", ~c.like("____-__-__%")))
                if scope.arrivals:  # late arrivals: loaded since the last night, whatever their time
                    a = self.arrival_column(t, scope)
                    after = or_(after, column(a) > self._bind_time(t, a, scope.arrivals[1]))
                conds.append(after)
            if hi:
                conds.append(c <= self._bind_time(t, cols[tc], hi))
        return conds

    def _select_rows(self, t: str, columns: dict[str, str], scope: Scope):
        phys = list(columns.values())
        stmt = select(*[column(c) for c in phys]).select_from(self._table(t, phys))
        conds = self._where(t, scope)
        if conds:
            stmt = stmt.where(and_(*conds))
        cap = scope.sampling.rows
        if cap and scope.sampling.method == "incremental":
            # the oldest rows after the watermark, in time order (the key breaks ties, so a run is
            # repeatable); one row beyond the cap tells the reader whether rows were left for the
            # next run, and whether the last instant read has more rows than were taken
            cols = self.present_columns(t)
            tc = self.time_column(t, scope)
            if not tc or tc not in cols:
                raise SourceError(self.name, f"tables.{t}: no time column {tc or ''} to order a capped incremental read by")
            key = cols.get(canonical.table(t).key)
            stmt = stmt.order_by(column(cols[tc]), *([column(key)] if key else [])).limit(cap + 1)
        elif cap and scope.sampling.method == "full":
            stmt = stmt.limit(cap)
        return stmt

    def _select_keys(self, t: str, scope: Scope):
        cols = self.present_columns(t)
        mt = canonical.table(t)
        picks = [column(cols[mt.key]).label("key")]
        if scope.sampling.method == "stratified" and mt.org and mt.org in cols:
            picks.append(column(cols[mt.org]).label("org"))
        stmt = select(*picks).select_from(self._table(t, cols.values()))
        conds = self._where(t, scope)
        return stmt.where(and_(*conds)) if conds else stmt

    def _select_by_keys(self, t: str, columns: dict[str, str], keys: list):
        phys = list(columns.values())
        key_col = columns[canonical.table(t).key]
        return select(*[column(c) for c in phys]).select_from(self._table(t, phys)).where(column(key_col).in_(keys))

    def _select_count(self, t: str, scope: Scope | None):
        cols = self.present_columns(t)
        stmt = select(func.count().label("n")).select_from(self._table(t, cols.values()))
        conds = self._where(t, scope) if scope else []
        return stmt.where(and_(*conds)) if conds else stmt


class SqlAlchemyReader(_SqlBuilder):
    """Any database SQLAlchemy can reach by URL, opened read-only."""

    def __init__(self, name: str, cfg: Source, timezone: str | None = None):
        super().__init__(name, cfg, timezone)
        self.engine = None
        self._text_columns, self._aware_columns, self._actual_names = {}, {}, {}

    def connect(self) -> None:
        deadline = Deadline(self.name, self.cfg.read_timeout, self.cfg.deadline_s)
        try:
            self.engine = readonly_engine(self.cfg.url, max_connections=self.cfg.max_connections,
                                          statement_timeout_s=self.cfg.statement_timeout_s,
                                          connect_timeout_s=self.cfg.connect_timeout_s, deadline=deadline)
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except (SQLAlchemyError, ValueError, ImportError) as e:
            raise SourceUnreachable(self.name, one_line(e)) from None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def physical_columns(self, t: str) -> list[str] | None:
        tm = self.mapping(t)
        try:
            insp = inspect(self.engine)
            actual = self._match(tm.table, insp.get_table_names(schema=tm.schema_) + insp.get_view_names(schema=tm.schema_))
            if actual is None:
                return None
            self._actual_names[t] = actual
            cols = insp.get_columns(actual, schema=tm.schema_)
        except NoSuchTableError:
            return None
        except SQLAlchemyError as e:
            raise SourceError(self.name, one_line(e)) from None
        self._text_columns[t] = {c["name"].lower() for c in cols
                                 if any(k in str(c["type"]).lower() for k in _TEXT_TYPES)}
        self._aware_columns[t] = {c["name"].lower() for c in cols if getattr(c["type"], "timezone", False)}
        return [c["name"] for c in cols]

    def _execute(self, stmt):
        try:
            with self.engine.connect() as conn:
                return conn.execute(stmt).fetchall()
        except DBAPIError as e:
            raise SourceError(self.name, one_line(e)) from None

    def count(self, t: str, scope: Scope | None = None) -> int:
        rows = self._execute(self._select_count(t, scope))
        return int(rows[0][0])

    def _stream(self, t: str, columns: dict[str, str], scope: Scope) -> Iterator[pd.DataFrame]:
        names = list(columns.values())
        yielded = False
        for rows in self._driver_chunks(self._select_rows(t, columns, scope)):
            yielded = True
            yield pd.DataFrame.from_records(rows, columns=names)
        if not yielded:
            yield empty_frame(names)

    def _driver_chunks(self, stmt) -> Iterator[list[tuple]]:
        # Rows come through the driver's own cursor: SQLAlchemy's Row objects cost more than the
        # read itself at a million rows. The statement is still built and compiled by SQLAlchemy,
        # and checked by the read-only guard like any other.
        compiled = stmt.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = ([compiled.params[k] for k in compiled.positiontup] if self.engine.dialect.positional
                  else compiled.params)
        sql = str(compiled)
        guard(sql, self.engine.dialect.name)
        try:
            with self.engine.connect() as conn:
                cur = self._streaming_cursor(conn.connection.driver_connection)
                try:
                    cur.execute(sql, params)
                    while rows := cur.fetchmany(self.cfg.chunk_rows):
                        yield rows
                finally:
                    cur.close()
        except DBAPIError as e:
            raise SourceError(self.name, one_line(e)) from None
        except self._driver_errors() as e:
            raise SourceError(self.name, one_line(e)) from None

    def _streaming_cursor(self, driver_conn):
        """A cursor that fetches as it goes: server-side on PostgreSQL and MySQL/MariaDB."""
        backend = self.engine.dialect.name
        if backend == "postgresql" and self.engine.dialect.driver == "psycopg":
            return driver_conn.cursor(name="healthqa_read")
        if backend in ("mysql", "mariadb") and self.engine.dialect.driver == "pymysql":
            import pymysql.cursors

            return driver_conn.cursor(pymysql.cursors.SSCursor)
        return driver_conn.cursor()

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        dbapi = getattr(self.engine.dialect, "dbapi", None) or getattr(self.engine.dialect, "loaded_dbapi", None)
        return (dbapi.Error,) if dbapi is not None and hasattr(dbapi, "Error") else ()

    def _keys(self, t: str, scope: Scope) -> pd.DataFrame:
        # a whole table's keys (a night's check for archives added or removed): columns built from
        # the driver's tuples, no Row object or record per row
        stmt = self._select_keys(t, scope)
        names = [c.name for c in stmt.selected_columns]
        parts = [np.array(chunk, dtype=object).reshape(len(chunk), len(names)) for chunk in self._driver_chunks(stmt)]
        rows = np.concatenate(parts) if parts else np.empty((0, len(names)), dtype=object)
        return pd.DataFrame({n: rows[:, k] for k, n in enumerate(names)})

    def _fetch(self, t: str, columns: dict[str, str], keys: list) -> pd.DataFrame:
        rows = self._execute(self._select_by_keys(t, columns, keys))
        return pd.DataFrame.from_records(rows, columns=list(columns.values()))


def _odbc_dialect(dbms: str) -> Dialect:
    """The SQLAlchemy dialect that writes SQL the DBMS behind an ODBC driver understands."""
    from sqlalchemy.dialects import mssql, mysql, oracle, postgresql, sqlite

    d = {"postgresql": postgresql, "mysql": mysql, "mariadb": mysql, "microsoft sql server": mssql,
         "oracle": oracle, "sqlite": sqlite}.get(dbms, sqlite)
    return d.dialect(paramstyle="qmark")


class OdbcReader(_SqlBuilder):
    """A database behind an ODBC driver manager (unixODBC on Linux), through pyodbc, read-only."""

    def __init__(self, name: str, cfg: Source, timezone: str | None = None):
        super().__init__(name, cfg, timezone)
        self.conn = None
        self.dbms = ""
        self.dialect: Dialect | None = None
        self._text_columns, self._aware_columns, self._actual_names = {}, {}, {}

    def connect(self) -> None:
        import pyodbc

        # pyodbc has no socket to watch: every call to the driver runs on a worker thread that the
        # reader stops waiting for when the source's time runs out (timeouts.Deadline.call)
        self.deadline = Deadline(self.name, self.cfg.read_timeout, self.cfg.deadline_s)
        try:
            self.deadline.call(self._open)
        except pyodbc.Error as e:
            raise SourceUnreachable(self.name, _odbc_reason(e)) from None
        except SourceError as e:
            raise SourceUnreachable(self.name, e.reason) from None
        self.dialect = _odbc_dialect(self.dbms)

    def _open(self) -> None:
        import pyodbc

        cs = self.cfg.connection_string or f"DSN={self.cfg.dsn}"
        # readonly sets SQL_ATTR_ACCESS_MODE; drivers may ignore it, so the session is made
        # read-only in SQL as well where the DBMS supports it, and every read runs in a
        # read-only transaction that is rolled back (``cursor``).
        self.conn = pyodbc.connect(cs, readonly=True, timeout=self.cfg.connect_timeout_s, autocommit=True)
        streaming = _odbc_streaming(cs, str(self.conn.getinfo(pyodbc.SQL_DRIVER_NAME)), self.cfg.chunk_rows)
        if streaming != cs:  # psqlODBC: fetch through a cursor, a chunk at a time, not every row at once
            self.conn.close()
            self.conn = pyodbc.connect(streaming, readonly=True, timeout=self.cfg.connect_timeout_s, autocommit=True)
        with contextlib.suppress(pyodbc.Error):
            # the driver's own connection timeout, applied to every cursor as its query timeout;
            # psqlODBC does not take it (the session's statement_timeout and the deadline still hold)
            self.conn.timeout = self.cfg.statement_timeout_s
        self.dbms = str(self.conn.getinfo(pyodbc.SQL_DBMS_NAME)).strip().lower()
        if self.dbms in ("mysql", "mariadb"):
            # their drivers hand text over as UTF-8; decoded any other way a Chinese name
            # loses its last characters (pyodbc's documented setting for MySQL)
            self.conn.setdecoding(pyodbc.SQL_CHAR, encoding="utf-8")
            self.conn.setdecoding(pyodbc.SQL_WCHAR, encoding="utf-8")
            self.conn.setencoding(encoding="utf-8")
        cur = self.conn.cursor()
        for sql in ODBC_SESSION_SQL.get(self.dbms, []) + odbc_timeout_sql(self.dbms, self.cfg.statement_timeout_s):
            cur.execute(sql)
        cur.close()
        # From here on nothing is committed: statements run in transactions that ``cursor`` makes
        # read-only and ends with a rollback. In autocommit a source's view could switch the
        # session's default to read-write (set_config('default_transaction_read_only', 'off',
        # false)) and the next statement would run, and commit, in a read-write transaction.
        self.conn.autocommit = False

    def close(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        if self.deadline.stuck:
            return  # a call is still blocked in the driver on another thread: closing under it could crash
        # when the path died since the last read the connection is abandoned; nothing was committed
        with contextlib.suppress(SourceError):
            self.deadline.call(_rollback_and_close, conn)

    def cursor(self):
        """A cursor whose ``execute`` refuses writing statements (the DBMS refuses them as well) and
        runs each statement in a new read-only transaction, the previous one rolled back; every call
        to the driver is bounded by the source's time limits."""
        return _GuardedCursor(self)

    def _read_only_transaction(self, cur) -> None:
        """End whatever ran before (rolled back, never committed) and make the next transaction
        read-only, whatever the session's default has become since connecting."""
        self.conn.rollback()
        if self.dbms in ODBC_TRANSACTION_SQL:
            cur.execute(ODBC_TRANSACTION_SQL[self.dbms])

    def physical_columns(self, t: str) -> list[str] | None:
        import pyodbc

        tm = self.mapping(t)
        try:
            cur = self.cursor()
            names = [r.table_name for r in cur.tables(schema=tm.schema_).fetchall()
                     if str(r.table_type).upper() in ("TABLE", "VIEW")]
            actual = self._match(tm.table, names)
            rows = cur.columns(table=actual, schema=tm.schema_).fetchall() if actual else []
            cur.close()
        except pyodbc.Error as e:
            raise SourceError(self.name, _odbc_reason(e)) from None
        if not rows:
            return None
        self._actual_names[t] = actual
        self._text_columns[t] = {r.column_name.lower() for r in rows
                                 if any(k in str(r.type_name).lower() for k in _TEXT_TYPES)}
        self._aware_columns[t] = {r.column_name.lower() for r in rows
                                  if "tz" in str(r.type_name).lower() or "time zone" in str(r.type_name).lower()}
        return [r.column_name for r in rows]

    def _run(self, stmt):
        import pyodbc

        compiled = stmt.compile(dialect=self.dialect, compile_kwargs={"render_postcompile": True})
        params = [compiled.params[n] for n in (compiled.positiontup or [])]
        try:
            cur = self.cursor()
            cur.execute(str(compiled), params)
            return cur
        except pyodbc.Error as e:
            raise SourceError(self.name, _odbc_reason(e)) from None

    def count(self, t: str, scope: Scope | None = None) -> int:
        cur = self._run(self._select_count(t, scope))
        n = cur.fetchone()[0]
        cur.close()
        return int(n)

    def _stream(self, t: str, columns: dict[str, str], scope: Scope) -> Iterator[pd.DataFrame]:
        cur = self._run(self._select_rows(t, columns, scope))
        names = list(columns.values())
        yielded = False
        while True:
            rows = cur.fetchmany(self.cfg.chunk_rows)
            if not rows:
                break
            yielded = True
            yield pd.DataFrame.from_records([tuple(r) for r in rows], columns=names)
        cur.close()
        if not yielded:
            yield empty_frame(names)

    def _keys(self, t: str, scope: Scope) -> pd.DataFrame:
        stmt = self._select_keys(t, scope)
        cur = self._run(stmt)
        rows = [tuple(r) for r in cur.fetchall()]
        cur.close()
        return pd.DataFrame.from_records(rows, columns=[c.name for c in stmt.selected_columns])

    def _fetch(self, t: str, columns: dict[str, str], keys: list) -> pd.DataFrame:
        cur = self._run(self._select_by_keys(t, columns, keys))
        rows = [tuple(r) for r in cur.fetchall()]
        cur.close()
        return pd.DataFrame.from_records(rows, columns=list(columns.values()))


class _GuardedCursor:
    """A pyodbc cursor: statements guarded and in read-only transactions, driver calls bounded."""

    _BOUNDED = ("fetchone", "fetchmany", "fetchall", "tables", "columns", "nextset")

    def __init__(self, reader: OdbcReader):
        self._reader = reader
        self._cur = reader.deadline.call(reader.conn.cursor)

    def execute(self, sql, *params):
        guard(sql, self._reader.dbms)

        def run():
            self._reader._read_only_transaction(self._cur)
            self._cur.execute(sql, *params)

        self._reader.deadline.call(run)
        return self

    def __getattr__(self, name):
        attr = getattr(self._cur, name)
        if name not in self._BOUNDED:
            return attr

        def bounded(*args, **kwargs):
            out = self._reader.deadline.call(attr, *args, **kwargs)
            return self if out is self._cur else out  # tables() and columns() return the cursor itself
        return bounded

    def __iter__(self):
        return iter(self.fetchall())


def _rollback_and_close(conn) -> None:
    try:
        conn.rollback()
    finally:
        conn.close()


def _odbc_streaming(cs: str, driver: str, chunk_rows: int) -> str:
    """The connection string that makes the driver fetch as the reader goes. psqlODBC reads a whole
    result set into client memory unless told to use a cursor (``UseDeclareFetch``), fetching
    ``Fetch`` rows at a time; a string that sets it already is left as it is."""
    if driver.lower().startswith("psqlodbc") and "usedeclarefetch" not in cs.lower():
        return f"{cs.rstrip(';')};UseDeclareFetch=1;Fetch={chunk_rows}"
    return cs


def _odbc_reason(e) -> str:
    # pyodbc errors are ('SQLSTATE', '[unixODBC][Driver]... message (code) (SQLDriverConnect)')
    parts = [str(a) for a in getattr(e, "args", [])]
    return one_line(Exception(parts[-1] if parts else e))
