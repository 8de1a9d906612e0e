"""The OHDSI DQD check types (issue 19): every type of DQD's catalogue is mapped — realised by rules or
said not to apply, with the reason — and a small crafted set built from the standards, not from the
demo generator, is caught by the new families' rules with no clean record flagged."""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.errors import ConfigError
from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import validate_frame

# the checkName column of DataQualityDashboard's inst/csv/OMOP_CDMv5.4_Check_Descriptions.csv, and the
# planned-values check the issue names
DQD = ["cdmTable", "measurePersonCompleteness", "measureConditionEraCompleteness", "measureObservationPeriodOverlap",
       "cdmField", "isRequired", "cdmDatatype", "isPrimaryKey", "isForeignKey", "fkDomain", "fkClass",
       "isStandardValidConcept", "measureValueCompleteness", "standardConceptRecordCompleteness",
       "sourceConceptRecordCompleteness", "sourceValueCompleteness", "plannedValuesCompleteness", "plausibleValueLow",
       "plausibleValueHigh", "plausibleTemporalAfter", "plausibleDuringLife", "withinVisitDates", "plausibleAfterBirth",
       "plausibleBeforeDeath", "plausibleStartBeforeEnd", "plausibleGender", "plausibleGenderUseDescendants",
       "plausibleUnitConceptIds"]

RULES = [r for t in suite.builtin_tables() for r in suite.builtin(t).rules]


def test_every_dqd_check_type_is_realised_or_said_not_to_apply():
    types = suite.dqd_check_types()
    assert set(DQD) == set(types)
    realised = {c for r in RULES for c in r.dqd_types}
    for name, ct in types.items():
        if ct["applies"]:
            assert name in realised or ct.get("realised_by"), f"{name} applies but no rule realises it"
        else:
            assert ct.get("why") and name not in realised, name
    for rule_type, names in suite.dqd_catalogue()["by_rule_type"].items():
        assert set(names) <= set(types), rule_type
        assert any(r.type == rule_type for r in RULES), f"{rule_type}: no shipped rule of this type"


def test_a_rule_names_only_dqd_check_types():
    text = """
table: person
rules:
  - id: SITE-X
    type: not_null
    params: {column: name}
    zh: 姓名
    en: name
    dimension: 完整性
    kahn: completeness/verification
    standard: x
    severity: 提示
    threshold: 0
    dqd: [isRequierd]
"""
    with pytest.raises(ConfigError, match=r"SITE-X\.dqd: isRequierd is not a DQD check type"):
        suite.parse("site/person.yml", text)


AS_OF = pd.Timestamp("2026-11-25")


def row(**values):
    return values


CLEAN = row(status_code="1", death_date=None, birth_date="1985-03-02", created_at="2020-01-01 10:00:00",
             updated_at="2026-11-01 10:00:00", id_type_code="01", id_number="11010519491231002X",
             phone="13812345678", address="浙江省宁波市镇海区骆驼街道骆兴路1号", adcode="330211003")
# clean records of kinds the demo generator never made, from the standards
VALID = {
    "passport": row(id_type_code="03", id_number="E12345678", phone="19912345678"),
    "foreign-passport": row(id_type_code="03", id_number="533380006"),
    "hk-permit": row(id_type_code="06", id_number="H12345678", phone="0574-86123456"),
    "tw-permit": row(id_type_code="07", id_number="01234567"),
    "deceased": row(status_code="2", death_date="2025-05-01"),
    "moved-away": row(status_code="3"),
    "epoch-birthday": row(birth_date="1970-01-01", id_number="11010519700101002X"),  # the ID number vouches for it
    "town": row(address="镇海区九龙湖镇汶溪村", adcode="330211101"),
    "chongqing": row(address="重庆市江北区观音桥步行街8号", adcode="500105"),
    "street-only": row(address="庄市街道兴庄路3号", adcode="330211004"),
    "satellite": row(phone="17401234567"),
}
# one defect per record: the record, and the rule that must find it
DEFECTS = {
    "created-after-update": (row(created_at="2026-11-02 10:00:00"), "MPI-CREATED-BEFORE-UPDATED"),
    "created-future": (row(created_at="2027-01-01 10:00:00", updated_at="2027-01-02 10:00:00"), "MPI-CREATED-NOT-FUTURE"),
    "death-future": (row(status_code="2", death_date="2027-03-01"), "MPI-DEATH-NOT-FUTURE"),
    "active-dead": (row(death_date="2024-06-01"), "MPI-ALIVE-NO-DEATH-DATE"),
    "birth-default": (row(birth_date="1753-01-01"), "MPI-BIRTH-PLACEHOLDER"),
    "passport-with-id": (row(id_type_code="03", id_number="11010519491231002X"), "MPI-ID-FORM-BY-TYPE"),
    "id-card-with-passport": (row(id_type_code="01", id_number="E98765432"), "MPI-ID-FORM-BY-TYPE"),
    "mobile-154": (row(phone="15400001111"), "MPI-PHONE-MOBILE-PREFIX"),
    "mobile-120": (row(phone="12012345678"), "MPI-PHONE-MOBILE-PREFIX"),
    "beilun-address": (row(address="浙江省宁波市北仑区新碶街道明州路18号"), "MPI-ADDRESS-AREA"),
    "other-street": (row(address="宁波市镇海区招宝山街道车站路5号"), "MPI-ADDRESS-AREA"),
}
FAMILY_RULES = {"MPI-CREATED-BEFORE-UPDATED", "MPI-CREATED-NOT-FUTURE", "MPI-UPDATED-NOT-FUTURE", "MPI-DEATH-NOT-FUTURE",
                "MPI-ALIVE-NO-DEATH-DATE", "MPI-BIRTH-PLACEHOLDER", "MPI-DEATH-PLACEHOLDER", "MPI-ID-FORM-BY-TYPE",
                "MPI-PHONE-MOBILE-PREFIX", "MPI-ADDRESS-AREA", "MPI-DEATH-DATE-REQUIRED", "MPI-DEATH-AFTER-BIRTH",
                "MPI-BIRTH-BEFORE-CREATED"}


