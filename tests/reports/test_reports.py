"""Scores and findings on the synthetic platform: stored per run, levels that do not cry wolf,
persisting across nights, resolved by the engineer's scoped run after a repair, reopened."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from healthqa.pipelines.validate import ValidationRequest, validate_adhoc
from healthqa.reports.assess import assess_run


def night(cfg, store, sources=("mpi", "drc", "qc"), **scope):
    """Scoped validations, each assessed by validate_adhoc itself."""
    return [validate_adhoc(cfg, ValidationRequest(s, **scope), store).assessment for s in sources]


def test_scores_and_findings_of_a_night(platform):
    cfg, store, _ = platform
    a_mpi, a_drc, _ = night(cfg, store)
    levels = {(s.level, s.subject) for s in a_mpi.scores}
    assert ("overall", "overall") in levels and ("system", "10") in levels and ("table", "mpi.person") in levels
    assert any(lv == "org" for lv, _ in levels)
    for s in a_mpi.scores:
        assert s.conformance is None or 0 <= s.conformance <= 100
        assert s.low == s.high == s.conformance  # the demo's reads are full: exact scores
    assert store.scores.of_run(a_mpi.run_id)  # kept
    found = store.findings.list(state="open")
    rule_findings = [f for f in found if f.kind == "rule"]
    assert rule_findings and all(f.level in ("二级", "提示") for f in rule_findings)  # data rules never 一级
    assert all(f.org_code for f in rule_findings if f.table_name == "person")  # judged per institution
    # the township centre whose feed went silent: an institution's fault, 二级 with a 2-hour response
    feed = [f for f in found if f.subject == "org_feed_silent"]
    assert len(feed) == 1 and feed[0].level == "二级" and feed[0].response_due_at is not None
    assert a_drc.new and all(c.fingerprint.startswith(("rule:drc.", "fault:drc:")) for c in a_drc.new)
    # examples are record keys, never a phone, a name or an ID number
    for f in rule_findings:
        for k in f.examples or []:
            assert not (len(k) in (15, 18) and k[:6].isdigit() and k[:6] == "330211") or f.table_name != "person"


def test_a_repair_is_verified_by_the_engineers_scoped_run(platform):
    cfg, store, folder = platform
    night(cfg, store, sources=("mpi",))
    phone = [f for f in store.findings.list(state="open") if f.subject == "MPI-PHONE-VALID"]
    assert phone, "the platform injects invalid phones"
    target = max(phone, key=lambda f: f.violations)
    fid, org = target.id, target.org_code

    second = night(cfg, store, sources=("mpi",))[0]  # nothing repaired: persisting, nothing new
    assert second.new == [] and second.persisting > 0 and second.resolved == 0
    assert store.findings.get(fid).state == "open"

    # a scoped run of another institution does not look at those rows: nothing resolved
    other = next(f.org_code for f in store.findings.list() if f.org_code not in (None, org))
    night(cfg, store, sources=("mpi",), tables=["person"], orgs=(other,))
    assert store.findings.get(fid).state == "open"

    # the repair, at the source: every phone of that institution made valid
    with sqlite3.connect(folder / "mpi.db") as conn:
        conn.execute("UPDATE T_GRDA SET LXDH = '13957412345' WHERE JDJGDM = ?", (org,))
    scoped = night(cfg, store, sources=("mpi",), tables=["person"], orgs=(org,))[0]
    assert scoped.resolved >= 1
    f = store.findings.get(fid)
    assert f.state == "resolved" and f.resolved_by == f"run {scoped.run_id}"
    assert f.id in {x.id for x in store.findings.events_of_run(scoped.run_id)["resolved"]}

    # it regresses: the same finding reopens
    with sqlite3.connect(folder / "mpi.db") as conn:
        conn.execute("UPDATE T_GRDA SET LXDH = '12345' WHERE JDJGDM = ? AND rowid IN "
                     "(SELECT rowid FROM T_GRDA WHERE JDJGDM = ? LIMIT 3)", (org, org))
    again = night(cfg, store, sources=("mpi",), tables=["person"], orgs=(org,))[0]
    assert again.reopened >= 1
    f = store.findings.get(fid)
    assert f.state == "reopened" and f.reopened_count == 1 and f.violations == 3


def test_assessing_a_run_again_counts_nothing_twice(platform):
    cfg, store, _ = platform
    first = night(cfg, store, sources=("mpi",))[0]
    again = assess_run(cfg, store, first.run_id)
    assert again.persisting == 0 and again.new == [] and len(again.new_ids) == len(first.new)
    assert len(store.findings.list()) == len(first.new)
    assert list(store.findings.events_of_run(first.run_id)["persisting"]) == []


def test_a_runs_scores_and_findings_are_stored_together_or_not_at_all(platform):
    """The store fails as the findings are written (a full disk): the run's scores are not kept
    either, and assessing it again later files them all once."""
    cfg, store, _ = platform

    def full(conn, cursor, statement, *_):
        if statement.lstrip().upper().startswith("INSERT INTO FINDINGS"):
            raise OperationalError(statement, {}, sqlite3.OperationalError("database or disk is full"))

    event.listen(store.engine, "before_cursor_execute", full)
    with pytest.raises(Exception, match="database or disk is full"):
        night(cfg, store, sources=("mpi",))
    event.remove(store.engine, "before_cursor_execute", full)
    run_id = store.runs.recent(1)[0].id
    assert store.results.of_run(run_id) and store.scores.of_run(run_id) == [] and store.findings.list() == []
    again = assess_run(cfg, store, run_id)
    assert again.new and store.scores.of_run(run_id)
    assert {f.fingerprint for f in store.findings.list()} == {c.fingerprint for c in again.new}


def test_people_change_findings_and_the_audit_log_says_who(platform):
    cfg, store, _ = platform
    night(cfg, store, sources=("mpi",))
    f = store.findings.list(state="open")[0]
    store.findings.acknowledge(f.id, "zhang")
    store.findings.assign(f.id, "li", "zhang")
    store.findings.note(f.id, "  已联系机构  ", "li")
    g = store.findings.get(f.id)
    assert (g.state, g.acknowledged_by, g.assignee) == ("acknowledged", "zhang", "li")
    assert g.notes[-1]["text"] == "已联系机构" and g.notes[-1]["by"] == "li"
    # acknowledged findings stay acknowledged through the next night that still sees them
    night(cfg, store, sources=("mpi",))
    assert store.findings.get(f.id).state == "acknowledged"
    store.findings.resolve(f.id, "li", note="误报")
    assert store.findings.get(f.id).state == "resolved"
    from sqlalchemy import select

    from healthqa.store.models import AuditLog

    with store.session() as s:
        actions = [(a.user_name, a.action) for a in s.execute(select(AuditLog).order_by(AuditLog.id)).scalars()]
    assert actions[-4:] == [("zhang", "finding_acknowledged"), ("zhang", "finding_assigned"), ("li", "finding_note"),
                            ("li", "finding_resolved")]
    # a person's resolution is not a verification: the next night that sees it reopens it
    night(cfg, store, sources=("mpi",))
    assert store.findings.get(f.id).state == "reopened"


def test_a_score_that_falls_beyond_the_threshold_is_a_finding(platform):
    cfg, store, folder = platform
    cfg.reports.score_drop_points = 1.0
    night(cfg, store, sources=("mpi",))
    with sqlite3.connect(folder / "mpi.db") as conn:  # every phone of the MPI broken overnight
        conn.execute("UPDATE T_GRDA SET LXDH = '12345'")
    second = night(cfg, store, sources=("mpi",))[0]
    drops = [f for f in store.findings.list(state="open") if f.subject == "score_drop"]
    assert {f.fingerprint for f in drops} >= {"fault:*:score_drop:overall:overall"}
    assert all(f.level == "二级" for f in drops)
    assert any(c.subject == "score_drop" for c in second.new)
    # a night that does not fall further files no new drop
    third = night(cfg, store, sources=("mpi",))[0]
    assert not any(c.subject == "score_drop" for c in third.new)
