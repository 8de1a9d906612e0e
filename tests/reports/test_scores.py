"""Scoring arithmetic on hand-computed cases: DQD pass rate, row-weighted conformance, Wilson
intervals, not-applicable and errored rules, changes within their uncertainty."""

from __future__ import annotations

import math

import pytest

from healthqa.reports import scores as sc
from healthqa.reports.scores import Observation


def obs(rule, status, v, n, dim="完整性", system="10", table="person", sampled=False, org=None):
    return Observation(rule, "mpi", table, dim, system, status, v, n, sampled, org)


def by(scores, level, subject):
    return next(s for s in scores if s.level == level and s.subject == subject)


def test_pass_rate_and_conformance_by_hand():
    out = sc.score([
        obs("A", "pass", 0, 100),
        obs("B", "fail", 10, 100, dim="规范性"),
        obs("C", "not_applicable", 0, 0),
        obs("D", "error", 0, 0, dim="规范性", system="5"),
    ])
    overall = by(out, "overall", "overall")
    # DQD: 1 of 3 checks with a verdict passed (n/a left out, error counts as not passed)
    assert overall.checks == 3 and overall.passed == 1 and overall.errors == 1 and overall.not_applicable == 1
    assert overall.pass_rate == pytest.approx(100 / 3)
    # rows: (100 + 90) conforming of 200 checked; the errored rule checked no row
    assert overall.conformance == pytest.approx(95.0)
    assert overall.low == overall.high == overall.conformance  # a full read is exact
    assert by(out, "dimension", "规范性").conformance == pytest.approx(90.0)
    assert by(out, "dimension", "规范性").pass_rate == 0.0
    assert by(out, "system", "5").conformance is None  # only an errored rule: nothing was checked
    assert [s.subject for s in out if s.level == "dimension"] == ["完整性", "规范性"]  # the standard's order


def test_dimension_weights_change_conformance_not_pass_rate():
    data = [obs("A", "pass", 0, 100), obs("B", "fail", 50, 100, dim="唯一性")]
    plain = by(sc.score(data), "overall", "overall")
    weighted = by(sc.score(data, {"唯一性": 3.0}), "overall", "overall")
    assert plain.conformance == pytest.approx(75.0)
    assert weighted.conformance == pytest.approx((100 + 3 * 50) / (100 + 3 * 100) * 100)  # 62.5
    assert weighted.pass_rate == plain.pass_rate == 50.0


def test_wilson_interval_matches_the_formula():
    low, high = sc.wilson(90, 100)
    # Wilson 95 % for 90/100 by hand: z² = 3.8416, centre (0.9 + z²/200) / (1 + z²/100) = 0.88520,
    # half-width z·sqrt(0.0009 + z²/40000) / (1 + z²/100) = 0.05957
    assert low == pytest.approx(82.56, abs=0.01) and high == pytest.approx(94.48, abs=0.01)
    low, high = sc.wilson(100, 100)
    assert high == 100.0 and low == pytest.approx(96.30, abs=0.01)  # a perfect sample is not certainty


def test_sampled_scores_carry_an_interval_capped_by_the_rows_read():
    # two rules over the same 200 sampled rows: the effective n is 200, not 400
    out = sc.score([obs("A", "fail", 20, 200, sampled=True), obs("B", "pass", 0, 200, sampled=True)])
    overall = by(out, "overall", "overall")
    assert overall.conformance == pytest.approx(95.0)
    low, high = sc.wilson(0.95 * 200, 200)
    assert (overall.low, overall.high) == (pytest.approx(low), pytest.approx(high))


def test_institution_scores_judge_each_institution_on_its_own_rows():
    rows = [{"rule_id": "R", "source": "mpi", "table": "person", "dimension": "完整性", "system": "10",
             "status": "fail", "violations": 5, "denominator": 300, "threshold_pct": 1.0,
             "by_org": {"A": {"violations": 5, "denominator": 100}, "B": {"violations": 0, "denominator": 200}},
             "sampling": {"method": "full"}}]
    out = sc.score(sc.observations(rows))
    a, b = by(out, "org", "A"), by(out, "org", "B")
    assert (a.passed, a.conformance) == (0, pytest.approx(95.0))  # 5 % > 1 % tolerated
    assert (b.passed, b.conformance) == (1, 100.0)
    assert by(out, "overall", "overall").conformance == pytest.approx(100 * 295 / 300)


