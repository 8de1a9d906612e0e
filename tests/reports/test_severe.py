"""The contract's severe damage read from the data (reports/severe.py): a system's or an institution's
day volume under 30 % of its same-weekday normal, and a violation rate that jumps far above its
comparable history. The nights' stored counts are written straight into a SQLite audit store — no
demo night is run."""

from __future__ import annotations

import csv
import io
import shutil
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from healthqa import clock
from healthqa.config import Config
from healthqa.console.app import templates as console_templates
from healthqa.errors import ConfigError
from healthqa.pipelines.cli import findings_view
from healthqa.reports import assess, publish, run_report
from healthqa.reports.findings import location
from healthqa.reports.render import _env as report_env
from healthqa.reports.severe import COLLAPSE, JUMP, NORMAL, NOT_JUDGED, read_severe
from healthqa.store import AuditStore, StoredResult

from ..core.test_config import GOOD, load_text

SRC, TABLE, RULE = "drc", "outpatient_visit", "OPV-DX-REQUIRED"
MONDAY = date(2026, 12, 7)  # the day judged: the night of Tuesday 8 December read it
INCREMENTAL = {"method": "incremental", "overlap_hours": 48.0, "watermark": "2026-11-01T02:00:00"}


@pytest.fixture(scope="module")
def _migrated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("severe") / "audit.db"
    AuditStore(f"sqlite:///{path}").engine.dispose()
    return path


@pytest.fixture
def store(tmp_path, _migrated):
    """An empty audit store, copied from one migrated once for the module."""
    shutil.copy(_migrated, tmp_path / "audit.db")
    return AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.fixture
def cfg():
    return Config(sources={})


def night(store, at: datetime, rows: int = 1000, by_org: dict | None = None, violations: int = 0,
          sampling: dict | None = None, status: str | None = None) -> int:
    """One nightly run at ``at`` that read ``rows`` rows of the outpatient visits (``by_org``: per
    institution), ``violations`` of them without a diagnosis code; returns its id."""
    by_org = by_org if by_org is not None else {"A": rows}
    with clock.frozen(at), store.runs.start("nightly", {"sources": [SRC]}) as run:
        rule_status = status or ("fail" if violations else "pass")
        store.results.record(run.id, [StoredResult(
            SRC, TABLE, RULE, rule_status, violations, rows, 100.0 * violations / rows if rows else None, 0.0,
            severity="二级", system="2", sampling=sampling or INCREMENTAL,
            by_org={o: {"violations": 0, "denominator": n} for o, n in by_org.items()})])
    return run.id


def audited(store, day: date, rows: int = 1000, by_org: dict | None = None, hour: int = 2) -> int:
    """``day`` audited: the night before it and the night after it (at ``hour``), which read its ``rows``."""
    night(store, datetime.combine(day, datetime.min.time()).replace(hour=hour), 999)
    return night(store, datetime.combine(day + timedelta(days=1), datetime.min.time()).replace(hour=hour),
                 rows, by_org)


def history(store, mondays: dict[int, int | dict], hour: int = 2) -> None:
    """Earlier Mondays: weeks back -> rows (or rows per institution)."""
    for weeks, rows in mondays.items():
        by_org = rows if isinstance(rows, dict) else None
        audited(store, MONDAY - timedelta(weeks=weeks), sum(rows.values()) if by_org else rows, by_org, hour)


def reading(cfg, store, run_id):
    results = assess.rule_results(store, run_id)
    assess.describe(results, cfg)
    return read_severe(cfg, store, run_id, results)


def volume(r, org=None):
    kind = "org_volume_collapse" if org else "system_volume_collapse"
    return next(j for j in r.judgements if j.kind == kind and j.org == org)


def test_a_system_at_a_quarter_of_its_same_weekday_median_is_level_one_and_an_emergency(cfg, store):
    history(store, {1: 1000, 2: 1100, 3: 900, 4: 1000})
    run_id = audited(store, MONDAY, 250)
    a = assess.assess_run(cfg, store, run_id)
    [f] = [f for f in store.findings.list() if f.subject == "system_volume_collapse"]
    assert (f.level, f.emergency, f.table_name, f.system) == ("一级", True, TABLE, "2")
    assert "系统严重损坏" in f.title_zh and "25%" in f.title_zh and "2026-12-07" in f.title_zh
    assert f.fingerprint in {c.fingerprint for c in a.new}
    j = volume(reading(cfg, store, run_id))
    assert (j.verdict, j.day, j.value, j.normal, j.known) == (COLLAPSE, MONDAY, 250, 1000.0, 4)


