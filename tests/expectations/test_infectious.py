"""Infectious-disease reporting (issue 20, system 13): report cards against the visits, stays and MPI.

Small crafted cards, visits and stays, written from 《传染病信息报告管理规范（2015年版）》 (2 hours for class
A and B managed as A, 24 for other B and C; one card per case) rather than from the demo generator:
the references are made by their providers from the crafted rows (as a validation makes them), each
shipped rule flags exactly the rows that break it, and a finding's example names the other card.
Adversarial on purpose: UTC offsets, unreadable times, ID numbers with spaces and a lower-case x,
deleted cards, national clinical edition codes, an empty table, a missing column.
"""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa import canonical
from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.rule_types_infectious import notifiable
from healthqa.expectations.runner import validate_frame

from .crafted_rows import context, run_rule

AS_OF = pd.Timestamp("2026-11-25")
ID_A, ID_B, ID_C = "11010519491231002X", "110105194912310037", "330211195001011234"

PERSON = pd.DataFrame({"archive_id": ["PA", "PB", "PC", "PD", "PE"]})
ORGS = pd.DataFrame({"org_code": ["H1", "H2"]})
CARDS = pd.DataFrame([
    # card, archive, ID number, code, diagnosed, reported, status, institution
    ("C8", "PA", ID_A, "A15.0", "2026-08-01 09:00:00", "2026-08-01 15:00:00", "1", "H1"),   # PA's tuberculosis
    ("C1", "PA", ID_A, "A15.000", "2026-11-01 09:00:00", "2026-11-01 20:00:00", "1", "H1"),  # 92 days later: a new card
    ("C2", None, " " + ID_A.lower(), "A16.2", "2026-11-05 09:00:00", "2026-11-05 10:00:00", "1", "H2"),  # C1 again
    ("C3", "PB", ID_B, "A00.9", "2026-11-10 09:00:00", "2026-11-10T03:30:00Z", "1", " H1 "),  # cholera, 2.5 h
    ("C4", "PB", ID_B, "A00.9", "2026-11-10 10:00:00", "2026-11-10 11:00:00", "2", "H1"),  # deleted: no report
    ("C5", "PX", ID_C, "B05.9", "2026-10-01 08:00:00", "2026-10-01 12:00:00", "1", "H2"),  # archive unknown
    ("C6", "PC", ID_C, "A15.0", "not a time", "2026-11-02 10:00:00", "1", "ZZ9"),  # unregistered reporter
    ("C7", "PA", ID_A, "I10", "2026-11-03 09:00:00", "2026-11-03 10:00:00", "1", "H1"),  # not notifiable
    ("C9", "PE", None, "A22.1", "2026-11-11 09:00:00", "2026-11-11 12:00:00", "1", "H1"),  # 肺炭疽: 2 h
], columns=["card_id", "archive_id", "id_number", "diagnosis_code", "diagnosis_time", "reported_at", "status",
            "org_code"])
VISITS = pd.DataFrame([
    ("V1", "PA", "A15.0", "2026-11-20 10:00:00"),  # a later visit of the reported case
    ("V2", "PB", "A00.9", "2026-11-10 09:00:00"),  # its card 2.5 h later, the timely one deleted
    ("V3", "PD", "J10.1", "2026-11-15 10:00:00"),  # influenza, never reported
    ("V4", "PD", "J10.1", "2026-11-24T10:00:00+08:00"),  # the limit has not passed yet
    ("V5", "PE", "I10", "2026-11-01 10:00:00"),  # not notifiable
    ("V6", "PD", "B26.9", "garbage"),  # unreadable time: the time rules' business
    ("V7", "PE", "A22.100", "2026-11-11 08:30:00"),  # reported at 12:00, 3.5 h: late
], columns=["visit_id", "archive_id", "diagnosis_code", "visit_time"])
STAYS = pd.DataFrame([
    ("S1", "PA", "A15.0", "2026-10-20 08:00:00", "2026-11-02 08:00:00"),
    ("S2", "PB", "B16.9", "2026-10-01 08:00:00", "2026-10-15 08:00:00"),
], columns=["stay_id", "archive_id", "diagnosis_code", "admit_time", "discharge_time"])
ROWS = {"person": PERSON, "organization": ORGS, "infectious_report": CARDS}


