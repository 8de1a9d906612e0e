"""Issue 18: the host's clock never decides. The same night — the same copy of the demo platform, the
same instant (``HEALTHQA_NOW``), 50 visits uploaded in the last 8 hours of the platform's zone — run
as a user runs it (``healthqa run nightly`` in a process of its own) on a UTC host and on an
Asia/Shanghai host (``TZ`` of the process) gives identical rule results, scores, watermarks and
findings (fingerprints, levels, deadlines), and none of the fresh uploads is "in the future".

The configuration has no ``demo`` section, so the night's reference time is the clock's "now" (not
the demo's as-of day): exactly what a UTC host with ``timezone: Asia/Shanghai`` got wrong, flagging
every upload of the last 8 hours under …-UPLOAD-NOT-FUTURE.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from healthqa import clock
from healthqa.store import AuditStore

from ..conftest import command_env, copy_platform, demo_config, write_config

pytestmark = pytest.mark.slow  # two nights of the small demo, each in a process of its own

SHANGHAI = ZoneInfo("Asia/Shanghai")
FRESH = 50


def _platform(demo: Path, folder: Path, at: datetime) -> Path:
    """A copy of the demo platform without its as-of day, with FRESH visits uploaded in the 8 hours
    before ``at`` (written as the sources write them: naive times of the platform's zone)."""
    folder.mkdir()
    copy_platform(demo, folder)
    cfg = demo_config(folder)
    cfg.pop("demo")  # the night's "now" is the clock's
    cfg["reports"] = {**cfg.get("reports", {}), "out_dir": str(folder / "reports")}
    cfg["orchestration"] = {**cfg.get("orchestration", {}), "retries": 0}
    assert cfg.get("timezone", "Asia/Shanghai") == "Asia/Shanghai"
    with sqlite3.connect(folder / "drc.db") as conn:
        archive, org = conn.execute("SELECT dabh, jgdm FROM tb_mzjzjl LIMIT 1").fetchone()
        local = at.astimezone(SHANGHAI).replace(tzinfo=None)
        for i in range(FRESH):
            upload = local - timedelta(minutes=1 + i * 9)  # 1 minute to 7 h 22 min ago
            conn.execute("INSERT INTO tb_mzjzjl VALUES (?, ?, ?, '03', ?, 'I10', '高血压', 'D001', ?)",
                         (f"FRESH-{i:02d}", archive, org, f"{upload - timedelta(minutes=30):%Y-%m-%d %H:%M:%S}",
                          f"{upload:%Y-%m-%d %H:%M:%S}"))
    return write_config(folder / "healthqa.yml", cfg)


def _healthqa(api_url: str, tz: str, at: datetime, *args) -> subprocess.CompletedProcess:
    """A command on a host of zone ``tz``, its flows on the worker's Prefect API (``prefect_api_url``)."""
    env = command_env(api_url, TZ=tz, COLUMNS="200", **{clock.NOW_ENV: at.isoformat()})
    return subprocess.run([sys.executable, "-m", "healthqa", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def _night(path: Path) -> dict:
    """What a night decided, as stored (the store keeps naive times of the platform's zone)."""
    from healthqa import config

    cfg = config.load(path)
    with AuditStore(cfg.store.url) as store:
        run = store.runs.recent(1, kind="nightly")[0]
        # in a stable order: the flow's tasks store their tables in the order they end
        return {"run": (run.status, run.started_at, run.finished_at),
                "results": sorted((asdict(r) for r in store.results.of_run(run.id)),
                                  key=lambda r: (r["source"], r["table"], r["rule_id"])),
                "scores": sorted(({k: v for k, v in s.items() if k != "id"} for s in store.scores.of_run(run.id)),
                                 key=lambda s: (s["level"], str(s["subject"]))),
                "watermarks": store.watermarks.all(),
                # a finding's id is the order it was filed in, which follows the stored results' order
                "findings": sorted(({k: v for k, v in asdict(f).items() if k != "id"}
                                    for f in store.findings.list(state=None)), key=lambda f: f["fingerprint"])}


def test_the_same_night_on_a_utc_and_a_shanghai_host_gives_the_same_findings(small_demo, tmp_path, prefect_api_url):
    at = datetime.now(SHANGHAI).replace(microsecond=0)  # one instant for both hosts
    nights, exports = {}, {}
    for tz in ("UTC", "Asia/Shanghai"):
        path = _platform(small_demo, tmp_path / tz.replace("/", "-"), at)
        ran = _healthqa(prefect_api_url, tz, at, "run", "nightly", "--config", path)
        assert ran.returncode in (0, 1) and "Traceback" not in ran.stdout + ran.stderr, ran.stdout + ran.stderr
        nights[tz] = _night(path)
        listed = _healthqa(prefect_api_url, tz, at, "findings", "--config", path, "--state", "open",
                           "--json", path.parent / "f.json")
        assert listed.returncode == 0, listed.stderr
        assert "(UTC+8)" in listed.stdout  # the deadlines on the terminal, labelled
        exports[tz] = sorted(({k: v for k, v in d.items() if k != "id"}  # ids: the order of filing
                              for d in json.loads((path.parent / "f.json").read_text(encoding="utf-8"))),
                             key=lambda d: json.dumps(d, sort_keys=True, ensure_ascii=False))

    utc, shanghai = nights["UTC"], nights["Asia/Shanghai"]
    local = at.astimezone(SHANGHAI).replace(tzinfo=None)
    assert utc["run"][1] == shanghai["run"][1] == local  # the night started at the platform's time
    for key in ("run", "results", "scores", "watermarks", "findings"):
        assert utc[key] == shanghai[key], key
    assert exports["UTC"] == exports["Asia/Shanghai"] and exports["UTC"]

    # the fresh uploads are the newest rows, not rows from the future
    future = {r["rule_id"]: r for r in utc["results"] if r["rule_id"].endswith("-UPLOAD-NOT-FUTURE")}
    assert {r["status"] for r in future.values()} == {"pass"} and not any(r["violations"] for r in future.values())
    visits = next(r for r in utc["results"] if r["rule_id"] == "OPV-UPLOAD-NOT-FUTURE")
    assert visits["denominator"] > FRESH
    assert not [f for f in utc["findings"] if f["subject"].endswith("-UPLOAD-NOT-FUTURE")]
    # and the night read them: the watermark is the newest upload, not the night's start or beyond
    marks = {k: v for k, v in utc["watermarks"].items() if k[1] == "outpatient_visit"}
    assert marks and max(marks.values()) == local - timedelta(minutes=1)

    # deadlines: a response is due two hours after the night (一级, 二级), whatever the host
    assert utc["findings"] and all(f["opened_at"] == local for f in utc["findings"])
    due = [f["response_due_at"] for f in utc["findings"] if f["response_due_at"]]
    assert due and set(due) == {local + timedelta(hours=2)}
    for doc in exports["UTC"]:  # machine formats carry the offset
        assert doc["opened_at"] == f"{local:%Y-%m-%dT%H:%M:%S}+08:00"
        assert all(doc[k] is None or doc[k].endswith("+08:00") for k in ("response_due_at", "fix_due_at"))
