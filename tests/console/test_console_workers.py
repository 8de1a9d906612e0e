"""What several console processes (``healthqa serve --workers N``) must share, on SQLite and on
PostgreSQL: the engineer's validation started through one process is followed and read through
another; a client address's log-in bound and a machine token's match-API calls hold across
processes; a job whose process was killed reads as interrupted, never as running for ever.

Each test talks to two processes of the console on one audit store: ``healthqa serve`` (a process of
its own, "A") and the application in the test's own process ("B") — which process answers is then
chosen, not left to the kernel as it is among ``--workers``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from healthqa import config
from healthqa.console.app import create_app
from healthqa.store import AuditStore
from healthqa.store.models import ConsoleJob, LoginWindow

from ..conftest import PG_ADMIN, _temporary_database, free_port
from .console_site import build, csrf_of, logged_in, login, serve

pytestmark = [pytest.mark.server, pytest.mark.xdist_group("console-workers")]

PER_CLIENT = 3
MATCH_CALLS = 2


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request, demo, tmp_path_factory):
    """(the site's configuration file, its loaded configuration, the console in this process "B",
    the base URL of ``healthqa serve`` "A")."""
    dbs = _temporary_database(PG_ADMIN, "PostgreSQL", '"', " WITH (FORCE)") if request.param == "postgresql" else None
    url = next(dbs) if dbs else None
    path = build(demo, tmp_path_factory.mktemp(f"workers-{request.param}"), url, validate=False,
                 console={"logins_per_client_per_minute": PER_CLIENT,
                                   "match_calls_per_minute": MATCH_CALLS})
    cfg = config.load(path)
    proc, base = serve(path, free_port())
    try:
        yield path, cfg, create_app(cfg), base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if dbs:
            next(dbs, None)


def _status(client, job: int) -> str:
    r = client.get(f"/validate/jobs/{job}/status")
    assert r.status_code == 200, r.text[:300]
    return r.text


def test_a_job_started_through_one_process_is_followed_and_read_through_another(site):
    _, cfg, app_b, base = site
    with httpx.Client(base_url=base, timeout=60) as a:
        assert login(a, "eng1").status_code == 303
        token = csrf_of(a.get("/validate").text)
        r = a.post("/validate", data={"source": "mpi", "tables": "person", "csrf_token": token})
        assert r.status_code == 303, r.text[:300]
        job = int(r.headers["location"].rsplit("/", 1)[1])
    b, _ = logged_in(app_b, "eng1")
    for _ in range(240):  # followed through B, which never saw the job start
        status = _status(b, job)
        if 'data-state="running"' not in status:
            break
        time.sleep(0.25)
    assert 'data-state="done"' in status, status
    run_id = int(re.search(r"run #(\d+)", status).group(1))
    with AuditStore(cfg.store.url) as store:
        assert store.runs.get(run_id).kind == "validate"
    assert re.search(r"通过 \d+ · 不通过 \d+", status) and 'id="passed-rules"' in status
    assert f'href="/validate/jobs/{job}"' in b.get("/validate").text  # B's list of jobs has it too
    page = b.get(f"/validate/jobs/{job}").text
    assert "数据源 mpi" in page and "eng1" in page


def test_a_client_address_gets_its_log_in_attempts_once_across_processes(site):
    _, cfg, app_b, base = site
    b = TestClient(app_b, client=("127.0.0.1", 40000))  # the address A sees for this test's requests
    with AuditStore(cfg.store.url) as store, store.session() as s:
        s.query(LoginWindow).delete()  # this test's minute starts with its first attempt
    try:
        with httpx.Client(base_url=base, timeout=60) as a:
            seen = [login(a, "nobody1", "wrong-password-123").status_code,
                    login(b, "nobody2", "wrong-password-123").status_code,
                    login(a, "nobody3", "wrong-password-123").status_code]
            assert seen == [401] * PER_CLIENT  # the bound's attempts, wherever they were sent
            refused = login(a, "nobody4", "wrong-password-123")
            assert refused.status_code == 429 and "登录尝试过于频繁" in refused.text
            assert login(b, "eng1").status_code == 429  # the other process counted the same attempts
        failed = [x for x in app_b.state.store.review.audit(limit=200) if x["action"] == "login_failed"]
        assert len(failed) == PER_CLIENT  # the refused were never hashed
    finally:  # the other tests log in from this address
        with AuditStore(cfg.store.url) as store, store.session() as s:
            s.query(LoginWindow).delete()


def test_a_job_left_running_by_a_killed_process_reads_as_interrupted(site):
    _, cfg, app_b, _ = site
    # a process holding a job as a console worker does, killed before the job's end is written
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from healthqa.store import AuditStore\n"
        "with AuditStore(sys.argv[1]).jobs.running('eng1', {'source': 'mpi', 'tables': ['person'], 'orgs': []}) as i:\n"
        "    print(i, flush=True)\n"
        "    time.sleep(600)\n"), cfg.store.url], stdout=subprocess.PIPE, text=True)
    try:
        job = int(holder.stdout.readline())
        b, _ = logged_in(app_b, "eng1")
        assert 'data-state="running"' in _status(b, job)  # its process lives: running, as it is
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        # a console starting (a restart): the job is marked before anyone reads it (B's start and
        # stop; its session above needs no log-in again, the stop's closed Argon2 pool is not used)
        with TestClient(app_b):
            pass
        with AuditStore(cfg.store.url) as store, store.session() as s:
            assert s.get(ConsoleJob, job).state == "interrupted"
        status = _status(b, job)
        assert 'data-state="interrupted"' in status and "校验中断" in status and 'hx-get' not in status
        assert "中断 interrupted" in b.get("/validate").text
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_a_tokens_match_calls_are_counted_once_across_processes(site):
    """``console.match_calls_per_minute`` is a token's in all processes together (store.tokens.call_in),
    not each worker's: two calls through A and B, and the third is refused by either (the site has a
    scan to match against: a call refused for want of one is not counted)."""
    _, cfg, app_b, base = site
    with AuditStore(cfg.store.url) as store:
        token = store.tokens.add("vendor-workers", "matcher", "admin1")
    auth = {"Authorization": f"Bearer {token}"}
    b = TestClient(app_b, headers=auth)
    with httpx.Client(base_url=base, timeout=60, headers=auth) as a:
        seen = [a.post("/api/match", json={"name": "张云"}).status_code,
                b.post("/api/match", json={"name": "张云"}).status_code]
        assert seen == [200] * MATCH_CALLS
        assert a.post("/api/match", json={"name": "张云"}).status_code == 429
        assert b.post("/api/match", json={"name": "张云"}).status_code == 429
