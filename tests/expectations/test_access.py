"""The health-record browser's access log (issue 20): who opened whose archive, against the register
of practitioners, the MPI and the care records.

Small crafted registers, archives, care records and accesses, written from the issue's text (a
registered doctor in post at the accessing institution; a care relationship within 90 days before
to 30 days after; at most 50 archives per user-hour; closed archives noted) rather than from the demo
generator, and shaped unlike it: codes in lower case or with spaces, times with UTC offsets or
unreadable, care tables missing, empty tables. The references are made by their providers from the
crafted rows, as a validation makes them.
"""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import validate_frame

from .crafted_rows import context, run_rule

AS_OF = pd.Timestamp("2026-11-25")

REGISTER = pd.DataFrame({
    "doctor_id": ["YS0001", "YS0002 ", "YS0003", "YS0004", "YS0004"],
    "org_code": ["H1", " H1", "S1", "S1", "H1"],  # YS0004 practises at two institutions (多点执业)
    "name": ["王伟", "李娜", "张敏", "刘洋", "刘洋"],
    "active": [1, "true", 0, "是", "1"],
})
PERSON = pd.DataFrame({
    "archive_id": ["PA", "PB", "PC", "PD", "PE"],
    "status_code": ["1", "1", "2", "3", "2"],
    "death_date": [None, None, "2026-10-01", None, None],
})
VISITS = pd.DataFrame({"archive_id": ["PA", "PB "], "org_code": ["H1", " H1"],
                       "visit_time": ["2026-10-01 09:00:00", "2026-11-01T01:00:00Z"]})
STAYS = pd.DataFrame({"archive_id": ["PC"], "org_code": ["H1"], "admit_time": ["2026-06-01 10:00:00"],
                      "discharge_time": ["2026-09-20 10:00:00"]})
FOLLOWUPS = pd.DataFrame({"archive_id": ["PA", "PA"], "org_code": ["S1", "S1"],
                          "followup_date": ["not a date", "2026-01-05"]})
ROWS = {"practitioner": REGISTER, "person": PERSON, "outpatient_visit": VISITS, "inpatient_stay": STAYS,
        "chronic_followup": FOLLOWUPS}


def violating(rule_id: str, df: pd.DataFrame, rows=ROWS) -> list[str]:
    res = run_rule("record_access", rule_id, df, rows, AS_OF, statuses=("pass", "fail", "not_applicable"))
    return sorted(res.violating_keys or [])


def accesses(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"access_id": [f"D{i}" for i in range(1, n + 1)], **cols})


def test_a_doctor_in_post_at_the_accessing_institution():
    df = accesses(doctor_id=["YS0001", "YS0002", " YS0001", "YS0003", "YS0001", "YS0004", "YS0004", "YS9999", "ys0001"],
                  org_code=["H1", "H1 ", "H1", "S1", "S1", "S1", "H1", "H1", "H1"])
    # D4: YS0003 left S1; D5: YS0001 is registered at H1, not S1; D8 and D9 (another number than
    # YS0001) are unregistered, a rule of its own; spaces around a code do not make another code
    assert violating("ACCESS-DOCTOR-OF-ORG", df) == ["D4", "D5"]
    assert violating("ACCESS-DOCTOR-REGISTERED", df) == ["D8", "D9"]


