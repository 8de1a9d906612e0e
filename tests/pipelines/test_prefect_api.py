"""The local Prefect API a command's flows run on (``pipelines/prefect_api.py``), as an operator meets
it: ``healthqa run nightly`` with no Prefect server records its flow run in the PREFECT_HOME's
database and leaves no server process behind; a server that cannot start is a one-line message and
exit code 1, not a traceback or a hang; ``healthqa schedule`` with no server runs the nightly audit
on its cron, stops on Ctrl-C, and leaves no server behind even when killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("prefect")

pytestmark = pytest.mark.server


BIN = Path(sys.executable).parent


def no_server(home: Path, **extra: str) -> dict:
    # no server: the local API; and no NO_PROXY from this test process's own local API, if it has one
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "NO_PROXY", "no_proxy")}
    return {**env, "PREFECT_HOME": str(home), **extra}


def run_nightly(cfg_path: Path, home: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "healthqa"), "run", "nightly", "--config", str(cfg_path)],
                          env=no_server(home, **extra), capture_output=True, text=True, timeout=600)


def servers_of(home: Path) -> list[psutil.Process]:
    """Processes still running whose PREFECT_HOME is ``home``."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("PREFECT_HOME") == str(home):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_a_nightly_run_on_the_local_api_is_recorded_and_leaves_no_server(small_platform, tmp_path, prefect_home):
    """Behind a hospital network's proxy too: the local API is reached directly."""
    cfg, _, _ = small_platform
    home = prefect_home
    unreachable = f"http://127.0.0.2:{_closed_port()}"
    p = run_nightly(cfg.path, home, HTTP_PROXY=unreachable, http_proxy=unreachable, HTTPS_PROXY=unreachable)
    assert p.returncode == 0, p.stderr[-2000:]
    assert servers_of(home) == []
    with sqlite3.connect(home / "prefect.db") as db:
        runs = db.execute("SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id").fetchall()
        tasks = db.execute("SELECT count(*) FROM task_run").fetchone()[0]
    assert runs == [("nightly-audit", "COMPLETED")]
    assert tasks >= 4  # three source checks and their tables, the duplicate scan, the scores: each a task run


def test_a_local_api_that_cannot_start_is_one_line_and_exit_1(small_platform, tmp_path):
    cfg, _, _ = small_platform
    home = tmp_path / "prefect-home"
    closed = f"postgresql+asyncpg://nobody@127.0.0.1:{_closed_port()}/prefect"  # its database refuses
    p = run_nightly(cfg.path, home, PREFECT_API_DATABASE_CONNECTION_URL=closed)
    assert p.returncode == 1, (p.stdout[-1000:], p.stderr[-2000:])
    assert "Prefect 本地 API 未能启动" in p.stderr and "exited with code" in p.stderr
    assert "Connection refused" in p.stderr  # the server's reason, not its traceback
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert servers_of(home) == []


def ctrl_c_reaches_it() -> None:
    """In the child before it starts: SIGINT as a terminal gives it. A test run started in the
    background of a script (``pytest … &``) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _flow_run_states(home: Path) -> list[str]:
    with sqlite3.connect(home / "prefect.db") as db:
        return [s for (s,) in db.execute("SELECT r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id "
                                         "WHERE f.name = 'nightly-audit' AND r.state_type NOT IN ('SCHEDULED', 'PENDING')")]


def _closed_port() -> int:
    from ..conftest import free_port

    return free_port()


def _served_api(log) -> str | None:
    """The local API's address, once the schedule says it serves (its last line before the runs)."""
    import re

    log.seek(0)
    said = re.search(r"本地 Prefect API local Prefect API\s+(http://\S+)", log.read())  # the terminal may wrap before it
    return said.group(1) if said else None


def _nightly_runs(home: Path) -> int:
    """Flow runs of the nightly in the PREFECT_HOME's database, in any state (scheduled ones among them)."""
    with sqlite3.connect(home / "prefect.db") as db:
        return db.execute("SELECT count(*) FROM flow_run r JOIN flow f ON f.id = r.flow_id "
                          "WHERE f.name = 'nightly-audit'").fetchone()[0]


CRON_LEAD_S = 6  # the scheduler's loop is 2 s here: the moment is in the future when it next looks


