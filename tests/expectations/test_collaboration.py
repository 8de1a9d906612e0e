"""The archive collaboration (issue 21): death registrations and archive moves against the MPI.

Small crafted registers, MPI and move records, written from the contract's description of 区域死亡档案协同
and 区域档案迁移协同 rather than from the demo generator: the references are made by their providers
from the crafted rows (as a validation makes them), each shipped rule flags exactly the rows that
break it, and a finding's example names both records, personal values masked.
"""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import validate_frame

from .crafted_rows import run_rule

AS_OF = pd.Timestamp("2026-11-25")
ID_A, ID_B, ID_C, ID_D = "11010519491231002X", "110105194912310037", "330211195001011234", "330211196002021236"

# the MPI: A's archive was closed at death, B's never was; C died but no registration names C;
# D has two active archives (the old institution never closed its own after D moved)
PERSON = pd.DataFrame({
    "archive_id": ["PA", "PB", "PC", "PD1", "PD2", "PE"],
    "id_number": [ID_A, " " + ID_B.lower(), ID_C, ID_D, ID_D, "330211197003031237"],
    "status_code": ["2", "1", "2", "1", "1", "3"],
    "death_date": ["2026-03-01", None, "2026-05-01", None, None, None],
    "org_code": ["S1", "S1", "S2", "S1", "S2", "S1"],
})
REGISTRATIONS = pd.DataFrame({
    "registration_id": ["R1", "R2", "R3", "R4"],
    "id_number": [ID_A, ID_B, "11010519800101001X", ID_A],
    "name": ["张三", "李四", "王五", "张三"],
    "death_date": ["2026-03-02", "2026-04-10", "2026-01-05", "2026-03-20"],
    "org_code": ["H1", "H1", "H2", "H1"],
    "cause_code": ["I21.9", None, "C34.9", "I21.9"],
    "registered_at": ["2026-03-03 10:00:00"] * 4,
})
MOVES = pd.DataFrame({
    "move_id": ["M1", "M2", "M3", "M4", "M5"],
    "archive_id": ["PE", "PD2", "PD2", "PB", "PA"],
    "org_code": ["S1", "S1", "S2", "S2", "S2"],
    "direction": ["1", "1", "2", "2", "2"],
    "from_org": ["S1", "S1", "S1", "S1", "330206A0001"],
    "to_org": ["330206A0001", "S2", "S2", "S2", "S2"],
    "move_date": ["2026-06-01", "2026-07-01", "2026-07-01", "2026-08-01", "2026-08-01"],
})
FOLLOWUPS = pd.DataFrame({
    "followup_id": ["F1", "F2", "F3", "F4", "F5"],
    "archive_id": ["PE", "PE", "PE", "PB", "PA"],
    "org_code": ["S1", "S1", "S2", "S1", "S1"],
    "followup_date": ["2026-05-20", "2026-06-15", "2026-06-20", "2026-05-01", "2026-03-01"],
})
ORGS = pd.DataFrame({"org_code": ["S1", "S2", "H1", "H2"], "active": [1, 1, 1, 1]})
ROWS = {"person": PERSON, "death_registration": REGISTRATIONS, "archive_move": MOVES, "organization": ORGS}


def violating(table: str, rule_id: str, df: pd.DataFrame) -> tuple[list[str], list[dict]]:
    res = run_rule(table, rule_id, df, ROWS, AS_OF)
    return sorted(res.violating_keys or []), res.examples


def test_a_registered_death_whose_archive_is_still_active():
    keys, examples = violating("death_registration", "DEATH-REG-ARCHIVE-CLOSED", REGISTRATIONS)
    assert keys == ["R2"]  # B's archive is active (its number written lower-case, with a space); A's closed
    (ex,) = examples
    assert ex["values"]["linked"] == "mpi.person PB"  # the finding names the archive too
    assert ex["values"]["id_number"] != ID_B and "*" in ex["values"]["id_number"]  # masked


def test_registered_and_archived_death_dates_differing_by_more_than_a_day():
    keys, examples = violating("death_registration", "DEATH-REG-DATE-AGREES", REGISTRATIONS)
    assert keys == ["R4"]  # R1 is a day off (tolerated); B's archive has no death date; R3 names no archive
    assert examples[0]["values"]["linked"] == "mpi.person PA"


