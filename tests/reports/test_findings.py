"""The severity policy and the finding lifecycle as plain functions: new, persisting, resolved only
by a run that looked, reopened, feeds, overdue."""

from __future__ import annotations

from datetime import datetime

from healthqa.reports import findings as fd
from healthqa.reports.severity import Policy

P = Policy.default()


def result(rule="MPI-ID-VALID", status="fail", v=0, n=0, by_org=None, severity="一级", threshold=0.0,
           table="person", source="mpi"):
    return {"source": source, "table": table, "rule_id": rule, "severity": severity, "system": "10",
            "status": status, "violations": v, "denominator": n, "threshold_pct": threshold,
            "by_org": by_org or {}, "sample_keys": ["K1", "K2"], "zh": "身份证号码有效", "en": "valid ID number"}


def test_default_policy_does_not_cry_wolf():
    # a data rule never reaches 一级 by default, whatever its suite severity
    assert P.rule_level("一级", 500, 1000, 0.0) == "二级"
    assert P.rule_level("一级", 13, 10_000, 0.0) == "提示"  # 0.13 %: within the 2-point margin
    assert P.rule_level("一级", 1, 8, 0.0) == "提示"  # 12.5 % of a village clinic's 8 rows: one record
    assert P.rule_level("提示", 800, 1000, 0.0) == "提示"  # capped by its suite severity
    assert P.rule_level("二级", 75, 1000, 5.0) == "二级"  # 7.5 % against 5 % tolerated: 25 rows beyond
    assert P.rule_level("二级", 60, 1000, 5.0) == "提示"  # 6 %: within the margin
    assert P.fault_level("store_unreachable") == "一级"
    assert P.fault_level("org_feed_silent") == "二级"
    opened = datetime(2026, 11, 25, 2, 0)
    assert P.due("一级", opened) == (datetime(2026, 11, 25, 4, 0), datetime(2026, 11, 26, 2, 0))
    assert P.due("二级", opened) == (datetime(2026, 11, 25, 4, 0), None)
    assert P.due("提示", opened) == (None, None)


def test_rules_are_judged_per_institution():
    r = result(v=60, n=1200, by_org={"A": {"violations": 60, "denominator": 1000},
                                     "B": {"violations": 0, "denominator": 200}})
    found, covered = fd.candidates([r], [], P)
    assert [c.fingerprint for c in found] == ["rule:mpi.person:MPI-ID-VALID:A"]
    assert found[0].level == "二级" and found[0].violation_pct == 6.0
    assert covered == {"rule:mpi.person:MPI-ID-VALID:B"}


def test_a_table_without_institutions_is_judged_whole():
    found, covered = fd.candidates([result(rule="ORG-LEVEL", v=2, n=40, table="organization")], [], P)
    assert [c.fingerprint for c in found] == ["rule:mpi.organization:ORG-LEVEL:*"]
    _, covered = fd.candidates([result(rule="ORG-LEVEL", status="pass", n=40, table="organization")], [], P)
    assert covered == {"rule:mpi.organization:ORG-LEVEL:*"}


def test_rules_that_did_not_judge_cover_nothing():
    found, covered = fd.candidates([result(status="error"), result(status="not_applicable")], [], P)
    assert found == [] and covered == set()


def test_feeds_one_institution_is_level_two_all_is_level_one():
    one = result(rule="ORG-FEED-ACTIVE", v=1, n=3, table="organization", source="drc",
                 by_org={"A": {"violations": 1, "denominator": 1}, "B": {"violations": 0, "denominator": 1},
                         "C": {"violations": 0, "denominator": 1}})
    found, covered = fd.candidates([one], [], P)
    assert [(c.subject, c.org, c.level) for c in found] == [("org_feed_silent", "A", "二级")]
    assert "fault:drc:org_feed_silent:B" in covered and "fault:drc:system_feed_silent:10" in covered
    everyone = result(rule="ORG-FEED-ACTIVE", v=3, n=3, table="organization", source="drc")
    found, _ = fd.candidates([everyone], [], P)
    assert [(c.subject, c.level) for c in found] == [("system_feed_silent", "一级")]


