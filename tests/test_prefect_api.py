"""The local Prefect API a command's flows run on (``pipelines/prefect_api.py``), as an operator meets
it: ``healthqa run nightly`` with no Prefect server records its flow run in the PREFECT_HOME's
database and leaves no server process behind; a server that cannot start is a one-line message and
exit code 1, not a traceback or a hang."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytest.importorskip("prefect")

from .test_reports import platform  # noqa: E402,F401 - a writable copy of the demo platform

BIN = Path(sys.executable).parent


def run_nightly(cfg_path: Path, home: Path, **extra: str) -> subprocess.CompletedProcess:
    # no server: the local API; and no NO_PROXY from this test process's own local API, if it has one
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "NO_PROXY", "no_proxy")}
    env.update(PREFECT_HOME=str(home), **extra)
    return subprocess.run([str(BIN / "healthqa"), "run", "nightly", "--config", str(cfg_path)], env=env,
                          capture_output=True, text=True, timeout=600)


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


def test_a_nightly_run_on_the_local_api_is_recorded_and_leaves_no_server(platform, tmp_path):  # noqa: F811
    """Behind a hospital network's proxy too: the local API is reached directly."""
    cfg, _, _ = platform
    home = tmp_path / "prefect-home"
    unreachable = f"http://127.0.0.2:{_closed_port()}"
    p = run_nightly(cfg.path, home, HTTP_PROXY=unreachable, http_proxy=unreachable, HTTPS_PROXY=unreachable)
    assert p.returncode == 0, p.stderr[-2000:]
    assert servers_of(home) == []
    with sqlite3.connect(home / "prefect.db") as db:
        runs = db.execute("SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id").fetchall()
        tasks = db.execute("SELECT count(*) FROM task_run").fetchone()[0]
    assert runs == [("nightly-audit", "COMPLETED")]
    assert tasks >= 4  # three source checks and their tables, the duplicate scan, the scores: each a task run


def test_a_local_api_that_cannot_start_is_one_line_and_exit_1(platform, tmp_path):  # noqa: F811
    cfg, _, _ = platform
    home = tmp_path / "prefect-home"
    closed = f"postgresql+asyncpg://nobody@127.0.0.1:{_closed_port()}/prefect"  # its database refuses
    p = run_nightly(cfg.path, home, PREFECT_API_DATABASE_CONNECTION_URL=closed)
    assert p.returncode == 1, (p.stdout[-1000:], p.stderr[-2000:])
    assert "Prefect 本地 API 未能启动" in p.stderr and "exited with code" in p.stderr
    assert "Connection refused" in p.stderr  # the server's reason, not its traceback
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert servers_of(home) == []


def _closed_port() -> int:
    from .conftest import free_port

    return free_port()
