"""Only a run that read the rows a finding is about resolves it: a time window or a night's
incremental rows can open a finding or add to it, never resolve it; a quiet night raises no score
drop. On the synthetic platform, through the real pipelines."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

from healthqa import clock
from healthqa.pipelines.nightly import run_nightly
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

pytestmark = pytest.mark.slow  # several nights each


def _open(store, rule: str, table: str = "outpatient_visit"):
    return [f for f in store.findings.list(state="open") if f.subject == rule and f.table_name == table and f.org_code]


def test_a_time_window_resolves_nothing_it_did_not_read(platform):
    cfg, store, folder = platform
    validate_adhoc(cfg, ValidationRequest("drc", tables=["outpatient_visit"]), store)  # the whole table
    before = {f.id for f in store.findings.list(state="open") if f.table_name == "outpatient_visit"}
    assert before
    # a window that holds a few rows (and none of most institutions' bad ones): a day near the end of
    # the visits, past the few the platform dates in the future (a window there holds no row)
    with sqlite3.connect(folder / "drc.db") as conn:
        hi, = conn.execute("SELECT jzsj FROM tb_mzjzjl ORDER BY jzsj DESC LIMIT 1 "
                           "OFFSET (SELECT COUNT(*) / 50 FROM tb_mzjzjl)").fetchone()
    since = datetime.fromisoformat(hi).replace(hour=0, minute=0, second=0)
    windowed = validate_adhoc(cfg, ValidationRequest("drc", tables=["outpatient_visit"], since=since,
                                                     until=datetime.fromisoformat(hi)), store)
    assert windowed.assessment.resolved == 0
    still = {f.id for f in store.findings.list(state="open") if f.table_name == "outpatient_visit"}
    assert before <= still
    # the window's read is recorded as such
    sampling = {r.sampling["window"]["since"] for r in store.results.of_run(windowed.run_id)}
    assert sampling == {since.isoformat()}


def test_a_nights_new_rows_resolve_nothing_and_add_to_what_is_known(after_night):
    cfg, store, folder, first = after_night  # no watermark yet: the incremental tables were read whole
    dx = _open(store, "OPV-DX-REQUIRED")
    assert dx, "the platform injects visits without a diagnosis code"
    target = max(dx, key=lambda f: f.violations)
    org = target.org_code
    with sqlite3.connect(folder / "drc.db") as conn:  # 20 clean visits of that institution, and 1 without a code
        archive = conn.execute("SELECT dabh FROM tb_mzjzjl WHERE jgdm = ? LIMIT 1", (org,)).fetchone()[0]
        now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for i in range(21):
            conn.execute("INSERT INTO tb_mzjzjl VALUES (?, ?, ?, '03', '2026-11-24 09:00:00', ?, '高血压', 'D001', ?)",
                         (f"NEW-{i}", archive, org, "I10" if i else None, now))
    second = run_nightly(cfg)
    read = {tv.table: tv.rows for v in second.validations.values() for tv in v.tables}
    assert read["outpatient_visit"] == 21  # only the night's new rows
    drc_resolved = [f for f in store.findings.events_of_run(second.run_id)["resolved"] if f.source == "drc"
                    and f.table_name != "organization"]
    assert drc_resolved == []  # 20 clean new rows verify nothing about the old bad ones
    f = store.findings.get(target.id)
    assert f.state == "open"
    assert (f.violations, f.rows_checked) == (target.violations + 1, target.rows_checked + 21)
    assert first.assessment is not None and second.assessment.resolved == 0


def test_a_quiet_night_raises_no_score_drop(after_night):
    cfg, store, _, _ = after_night
    quiet = run_nightly(cfg)  # nothing changed: incremental tables read 0 rows
    read = {tv.table: tv.rows for v in quiet.validations.values() for tv in v.tables}
    assert read["outpatient_visit"] == 0
    events = store.findings.events_of_run(quiet.run_id)
    assert not [f for f in events["new"] if f.subject == "score_drop"]
    assert events["resolved"] == [] and events["new"] == []
    # the copied folder's duplicate index is its own (its identity is relative to the folder)
    assert quiet.dedup.incremental and quiet.dedup.stats["index"] == "used", quiet.dedup.stats


def test_scoped_runs_stay_out_of_the_districts_figures(after_night):
    """An --org run over a few rows, and a window, are reports of their own (``--run ID``): the default
    report, its trend and change, the dashboard's run and the quarter's first / last / lowest scores
    are the nightly audits'."""
    from healthqa.reports import quarterly, run_report

    cfg, store, _, night = after_night
    nightly_systems = {s["subject"]: s["conformance"] for s in store.scores.of_run(night.run_id)
                       if s["level"] == "system"}
    worst = min((f for f in store.findings.list(state="open") if f.table_name == "person" and f.org_code),
                key=lambda f: -f.violations).org_code
    scoped = validate_adhoc(cfg, ValidationRequest("mpi", tables=["person"], orgs=(worst,)), store)
    scoped_systems = {s["subject"]: s["conformance"] for s in store.scores.of_run(scoped.run_id) if s["level"] == "system"}
    assert any(v is not None and v < nightly_systems[k] for k, v in scoped_systems.items())  # the org run is lower

    quiet = run_nightly(cfg)
    assert run_report.default_run(store) == quiet.run_id  # the newest night, not the newer-looking scoped run
    ctx = run_report.context(cfg, store, quiet.run_id)
    trend = ctx["charts"]["trend"]
    # the org run is never a point of the district's trend (the two nights are points only where their
    # reads are comparable: tests/reports/test_honest_reports.py)
    assert f"#{scoped.run_id} " not in trend
    assert ctx["overall"]["change"] == "no change"  # against the night before, not the org run
    silent = [row for row in ctx["systems"] if row["conformance"] is None]  # nothing of theirs read tonight
    assert silent and all(row["change"] == "no data" for row in silent)
    html = run_report.write(cfg, store, quiet.run_id, cfg.reports.out_dir).html.read_text(encoding="utf-8")
    assert "本次未读到数据 no rows read this run" in html
    own = run_report.context(cfg, store, scoped.run_id)  # the scoped run's own report is still there
    assert own["run"]["kind"] == "validate" and f"#{night.run_id} " not in own["charts"]["trend"]

    now = clock.now()
    q = quarterly.context(cfg, store, quarterly.parse_quarter(f"{now.year}Q{(now.month - 1) // 3 + 1}"))
    assert q["runs"]["scored"] == 2
    quiet_systems = {x["subject"]: x["conformance"] for x in store.scores.of_run(quiet.run_id) if x["level"] == "system"}
    for row in q["systems"]:
        nightly = [v for v in (nightly_systems.get(row["code"]), quiet_systems.get(row["code"])) if v is not None]
        # the quarter's figures are the nightly audits' (which of them are comparable enough to show:
        # tests/reports/test_honest_reports.py), never the org run's
        for figure in ("first", "low", "last"):
            assert row.get(figure) is None or row[figure] in nightly, (figure, row)