def test_lifecycle_over_a_scripted_sequence_of_runs():
    fail_a = result(v=6, n=100, by_org={"A": {"violations": 6, "denominator": 100}})
    pass_a = result(status="pass", v=0, n=100, by_org={"A": {"violations": 0, "denominator": 100}})
    other_table = result(rule="VISIT-DX", table="outpatient_visit", source="drc", status="pass", n=10,
                         by_org={"A": {"violations": 0, "denominator": 10}})
    fp = "rule:mpi.person:MPI-ID-VALID:A"

    # night 1: new
    rec = fd.reconcile([], *fd.candidates([fail_a], [], P))
    assert [c.fingerprint for c in rec.new] == [fp]
    known = [fd.Known(1, fp, "new", "二级")]
    # night 2: seen again -> persisting
    rec = fd.reconcile(known, *fd.candidates([fail_a], [], P))
    assert [k.id for k, _ in rec.persisting] == [1] and not rec.new and not rec.resolved
    known = [fd.Known(1, fp, "acknowledged", "二级")]
    # a scoped run that did not look at that table resolves nothing
    rec = fd.reconcile(known, *fd.candidates([other_table], [], P))
    assert not rec.resolved and not rec.persisting
    # the engineer's scoped run after the repair sees the rule pass on those rows: resolved
    rec = fd.reconcile(known, *fd.candidates([pass_a], [], P))
    assert [k.id for k in rec.resolved] == [1]
    known = [fd.Known(1, fp, "resolved", "二级")]
    # it regresses: reopened, not a new finding
    rec = fd.reconcile(known, *fd.candidates([fail_a], [], P))
    assert [k.id for k, _ in rec.reopened] == [1] and not rec.new


def test_faults_resolve_when_the_source_is_reached_again():
    fault = {"source": "mpi", "kind": "store_unreachable", "reason": "connection refused", "zh": "数据源无法连接"}
    found, _ = fd.candidates([], [fault], P)
    assert [(c.fingerprint, c.level) for c in found] == [("fault:mpi:store_unreachable", "一级")]
    known = [fd.Known(7, "fault:mpi:store_unreachable", "open", "一级")]
    rec = fd.reconcile(known, [], {"fault:mpi:store_unreachable"})
    assert [k.id for k in rec.resolved] == [7]


def test_overdue():
    opened = datetime(2026, 11, 25, 2, 0)
    due = P.due("一级", opened)
    assert fd.overdue(due, acknowledged=False, resolved=False, now=datetime(2026, 11, 25, 5, 0)) == \
        {"response": True, "fix": False}
    assert fd.overdue(due, acknowledged=True, resolved=False, now=datetime(2026, 11, 26, 3, 0)) == \
        {"response": False, "fix": True}
    assert fd.overdue(due, acknowledged=True, resolved=True, now=datetime(2026, 12, 1)) == \
        {"response": False, "fix": False}


def test_only_a_whole_read_verifies_a_repair():
    """A pass on a window, on a night's new rows or on a sample verifies nothing about rows it did not
    read; a read of an institution's rows whole verifies that institution's findings, not the table's."""
    fp = "rule:mpi.person:MPI-ID-VALID:A"
    clean_a = {"by_org": {"A": {"violations": 0, "denominator": 20}}, "status": "pass", "n": 20}
    for sampling in ({"method": "full", "window": {"since": "2026-11-01T00:00:00", "until": None}},
                     {"method": "incremental", "watermark": "2026-11-24T02:00:00"},
                     {"method": "random", "rows": 500, "seed": 1}, {"method": "full", "rows": 100},
                     {"method": "full", "since": "2026-11-01T00:00:00"}):
        r = {**result(**clean_a), "sampling": sampling}
        found, covered = fd.candidates([r], [], P)
        assert found == [] and covered == set(), sampling
        rec = fd.reconcile([fd.Known(1, fp, "open", "二级")], found, covered)
        assert rec.resolved == []
    # an incremental table's first read (no watermark yet) and an --org read are whole
    for sampling in ({"method": "incremental", "watermark": None}, {"method": "full", "orgs": ["A"]}):
        _, covered = fd.candidates([{**result(**clean_a), "sampling": sampling}], [], P)
        assert covered == {fp}
    table_fp = "rule:mpi.organization:ORG-LEVEL:*"
    passing = result(rule="ORG-LEVEL", status="pass", n=40, table="organization")
    assert fd.candidates([{**passing, "sampling": {"method": "full", "orgs": ["A"]}}], [], P)[1] == set()
    assert fd.candidates([{**passing, "sampling": {"method": "full"}}], [], P)[1] == {table_fp}


