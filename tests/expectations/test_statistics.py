"""Decision support's published figures: the indicators recomputed from hand-made detail (times with UTC
offsets, unreadable times, institution codes with spaces and lower case, repeated keys), and the rules
that hold each published figure to its recomputation."""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa import indicators as ind
from healthqa.expectations import references, suite
from healthqa.expectations.references import Unavailable
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import validate_frame

AS_OF = pd.Timestamp("2026-11-25")
RULES = {r.id: r for r in suite.builtin("published_statistic").rules}

VISITS = pd.DataFrame({
    "visit_id": ["V0", "V1", "V2", "V2", "V3", "V4", "V5", "V6", "V7"],
    "org_code": ["B2", "A1", " a1 ", "A1", "B2", "B2", None, "A1", "A1"],
    # V4 is 2026-09-30 20:00 UTC: 1 October in the platform's zone (UTC+8); V6's time is unreadable
    "visit_time": ["2026-08-01 00:30:00", "2026-09-03 10:00:00", "2026-09-04 11:00:00", "2026-09-04 11:00:00", "2026-09-20",
                   "2026-09-30T20:00:00Z", "2026-09-10 09:00:00", "2026-09-31 08:00", "2026-10-02 08:00:00"],
})


def _figures(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["statistic_id", "indicator_code", "period", "org_code", "value"])


def _run(rule_id: str, df: pd.DataFrame, refs: dict) -> object:
    (res,) = validate_frame(df, "published_statistic", [RULES[rule_id]],
                            RuleContext(as_of=AS_OF, references=refs), all_keys=True)
    return res


def test_counts_distinct_keys_per_institution_month_and_the_district():
    r = ind.recompute("OPV_VISITS", VISITS)
    v = r.values.to_dict()
    assert v["2026-09|A1"] == 2  # V1 and V2 (sent twice, once with " a1 ")
    assert v["2026-09|B2"] == 1  # V3; V4 belongs to October in the platform's zone
    assert v["2026-10|B2"] == 1 and v["2026-10|A1"] == 1
    assert v["2026-09|*"] == 4  # the district also counts V5, whose institution is missing
    assert r.covers_from == pd.Timestamp("2026-08-01") and v["2026-08|B2"] == 1
    assert "2026-09|None" not in v


def test_chunks_of_the_detail_add_up_to_the_whole():
    parts = [ind.recompute("OPV_VISITS", VISITS.iloc[:4]), ind.recompute("OPV_VISITS", VISITS.iloc[4:])]
    whole = ind.recompute("OPV_VISITS", VISITS)
    combined = ind.combine(parts)
    assert combined.values.sort_index().equals(whole.values.sort_index())
    assert combined.covers_from == whole.covers_from


def test_an_empty_detail_covers_no_month():
    r = ind.recompute("OPV_VISITS", VISITS.iloc[:0])
    assert r.values.empty and r.covers_from == ind.NOTHING


def test_patients_under_management_count_a_trailing_window_of_follow_ups():
    fu = pd.DataFrame({"archive_id": ["P1", "P1", "P2", "P3", "P4"], "org_code": ["A1"] * 5,
                       "disease": ["htn", "htn", "htn", "dm", "htn"],
                       "followup_date": ["2026-01-05", "2026-03-10", "2026-04-20", "2026-04-01", "bad"]})
    r = ind.recompute("HTN_MANAGED", fu)
    v = r.values
    assert v["2026-03|A1"] == 1  # P1 (twice within the window)
    assert v["2026-05|A1"] == 2 and v["2026-06|A1"] == 1  # P1's March follow-up leaves the window in June
    assert "2026-07|A1" not in v.index
    assert r.covers_from == pd.Timestamp("2026-03-05")  # a three-month window fully inside the detail
    assert ind.recompute("DM_MANAGED", fu).values["2026-04|A1"] == 1