def test_a_crafted_person_set_is_caught_whole_and_no_clean_record_flagged():
    rows = {k: {**CLEAN, **v} for k, v in VALID.items()} | {k: {**CLEAN, **v} for k, (v, _) in DEFECTS.items()}
    df = pd.DataFrame([{"archive_id": k, **v} for k, v in rows.items()])
    rules = [r for r in suite.builtin("person").rules if r.id in FAMILY_RULES]
    found = {r.rule.id: set(r.violating_keys) for r in
             validate_frame(df, "person", rules, RuleContext(as_of=AS_OF), all_keys=True)}
    expected = {rid: {k for k, (_, rule) in DEFECTS.items() if rule == rid} for rid in FAMILY_RULES}
    expected["MPI-UPDATED-NOT-FUTURE"] = {"created-future"}  # the future creation came with a future update
    assert found == expected


def test_a_crafted_visit_set_is_caught_whole_and_no_clean_record_flagged():
    visits = pd.DataFrame([
        # clean: a woman's delivery, a man's prostate, a national-clinical-edition code, sex not stated
        row(visit_id="V1", archive_id="W", org_code="A1", diagnosis_code="O80.x00", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V2", archive_id="M", org_code="A1", diagnosis_code="N40.x00", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V3", archive_id="U", org_code="A1", diagnosis_code="O80", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V4", archive_id="M", org_code="A1", diagnosis_code="N39.0", visit_time="2026-11-20 09:00:00"),
        # defects: a re-sent id, pregnancy / ovary for a man, testis for a woman, a closed clinic, a future visit
        row(visit_id="V5", archive_id="M", org_code="A1", diagnosis_code="I10", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V5", archive_id="M", org_code="A1", diagnosis_code="J06.9", visit_time="2026-11-21 09:00:00"),
        row(visit_id="V6", archive_id="M", org_code="A1", diagnosis_code="O26.900", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V7", archive_id="M", org_code="A1", diagnosis_code="N83.2", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V8", archive_id="W", org_code="A1", diagnosis_code="C62.9", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V9", archive_id="W", org_code="CLOSED", diagnosis_code="J06.9", visit_time="2026-11-20 09:00:00"),
        row(visit_id="V10", archive_id="W", org_code="A1", diagnosis_code="J06.9", visit_time="2027-02-01 09:00:00"),
    ])
    ctx = RuleContext(as_of=AS_OF, references={
        "person.sex_code": pd.Series({"W": "2", "M": "1", "U": "9"}), "organization.inactive": {"CLOSED"}})
    ids = {"OPV-VISIT-ID-UNIQUE", "OPV-DX-SEX", "OPV-ORG-ACTIVE", "OPV-VISIT-NOT-FUTURE"}
    rules = [r for r in suite.builtin("outpatient_visit").rules if r.id in ids]
    found = {r.rule.id: set(r.violating_keys) for r in validate_frame(visits, "outpatient_visit", rules, ctx, all_keys=True)}
    assert found == {"OPV-VISIT-ID-UNIQUE": {"V5"}, "OPV-DX-SEX": {"V6", "V7", "V8"}, "OPV-ORG-ACTIVE": {"V9"},
                     "OPV-VISIT-NOT-FUTURE": {"V10"}}


def test_an_address_is_judged_against_each_rows_own_code():
    """The address rule judges each distinct (areas named, area code) once (issue 23, part 4): the same
    address under a code it agrees with and one it does not is still judged row by row."""
    beilun, zhenhai = "浙江省宁波市北仑区新碶街道明州路18号", "宁波市镇海区庄市街道兴庄路9号"
    cases = {"z-ok": (zhenhai, "330211"), "b-bad": (beilun, "330211"), "b-ok": (beilun, "330206"),
             "z-bad": (zhenhai, "330206"), "b-bad2": (beilun, "330211"), "z-ok2": (zhenhai, "330211004")}
    df = pd.DataFrame([{**CLEAN, "archive_id": k, "address": a, "adcode": c} for k, (a, c) in cases.items()])
    rules = [r for r in suite.builtin("person").rules if r.id == "MPI-ADDRESS-AREA"]
    (res,) = validate_frame(df, "person", rules, RuleContext(as_of=AS_OF), all_keys=True)
    assert res.denominator == 6 and set(res.violating_keys) == {"b-bad", "z-bad", "b-bad2"}