def test_schedule_without_a_server_runs_the_nightly_on_its_cron(small_platform, tmp_path, prefect_home):
    """Prefect's own ephemeral API runs no scheduler: ``serve`` on it waits for runs nobody creates.
    The schedule's local API is a full server. The configuration's cron (a sixth field: seconds) is
    what the deployment carries, on the terminal and on the server; once the schedule serves, the test
    moves that schedule to one moment a few seconds ahead (a moment fixed before the server was up
    waited out its boot under four test workers: 60 s of every run). What is tested is the same: only
    the server's scheduler turns a cron into a flow run, and only the schedule's runner runs it. The
    scheduler's loop and the runner's polling shortened; one moment: no second night starts while the
    first is stopped."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    import yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.settings import PREFECT_API_URL, temporary_settings

    cfg, store, _ = small_platform
    doc = yaml.safe_load(cfg.path.read_text(encoding="utf-8"))
    cron = "0 2 29 2 * 30"  # 02:00:30 on 29 February: no run of it within the test (nor within 100 days)
    doc["orchestration"] = {"nightly_cron": cron}
    cfg.path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    home = prefect_home
    env = no_server(home, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2", PREFECT_RUNNER_POLL_FREQUENCY="2")
    log = (tmp_path / "schedule.log").open("w+")
    p = subprocess.Popen([str(BIN / "healthqa"), "schedule", "--config", str(cfg.path)], env=env,
                         stdout=log, stderr=subprocess.STDOUT, text=True, preexec_fn=ctrl_c_reaches_it)
    try:
        deadline = time.monotonic() + 240
        while (url := _served_api(log)) is None and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.5)
        log.seek(0)
        said = log.read()
        assert url, said[-3000:]
        assert f"nightly-audit/nightly  {cron}  (Asia/Shanghai)" in said
        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            from prefect.exceptions import ObjectNotFound

            while True:  # the schedule says it serves, then its runner registers the deployments
                try:
                    dep = client.read_deployment_by_name("nightly-audit/nightly")
                    break
                except ObjectNotFound:
                    assert time.monotonic() < deadline and p.poll() is None, log.read()[-3000:]
                    time.sleep(0.5)
            (sched,) = client.read_deployment_schedules(dep.id)
            assert (sched.schedule.cron, sched.schedule.timezone, sched.active) == (cron, "Asia/Shanghai", True)
            for _ in range(4):  # a moment the scheduler missed (a loop later than the lead, under load): another
                at = datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(seconds=CRON_LEAD_S)
                moment = f"{at.minute} {at.hour} {at.day} {at.month} * {at.second}"
                client.update_deployment_schedule(dep.id, sched.id,
                                                  schedule=CronSchedule(cron=moment, timezone="Asia/Shanghai"))
                seen_by = time.monotonic() + CRON_LEAD_S + 10
                while not _nightly_runs(home) and time.monotonic() < seen_by:
                    time.sleep(0.5)
                if _nightly_runs(home):
                    break
        while not store.runs.recent(kind="nightly") and time.monotonic() < deadline and p.poll() is None:
            time.sleep(1)
        while (runs := store.runs.recent(kind="nightly")) and runs[0].status == "running" and time.monotonic() < deadline:
            time.sleep(1)
        # and Prefect's flow run has ended too (its process reports its state after the audit's last write)
        while _flow_run_states(home) != ["COMPLETED"] and time.monotonic() < deadline:
            time.sleep(1)
        log.seek(0)
        said = log.read()
        assert runs and runs[0].status in ("success", "partial"), said[-3000:]
        assert _flow_run_states(home) == ["COMPLETED"], said[-3000:]
        assert "本地 Prefect API" in said
        p.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            stopped = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stopped = None
        log.seek(0)
        assert stopped == 0, log.read()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
    log.seek(0)
    said = log.read()
    assert said.rstrip().endswith("已停止 stopped") and "Traceback" not in said, said[-3000:]
    assert servers_of(home) == []


def test_one_schedule_per_store_and_per_prefect_home_and_a_killed_one_leaves_no_server(small_platform, tmp_path, prefect_home):
    """A second schedule of the same site would audit every night twice; another site's schedule on
    the same PREFECT_HOME would take its deployments over: both refused at once, exit 2. Then
    ``kill -9``, which gives the command no chance to stop its local API: the server notices itself."""
    import yaml

    cfg, _, _ = small_platform
    home = prefect_home
    other = yaml.safe_load(cfg.path.read_text(encoding="utf-8"))
    other["store"] = {"url": f"sqlite:///{tmp_path / 'other-site.db'}"}
    other_path = tmp_path / "other-site.yml"
    other_path.write_text(yaml.safe_dump(other, allow_unicode=True), encoding="utf-8")
    p = subprocess.Popen([str(BIN / "healthqa"), "schedule", "--config", str(cfg.path)], env=no_server(home),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = [p.stdout.readline() for _ in range(5)]  # the four deployments, then: serving on …
        assert "按计划运行中" in said[-1], said
        assert servers_of(home)  # the API is up …
        for path, why in ((cfg.path, "已在为此稽核库按计划运行"), (other_path, "PREFECT_HOME of its own")):
            second = subprocess.run([str(BIN / "healthqa"), "schedule", "--config", str(path)], env=no_server(home),
                                    capture_output=True, text=True, timeout=120)
            assert second.returncode == 2 and why in second.stderr, (second.stdout, second.stderr)
            assert "Traceback" not in second.stderr
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 30
    while servers_of(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert servers_of(home) == []  # … and gone with the command
