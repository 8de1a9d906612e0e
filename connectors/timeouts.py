"""Client-side time limits: no wait on a source's database lasts for ever.

A server-side ``statement_timeout`` does not help when the network path dies mid-query (a firewall or
proxy that stops forwarding but keeps the socket open): the server's cancellation never arrives and
the driver waits on a silent socket. So every wait is bounded on the client as well:

- ``read_timeout_s``: no answer for this long on one wait (a query, a fetch) and the connection is
  given up. PostgreSQL (psycopg): each wait of the connection is bounded (``Connection.wait``'s
  timeout), libpq keepalives and ``tcp_user_timeout`` notice a dead peer; MariaDB/MySQL (PyMySQL):
  ``read_timeout`` / ``write_timeout``; ODBC (pyodbc): the query timeout, and every call runs on a
  worker thread the reader stops waiting for.
- ``deadline_s``: the whole source, from connecting on. Each wait is bounded by what is left of it,
  so a source that is slow but alive fails too, with its own reason.

Either way the source fails with a ``SourceError`` that says which limit ran out, and the audit goes
on with the next source (pipelines catch ``SourceError`` per source).
"""

from __future__ import annotations

import threading
from time import monotonic

from healthqa.errors import SourceError


class Deadline:
    """The time limits of one source, from the moment it is connected."""

    def __init__(self, source: str, read_timeout_s: float, deadline_s: float):
        self.source = source
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
        self.ends = monotonic() + deadline_s
        self.stuck = False  # a call (ODBC) still blocked on a worker thread: its connection is abandoned

    def passed(self) -> str:
        return f"超过数据源时限 {self.deadline_s:g} 秒 (the source's deadline of {self.deadline_s:g} s passed, deadline_s)"

    def silent(self, seconds: float) -> str:
        return (f"数据库 {seconds:g} 秒无应答 (no answer from the database within {seconds:g} s, read_timeout_s): "
                f"the network path or the server is stuck")

    def budget(self) -> tuple[float, str]:
        """How long the next wait may last, and the reason to give when it runs out. Raises the
        deadline's SourceError when nothing is left."""
        left = self.ends - monotonic()
        if left <= 0:
            raise SourceError(self.source, self.passed())
        if left < self.read_timeout_s:
            return left, self.passed()
        return self.read_timeout_s, self.silent(self.read_timeout_s)

    def call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a worker thread, waited for no longer than the budget. For
        drivers that cannot be interrupted (pyodbc gives no socket and ignores signals in the driver):
        on time-out the call is left blocked on its daemon thread and the source fails."""
        if self.stuck:
            raise SourceError(self.source, "an earlier call is still blocked; the connection was given up")
        seconds, why = self.budget()
        box: dict = {}

        def run():
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread as it is
                box["error"] = e

        worker = threading.Thread(target=run, name=f"healthqa-{self.source}", daemon=True)
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            self.stuck = True
            raise SourceError(self.source, why)
        if "error" in box:
            raise box["error"]
        return box.get("value")


def psycopg_connection_class():
    """A psycopg Connection whose every wait (execute, fetch, commit) is bounded by its ``deadline``."""
    import psycopg
    from psycopg import errors

    class WatchedConnection(psycopg.Connection):
        deadline: Deadline | None = None

        def wait(self, gen, *args, **kwargs):
            if self.deadline is None or self.closed or kwargs.get("timeout") is not None:
                return super().wait(gen, *args, **kwargs)
            try:
                seconds, why = self.deadline.budget()
            except SourceError as e:
                self.pgconn.finish()
                raise psycopg.OperationalError(e.reason) from None
            try:
                return super().wait(gen, *args, **{**kwargs, "timeout": seconds})
            except errors._WaitTimeout:  # psycopg's own signal that the timeout ran out
                # the protocol stopped mid-message: this connection cannot be used again (the pool
                # sees it closed and discards it)
                self.pgconn.finish()
                raise psycopg.OperationalError(why) from None

        def rollback(self) -> None:
            # a connection given up has nothing to roll back: the server ends its transaction with it
            # (and the pool, resetting it on return, would otherwise log the error as a traceback)
            if not self.closed:
                super().rollback()

    return WatchedConnection


def pymysql_connection_class():
    """A PyMySQL Connection whose socket timeout, before each packet it reads, is what is left of
    the budget (PyMySQL applies ``_read_timeout`` to the socket per packet)."""
    import pymysql
    from pymysql.connections import Connection

    class WatchedConnection(Connection):
        deadline: Deadline | None = None

        def _read_packet(self, *args, **kwargs):
            if self.deadline is None:
                return super()._read_packet(*args, **kwargs)
            seconds, why = self.deadline.budget()
            self._read_timeout = seconds
            try:
                return super()._read_packet(*args, **kwargs)
            except pymysql.err.OperationalError as e:
                if "timed out" in str(e):
                    raise pymysql.err.OperationalError(2013, why) from None
                raise

        def rollback(self) -> None:
            if self.open:  # as for psycopg: nothing to roll back on a connection given up
                super().rollback()

    return WatchedConnection


def is_closed(dbapi_conn) -> bool:
    """Whether a driver connection was given up (psycopg: ``closed``; PyMySQL: not ``open``)."""
    closed = getattr(dbapi_conn, "closed", None)
    return bool(closed) if closed is not None else not getattr(dbapi_conn, "open", True)
