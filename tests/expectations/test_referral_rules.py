"""Referrals and slots (issue 20: systems 6, 7, 8, 9): a rule's ``where``, the referral rule types and
their reference providers, on hand-made frames shaped unlike the generator's (lower-case codes with
spaces, UTC offsets, unreadable values, missing columns, empty tables)."""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.errors import ConfigError
from healthqa.expectations import gx_bridge, references, rule_types, suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import Validation, validate_frame

AS_OF = pd.Timestamp("2026-11-25")

HEAD = """table: referral
system: "7"
rules:
"""


def _rule(body: str) -> suite.Rule:
    return suite.parse("site/referral.yml", HEAD + body).rules[0]


def _body(type_: str, params: str, where: str | None = None, id_: str = "SITE-REF-X") -> str:
    return (f"  - id: {id_}\n    type: {type_}\n    params: {params}\n" + (f"    where: {where}\n" if where else "")
            + "    zh: 测试\n    en: test\n    dimension: 完整性\n    kahn: completeness/verification\n"
            "    standard: test\n    severity: 提示\n    threshold: 0\n")


def _ctx(**refs) -> RuleContext:
    return RuleContext(as_of=AS_OF, references=refs)


# -- where -----------------------------------------------------------------------------------------
def test_where_confines_a_rule_to_the_rows_it_names_compared_as_trimmed_text():
    r = _rule(_body("not_null", "{column: slot_id}", '{status: ["2", 3]}'))
    assert r.where == {"status": ["2", 3]} and r.columns == ["slot_id", "status"]
    df = pd.DataFrame({"slot_id": [None, None, None, None, "HY1"], "status": [" 2", "3", "1", None, "2"]})
    (res,) = validate_frame(df, "referral", [r], _ctx())
    assert (res.violations, res.denominator) == (2, 3)  # " 2" and "3"; "1" and a missing status are not kept
    applies, violates = r.evaluate(df, _ctx())  # the same outcome outside GE (the one implementation)
    assert applies.tolist() == [True, True, False, False, True] and int(violates.sum()) == 2


def test_where_accepts_one_value_and_shows_in_the_compiled_expectation():
    r = _rule(_body("not_null", "{column: slot_id}", '{status: "3"}'))
    assert r.where == {"status": ["3"]}
    assert gx_bridge.expectation_for(r).configuration.kwargs["where"] == {"status": ["3"]}