def violating(table: str, rule_id: str, df: pd.DataFrame) -> tuple[list[str], list[dict]]:
    res = run_rule(table, rule_id, df, ROWS, AS_OF)
    return sorted(res.violating_keys or []), res.examples


@pytest.mark.parametrize("code,expected", [
    ("A22.1", ("pulmonary_anthrax", 2)), ("A22.100x001", ("pulmonary_anthrax", 2)), ("A22.0", ("anthrax", 24)),
    ("A00.9", ("cholera", 2)), ("U04.9", ("sars", 2)), (" a15.000 ", ("pulmonary_tb", 24)),
    ("A97.0", ("dengue", 24)), ("A91", ("dengue", 24)), ("B08.4", ("hfmd", 24)), ("B08.5", None),
    ("A09.9", None), ("J09", None), ("A1S.0", None), ("", None), (None, None), ("I10", None)])
def test_the_notifiable_list_knows_each_disease_its_class_and_leaves_out_doubtful_codes(code, expected):
    assert notifiable(code) == expected


def test_a_notifiable_visit_without_a_card_within_the_limit():
    keys, examples = violating("outpatient_visit", "OPV-INFECTIOUS-REPORTED", VISITS)
    assert keys == ["V2", "V3", "V7"]
    linked = {e["key"]: e["values"].get("linked") for e in examples}
    assert linked["V2"] == "drc.infectious_report C3"  # the late card, not the deleted one
    assert linked["V3"] is None


def test_a_stay_counts_the_limit_from_discharge():
    assert violating("inpatient_stay", "IPS-INFECTIOUS-REPORTED", STAYS)[0] == ["S2"]


def test_card_rules_flag_exactly_the_cards_that_break_them():
    assert violating("infectious_report", "INF-REPORT-TIMELY", CARDS)[0] == ["C3", "C9"]
    assert violating("infectious_report", "INF-ARCHIVE-EXISTS", CARDS)[0] == ["C5"]
    assert violating("infectious_report", "INF-DX-NOTIFIABLE", CARDS)[0] == ["C7"]
    assert violating("infectious_report", "INF-ORG-REGISTERED", CARDS)[0] == ["C6"]  # " H1 " is H1
    assert violating("infectious_report", "INF-DIAGNOSIS-NOT-FUTURE", CARDS)[0] == ["C6"]


def test_a_duplicate_card_names_the_first_card_of_the_case_and_masks_the_id_number():
    keys, examples = violating("infectious_report", "INF-CARD-UNIQUE", CARDS)
    assert keys == ["C2"]  # by the normalised ID number; C4 is deleted; C1 is 92 days after C8
    (ex,) = examples
    assert ex["values"]["linked"] == "drc.infectious_report C1"
    assert ID_A[6:14] not in str(ex["values"])


def test_an_empty_card_table_and_a_missing_column():
    rules = suite.builtin("infectious_report").rules
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in canonical.table("infectious_report").columns})
    for r in validate_frame(empty, "infectious_report", rules, context(rules, ROWS, AS_OF)):
        assert r.status == "not_applicable" and r.violations == 0, (r.rule.id, r.status, r.error)
    res = {r.rule.id: r for r in validate_frame(CARDS.drop(columns="diagnosis_time"), "infectious_report", rules,
                                                context(rules, ROWS, AS_OF), missing_columns={"diagnosis_time": "zdsj"})}
    assert res["INF-REPORT-TIMELY"].status == "error" and res["INF-CARD-UNIQUE"].status == "error"
    assert res["INF-ARCHIVE-EXISTS"].status == "fail"


def test_without_the_cards_only_the_reporting_rule_cannot_run():
    from healthqa.expectations.references import Unavailable

    rules = suite.builtin("outpatient_visit").rules
    ctx = RuleContext(as_of=AS_OF, references={"infectious_report.first_report_date": Unavailable(
        "no source maps infectious_report")})
    df = pd.DataFrame({c: [None] for c in canonical.table("outpatient_visit").columns}).assign(
        visit_id="V1", archive_id="PA", org_code="H1", visit_time="2026-11-20 09:00:00")
    results = {r.rule.id: r for r in validate_frame(df, "outpatient_visit", rules, ctx)}
    assert "infectious_report" in results["OPV-INFECTIOUS-REPORTED"].error
    assert results["OPV-DX-REQUIRED"].status == "fail"