def test_active_archives_at_each_month_end():
    p = pd.DataFrame({"archive_id": ["1", "2", "3", "4", "5"], "org_code": ["A1", "A1", "a1", "B2", "A1"],
                      "created_at": ["2026-01-10 08:00:00", "2026-03-01", "2026-01-02", "2026-02-02", "?"],
                      "status_code": ["1", "2", "1", "3", "1"],
                      "death_date": [None, "2026-05-15", None, None, None]})
    v = ind.recompute("ARCHIVES_ACTIVE", p).values
    assert v["2026-01|A1"] == 2  # 1 and 3 (a1); 5's creation time is unreadable
    assert v["2026-04|A1"] == 3 and v["2026-06|A1"] == 2  # 2 died in May
    assert "2026-03|B2" not in v.index  # moved out: no month
    assert v["2026-04|*"] == 3


def test_a_figure_agrees_within_the_tolerance_with_its_recomputation():
    refs = {"statistic.OPV_VISITS": ind.recompute("OPV_VISITS", VISITS)}
    df = _figures([("F1", "OPV_VISITS", "2026-09", "a1 ", "2"), ("F2", "OPV_VISITS", "2026-09", "B2", "4"),
                   ("F3", "OPV_VISITS", "2026-09", "330211", "4"), ("F4", "opv_visits", "2026-09", "C3", "2"),
                   ("F5", "OPV_VISITS", "2026-10", "A1", "9"),  # October: settled (ended 25 days ago)
                   ("F6", "OPV_VISITS", "2026-11", "A1", "900"),  # the open month: not judged
                   ("F7", "OPV_VISITS", "2026-07", "A1", "900"),  # before the detail begins: not judged
                   ("F8", "OPV_VISITS", "2026-09", "A1", "—"),  # not a number: STAT-VALUE-NUMBER's
                   ("F9", "OPV_VISITS", "2026-9", "A1", "50")])  # malformed month: STAT-PERIOD-FORMAT's
    res = _run("STAT-AGREES-DETAIL", df, refs)
    assert res.status == "fail"
    assert "statistic.OPV_VISITS" not in res.error  # the note names the recomputations not had (the others)
    assert sorted(res.violating_keys) == ["F2", "F4", "F5"]  # B2 had 1, C3 none, A1 1 in October
    assert res.denominator == 5


def test_late_arrivals_a_month_just_ended_is_not_judged_yet():
    refs = {"statistic.OPV_VISITS": ind.recompute("OPV_VISITS", VISITS)}
    df = _figures([("F1", "OPV_VISITS", "2026-10", "A1", "30")])
    (res,) = validate_frame(df, "published_statistic", [RULES["STAT-AGREES-DETAIL"]],
                            RuleContext(as_of=pd.Timestamp("2026-11-05"), references=refs))
    assert res.status == "not_applicable"


def test_a_figure_whose_detail_is_not_mapped_is_not_applicable_and_says_why():
    df = _figures([("F1", "OPV_VISITS", "2026-09", "A1", "2"), ("F2", "HTN_MANAGED", "2026-09", "A1", "7")])
    refs = {f"statistic.{c}": Unavailable("no source maps outpatient_visit") for c in ind.indicators()}
    res = _run("STAT-AGREES-DETAIL", df, refs)
    assert res.status == "not_applicable" and res.violations == 0
    assert "no source maps outpatient_visit" in res.error and "statistic.OPV_VISITS" in res.error
    # visits had, follow-ups not: the visits' figure is judged, the other is not, and the rule says so
    refs["statistic.OPV_VISITS"] = ind.recompute("OPV_VISITS", VISITS)
    res = _run("STAT-AGREES-DETAIL", df, refs)
    assert res.status == "pass" and res.denominator == 1 and "statistic.HTN_MANAGED" in res.error


def test_the_recomputation_reads_only_the_columns_it_counts_of_mapped_tables():
    p = references.PROVIDERS["statistic.HTN_MANAGED"]
    assert dict(p.reads) == {"chronic_followup": ("archive_id", "org_code", "followup_date", "disease")}
    assert p.window is None  # the whole table, never the night's sample
    assert {f"statistic.{c}" for c in ind.indicators()} <= set(references.PROVIDERS)