@pytest.mark.parametrize("where,message", [
    ('{statuss: ["2"]}', "site/referral.yml: rules.SITE-REF-X.where.statuss: not a column of drc.referral"),
    ("{status: []}", "site/referral.yml: rules.SITE-REF-X.where.status: expected a value or a list of values"),
    ("{status: [null]}", "rules.SITE-REF-X.where.status: expected a value"),
    ("[status]", "rules.SITE-REF-X.where: Input should be a valid dictionary"),
])
def test_a_bad_where_is_an_error_naming_the_rule_and_key(where, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        _rule(_body("not_null", "{column: slot_id}", where))


def test_where_on_a_whole_table_rule_read_in_chunks_is_the_one_pass_result():
    r = _rule(_body("unique", "{column: referral_id}", '{referral_type: ["1"]}'))
    df = pd.DataFrame({"referral_id": ["A", "A", "B", "B", "C"], "referral_type": ["1", "1", "2", "2", "1"],
                       "to_org": ["X"] * 5})
    (whole,) = validate_frame(df, "referral", [r], _ctx(), all_keys=True)
    v = Validation("referral", [r], _ctx(), df.columns, all_keys=True)
    for lo, hi in ((0, 1), (1, 3), (3, 5)):
        v.add(df.iloc[lo:hi])
    (chunked,) = v.results()
    assert (whole.violations, whole.denominator, whole.violating_keys) == (2, 3, ["A", "A"])
    assert (chunked.violations, chunked.denominator, chunked.violating_keys) == (2, 3, ["A", "A"])


def test_a_where_column_not_mapped_is_an_error_result_not_a_crash():
    r = _rule(_body("not_null", "{column: slot_id}", '{status: ["2"]}'))
    (res,) = validate_frame(pd.DataFrame({"slot_id": ["HY1"]}), "referral", [r], _ctx(),
                            missing_columns={"status": "zzzt"})
    assert res.status == "error" and "column missing: status (zzzt)" in res.error


# -- direction -------------------------------------------------------------------------------------
def test_institution_tiers_from_the_register_with_codes_as_vendors_write_them():
    org = pd.DataFrame({"org_code": [" h2 ", "C1", "PH", "DUP", "DUP", None],
                        "level": ["二级甲等医院", "社区卫生服务中心", "专业公共卫生机构", "一级医院", "村卫生室",
                                  "三级甲等医院"]})
    tiers = references.PROVIDERS["organization.tier"].make({"organization": org})
    assert tiers.to_dict() == {"H2": 2.0, "C1": 1.0}  # no tier for public health; an ambiguous code tells nothing


def test_direction_level_judges_only_known_tiers_and_directions():
    rt = rule_types.get("referral_direction_level")
    tiers = pd.Series({"H2": 2.0, "C1": 1.0, "V0": 0.0})
    df = pd.DataFrame({"from_org": ["c1", "H2", "V0", "C1", "C1", "C1", "H2"],
                       "to_org": [" h2", "C1", "C1", "XX", "H2", "H2", "H2"],
                       "direction": ["1", "1", "1", "1", None, "9", "2"]})
    applies, violates = rt.fn(df, {"from_org": "from_org", "to_org": "to_org", "direction": "direction"},
                              _ctx(**{"organization.tier": tiers}))
    assert applies.tolist() == [True, True, True, False, False, False, True]
    assert violates.tolist() == [False, True, False, False, False, False, True]


# -- slots -----------------------------------------------------------------------------------------
SLOTS = pd.DataFrame({"slot_id": ["HY1", "HY2", "HY3", "HY3"], "org_code": ["h2 ", "H3", "H3", "H9"],
                      "slot_date": ["2026-11-20", "2026-11-21T00:00:00+08:00", "2026-11-22", "2026-11-22"],
                      "period": ["1", None, "2", "2"]})


def _slot_refs() -> dict:
    rows = {"schedule_slot": SLOTS}
    return {n: references.PROVIDERS[n].make(rows) for n in
            ("schedule_slot.org_code", "schedule_slot.slot_date", "schedule_slot.period", "schedule_slot.slot_id")}


def test_slot_providers_leave_out_ambiguous_slot_numbers_and_read_offsets():
    refs = _slot_refs()
    assert refs["schedule_slot.org_code"].to_dict() == {"HY1": "H2", "HY2": "H3"}
    assert refs["schedule_slot.slot_date"]["HY2"] == pd.Timestamp("2026-11-21")
    assert refs["schedule_slot.slot_id"] == {"HY1", "HY2", "HY3"}


def test_appointment_outside_its_slot_violates_an_unreadable_date_too():
    rt = rule_types.get("referral_matches_slot")
    df = pd.DataFrame({"slot_id": ["HY1", "HY1", "HY1", "HY2", "HY2", "HY3", None, "HY1"],
                       "to_org": ["H2", "H2", "H2", " h3", "H3", "H3", "H2", "H3"],
                       # 2026-11-19T17:30Z is the 20th in the platform's zone
                       "appointment_date": ["2026-11-20", "2026-11-19T17:30:00Z", "2026-11-21", "2026-11-21", "??",
                                            "2026-11-22", "2026-11-20", "2026-11-20"],
                       "appointment_period": ["1", "1", "1", "2", "1", "2", "1", "1"]})
    p = {"slot": "slot_id", "org": "to_org", "date": "appointment_date", "period": "appointment_period"}
    applies, violates = rt.fn(df, p, _ctx(**_slot_refs()))
    assert applies.tolist() == [True, True, True, True, True, False, False, True]
    assert violates.tolist() == [False, False, True, False, True, False, False, True]


# -- the closed and the open loop ----------------------------------------------------------------------
def test_closed_loop_evidence_within_the_window_at_the_receiving_institution():
    visits = pd.DataFrame({"archive_id": ["A1", " A2"], "org_code": ["h2", "H2"],
                           "visit_time": ["2026-11-20 09:00:00", "2026-11-19T18:00:00Z"]})  # A2: the 20th locally
    evidence = references.PROVIDERS["outpatient_visit.archive_org_day"].make({"outpatient_visit": visits})
    assert len(evidence) == 2 and evidence.dtype == "uint64"  # A1 and A2 seen at H2 on the 20th, as hashes
    as_text = {"outpatient_visit.archive_org_day": {"A1|H2|2026-11-20", "A2|H2|2026-11-20"}}  # as examples write them
    rt = rule_types.get("referral_closed_loop")
    df = pd.DataFrame({"archive_id": ["A1", "A1", "A1", "A1", "A2", "A1", None, "A1"],
                       "to_org": ["H2 ", "H2", "H2", "H3", "h2", "H2", "H2", "H2"],
                       "appointment_date": ["2026-11-20", "2026-11-17", "2026-11-16", "2026-11-20", "2026-11-20",
                                            "2026-11-21", "2026-11-20", None]})
    p = {"archive": "archive_id", "org": "to_org", "date": "appointment_date",
         "evidence": ["outpatient_visit.archive_org_day"], "days": 3}
    for refs in ({"outpatient_visit.archive_org_day": evidence}, as_text):
        applies, violates = rt.fn(df, p, _ctx(**refs))
        assert applies.tolist() == [True, True, True, True, True, True, False, True]
        # the day itself and 3 days before it prove it; 4 days before, another institution, a day after, no date: not
        assert violates.tolist() == [False, False, True, True, False, True, False, True]


def test_closed_loop_names_what_proves_an_arrival():
    with pytest.raises(ConfigError, match=r"params\.evidence: .*'person\.archive_id' is not a record of arrivals"):
        _rule(_body("referral_closed_loop", "{archive: archive_id, org: to_org, date: appointment_date, "
                    "evidence: [person.archive_id]}"))
    r = _rule(_body("referral_closed_loop", "{archive: archive_id, org: to_org, date: appointment_date, "
                    "evidence: [lab_result.archive_org_day, health_exam.archive_org_day]}"))
    assert r.needs == {"lab_result.archive_org_day", "health_exam.archive_org_day"}


def test_closed_loop_on_an_empty_table_and_without_its_evidence():
    r = _rule(_body("referral_closed_loop", "{archive: archive_id, org: to_org, date: appointment_date, "
                    "evidence: [inpatient_stay.archive_org_day]}", '{status: ["3"]}'))
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in ("archive_id", "to_org", "appointment_date", "status")})
    (res,) = validate_frame(empty, "referral", [r], _ctx(**{"inpatient_stay.archive_org_day": set()}))
    assert res.status == "not_applicable" and res.denominator == 0
    (res,) = validate_frame(empty, "referral", [r], _ctx())
    assert res.status == "error" and "inpatient_stay.archive_org_day" in res.error


