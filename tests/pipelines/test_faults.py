"""Issue 12 case 7: a dead network path mid-query must not hang the audit.

A small TCP proxy forwards to the local PostgreSQL or MariaDB and then stops forwarding while keeping
both sockets open — what a stuck firewall or proxy does. The server's statement timeout cannot help
(its answer never arrives); the client-side limits must, and the source fails with its reason.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest
from sqlalchemy.engine import make_url

from healthqa.connectors.sources import reader
from healthqa.errors import SourceError

from ..connectors.test_connectors import source_cfg

pytestmark = pytest.mark.slow  # sources that hang until their deadlines


LIMIT = 2  # seconds: every client-side limit in these tests


class StallingProxy:
    """Forwards TCP to ``target`` until ``stall()`` (or until ``stall_after`` bytes came back from the
    server); then it forwards nothing more, in either direction, and closes nothing."""

    def __init__(self, host: str, port: int, stall_after: int | None = None):
        self.target = (host, port)
        self.stall_after = stall_after
        self.stalled = threading.Event()
        self.back = 0  # bytes forwarded from the server to the client
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.stalled.set()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        while not self.closing.is_set():
            if self.stalled.is_set():
                time.sleep(0.05)  # hold both sockets open, read nothing, send nothing
                continue
            ready, _, _ = select.select(list(peers), [], [], 0.05)
            for s in ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                peers[s].sendall(data)
                if s is server:
                    self.back += len(data)
                    if self.stall_after is not None and self.back >= self.stall_after:
                        self.stalled.set()

    def close(self) -> None:
        self.closing.set()
        for s in self.sockets:
            s.close()


@pytest.fixture
def proxy():
    made: list[StallingProxy] = []

    def make(url: str, stall_after: int | None = None) -> tuple[StallingProxy, str]:
        u = make_url(url)
        p = StallingProxy(u.host, u.port or {"postgresql": 5432}.get(u.get_backend_name(), 3306), stall_after)
        made.append(p)
        return p, u.set(host="127.0.0.1", port=p.port).render_as_string(hide_password=False)

    yield make
    for p in made:
        p.close()


def _fails_in_time(r, expect: str, within: float = LIMIT + 3) -> str:
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        r.read_all("person")
    took = time.monotonic() - t0
    assert took < within, f"took {took:.1f} s"
    assert str(e.value).startswith(f"source {r.name}: ") and expect in str(e.value)
    assert len(str(e.value).splitlines()) == 1
    return str(e.value)


@pytest.mark.postgres
def test_postgresql_dead_path_mid_query_fails_on_read_timeout(pg_db, proxy):
    p, url = proxy(pg_db)
    cfg = source_cfg("sqlalchemy", url=url, tables=["person"], statement_timeout_s=20, read_timeout_s=LIMIT,
                     chunk_rows=100)
    with reader("mpi", cfg) as r:
        assert r.count("person") > 0  # the path works ...
        p.stall()  # ... and dies
        msg = _fails_in_time(r, "read_timeout_s")
    assert "no answer from the database within 2 s" in msg


@pytest.mark.postgres
def test_postgresql_stall_inside_a_result_fails_too(pg_db, proxy):
    """The path dies while rows are streaming: some rows came, the rest never will."""
    p, url = proxy(pg_db)
    cfg = source_cfg("sqlalchemy", url=url, tables=["person"], read_timeout_s=LIMIT, chunk_rows=100)
    with reader("mpi", cfg) as r:
        r.present_columns("person")
        p.stall_after = p.back + 30_000
        _fails_in_time(r, "read_timeout_s")
    assert p.stalled.is_set()


@pytest.mark.postgres
def test_postgresql_source_deadline(pg_db, proxy):
    """A generous read timeout, a short deadline for the whole source: the deadline gives the reason."""
    p, url = proxy(pg_db)
    cfg = source_cfg("sqlalchemy", url=url, tables=["person"], read_timeout_s=600, deadline_s=LIMIT)
    with reader("mpi", cfg) as r:
        r.present_columns("person")
        p.stall()
        _fails_in_time(r, "deadline of 2 s passed")
        # once the deadline has passed nothing more is tried
        with pytest.raises(SourceError, match="deadline"):
            r.count("person")


@pytest.mark.postgres
def test_postgresql_connection_keeps_tcp_limits(pg_db):
    with reader("mpi", source_cfg("sqlalchemy", url=pg_db, tables=["person"], read_timeout_s=7)) as r:
        raw = r.engine.raw_connection()
        try:
            opts = {o.keyword.decode(): (o.val or b"").decode() for o in raw.driver_connection.pgconn.info}
        finally:
            raw.close()
    assert opts["keepalives"] == "1" and opts["tcp_user_timeout"] == "7000"


@pytest.mark.mariadb
def test_mariadb_dead_path_mid_query_fails_on_read_timeout(mariadb_db, proxy):
    p, url = proxy(mariadb_db)
    cfg = source_cfg("sqlalchemy", url=url, tables=["person"], statement_timeout_s=20, read_timeout_s=LIMIT)
    with reader("mpi", cfg) as r:
        assert r.count("person") > 0
        p.stall()
        _fails_in_time(r, "read_timeout_s")


@pytest.mark.mariadb
def test_mariadb_source_deadline(mariadb_db, proxy):
    p, url = proxy(mariadb_db)
    cfg = source_cfg("sqlalchemy", url=url, tables=["person"], read_timeout_s=600, deadline_s=LIMIT)
    with reader("mpi", cfg) as r:
        r.present_columns("person")
        p.stall()
        _fails_in_time(r, "deadline of 2 s passed")


@pytest.mark.odbc
def test_odbc_dead_path_mid_query_fails_on_read_timeout(pg_db, odbc_driver, proxy):
    p, url = proxy(pg_db)
    u = make_url(url)
    cs = f"Driver={{{odbc_driver}}};Server=127.0.0.1;Port={u.port};Database={u.database};Uid={u.username};"
    cfg = source_cfg("odbc", connection_string=cs, tables=["person"], statement_timeout_s=20, read_timeout_s=LIMIT)
    r = reader("qc", cfg)
    with r:
        assert r.count("person") > 0
        p.stall()
        _fails_in_time(r, "read_timeout_s")
        with pytest.raises(SourceError, match="given up"):
            r.count("person")  # the blocked call keeps its connection; nothing else uses it
    assert r.conn is None  # closed without waiting for the blocked driver


@pytest.mark.postgres
def test_nightly_goes_on_when_one_source_hangs(demo, pg_db, tmp_path, proxy):
    """One source's path dies in the middle of its rows: that source fails with its reason, the
    others are validated, the run is partial."""
    from healthqa import config
    from healthqa.pipelines.nightly import run_nightly

    from ..conftest import demo_config, write_config

    p, url = proxy(pg_db)
    cfg = demo_config(demo)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    for src in cfg["sources"].values():
        src["url"] = src["url"].replace("sqlite:///", f"sqlite:///{demo}/")
    cfg["sources"]["qc"].update(url=url, read_timeout_s=LIMIT, chunk_rows=100)
    # the resource centre's tables whose rules read the QC store's records (the access log's care
    # relationship, the referrals' examinations, the published figures) would meet the stall first,
    # through their reference reads: here the QC store hangs inside its own rows
    for table in ("record_access", "referral", "published_statistic"):
        cfg["sources"]["drc"]["tables"].pop(table)
    loaded = config.load(write_config(tmp_path / "healthqa.yml", cfg))
    p.stall_after = 200_000  # past the mapping check, inside the follow-up rows
    t0 = time.monotonic()
    res = run_nightly(loaded)
    assert time.monotonic() - t0 < 120
    assert p.stalled.is_set()
    assert "read_timeout_s" in res.failures["qc"]
    assert {"mpi", "drc"} <= set(res.validations)
    assert res.status == "partial"
