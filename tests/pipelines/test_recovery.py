"""A run killed mid-way never shows as complete and advances no watermark; the next run marks it
crashed and goes on. Two nightly audits on one audit store: the second is refused at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from healthqa.pipelines.nightly import run_nightly
from healthqa.pipelines.nightly_lock import NightlyInProgress

pytestmark = pytest.mark.slow  # nights killed and run again in processes of their own


SLOW_NIGHT = r"""
import sys, time
from healthqa import config
from healthqa.pipelines import nightly
real = nightly.validate_nightly
def slow(*a, **kw):
    out = real(*a, **kw)
    print("validated", flush=True)
    time.sleep(60)  # killed here: after staging watermarks, before the run is finished
    return out
nightly.validate_nightly = slow
nightly.run_nightly(config.load(sys.argv[1]))
"""


def start_slow_night(cfg_path):
    p = subprocess.Popen([sys.executable, "-c", SLOW_NIGHT, str(cfg_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "validated", "the night did not get going"
    return p


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request, platform, pg_store_url):
    cfg, store, folder = platform
    if request.param == "postgresql":
        from healthqa.store import AuditStore

        text = cfg.path.read_text(encoding="utf-8").replace(cfg.store.url, pg_store_url)
        cfg.path.write_text(text, encoding="utf-8")
        from healthqa import config

        cfg = config.load(cfg.path)
        store = AuditStore(cfg.store.url)
    return cfg, store


def test_a_killed_run_is_marked_crashed_and_advances_nothing(stores):
    cfg, store = stores
    p = start_slow_night(cfg.path)
    try:
        running = [r for r in store.runs.recent(5) if r.status == "running"]
        assert [r.kind for r in running] == ["nightly"]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    killed = running[0].id
    assert store.runs.get(killed).status == "running"  # nobody has looked yet
    assert store.watermarks.all() == {}  # what the killed night staged never advanced
    res = run_nightly(cfg)  # the next night notices, recovers and runs
    assert store.runs.get(killed).status == "crashed" and "ended before the run finished" in store.runs.get(killed).message
    assert store.runs.get(res.run_id).status == "success"
    assert store.watermarks.all()  # this night's watermarks did advance
    assert store.runs.reap() == []


def test_a_second_nightly_is_refused_while_one_runs(stores):
    cfg, store = stores
    p = start_slow_night(cfg.path)
    try:
        t0 = time.monotonic()
        with pytest.raises(NightlyInProgress, match="another nightly audit is running"):
            run_nightly(cfg)
        assert time.monotonic() - t0 < 10  # refused at once, not after waiting
        assert [r.status for r in store.runs.recent(5) if r.kind == "nightly"] == ["running"]  # nothing counted twice
        assert store.runs.reap() == []  # the first is alive: not crashed
    finally:
        p.kill()
        p.wait(timeout=30)