def test_open_loop_relative_to_the_reference_time():
    rt = rule_types.get("referral_open_loop")
    df = pd.DataFrame({"appointment_date": ["2026-11-21", "2026-11-22", "2026-11-01", "2026-11-01", "bad", "bad", None],
                       "status": ["2", "2", " 2", "3", "2", "4", "2"]})
    applies, violates = rt.fn(df, {"date": "appointment_date", "status": "status", "days": 3}, _ctx())
    # the 21st + 3 days is before the 25th; the 22nd + 3 is not; an unreadable date has passed
    assert applies.tolist() == [True, False, True, True, True, True, False]
    assert violates.tolist() == [True, False, True, False, True, False, False]


def test_each_kind_of_referral_counts_in_its_own_system():
    """A referral rule confined to one kind (``where: {referral_type: [...]}``) counts in that kind's
    contract system (referral_type.yml ``systems``); each of 7, 8 and 9 has its closed and open loop."""
    from healthqa import codelists

    systems = codelists.load("referral_type")["systems"]
    by_system: dict[str, set[str]] = {}
    for r in suite.builtin("referral").rules:
        kinds = (r.where or {}).get("referral_type")
        if kinds:
            assert {systems[str(k)] for k in kinds} == {r.system}, r.id
            by_system.setdefault(r.system, set()).add(r.type)
    assert by_system == dict.fromkeys(("7", "8", "9"), {"referral_closed_loop", "referral_open_loop"})
