"""A finding opened on a common referral rule before the rule was split per referral kind (system 7
outpatient, 8 examination, 9 inpatient: the suite's ``system_by``) is judged by the rule's parts on the
first night after the split: resolved with the reason where every part passes, carried over (same id,
same deadlines) to the part that still fails — never left open forever because system 7 no longer
judges an institution that sends no outpatient referral. And the night of the split does not read
system 7's new score against the mixed one before as a change."""

from __future__ import annotations

from datetime import datetime

from healthqa import clock, config
from healthqa.reports import scores as sc
from healthqa.reports import series as se
from healthqa.reports.assess import assess_run, describe, rule_results
from healthqa.store import AuditStore
from healthqa.store.results import StoredResult

from ..conftest import write_config

T0 = datetime(2026, 11, 20, 2, 0)
RULE = "REF-STATUS-CODE"


def _result(rule_id: str, system: str, by_org: dict[str, tuple[int, int]]) -> StoredResult:
    v, n = sum(x for x, _ in by_org.values()), sum(y for _, y in by_org.values())
    return StoredResult("drc", "referral", rule_id, ("fail" if v else "pass") if n else "not_applicable", v, n,
                        100.0 * v / n if n else None, 0.0, dimension="规范性", severity="二级", system=system,
                        sampling={"method": "full"},
                        by_org={o: {"violations": a, "denominator": b} for o, (a, b) in by_org.items() if b})


def _night(store, cfg, results):
    with store.runs.start("nightly", {"sources": ["drc"]}) as run:
        store.results.record(run.id, results)
    assess_run(cfg, store, run.id)
    return run.id


def test_findings_on_a_rule_split_per_kind_close_or_carry_over_on_the_first_night(tmp_path):
    path = write_config(tmp_path / "healthqa.yml", {"store": {"url": f"sqlite:///{tmp_path / 'audit.db'}"},
                                                    "sources": {}, "reports": {"out_dir": str(tmp_path / "r")}})
    cfg = config.load(path)
    with AuditStore(cfg.store.url) as store, clock.frozen(T0) as c:
        # before the split: one result for every kind; EXAM sends examination referrals only, INPT
        # inpatient ones only, OUT outpatient ones only, MIX both outpatient and examination
        before = _night(store, cfg, [_result(RULE, "7", {"EXAM": (5, 100), "INPT": (3, 50), "OUT": (2, 80),
                                                         "MIX": (4, 90)})])
        by_org = {f.org_code: f for f in store.findings.list()}
        assert set(by_org) == {"EXAM", "INPT", "OUT", "MIX"}
        c.advance(days=1)
        # the first night after the split: EXAM was repaired, INPT still fails (now in system 9), OUT
        # still fails in system 7, MIX's outpatient rows pass and its examination rows fail
        after = _night(store, cfg, [_result(RULE, "7", {"OUT": (2, 80), "MIX": (0, 40)}),
                                    _result(f"{RULE}@8", "8", {"EXAM": (0, 100), "MIX": (4, 50)}),
                                    _result(f"{RULE}@9", "9", {"INPT": (3, 50)})])
        now = {f.id: f for f in store.findings.list()}
        exam, inpt, out, mix = (now[by_org[o].id] for o in ("EXAM", "INPT", "OUT", "MIX"))
        assert exam.state == "resolved" and exam.resolved_by == f"run {after}"
        assert "已按所属系统拆分" in exam.notes[-1]["text"] and "均已通过" in exam.notes[-1]["text"]
        assert inpt.state == "open" and inpt.subject == f"{RULE}@9" and inpt.system == "9"
        assert inpt.fix_due_at == by_org["INPT"].fix_due_at  # the deadline it was given stands
        assert "转由" in inpt.notes[-1]["text"]
        assert out.state == "open" and out.subject == RULE and not out.notes  # still true in system 7
        assert mix.state == "open" and mix.subject == f"{RULE}@8"
        # nothing else opened: the parts' failures are the old findings, not new ones beside them
        assert len(now) == 4
        (ev,) = [e for e in store.findings.events(exam.id) if e["event"] == "resolved"]
        assert "拆分" in ev["detail"]["reason"]

        # the score of system 7 the night of the split is not read against the mixed one before
        a, b = rule_results(store, after), rule_results(store, before)
        describe(a, cfg)
        describe(b, cfg)
        like_now, like_before = sc.comparable(a, b)
        assert ("system", "7") not in like_now
        assert not se.bases(a)[("system", "7")].like(se.bases(b)[("system", "7")])

        c.advance(days=1)  # a later night: the carried-over findings close by their own part's pass
        _night(store, cfg, [_result(RULE, "7", {"OUT": (0, 80), "MIX": (0, 40)}),
                            _result(f"{RULE}@8", "8", {"EXAM": (0, 100), "MIX": (0, 50)}),
                            _result(f"{RULE}@9", "9", {"INPT": (0, 50)})])
        assert all(f.state == "resolved" for f in store.findings.list())