def test_a_system_at_35_percent_is_no_finding(cfg, store):
    history(store, {1: 1000, 2: 1000, 3: 1000, 4: 1000})
    run_id = audited(store, MONDAY, 350)
    assess.assess_run(cfg, store, run_id)
    assert not [f for f in store.findings.list() if f.subject.endswith("volume_collapse")]
    assert volume(reading(cfg, store, run_id)).verdict == NORMAL


def test_an_institution_at_a_fifth_of_its_normal_is_level_two(cfg, store):
    history(store, {w: {"A": 500, "B": 500} for w in (1, 2, 3, 4)})
    run_id = audited(store, MONDAY, 600, {"A": 100, "B": 500})
    assess.assess_run(cfg, store, run_id)
    found = {(f.subject, f.org_code): f for f in store.findings.list() if f.subject.endswith("volume_collapse")}
    assert list(found) == [("org_volume_collapse", "A")]  # the system as a whole is at 60 %
    f = found["org_volume_collapse", "A"]
    assert (f.level, f.emergency) == ("二级", False) and "20%" in f.title_zh
    assert volume(reading(cfg, store, run_id), "B").verdict == NORMAL


def test_too_little_history_is_not_judged_and_says_so(cfg, store):
    history(store, {1: 1000})  # one Monday of four known; two are needed
    run_id = audited(store, MONDAY, 100)
    assess.assess_run(cfg, store, run_id)
    assert not [f for f in store.findings.list() if f.subject.endswith("volume_collapse")]
    j = volume(reading(cfg, store, run_id))
    assert j.verdict == NOT_JUDGED and j.known == 1 and "too little history" in j.why


def test_a_small_clinic_is_not_judged(cfg, store):
    history(store, {w: {"A": 1000, "clinic": 3} for w in (1, 2, 3, 4)})
    r = reading(cfg, store, audited(store, MONDAY, 1000, {"A": 1000}))
    j = volume(r, "clinic")
    assert j.value == 0 and j.verdict == NOT_JUDGED and "volume_min_rows" in j.why


def test_a_day_not_audited_is_unknown_not_zero(cfg, store):
    history(store, {2: 1000, 3: 1000})  # the Mondays one and four weeks back: no audit ran
    j = volume(reading(cfg, store, audited(store, MONDAY, 250)))
    # as zeros the two missing Mondays would halve the normal (500) and 250 would be no collapse
    assert (j.verdict, j.normal, j.known) == (COLLAPSE, 1000.0, 2)


def test_a_night_that_read_part_of_a_day_is_not_a_collapse(cfg, store):
    history(store, dict.fromkeys((1, 2, 3, 4), 1000))
    audited(store, MONDAY, 1000)
    rerun = night(store, datetime(2026, 12, 8, 10, 0), 40)  # a second run the same morning: 8 hours' uploads
    assert volume(reading(cfg, store, rerun)).verdict == NOT_JUDGED
    after_gap = night(store, datetime(2026, 12, 10, 2, 0), 200)  # the night of the 9th not run: two days
    for run_id in (rerun, after_gap):
        assert volume(reading(cfg, store, run_id)).verdict == NOT_JUDGED
        assess.assess_run(cfg, store, run_id)
    assert not [f for f in store.findings.list() if f.subject.endswith("volume_collapse")]


def test_a_holiday_in_the_history_does_not_move_the_normal(cfg, store):
    history(store, {1: 1000, 2: 100, 3: 1000, 4: 1000})  # a public holiday two weeks back
    j = volume(reading(cfg, store, audited(store, MONDAY, 290)))
    # the mean of the four (775) would put 290 at 37 %; the median keeps the normal at 1000
    assert (j.verdict, j.normal) == (COLLAPSE, 1000.0)