def test_care_relationship_window_and_exempt_purposes():
    df = accesses(
        archive_id=["PA", "PA", "PA", "PB", "PB", "PA", "PB", "PZ", "PA", "PA"],
        org_code=["H1", "H1", "H1", "H1", "S1", "S1", "S1", "H1", " H1", "H1"],
        accessed_at=["2026-10-01 08:00:00", "2026-12-30 09:00:00", "2026-12-31 00:00:00", "2026-10-02T16:30:00Z",
                     "2026-11-02 09:00:00", "2026-02-01 09:00:00", "2026-11-02 09:00:00", "2026-11-02 09:00:00",
                     "2026-09-01 09:00:00", "yesterday"],
        purpose_code=["1", "1", "1", "1", "1", "1", "3", "1", None, "1"])
    # D1 the day of the visit; D2 90 days after it (the window's last day), D3 the day after that; D4 the
    # visit (given in UTC: 11-01 09:00 local) 30 days after the access; D5 no care at S1; D6 a follow-up
    # 27 days before, the unreadable one not counted; D7 public health (exempt); D8 an archive the MPI
    # lacks (its own rule); D9 a code with a space, no purpose (not exempt), 30 days before the visit;
    # D10 an unreadable time
    assert violating("ACCESS-CARE-RELATIONSHIP", df) == ["D10", "D3", "D5"]


def test_care_from_whichever_care_tables_are_mapped():
    df = accesses(archive_id=["PA", "PA", "PC"], org_code=["H1", "S1", "H1"],
                  accessed_at=["2026-10-05 09:00:00", "2026-01-20 09:00:00", "2026-12-10 09:00:00"],
                  purpose_code=["1", "1", "1"])
    # PC's discharge (09-20) is care as its admission is; without the follow-ups S1's access has none
    assert violating("ACCESS-CARE-RELATIONSHIP", df) == []
    only_visits = {k: v for k, v in ROWS.items() if k not in ("chronic_followup", "inpatient_stay")}
    assert violating("ACCESS-CARE-RELATIONSHIP", df, only_visits) == ["D2", "D3"]
    empty = dict(only_visits, outpatient_visit=VISITS.iloc[:0])
    assert violating("ACCESS-CARE-RELATIONSHIP", df, empty) == ["D1", "D2", "D3"]


def test_bulk_access_flags_the_whole_user_hour():
    n = 51
    df = accesses(doctor_id=["YS0001"] * (n - 1) + [" YS0001", "YS0001 ", "YS0002"],
                  archive_id=[f"P{i}" for i in range(n)] + ["P0", "P0"],
                  accessed_at=["2026-11-20 14:00:00"] * (n - 1) + ["2026-11-20T06:59:59+00:00",
                                                                   "2026-11-20 15:00:00", "2026-11-20 14:10:00"])
    got = violating("ACCESS-BULK", df)
    assert len(got) == n and "D52" not in got and "D53" not in got  # the next hour and another user are apart
    assert violating("ACCESS-BULK", df.iloc[1:]) == []  # 50 distinct archives in the hour: within the limit


def test_bulk_access_is_judged_in_any_60_minutes_not_the_clock_hour():
    """A session straddling 11:00 (30 openings before, 30 after) is one session of 60; a steady 40
    openings an hour all day is not a burst; the same archive opened again counts once."""
    straddling = [f"2026-11-20 10:{40 + i // 2:02d}:{(i % 2) * 30:02d}" for i in range(30)]
    straddling += [f"2026-11-20 11:{i // 2:02d}:{(i % 2) * 30:02d}" for i in range(30)]
    steady = [str(pd.Timestamp("2026-11-20 08:00") + pd.Timedelta(seconds=90 * i)) for i in range(320)]
    again = ["2026-11-20 09:00:00"] * 50 + ["2026-11-20 09:30:00"] * 20
    df = accesses(doctor_id=["YS0001"] * 60 + ["YS0002"] * 320 + ["YS0003"] * 70,
                  archive_id=[f"P{i}" for i in range(60)] + [f"Q{i}" for i in range(320)]
                  + [f"R{i}" for i in range(50)] + [f"R{i}" for i in range(20)],
                  accessed_at=straddling + steady + again)
    assert sorted(violating("ACCESS-BULK", df)) == sorted(f"D{i}" for i in range(1, 61))
    # 59 minutes 59 seconds later the 51st archive is in the window; a whole hour later it is not
    edge = accesses(doctor_id=["YS0004"] * 51, archive_id=[f"S{i}" for i in range(51)],
                    accessed_at=["2026-11-20 14:00:00"] * 50 + ["2026-11-20 14:59:59"])
    assert len(violating("ACCESS-BULK", edge)) == 51
    assert violating("ACCESS-BULK", edge.assign(accessed_at=["2026-11-20 14:00:00"] * 50 + ["2026-11-20 15:00:00"])) == []