def test_a_change_within_the_uncertainty_is_no_change():
    before = sc.score([obs("A", "fail", 10, 200, sampled=True)])[0]
    within = sc.score([obs("A", "fail", 14, 200, sampled=True)])[0]
    beyond = sc.score([obs("A", "fail", 60, 200, sampled=True)])[0]
    assert sc.change(within, before) == "no change"
    assert sc.change(beyond, before) == "fall"
    assert sc.change(before, beyond) == "rise"
    assert sc.change(before, None) == "new"
    # full reads are exact: any difference is a change
    exact_a, exact_b = sc.score([obs("A", "fail", 10, 200)])[0], sc.score([obs("A", "fail", 11, 200)])[0]
    assert sc.change(exact_b, exact_a) == "fall"


def test_impact_ranks_rows_beyond_tolerance_not_percentages():
    shared_ids = sc.excess(1313, 20882, 0.0)
    deceased = sc.excess(33, 99, 0.0)
    assert shared_ids > deceased
    assert sc.excess(5, 1000, 1.0) == 0.0  # within the tolerated 1 %
    assert math.isclose(sc.excess(30, 1000, 1.0), 20.0)


def test_sampling_kinds():
    assert not sc.is_sampled({"method": "full"})
    assert not sc.is_sampled({"method": "incremental"})
    assert sc.is_sampled({"method": "random", "rows": 10})
    assert sc.is_sampled({"method": "full", "rows": 10})


def _res(rule, table, status, v, n, system="11", sampling=None, source="drc"):
    return {"source": source, "table": table, "rule_id": rule, "dimension": "完整性", "system": system,
            "status": status, "violations": v, "denominator": n, "threshold_pct": 0.0, "by_org": {},
            "sampling": sampling or {"method": "full"}}


def test_a_quiet_night_is_compared_like_with_like():
    """A night whose incremental tables read no row scores system 11 on the one rule left (the feed
    register): compared over the rules both nights judged, nothing fell."""
    from healthqa.reports.scores import comparable as comparable_scores

    inc = {"method": "incremental", "watermark": "2026-11-24T02:00:00"}
    first = [_res(f"OPV-{i}", "outpatient_visit", "pass", 0, 4000, sampling={"method": "incremental", "watermark": None})
             for i in range(12)] + [_res("ORG-FEED-ACTIVE", "organization", "fail", 1, 14)]
    quiet = [_res(f"OPV-{i}", "outpatient_visit", "not_applicable", 0, 0, sampling=inc) for i in range(12)] + \
        [_res("ORG-FEED-ACTIVE", "organization", "fail", 1, 14)]
    stored = {(s.level, s.subject): s for s in sc.score(sc.observations(quiet))}
    before = {(s.level, s.subject): s for s in sc.score(sc.observations(first))}
    assert before[("system", "11")].conformance - stored[("system", "11")].conformance > 5  # what raised the alarm
    now, prev = comparable_scores(quiet, first)
    assert ("system", "11") not in now and ("overall", "overall") not in now  # one shared rule of thirteen
    assert now[("table", "drc.organization")] == prev[("table", "drc.organization")]  # the table itself: same
    # the same rules read the same way are compared; a whole read is not compared with new rows
    second = [_res(f"OPV-{i}", "outpatient_visit", "pass", 0, 30, sampling=inc) for i in range(12)] + \
        [_res("ORG-FEED-ACTIVE", "organization", "fail", 1, 14)]
    third = [_res(f"OPV-{i}", "outpatient_visit", "fail" if i == 0 else "pass", 3 if i == 0 else 0, 30,
                  sampling=inc) for i in range(12)] + [_res("ORG-FEED-ACTIVE", "organization", "fail", 1, 14)]
    now, prev = comparable_scores(third, second)
    assert now[("system", "11")].checks == prev[("system", "11")].checks == 13
    assert now[("system", "11")].sampled  # a night's new rows are a sample of the feed: an interval
    now, prev = comparable_scores(second, first)
    assert ("system", "11") not in now  # the first night read the table whole, the second its new rows
