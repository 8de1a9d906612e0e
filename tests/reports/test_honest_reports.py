"""Issue 18, honest reports: a night whose rules did not run says so, a score is read only against
scores on the same basis, a figure on few rows says so, and the quarterly counts what it says.

Four nights on a copy of the platform (retries 0): a whole first read; a quiet night with the QC
store moved away; a quiet night with everything back; a night with every store away (no rule ran).
On the quiet nights the incremental tables read no row, so system 11 is scored on the register's
few rows alone — beside the first night's whole read that is another measurement, not a fall.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from healthqa import clock, config
from healthqa.pipelines.nightly import run_nightly
from healthqa.reports import quarterly, run_report
from healthqa.reports.quarterly import Quarter, compliance
from healthqa.store import AuditStore

from ..conftest import copy_after_night, demo_config, write_config
from .rows import finding_row as _f

STORES = ("mpi", "drc", "qc")


def _away(folder: Path, *stores: str) -> None:
    for s in stores:
        shutil.move(folder / f"{s}.db", folder / "gone" / f"{s}.db")


def _back(folder: Path) -> None:
    for f in (folder / "gone").iterdir():
        shutil.move(f, folder / f.name)


@pytest.fixture(scope="module")
def nights(demo_after_night, tmp_path_factory):
    """(configuration, store, run ids of the four nights); the first is the session's
    (``demo_after_night``), whose sources were all up."""
    folder = tmp_path_factory.mktemp("honest")
    cfg, store, _, first = copy_after_night(demo_after_night, folder)
    store.close()
    raw = demo_config(folder)
    raw["reports"] = {**raw.get("reports", {}), "out_dir": str(folder / "reports")}
    raw["orchestration"] = {**raw.get("orchestration", {}), "retries": 0}
    cfg = config.load(write_config(folder / "healthqa.yml", raw))
    (folder / "gone").mkdir()
    ids = [first.run_id]
    _away(folder, "qc")
    ids.append(run_nightly(cfg).run_id)
    _back(folder)
    ids.append(run_nightly(cfg).run_id)
    _away(folder, *STORES)
    ids.append(run_nightly(cfg).run_id)
    _back(folder)
    store = AuditStore(cfg.store.url)
    yield cfg, store, ids
    store.close()


@pytest.mark.slow
@pytest.mark.xdist_group("honest_nights")  # the module's four nights, built once
def test_after_an_outage_nothing_is_first_and_no_change_is_read_against_an_unlike_night(nights):
    cfg, store, (whole, qc_down, quiet, all_down) = nights
    ctx = run_report.context(cfg, store, quiet)
    rows = [ctx["overall"], *ctx["systems"], *ctx["dimensions"], *ctx["tables"]]
    # the QC store's tables and systems were scored on the first night: after the outage they are
    # compared with it, never "首次 first"
    assert [r.get("subject") for r in rows if r["change"] == "new"] == []
    tables = {t["subject"]: t["change"] for t in ctx["tables"]}
    assert tables["qc.health_exam"] == tables["qc.chronic_followup"] == "no change"
    # the night no rule ran: no figure, no change, no "every rule within its threshold"
    down = run_report.context(cfg, store, all_down)
    assert down["overall"]["change"] == "no data" and down["rules_run"].ran == 0
    html = run_report.write(cfg, store, all_down, Path(cfg.reports.out_dir)).html.read_text(encoding="utf-8")
    assert "every rule is within its threshold" not in html and "首次 first" not in html
    # the newest scored night is not last night: whoever opens the default report is told
    assert run_report.default_run(store) == quiet
    said = run_report.unscored_since(cfg, store, quiet)
    assert len(said) == 1 and f"#{all_down}" in said[0] and "运行 ran 0 of" in said[0]


@pytest.mark.slow
@pytest.mark.xdist_group("honest_nights")  # the module's four nights, built once
def test_a_score_on_few_rows_says_so_and_is_no_quarters_last_figure(nights):
    cfg, store, (whole, qc_down, quiet, all_down) = nights
    ctx = run_report.context(cfg, store, quiet)
    eleven = next(s for s in ctx["systems"] if s["code"] == "11")
    assert eleven["few"] is not None and eleven["few"].startswith("仅 ") and "rows" in eleven["few"]
    assert next(s for s in run_report.context(cfg, store, whole)["systems"] if s["code"] == "11")["few"] is None
    first_night = {s["subject"]: s["conformance"] for s in store.scores.of_run(whole) if s["level"] == "system"}
    quiet_night = {s["subject"]: s["conformance"] for s in store.scores.of_run(quiet) if s["level"] == "system"}
    assert first_night["11"] != pytest.approx(quiet_night["11"])  # the unlike figures the quarter must not mix
    now = clock.now()
    q = quarterly.context(cfg, store, Quarter(now.year, (now.month - 1) // 3 + 1))
    sys11 = next(s for s in q["systems"] if s["code"] == "11")
    assert sys11["first"] == sys11["last"] == sys11["low"] == pytest.approx(first_night["11"])
    assert sys11["left_out"] == 2 and sys11["few"] is None
    # the trend of the overall score holds only the nights on one basis (the outage night is not one)
    assert qc_down not in [p["run_id"] for p in q["overall"]["series"]]
    trend = [h["run_id"] for h in run_report.context(cfg, store, quiet)["earlier"].trend("overall", "overall")]
    assert qc_down not in trend and quiet in trend


@pytest.mark.slow
@pytest.mark.xdist_group("honest_nights")  # the module's four nights, built once
def test_the_quarter_counts_nightly_audits_and_the_nights_whose_rules_did_not_run(nights):
    cfg, store, (whole, qc_down, quiet, all_down) = nights
    now = clock.now()
    q = Quarter(now.year, (now.month - 1) // 3 + 1)
    ctx = quarterly.context(cfg, store, q)
    kinds = [r.kind for r in store.runs.between(q.start, q.end)]
    assert kinds.count("dedup") > 0  # every night's duplicate scan is a run of its own …
    assert ctx["runs"]["audits"] == 4 and ctx["runs"]["scored"] == 3  # … and no audit
    assert sum(ctx["runs"]["others"].values()) == kinds.count("dedup")
    assert [n["id"] for n in ctx["runs"]["not_run"]] == [qc_down, all_down]
    html = quarterly.write(cfg, store, q, Path(cfg.reports.out_dir)).html.read_text(encoding="utf-8")
    assert "本季度共进行夜间稽核 4 次" in html and "未能运行" in html


def test_the_quarter_ends_on_its_last_day(platform):
    cfg, store, _ = platform
    assert quarterly.context(cfg, store, quarterly.parse_quarter("2026Q4"))["period"] == "2026-10-01 – 2026-12-31"
    assert quarterly.context(cfg, store, quarterly.parse_quarter("2026Q1"))["period"] == "2026-01-01 – 2026-03-31"


def test_a_finding_that_recovered_by_itself_was_not_responded_to():
    t0 = datetime(2026, 11, 1, 2, 0)
    rows = [
        replace(_f(1, "一级", t0, resolved=datetime(2026, 11, 1, 3, 0)), resolved_by="run 7"),  # nobody answered
        replace(_f(2, "一级", t0, resolved=datetime(2026, 11, 2, 3, 0)), resolved_by="run 9"),  # … past its 2 h
        _f(3, "一级", t0, ack=datetime(2026, 11, 1, 3, 0), resolved=datetime(2026, 11, 1, 20, 0)),  # a person, in time
        replace(_f(4, "二级", t0, resolved=datetime(2026, 11, 1, 3, 0)), resolved_by="qc1"),  # resolved by hand: a response
    ]
    one, two = compliance(rows, at=datetime(2026, 11, 30))
    assert (one["recovered"], one["response_met"], one["response_missed"]) == (1, 1, 1)
    assert one["response_rate"] == pytest.approx(50.0)
    assert (two["recovered"], two["response_met"]) == (0, 1)