def test_closed_archives_are_noted_after_they_closed():
    df = accesses(archive_id=["PA", "PC", "PC", "PD", "PE", "PZ", "PC"],
                  accessed_at=["2026-11-20 09:00:00", "2026-10-01 23:00:00", "2026-10-02 08:00:00",
                               "2026-11-20 09:00:00", "2026-11-20 09:00:00", "2026-11-20 09:00:00", "?"])
    # D2 on the day of death (open then); D3 the day after; D4 moved out; D5 deceased without a date;
    # D6 unknown to the MPI; D7 unreadable
    assert violating("ACCESS-CLOSED-ARCHIVE", df) == ["D3", "D4", "D5", "D7"]


def test_an_empty_log_and_a_log_without_optional_columns():
    empty = accesses(archive_id=[], org_code=[], accessed_at=[], doctor_id=[], purpose_code=[])
    for rule in ("ACCESS-CARE-RELATIONSHIP", "ACCESS-BULK", "ACCESS-CLOSED-ARCHIVE", "ACCESS-DOCTOR-OF-ORG"):
        assert violating(rule, empty) == []
    no_purpose = accesses(archive_id=["PB"], org_code=["S1"], accessed_at=["2026-11-02 09:00:00"])
    rules = [r for r in suite.builtin("record_access").rules if r.id == "ACCESS-CARE-RELATIONSHIP"]
    (res,) = validate_frame(no_purpose, "record_access", rules, context(rules, ROWS, AS_OF), all_keys=True,
                            missing_columns={"purpose_code": "dymd"})
    assert res.status == "error" and "purpose_code" in res.error  # an unmapped purpose is said, not assumed


@pytest.mark.parametrize("viewed,bad", [("01,02", False), (" 04 ", False), ("01，02", True), ("01,,02", True),
                                        ("99,100", True)])
def test_what_was_viewed_is_a_list_of_codes(viewed, bad):
    assert violating("ACCESS-VIEWED-CODES", accesses(viewed=[viewed])) == (["D1"] if bad else [])


def test_a_practitioner_registered_at_two_institutions_is_no_duplicate():
    """多点执业: one row per (doctor, institution); the same doctor twice at one institution is."""
    rules = [r for r in suite.builtin("practitioner").rules if r.id == "PRAC-POST-UNIQUE"]
    (res,) = validate_frame(REGISTER, "practitioner", rules, RuleContext(as_of=AS_OF), all_keys=True)
    assert res.violations == 0  # YS0004 at S1 and at H1
    twice = REGISTER.assign(org_code=["H1", " H1", "S1", "S1", "S1 "])
    (res,) = validate_frame(twice, "practitioner", rules, RuleContext(as_of=AS_OF), all_keys=True)
    assert res.violations == 2


def test_register_findings_and_extracts_mask_the_practitioners_name():
    from healthqa.masking import mask_frame

    rules = [r for r in suite.builtin("practitioner").rules if r.id == "PRAC-POST-UNIQUE"]
    (res,) = validate_frame(REGISTER.assign(doctor_id=["YS0001", "YS0001", "YS3", "YS4", "YS5"]), "practitioner",
                            rules, RuleContext(as_of=AS_OF), all_keys=True)
    assert res.violations == 2
    shown = " ".join(str(e["values"]) for e in res.examples)
    assert "王伟" not in shown and "李娜" not in shown
    masked = mask_frame(REGISTER, "practitioner")  # what any extract of the register shows
    assert not set(masked["name"]) & set(REGISTER["name"]) and masked["doctor_id"].tolist() == REGISTER["doctor_id"].tolist()
