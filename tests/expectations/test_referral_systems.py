"""The referral table's common rules charged per system (referral.yml ``system_by``): an inpatient
referral's fault is system 9's, not the outpatient referral system's (7); a referral of no known kind
counts in 7 and its result says so. Small frames, the shipped suite."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import pytest

from healthqa.errors import ConfigError
from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import Validation, combine, validate_frame
from healthqa.pipelines.validate import TableValidation, _stored
from healthqa.reports import findings as fd
from healthqa.reports import scores as sc
from healthqa.reports.severity import Policy
from healthqa.store.results import rule_of

CTX = RuleContext(as_of=pd.Timestamp("2026-11-25"))
COMMON = ("REF-ID-UNIQUE", "REF-STATUS-CODE", "REF-DIRECTION-CODE")


@pytest.fixture(scope="module")
def rules() -> list[suite.Rule]:
    return [r for r in suite.builtin("referral").rules if r.id in COMMON]


def _frame(types, statuses, ids=None, orgs=None) -> pd.DataFrame:
    n = len(types)
    return pd.DataFrame({"referral_id": ids or [f"ZZ{i}" for i in range(n)], "referral_type": types,
                         "status": statuses, "direction": ["1"] * n, "to_org": orgs or ["H2"] * n})


def _by_id(results) -> dict:
    return {r.rule.id: r for r in results}


def _stored_dicts(results) -> list[dict]:
    return [asdict(s) for s in _stored([TableValidation("drc", "referral", 0, {"method": "full"}, results)])]


def test_the_shipped_suite_splits_the_common_rules_as_the_code_list_maps_the_kinds():
    s = suite.builtin("referral")
    assert s.system_by is not None and s.system_by.default == "7"
    from healthqa import codelists

    assert s.system_by.map == codelists.load("referral_type")["systems"]
    split = {r.id for r in s.rules if r.system_by}
    # the per-kind loops and the resource centre's rules name their system and stay whole
    assert not split & {"REF-OUT-CLOSED-LOOP", "REF-IN-CLOSED-LOOP", "REF-EXAM-OPEN-LOOP", "REF-SLOT-EXISTS",
                        "REF-TO-ORG-REGISTERED", "REF-EXAM-ITEM-CODE"}
    assert set(COMMON) <= split
    listed = {r.id: r for r in suite.listed("referral")}
    assert listed["REF-STATUS-CODE"].parts == ("7", "8", "9") and listed["REF-IN-CLOSED-LOOP"].parts == ()


def test_a_bad_status_on_an_inpatient_referral_fails_in_system_9_not_7(rules):
    df = _frame(["1", "1", "2", "3", "3"], ["1", "2", "2", "9", "3"], orgs=["H1", "H2", "H2", "H3", "H3"])
    got = _by_id(validate_frame(df, "referral", rules, CTX, all_keys=True))
    seven, eight, nine = got["REF-STATUS-CODE"], got["REF-STATUS-CODE@8"], got["REF-STATUS-CODE@9"]
    assert (seven.rule.system, seven.status, seven.violations, seven.denominator) == ("7", "pass", 0, 2)
    assert (eight.rule.system, eight.status, eight.violations, eight.denominator) == ("8", "pass", 0, 1)
    assert (nine.rule.system, nine.status, nine.violations, nine.denominator) == ("9", "fail", 1, 2)
    assert nine.violating_keys == ["ZZ3"] and nine.by_org == {"H3": {"violations": 1, "denominator": 2}}
    assert nine.examples == [{"key": "ZZ3", "org": "H3", "values": {"status": "9", "referral_type": "3"}}]
    assert "H3" not in seven.by_org and seven.examples == [] and seven.error is None

    # scores per system: 9 loses the row, 7 and 8 are whole
    scored = {(s.level, s.subject): s for s in sc.score(sc.observations(_stored_dicts(list(got.values()))))}
    assert scored["system", "7"].conformance == 100.0 and scored["system", "8"].conformance == 100.0
    assert scored["system", "9"].violations == 1 and scored["system", "9"].conformance < 100.0
    # the finding is system 9's, at the institution of the row, and not system 7's
    found, covered = fd.candidates(_stored_dicts(list(got.values())), [], Policy.default(), {("drc", "referral")})
    assert [(c.subject, c.system, c.org) for c in found] == [("REF-STATUS-CODE@9", "9", "H3")]
    assert rule_of(found[0].subject) == "REF-STATUS-CODE"
    # system 7 read no row of H3 (its referrals are inpatient ones): nothing of 7's is blamed or cleared there
    assert fd.rule_fingerprint("drc", "referral", "REF-STATUS-CODE", "H3") not in covered | {c.fingerprint for c in found}
    assert fd.rule_fingerprint("drc", "referral", "REF-STATUS-CODE", "H2") in covered
    assert found[0].fingerprint == "rule:drc.referral:REF-STATUS-CODE@9:H3"


def test_a_referral_of_no_known_kind_counts_in_7_and_its_result_says_so(rules):
    df = _frame(["4", None, " 3 ", "1"], ["9", "9", "1", "1"])
    got = _by_id(validate_frame(df, "referral", rules, CTX, all_keys=True))
    seven = got["REF-STATUS-CODE"]
    assert (seven.status, seven.violations, seven.denominator, seven.violating_keys) == ("fail", 2, 3, ["ZZ0", "ZZ1"])
    assert "2 violating rows whose referral_type is missing or unknown are charged to the default system 7" in seven.error
    assert "计入默认系统 7" in seven.error
    assert [e["values"]["referral_type"] for e in seven.examples] == ["4", None]
    assert got["REF-STATUS-CODE@9"].denominator == 1 and got["REF-STATUS-CODE@9"].error is None  # " 3 " is 3


def test_a_referral_number_duplicated_across_kinds_charges_each_row_to_its_own_kind(rules):
    df = _frame(["1", "3", "2"], ["1", "1", "1"], ids=["ZZ1", " ZZ1", "ZZ2"])
    got = _by_id(validate_frame(df, "referral", rules, CTX, all_keys=True))
    assert got["REF-ID-UNIQUE"].violating_keys == ["ZZ1"] and got["REF-ID-UNIQUE@9"].violating_keys == [" ZZ1"]
    assert (got["REF-ID-UNIQUE@8"].violations, got["REF-ID-UNIQUE@8"].status) == (0, "pass")


def test_chunks_and_parts_give_the_one_pass_split(rules):
    df = _frame(["1", "3", "2", "3", "x", "1"], ["1", "9", "2", "9", "9", "2"],
                ids=["A", "A", "B", "C", "D", "C"], orgs=["H1", "H2", "H1", "H2", "H3", "H1"])
    one = {k: (r.status, r.violations, r.denominator, r.violating_keys, r.by_org, r.error)
           for k, r in _by_id(validate_frame(df, "referral", rules, CTX, all_keys=True)).items()}
    v = Validation("referral", rules, CTX, df.columns, all_keys=True)
    for lo, hi in ((0, 2), (2, 5), (5, 6)):
        v.add(df.iloc[lo:hi])
    chunked = {k: (r.status, r.violations, r.denominator, r.violating_keys, r.by_org, r.error)
               for k, r in _by_id(v.results()).items()}
    assert chunked == one
    # a table validated in two parts (rows disjoint) combines to the same
    parts = []
    for lo, hi in ((0, 3), (3, 6)):
        p = Validation("referral", rules, CTX, df.columns, all_keys=True)
        p.add(df.iloc[lo:hi].reset_index(drop=True))
        parts.append(p.partial())
    row_rules = [r for r in rules if r.id != "REF-ID-UNIQUE"]
    combined = {r.rule.id: (r.violations, r.denominator, r.error) for r in combine(row_rules, parts)}
    assert combined == {k: (v[1], v[2], v[5]) for k, v in one.items() if rule_of(k) != "REF-ID-UNIQUE"}
    assert one["REF-STATUS-CODE@9"][1:3] == (2, 2) and "1 violating rows" in one["REF-STATUS-CODE"][5]


def test_without_the_kind_column_every_row_counts_in_the_default_and_says_so(rules):
    df = _frame(["1", "3"], ["9", "1"]).drop(columns="referral_type")
    got = _by_id(validate_frame(df, "referral", [r for r in rules if r.id == "REF-STATUS-CODE"], CTX))
    assert (got["REF-STATUS-CODE"].violations, got["REF-STATUS-CODE"].denominator) == (1, 2)
    assert "default system 7" in got["REF-STATUS-CODE"].error
    assert got["REF-STATUS-CODE@9"].status == "not_applicable"


@pytest.mark.parametrize(("system_by", "message"), [
    ("{column: referral_kind, map: {1: '7'}}", "system_by.column: 'referral_kind' is not a column of drc.referral"),
    ("{column: referral_type, map: {1: '15'}}", "system_by.map.1: '15' is not one of the fourteen systems"),
    ("{column: referral_type, map: {1: '7'}, default: '0'}", "system_by.default: '0' is not one of the fourteen"),
    ("{column: referral_type, map: {}}", "system_by.map: "),
    ("{column: referral_type, map: {1: '7'}, by: x}", "system_by.by: Extra inputs are not permitted"),
])
def test_a_bad_system_by_is_an_error_when_the_suite_loads(system_by, message):
    text = (f"table: referral\nsystem: '7'\nsystem_by: {system_by}\nrules:\n  - id: SITE-REF-X\n    type: not_null\n"
            "    params: {column: status}\n    zh: 测试\n    en: test\n    dimension: 完整性\n"
            "    kahn: completeness/verification\n    standard: test\n    severity: 提示\n    threshold: 0\n")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        suite.parse("site/referral.yml", text)


def test_a_part_reads_as_its_rule_in_reports(rules):
    from types import SimpleNamespace

    from healthqa.reports.assess import describe

    results = [{"rule_id": "REF-STATUS-CODE@9", "table": "referral", "system": "9"},
               {"rule_id": "REF-STATUS-CODE", "table": "referral", "system": None}]
    describe(results, SimpleNamespace(validation=SimpleNamespace(suites=None)))
    assert results[0]["zh"] == results[1]["zh"] == "转诊状态代码在状态代码表内"
    assert (results[0]["system"], results[1]["system"]) == ("9", "7")
