"""Which rules find each defect family the generator injects, and how the audit of a demo night
compares with the truth: per family the rows injected and the rows its rules flagged, per kind of
valid record how many any rule flagged.

Rule ids are names here, not imports: the generator stays apart from the rules it is measured against
(the import contract). ``tests/expectations/test_validation.py`` holds each rule to exactly its
family's rows; ``healthqa demo`` prints this module's summary of the night it ran, from the counts and
keys its results keep (no second validation: the demo costs what it did). The night watches the
valid records (``watched``: RuleContext.watch), so each rule's result keeps every valid record it
flagged however many rows it flagged, and the false flags are counted exactly, not among the 50
sample keys only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from healthqa.store.results import rule_of

# family (truth/defects.csv) -> the rules that find it, in any table (docs/domain.md "What goes wrong")
RULES: dict[str, tuple[str, ...]] = {
    "adcode_invalid": ("MPI-ADCODE-EXISTS",),
    "adcode_outside_district": ("MPI-ADCODE-IN-DISTRICT",),
    "address_area_mismatch": ("MPI-ADDRESS-AREA",),
    "address_missing": ("MPI-ADDRESS-REQUIRED",),
    "alive_with_death_date": ("MPI-ALIVE-NO-DEATH-DATE",),
    "archive_id_duplicate": ("MPI-ARCHIVE-UNIQUE",),
    "archive_id_format": ("MPI-ARCHIVE-FORMAT",),
    "birth_after_created": ("MPI-BIRTH-BEFORE-CREATED",),
    "birth_implausible": ("MPI-BIRTH-PLAUSIBLE",),
    "birth_placeholder": ("MPI-BIRTH-PLACEHOLDER",),
    "bmi_inconsistent": ("EXAM-BMI",),
    "bp_inverted": ("EXAM-BP-ORDERED", "FU-BP-ORDERED"),
    "bp_out_of_range": ("EXAM-SBP-RANGE", "EXAM-DBP-RANGE"),
    "created_after_updated": ("MPI-CREATED-BEFORE-UPDATED",),
    "created_in_future": ("MPI-CREATED-NOT-FUTURE",),
    "created_placeholder": ("MPI-CREATED-PLACEHOLDER",),
    "death_archive_active": ("DEATH-REG-ARCHIVE-CLOSED",),
    "death_before_birth": ("MPI-DEATH-AFTER-BIRTH",),
    "death_date_disagrees": ("DEATH-REG-DATE-AGREES",),
    "death_date_missing": ("MPI-DEATH-DATE-REQUIRED",),
    "death_in_future": ("MPI-DEATH-NOT-FUTURE",),
    "death_placeholder": ("MPI-DEATH-PLACEHOLDER",),
    "death_unregistered": ("MPI-DEATH-REGISTERED",),
    "diagnosis_malformed": ("OPV-DX-FORMAT", "IPS-DX-FORMAT", "REF-DX-FORMAT"),
    "diagnosis_missing": ("OPV-DX-REQUIRED",),
    "diagnosis_name_mismatch": ("OPV-DX-NAME", "IPS-DX-NAME"),
    "diagnosis_sex_implausible": ("OPV-DX-SEX", "IPS-DX-SEX"),
    "diagnosis_unknown": ("OPV-DX-CATEGORY",),
    "discharge_before_admit": ("IPS-DISCHARGE-AFTER-ADMIT",),
    "ethnicity_invalid": ("MPI-ETHNICITY-CODE",),
    "event_in_future": ("OPV-VISIT-NOT-FUTURE", "IPS-ADMIT-NOT-FUTURE", "IPS-DISCHARGE-NOT-FUTURE",
            "LAB-SAMPLE-NOT-FUTURE", "LAB-REPORT-NOT-FUTURE", "EXAM-DATE-NOT-FUTURE", "FU-DATE-NOT-FUTURE"),
    "feed_silent": ("ORG-FEED-ACTIVE",),
    "followup_after_move": ("FU-NOT-AFTER-MOVE-OUT",),
    "glucose_out_of_range": ("EXAM-GLUCOSE-RANGE", "FU-GLUCOSE-RANGE"),
    "height_out_of_range": ("EXAM-HEIGHT-RANGE",),
    "id_birth_mismatch": ("MPI-ID-BIRTH",),
    "id_format": ("MPI-ID-FORM",),
    "id_invalid": ("MPI-ID-VALID",),
    "id_legacy_15": ("MPI-ID-LEGACY15",),
    "id_missing": ("MPI-ID-REQUIRED",),
    "id_sex_mismatch": ("MPI-ID-SEX",),
    "id_shared_active": ("MPI-ID-ONE-ACTIVE",),
    "id_type_mismatch": ("MPI-ID-FORM-BY-TYPE",),
    "lab_flag_inconsistent": ("LAB-FLAG-CONSISTENT",),
    "lab_range_inverted": ("LAB-RANGE-ORDERED",),
    "lab_unit_invalid": ("LAB-UNIT",),
    "lab_value_non_numeric": ("LAB-VALUE-NUMERIC",),
    "marital_invalid": ("MPI-MARITAL-CODE",),
    "move_in_without_out": ("MOVE-IN-HAS-OUT",),
    "name_dot_variant": ("MPI-NAME-FORM",),
    "name_invalid": ("MPI-NAME-PLAUSIBLE",),
    "name_missing": ("MPI-NAME-REQUIRED",),
    "name_placeholder": ("MPI-NAME-PLACEHOLDER",),
    "next_date_not_after": ("FU-NEXT-AFTER",),
    "org_inactive": ("OPV-ORG-ACTIVE", "IPS-ORG-ACTIVE", "LAB-ORG-ACTIVE", "EXAM-ORG-ACTIVE", "FU-ORG-ACTIVE",
                     "SLOT-ORG-ACTIVE"),
    "org_unregistered": ("MPI-ORG-REGISTERED", "OPV-ORG-REGISTERED"),
    "orphan_archive": ("OPV-ARCHIVE-EXISTS", "IPS-ARCHIVE-EXISTS", "LAB-ARCHIVE-EXISTS", "EXAM-ARCHIVE-EXISTS",
            "FU-ARCHIVE-EXISTS"),
    "phone_invalid": ("MPI-PHONE-VALID",),
    "phone_missing": ("MPI-PHONE-REQUIRED",),
    "phone_placeholder": ("MPI-PHONE-PLACEHOLDER",),
    "phone_prefix_unallocated": ("MPI-PHONE-MOBILE-PREFIX",),
    "record_after_death": ("OPV-NOT-AFTER-DEATH", "IPS-NOT-AFTER-DEATH"),
    "record_before_birth": ("OPV-NOT-BEFORE-BIRTH",),
    "record_id_duplicate": ("OPV-VISIT-ID-UNIQUE", "IPS-STAY-ID-UNIQUE", "LAB-RESULT-ID-UNIQUE", "EXAM-ID-UNIQUE",
            "FU-ID-UNIQUE"),
    "sample_after_report": ("LAB-REPORT-AFTER-SAMPLE",),
    "service_after_registered_death": ("OPV-NOT-AFTER-REGISTERED-DEATH", "IPS-NOT-AFTER-REGISTERED-DEATH",
                                       "EXAM-NOT-AFTER-REGISTERED-DEATH", "FU-NOT-AFTER-REGISTERED-DEATH"),
    "sex_invalid": ("MPI-SEX-CODE",),
    "two_active_after_move": ("MOVE-ONE-ACTIVE",),
    "upload_before_event": ("OPV-UPLOAD-AFTER-VISIT", "IPS-UPLOAD-AFTER-DISCHARGE", "LAB-UPLOAD-AFTER-REPORT"),
    "upload_lag": ("OPV-UPLOAD-T1", "IPS-UPLOAD-T1", "LAB-UPLOAD-T1"),
    "weight_out_of_range": ("EXAM-WEIGHT-RANGE",),
    # decision support: the published figures (demo/statistics.py)
    "statistic_disagrees": ("STAT-AGREES-DETAIL",),
    "statistic_duplicate": ("STAT-PUBLISHED-ONCE",),
    "statistic_indicator_unknown": ("STAT-INDICATOR-CODE",),
    "statistic_org_unregistered": ("STAT-ORG-REGISTERED",),
    "statistic_period_future": ("STAT-PERIOD-NOT-FUTURE",),
    "statistic_period_malformed": ("STAT-PERIOD-FORMAT",),
    "statistic_value_malformed": ("STAT-VALUE-NUMBER",),
    # infectious-disease reporting (demo/infectious.py)
    "infectious_card_orphan": ("INF-ARCHIVE-EXISTS",),
    "infectious_report_duplicate": ("INF-CARD-UNIQUE",),
    "infectious_report_late": ("INF-REPORT-TIMELY",),
    "infectious_unreported": ("OPV-INFECTIOUS-REPORTED", "IPS-INFECTIOUS-REPORTED"),
    # the health-record browser's access log (demo/access.py)
    "access_bulk": ("ACCESS-BULK",),
    "access_closed_archive": ("ACCESS-CLOSED-ARCHIVE",),
    "access_doctor_not_of_org": ("ACCESS-DOCTOR-OF-ORG",),
    "access_doctor_unregistered": ("ACCESS-DOCTOR-REGISTERED",),
    "access_in_future": ("ACCESS-TIME-PLAUSIBLE",),
    "access_without_care": ("ACCESS-CARE-RELATIONSHIP",),
    # the practitioner register of the resource centre (demo/access.py register_defects)
    "practitioner_post_duplicate": ("PRAC-POST-UNIQUE",),
    "practitioner_org_unregistered": ("PRAC-ORG-REGISTERED",),
    "practitioner_name_missing": ("PRAC-NAME-REQUIRED",),
    "practitioner_title_unknown": ("PRAC-TITLE-CODE",),
    "practitioner_registered_future": ("PRAC-REGISTERED-NOT-FUTURE",),
    # referrals and the resource centre's slots (demo/referrals.py)
    "referral_direction_wrong": ("REF-DIRECTION-LEVEL",),
    "slot_unknown": ("REF-SLOT-EXISTS",),
    "appointment_outside_slot": ("REF-SLOT-MATCH",),
    "appointment_before_request": ("REF-APPOINTMENT-AFTER-REQUEST",),
    "arrival_without_visit": ("REF-OUT-CLOSED-LOOP",),
    "arrival_without_exam_record": ("REF-EXAM-CLOSED-LOOP",),
    "arrival_without_stay": ("REF-IN-CLOSED-LOOP",),
    "open_loop_outpatient": ("REF-OUT-OPEN-LOOP",),
    "open_loop_exam": ("REF-EXAM-OPEN-LOOP",),
    "open_loop_inpatient": ("REF-IN-OPEN-LOOP",),
    "arrival_recorded_late": ("REF-ARRIVAL-RECORDED-72H",),
    "request_unanswered": ("REF-REQUEST-ANSWERED",),
    "slot_overbooked": ("SLOT-BOOKED-WITHIN-CAPACITY",),
}
# measures judge a table's coverage, not a record (DQD measurePersonCompleteness): no false flags
MEASURES = frozenset({"MPI-EXAM-COMPLETENESS"})


def watched(truth_dir: Path) -> dict[str, frozenset[str]]:
    """Per table the keys of the valid records of every kind (truth/valid_kinds.csv): what a demo
    night's rules keep every violation of (record keys only, as their sample keys)."""
    kinds = pd.read_csv(truth_dir / "valid_kinds.csv", dtype=str, keep_default_na=False)
    return {table: frozenset(grp["key"]) for table, grp in kinds.groupby("table")}


