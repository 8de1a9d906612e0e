"""The referrals' closed-loop rate by type and receiving institution, read off the closed- and
open-loop rules' counts: (arrived − arrived with no record) ÷ (arrived + overdue)."""

from __future__ import annotations

from healthqa.config import Config
from healthqa.reports.institutions import Registry
from healthqa.reports.referral_loop import loop_rows


def _result(rule_id: str, by_org: dict[str, tuple[int, int]]) -> dict:
    return {"rule_id": rule_id, "table": "referral", "status": "fail",
            "violations": sum(v for v, _ in by_org.values()), "denominator": sum(d for _, d in by_org.values()),
            "by_org": {o: {"violations": v, "denominator": d} for o, (v, d) in by_org.items()}}


def test_the_rate_counts_arrivals_without_a_record_and_overdue_bookings_against_the_due():
    results = [_result("REF-OUT-CLOSED-LOOP", {"H1": (2, 40), "H2": (0, 10)}),
               # the open loop applies to every booked referral of the type; its violations are the overdue
               _result("REF-OUT-OPEN-LOOP", {"H1": (8, 60), "H3": (1, 1)}),
               _result("REF-IN-CLOSED-LOOP", {"H1": (0, 0)}),
               {"rule_id": "REF-EXAM-CLOSED-LOOP", "table": "referral", "status": "error", "by_org": {}}]
    cfg = Config.model_validate({"version": 1, "district": {"adcode": "330211", "name": "镇海区"},
                                 "store": {"url": "sqlite:///a.db"}, "sources": {}})
    rows = loop_rows(cfg, results, Registry({"H1": "人民医院"}, True))
    out = [r for r in rows if r["type"].startswith("门诊转诊")]
    total, h1, h2, h3 = out
    assert (total["org"], total["arrived"], total["unproven"], total["overdue"]) == (None, 50, 2, 9)
    assert round(total["rate"], 2) == round(100 * 48 / 59, 2)
    assert (h1["org_name"], round(h1["rate"], 2)) == ("人民医院", round(100 * 38 / 48, 2))
    assert h2["rate"] == 100.0 and h2["org_name"] == "未登记机构 H2"
    assert (h3["arrived"], h3["overdue"], h3["rate"]) == (0, 1, 0.0)  # booked, never came: an open loop only
    # nothing due is no rate, never 100 %; a type whose rules could not run has no row
    inpatient = [r for r in rows if r["type"].startswith("住院转诊")]
    assert [r["rate"] for r in inpatient] == [None, None]
    assert not [r for r in rows if r["type"].startswith("检查转诊")]


def test_no_referral_results_no_table():
    cfg = Config.model_validate({"version": 1, "district": {"adcode": "330211", "name": "镇海区"},
                                 "store": {"url": "sqlite:///a.db"}, "sources": {}})
    assert loop_rows(cfg, [{"rule_id": "OPV-DX-FORMAT", "table": "outpatient_visit", "status": "pass"}], Registry()) == []