def test_a_partial_read_adds_to_a_finding():
    known = fd.Known(1, "rule:mpi.person:MPI-ID-VALID:A", "open", "二级", violations=61, rows=900)
    night = {**result(v=1, n=20, by_org={"A": {"violations": 1, "denominator": 20}}),
             "sampling": {"method": "incremental", "watermark": "2026-11-24T02:00:00"}}
    (c,), _ = fd.candidates([night], [], P)
    assert (fd.seen_again(c, known).violations, fd.seen_again(c, known).rows) == (62, 920)  # new rows add
    window = {**night, "sampling": {"method": "full", "window": {"since": "2026-11-01T00:00:00", "until": None}}}
    (c,), _ = fd.candidates([window], [], P)
    assert (fd.seen_again(c, known).violations, fd.seen_again(c, known).rows) == (61, 900)  # may re-count: larger
    whole = {**night, "sampling": {"method": "full"}}
    (c,), _ = fd.candidates([whole], [], P)
    assert (fd.seen_again(c, known).violations, fd.seen_again(c, known).rows) == (1, 20)  # measured afresh


def test_two_tables_of_a_source_that_fail_are_two_findings_each_resolved_by_its_own_read():
    faults = [{"source": "drc", "kind": "table_unreadable", "subject": t, "table": t, "reason": "no such table"}
              for t in ("lab_result", "inpatient_stay")]
    found, _ = fd.candidates([], [*faults, faults[0]], P)  # the same fault twice: one finding
    assert sorted(c.fingerprint for c in found) == ["fault:drc:table_unreadable:inpatient_stay",
                                                    "fault:drc:table_unreadable:lab_result"]
    assert all(c.org is None for c in found)


def test_a_table_read_again_resolves_its_own_fault_only():
    from healthqa.reports.assess import _reached

    read = [result(table="lab_result", source="drc", status="pass", n=5)]
    still = [{"source": "drc", "kind": "table_unreadable", "subject": "inpatient_stay"}]
    covered = _reached(read, still)
    assert "fault:drc:table_unreadable:lab_result" in covered and "fault:drc:store_unreachable" in covered
    assert "fault:drc:table_unreadable:inpatient_stay" not in covered


def test_a_system_finding_is_located_at_its_system():
    from types import SimpleNamespace

    def finding(**kw):
        base = {"kind": "fault", "source": "*", "table_name": None, "org_code": None, "system": None,
                "subject": "score_drop"}
        return SimpleNamespace(**{**base, **kw})

    assert fd.location(finding(system="11")) == "系统 11 区域信息交换共享平台"
    assert fd.location(finding(system="11", org_code="system:11")) == "系统 11 区域信息交换共享平台"  # older rows
    assert fd.location(finding()) == "全区 district-wide"
    silent = finding(source="drc", table_name="organization", system="11", subject="system_feed_silent")
    assert fd.location(silent) == "drc / 医疗卫生机构 organization / 系统 11 区域信息交换共享平台"
    c, = fd.candidates([], [{"source": "*", "kind": "score_drop", "subject": "system:11", "system": "11"}], P)[0]
    assert c.org is None and c.system == "11"