def test_days_are_counted_in_the_configured_zone_on_a_utc_host(cfg, store, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        clock.set_zone("Asia/Shanghai")
        sh = ZoneInfo("Asia/Shanghai")

        def at(day: date) -> datetime:  # 18:00 in Shanghai: 10:00 UTC; the day between two such nights
            return datetime.combine(day, datetime.min.time()).replace(hour=18, tzinfo=sh)

        for weeks in (1, 2, 3, 4):
            d = MONDAY - timedelta(weeks=weeks)
            night(store, at(d - timedelta(days=1)), 999)
            night(store, at(d), 1000)
        night(store, at(MONDAY - timedelta(days=1)), 999)
        j = volume(reading(cfg, store, night(store, at(MONDAY), 200)))
        # the middle of 18:00 and 18:00 the next day in Shanghai is 06:00 of the Monday there, 22:00 of
        # the Sunday in UTC: the Monday judged against the Mondays before it
        assert (j.day, j.verdict, j.known, j.normal) == (MONDAY, COLLAPSE, 4, 1000.0)
        assert store.runs.get(1).started_at == datetime(2026, 11, 29, 18, 0)  # stored as Shanghai's wall time
    finally:
        monkeypatch.undo()
        time.tzset()


def rates(store, past: list[int], now_: int, rows: int = 1000) -> int:
    """Nightly runs, a day apart, whose rule found ``past`` then ``now_`` violations of ``rows``."""
    start = datetime(2026, 11, 20, 2, 0)
    for i, v in enumerate(past):
        night(store, start + timedelta(days=i), rows, violations=v)
    return night(store, start + timedelta(days=len(past)), rows, violations=now_)


def test_a_violation_rate_that_jumps_is_a_serious_data_error_with_the_emergency_flag(cfg, store):
    run_id = rates(store, [10, 12, 8, 10, 11], 200)  # about 1 % each night, then 20 %
    a = assess.assess_run(cfg, store, run_id)
    [f] = [f for f in store.findings.list() if f.subject == "serious_data_error"]
    assert (f.level, f.emergency, f.kind) == ("一级", True, "fault")
    assert f.title_zh.startswith("严重数据错误") and f.title_en.startswith("serious data error")
    assert f.fingerprint == f"fault:{SRC}:serious_data_error:{TABLE}:{RULE}" and f.fingerprint in {c.fingerprint for c in a.new}
    [j] = [j for j in reading(cfg, store, run_id).judgements if j.rule_id == RULE]
    assert (j.verdict, j.value, j.normal, j.known) == (JUMP, 20.0, 1.0, 5)


def test_a_steady_high_rate_is_no_jump(cfg, store):
    run_id = rates(store, [400, 390, 410, 400], 420)
    assess.assess_run(cfg, store, run_id)
    assert not [f for f in store.findings.list() if f.subject == "serious_data_error"]
    assert {j.verdict for j in reading(cfg, store, run_id).judgements if j.kind == "serious_data_error"} == {NORMAL}


def test_only_comparable_runs_make_the_history(cfg, store):
    # the first night read the whole table (another basis): its low rate is not this rule's history
    night(store, datetime(2026, 11, 19, 2, 0), 50_000, violations=5, sampling={"method": "incremental", "watermark": None})
    run_id = rates(store, [400, 420], 430)
    j = next(j for j in reading(cfg, store, run_id).judgements if j.rule_id == RULE)
    assert j.verdict == NOT_JUDGED and j.known == 2  # two comparable runs, three needed


def test_the_severe_keys_are_validated_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MPI_DB_URL", "postgresql+psycopg://reader@db/mpi")
    cfg = load_text(tmp_path, GOOD)
    assert (cfg.reports.severe.volume_ratio, cfg.reports.severe.volume_weeks) == (0.3, 4)  # the contract's
    with pytest.raises(ConfigError, match=r"reports\.severe\.volume_ratio: "):
        load_text(tmp_path, GOOD + "reports: {severe: {volume_ratio: 30}}\n")
    with pytest.raises(ConfigError, match=r"reports\.severe\.volume_min_days: 5 超过 volume_weeks 4"):
        load_text(tmp_path, GOOD + "reports: {severe: {volume_min_days: 5}}\n")
    with pytest.raises(ConfigError, match=r"reports\.severe\.volume_weeks: unknown key|reports\.severe\.weeks: unknown key"):
        load_text(tmp_path, GOOD + "reports: {severe: {weeks: 4}}\n")


def test_the_emergency_flag_shows_wherever_the_level_shows(cfg, store, tmp_path, monkeypatch):
    run_id = rates(store, [10, 12, 8, 10, 11], 200)
    assess.assess_run(cfg, store, run_id)
    events = store.findings.events_of_run(run_id)
    [f] = [f for f in events["new"] if f.subject == "serious_data_error"]
    # the webhook's payload and the exports
    [doc] = [d for d in publish.run_payload(run_id, {}, events)["findings"]["new"] if d["subject"] == "serious_data_error"]
    assert doc["emergency"] is True and doc["level"] == "一级"
    with open(publish.export([f], tmp_path / "f.csv"), encoding="utf-8-sig", newline="") as fh:
        assert next(csv.DictReader(fh))["emergency"] == "True"
    # the e-mail of 一级 findings
    sent = []

    class Smtp:
        def __init__(self, *a, **kw): pass
        def __enter__(self): return self
        def __exit__(self, *a): return False
        def send_message(self, msg): sent.append(msg)

    monkeypatch.setattr(publish.smtplib, "SMTP", Smtp)
    assert publish.email_level_one(publish.Smtp("mail", to=("oncall@zh.example",)), run_id, [f]).ok
    assert "7×24" in sent[0]["Subject"] and "[7×24 应急 emergency] 严重数据错误" in sent[0].get_content()
    # the command line's findings list, the console's, the run report's
    out = io.StringIO()
    Console(file=out, width=200).print(findings_view.findings_table([f], location, clock.now()))
    assert "7×24 应急" in out.getvalue()
    page = console_templates().env.get_template("findings_table.html.j2").render(rows=[f], now=clock.now(), orgs=None)
    assert "7×24 应急" in page
    macros = report_env().get_template("macros.html.j2").module
    assert "7×24 应急" in str(macros.findings_table([run_report._finding(f, None, clock.now())]))
    ordinary = store.findings.list()
    assert not any(x.emergency for x in ordinary if x.subject != "serious_data_error")


def test_the_run_report_says_what_was_not_judged(cfg, store):
    history(store, {1: {"A": 1000, "clinic": 3}})
    ctx = run_report.context(cfg, store, audited(store, MONDAY, 1000, {"A": 1000}))
    [note] = [n for n in ctx["notes"] if "severe damage (volume) not judged" in n]
    assert f"{SRC}.{TABLE} {MONDAY}" in note and "too little history" in note
    assert any("2 institutions' volumes not judged" in n for n in ctx["notes"])


def test_a_serious_data_error_lasts_until_the_rate_falls_back(cfg, store):
    start = datetime(2026, 11, 20, 2, 0)
    for i, v in enumerate([10, 12, 8, 10, 11] + [200] * 6):  # the high nights become the median …
        last = night(store, start + timedelta(days=i), 1000, violations=v)
        assess.assess_run(cfg, store, last)
    assert next(j for j in reading(cfg, store, last).judgements if j.rule_id == RULE).verdict == NORMAL
    [f] = [f for f in store.findings.list() if f.subject == "serious_data_error"]
    assert f.state == "open"  # … which does not resolve the finding
    assess.assess_run(cfg, store, night(store, start + timedelta(days=11), 1000, violations=10))
    assert store.findings.get(f.id).state == "resolved"


def test_a_day_of_no_rows_already_filed_as_a_silent_feed_is_not_filed_again(cfg, store):
    history(store, {w: {"A": 500, "B": 500} for w in (1, 2, 3, 4)})
    run_id = audited(store, MONDAY, 500, {"B": 500})  # A uploaded nothing on Monday
    store.results.record(run_id, [StoredResult(SRC, "organization", "ORG-FEED-ACTIVE", "fail", 1, 2, 50.0, 0.0,
                                               severity="一级", system="11",
                                               by_org={"A": {"violations": 1, "denominator": 1},
                                                       "B": {"violations": 0, "denominator": 1}})])
    assess.assess_run(cfg, store, run_id)
    subjects = sorted((f.subject, f.org_code) for f in store.findings.list())
    assert ("org_feed_silent", "A") in subjects and ("org_volume_collapse", "A") not in subjects