def test_a_deceased_archive_without_a_registration_where_the_registrations_cover_its_death():
    keys, _ = violating("person", "MPI-DEATH-REGISTERED", PERSON)
    assert keys == ["PC"]
    # a death before the earliest registration (the source began later) is not judged
    early = PERSON.assign(death_date=PERSON["death_date"].replace({"2026-05-01": "2025-12-01"}))
    assert violating("person", "MPI-DEATH-REGISTERED", early)[0] == []
    # nor one too recent to be registered yet (within 30 days of the reference time)
    recent = PERSON.assign(death_date=PERSON["death_date"].replace({"2026-05-01": "2026-11-10"}))
    assert violating("person", "MPI-DEATH-REGISTERED", recent)[0] == []


@pytest.mark.parametrize(("table", "rule_id", "column"), [
    ("outpatient_visit", "OPV-NOT-AFTER-REGISTERED-DEATH", "visit_time"),
    ("inpatient_stay", "IPS-NOT-AFTER-REGISTERED-DEATH", "admit_time"),
    ("health_exam", "EXAM-NOT-AFTER-REGISTERED-DEATH", "exam_date"),
    ("chronic_followup", "FU-NOT-AFTER-REGISTERED-DEATH", "followup_date"),
])
def test_services_after_the_registered_death(table, rule_id, column):
    """B died on 2026-04-10 by the registration though the archive says nothing: a service on the
    day of death is plausible, one the day after is not; A's earliest registration (03-02) counts."""
    from healthqa import canonical

    key = canonical.table(table).key
    df = pd.DataFrame({key: ["S1", "S2", "S3", "S4"], "archive_id": ["PB", "PB", "PA", "PC"],
                       "org_code": ["S1"] * 4,
                       column: ["2026-04-10 20:00:00", "2026-04-11 09:00:00", "2026-03-03 09:00:00", "2026-09-01 09:00:00"]})
    keys, examples = violating(table, rule_id, df)
    assert keys == ["S2", "S3"]
    assert {e["values"]["linked"] for e in examples} == {"drc.death_registration R2", "drc.death_registration R1"}


def test_follow_ups_by_the_old_institution_after_the_move_out():
    keys, examples = violating("chronic_followup", "FU-NOT-AFTER-MOVE-OUT", FOLLOWUPS)
    assert keys == ["F2"]  # F1 before the move, F3 by another institution, PB and PA never moved out
    assert examples[0]["values"]["linked"] == "mpi.archive_move M1"


def test_a_move_in_without_its_move_out():
    keys, _ = violating("archive_move", "MOVE-IN-HAS-OUT", MOVES)
    assert keys == ["M4"]  # M3 has M2; M5 came from outside the district's register


def test_a_resident_left_with_two_active_archives_after_a_move():
    keys, examples = violating("archive_move", "MOVE-ONE-ACTIVE", MOVES)
    assert keys == ["M3"]  # PD2 moved in, PD1 is still active at S1
    assert examples[0]["values"]["linked"] == "mpi.person PD1"


def test_without_the_registrations_only_their_rules_cannot_run():
    """A site that maps no death registration: the rules that need one are errors that say why, the
    table's other rules run as usual."""
    from healthqa.expectations.references import Unavailable

    rules = suite.builtin("outpatient_visit").rules
    ctx = RuleContext(as_of=AS_OF, references={"person.registered_death_date": Unavailable(
        "no source maps death_registration")})
    from healthqa import canonical

    df = pd.DataFrame({c: [None] for c in canonical.table("outpatient_visit").columns}).assign(
        visit_id="V1", archive_id="PB", org_code="S1", visit_time="2026-04-11 09:00:00")
    results = {r.rule.id: r for r in validate_frame(df, "outpatient_visit", rules, ctx)}
    assert "death_registration" in results["OPV-NOT-AFTER-REGISTERED-DEATH"].error
    assert results["OPV-DX-REQUIRED"].status == "fail"


def test_the_archives_of_each_id_number_are_listed_sorted_and_once():
    """The examples' other archives (``person.archives_by_id_number``), made without a Python call per
    ID number (issue 23, part 4): an ID number of one archive lists it; of several, each archive
    number once, sorted, whatever the ID number's written form; blanks on either side are left out."""
    from healthqa.expectations.rule_types_registry import archives_by_id_number

    rows = pd.DataFrame({
        "archive_id": ["PB2", "PB1", "PB1", " PA ", "PC", None, "PE", ""],
        "id_number": [ID_B, ID_B.lower(), "  " + ID_B, ID_A, ID_C, ID_D, None, ID_D],
    })
    got = archives_by_id_number({"person": rows})
    assert got.index.is_unique
    assert got.to_dict() == {ID_A: "PA", ID_B: "PB1, PB2", ID_C: "PC"}