@dataclass(frozen=True)
class FamilyRecall:
    table: str
    family: str
    injected: int
    flagged: int  # the most rows any of the family's rules flagged in the table (all its rows when one rule finds them)

    @property
    def recall(self) -> float:
        return min(self.flagged, self.injected) / self.injected if self.injected else 1.0


@dataclass(frozen=True)
class KindFlags:
    kind: str
    records: int
    flagged: int  # records of the kind any rule flagged (its watched keys, else its kept sample keys)
    complete: bool  # every rule's flags on the kind are known (else ``flagged`` is a lower bound)


def summary(truth_dir: Path, results: Iterable) -> tuple[list[FamilyRecall], list[KindFlags]]:
    """Per (table, family) of the truth the rows injected and flagged, and per valid kind the records
    flagged; ``results``: a run's stored results (table, rule_id, violations,
    sample_keys, watched_keys). A rule's flags on the valid records are its watched keys when the run watched them
    (the demo's night does), else the sample keys it kept, complete only when it kept them all."""
    results = list(results)
    defects = pd.read_csv(truth_dir / "defects.csv", dtype=str, keep_default_na=False)
    kinds = pd.read_csv(truth_dir / "valid_kinds.csv", dtype=str, keep_default_na=False)
    # a rule split per system (the referrals' common rules: REF-…, REF-…@8, REF-…@9) finds a family
    # in all its systems together: its parts' counts are summed (each row is in one part)
    by_rule: dict[tuple[str, str], int] = {}
    for r in results:
        key = (r.table, rule_of(r.rule_id))
        by_rule[key] = by_rule.get(key, 0) + r.violations
    families = []
    for (table, family), grp in defects.groupby(["table", "defect"]):
        counts = [by_rule[table, rule] for rule in RULES.get(family, ()) if (table, rule) in by_rule]
        families.append(FamilyRecall(table, family, grp["key"].nunique(), max(counts, default=0)))
    flags = []
    for kind, grp in kinds.groupby("kind"):
        keys = set(grp["key"])
        table = grp["table"].iloc[0]
        rows = [r for r in results if r.table == table and rule_of(r.rule_id) not in MEASURES and r.violations]
        hit = set().union(*(set(map(str, _flagged(r))) & keys for r in rows))
        complete = all(_watched(r) is not None or len(r.sample_keys or []) >= r.violations for r in rows)
        flags.append(KindFlags(kind, len(keys), len(hit), complete))
    return families, flags


def _watched(result) -> list[str] | None:
    return getattr(result, "watched_keys", None)


def _flagged(result) -> list[str]:
    """The keys a result shows flagged among the valid records: all of them when it watched them."""
    w = _watched(result)
    return w if w is not None else (result.sample_keys or [])
