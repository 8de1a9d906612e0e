"""A console site for tests: a copy of the demo platform (its MPI may be changed by a test), an audit
store holding one duplicate scan and one validation (scores and findings), and one user per role."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from healthqa import config
from healthqa.pipelines.dedup import run_dedup
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc
from healthqa.store import AuditStore

from ..conftest import demo_config, write_config

PASSWORD = "Zhenhai-2026-secret"
USERS = {"steward1": "steward", "steward2": "steward", "qc1": "qc_manager", "eng1": "engineer", "admin1": "admin"}


def build(demo: Path, folder: Path, store_url: str | None = None, console: dict | None = None,
          validate: bool = True, scan: bool = True) -> Path:
    """The site's configuration file (the demo's sources copied into ``folder``; ``scan``: with a
    duplicate scan stored, ``validate``: with a validation)."""
    for db in ("mpi.db", "drc.db", "qc.db"):
        shutil.copy(demo / db, folder / db)
    cfg = demo_config(demo)
    cfg["store"]["url"] = store_url or f"sqlite:///{folder / 'audit.db'}"
    for s in cfg["sources"].values():
        s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{folder}/")
    cfg["reports"] = {**cfg.get("reports", {}), "out_dir": str(folder / "reports")}
    cfg["data_dir"] = str(folder / "data")
    # every test logs in from one address ("testclient"): the per-address bound is the security tests' to prove
    cfg["console"] = {"failed_login_delay_s": 0, "logins_per_client_per_minute": 1000, **(console or {})}
    path = write_config(folder / "healthqa.yml", cfg)
    loaded = config.load(path)
    with AuditStore(loaded.store.url) as store:
        if scan:
            run_dedup(loaded, store)
        if validate:
            validate_adhoc(loaded, ValidationRequest("mpi", tables=["person"]), store)
        for name, role in USERS.items():
            store.users.add(name, role, PASSWORD, actor="test")
    return path


def serve(site: Path | str, port: int, *args: str, tries: int = 240) -> tuple[subprocess.Popen, str]:
    """``healthqa serve`` on ``port`` as a process of its own, once its log-in page answers: (the
    process, its base URL). A server that ends before answering fails the test with its output."""
    cli = Path(sys.executable).with_name("healthqa")
    proc = subprocess.Popen([str(cli), "serve", "--config", str(site), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(tries):
        try:
            urllib.request.urlopen(url + "/login", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"healthqa serve ended: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
            time.sleep(0.25)
    return proc, url


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client: TestClient, name: str, password: str = PASSWORD):
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token},
                       follow_redirects=False)


def logged_in(app, name: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A client with a session of ``name`` and its CSRF token."""
    client = TestClient(app)
    r = login(client, name, password)
    assert r.status_code == 303, r.text
    return client, csrf_of(client.get(r.headers["location"]).text)


# a twin pair as the scan stores it: the model all but sure (same surname and birth date, phone and
# address), the guard "two valid ID numbers" holding it back for review
TWIN_EXPLANATION = {"id_number": {"level": "both valid, different", "weight": -9.1},
                    "name": {"level": "given-name characters swapped", "weight": 6.2},
                    "birth_date": {"level": "equal", "weight": 8.4}, "sex": {"level": "different", "weight": -2.9},
                    "phone": {"level": "equal", "weight": 9.7}, "address": {"level": "equal", "weight": 7.5}}


def add_twin_pair(store: AuditStore, source: str = "mpi") -> tuple[str, str]:
    """A suggested pair of two archives of the MPI (each of another pair) that a guard held back:
    score 0.9999991, review."""
    from healthqa import clock
    from healthqa.store.models import DedupPair

    lefts = [p.left for _, p in store.review.queue(source, user_id=None, limit=40)]
    with store.session() as s:
        a, b = next((a, b) for a, b in (sorted(x) for x in zip(lefts[::-1], lefts[-2::-1], strict=False))
                    if a != b and s.query(DedupPair).filter_by(source=source, left_id=a, right_id=b).count() == 0)
        s.add(DedupPair(run_id=store.review.latest_scan(source), source=source, left_id=a, right_id=b,
                        score=0.9999991, decision="review", explanation=TWIN_EXPLANATION, created_at=clock.now()))
    return a, b
