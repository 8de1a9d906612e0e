"""The deployments on a real Prefect server, as a site runs them: `prefect server start` on localhost
(its own PREFECT_HOME, SQLite), `healthqa deploy` registers the flows for a process work pool,
`prefect worker start` runs what the server schedules; the nightly deployment, triggered, writes its
run and rule results into the audit store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from ..conftest import free_port  # noqa: E402

pytestmark = pytest.mark.server


BIN = Path(sys.executable).parent


def _wait(what: str, ready, seconds: float, procs=()) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process ended with {p.returncode}: {p.stdout.read()[-2000:]}")
        if ready():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {seconds} s")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(p: subprocess.Popen) -> None:
    """The process and its children (the server's workers, the worker's flow runs)."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=15)


@pytest.fixture
def prefect_server(prefect_home):
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        _wait("prefect server start", lambda: _healthy(url), 90, [server])
        yield url, env
    finally:
        _stop(server)


def test_the_nightly_deployment_runs_on_a_prefect_server_with_a_worker(small_platform, prefect_server):
    cfg, store, _ = small_platform
    url, env = prefect_server
    pool = "healthqa-test"
    deployed = subprocess.run([str(BIN / "healthqa"), "deploy", "--config", str(cfg.path), "--pool", pool],
                              env=env, capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    for name in ("nightly-audit/nightly", "quarterly-report/quarterly", "dedup-scan/dedup-scan",
                 "adhoc-validate/adhoc-validate"):
        assert name in deployed.stdout
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--limit", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            deps = {f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in client.read_deployments()}
            assert deps["nightly-audit/nightly"].work_pool_name == pool
            assert deps["nightly-audit/nightly"].parameters == {"config_path": str(cfg.path)}
            # a second nightly meanwhile is cancelled by the server, not failed by the nightly lock
            assert deps["nightly-audit/nightly"].global_concurrency_limit.limit == 1
            assert deps["nightly-audit/nightly"].concurrency_options.collision_strategy == "CANCEL_NEW"
            sched = client.read_deployment_schedules(deps["nightly-audit/nightly"].id)[0].schedule
            assert (sched.cron, sched.timezone) == ("0 2 * * *", "Asia/Shanghai")
            run = client.create_flow_run_from_deployment(deps["nightly-audit/nightly"].id)

            def ended():
                st = client.read_flow_run(run.id).state
                return st is not None and st.is_final()

            _wait("the nightly flow run", ended, 150, [worker])
            state = client.read_flow_run(run.id).state
            assert state.is_completed(), state.message
    finally:
        _stop(worker)
    nightly = [r for r in store.runs.recent(10) if r.kind == "nightly"]
    assert [r.status for r in nightly] == ["success"]
    results = store.results.of_run(nightly[0].id)
    assert {r.source for r in results} == {"mpi", "drc", "qc"} and any(r.status == "fail" for r in results)
    assert store.scores.of_run(nightly[0].id)


def test_deploy_without_a_server_says_so(small_platform):
    cfg, _, _ = small_platform
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    p = subprocess.run([str(BIN / "healthqa"), "deploy", "--config", str(cfg.path)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "PREFECT_API_URL" in p.stderr and "Traceback" not in p.stderr