def test_an_empty_table_and_missing_columns_do_not_crash():
    empty = _figures([])
    for rule_id in RULES:
        (res,) = validate_frame(empty, "published_statistic", [RULES[rule_id]],
                                RuleContext(as_of=AS_OF, references={"organization.org_code": {"A1"}}))
        assert res.status == "not_applicable", (rule_id, res.error)
    (res,) = validate_frame(empty.drop(columns="value"), "published_statistic", [RULES["STAT-AGREES-DETAIL"]],
                            RuleContext(as_of=AS_OF))
    assert res.status == "error" and "value" in res.error


def test_registration_publication_once_and_future_months():
    df = _figures([("F1", "OPV_VISITS", "2026-09", "a1 ", "2"), ("F2", "OPV_VISITS", "2026-09", "A1", "2"),
                   ("F3", "OPV_VISITS", "2026-09", "330211", "4"), ("F4", "OPV_VISITS", "2026-09", "Z9", "4"),
                   ("F5", "OPV_VISITS", "2026-12", "330211", "4"), ("F6", "OPV_VISITS", "2026-13", "A1", "1")])
    refs = {"organization.org_code": {"A1"}}
    assert _run("STAT-ORG-REGISTERED", df, refs).violating_keys == ["F4"]
    assert sorted(_run("STAT-PUBLISHED-ONCE", df, refs).violating_keys) == ["F1", "F2"]
    assert _run("STAT-PERIOD-NOT-FUTURE", df, refs).violating_keys == ["F5"]
    assert _run("STAT-PERIOD-FORMAT", df, refs).violating_keys == ["F6"]


@pytest.mark.parametrize("value,bad", [("12", False), ("0", False), ("1.5", False), ("-1", True),
                                       ("1,234", True), ("约120", True), ("—", True)])
def test_a_value_is_a_non_negative_number_and_a_malformed_one_is_counted(value, bad):
    res = _run("STAT-VALUE-NUMBER", _figures([("F1", "OPV_VISITS", "2026-09", "A1", value)]), {})
    assert res.violations == int(bad) and res.denominator == 1


def test_an_unknown_method_in_the_indicator_list_is_an_error_naming_the_entry(monkeypatch):
    from healthqa import codelists

    ind.indicators.cache_clear()
    real = codelists.load(ind.CODE_LIST)
    monkeypatch.setattr(codelists, "load", lambda name: {"codes": {"X": {"zh": "x", "en": "x", "table": "person",
                                                                          "method": "median"}}}
                        if name == ind.CODE_LIST else real)
    try:
        with pytest.raises(ValueError, match="X: unknown method 'median'"):
            ind.indicators()
    finally:
        monkeypatch.undo()
        ind.indicators.cache_clear()


def test_on_the_demo_a_detail_table_not_mapped_leaves_its_figures_not_judged(demo, tmp_path):
    """The demo's figures, read through the configuration: with the visits and follow-ups unmapped,
    their indicators' figures are not judged and the rule says why; the others still are."""
    from healthqa import config
    from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

    from ..conftest import demo_config, write_config

    cfg = demo_config(demo)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    for s in cfg["sources"].values():
        s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{demo}/")
    del cfg["sources"]["drc"]["tables"]["outpatient_visit"]
    del cfg["sources"]["qc"]["tables"]["chronic_followup"]
    run = validate_adhoc(config.load(write_config(tmp_path / "healthqa.yml", cfg)),
                         ValidationRequest("drc", tables=("published_statistic",), all_keys=True))
    (res,) = [r for _, r in run.results if r.rule.id == "STAT-AGREES-DETAIL"]
    assert "no source maps outpatient_visit" in res.error and "statistic.HTN_MANAGED" in res.error
    assert res.status in ("pass", "fail") and res.denominator > 0
    pub = pd.read_csv(demo / "truth" / "defects.csv", dtype=str)
    wrong = set(pub.loc[pub["defect"] == "statistic_disagrees", "key"])
    assert res.violating_keys and set(res.violating_keys) < wrong  # those of the indicators still judged
