"""Validation on the synthetic platform: every injected defect family is found on exactly the rows in
truth/defects.csv, and rules whose defects were not injected find nothing (false-positive control)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from healthqa import config
from healthqa.expectations import suite as suites
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc
from healthqa.store.results import rule_of

from ..conftest import demo_config, write_config

pytestmark = pytest.mark.xdist_group("validation")  # the demo validated once for the module

# rule -> the generator's defect family it must find; None: nothing of the kind is injected
FAMILY = {
    "MPI-ARCHIVE-REQUIRED": None, "MPI-ARCHIVE-FORMAT": "archive_id_format",
    "MPI-ARCHIVE-UNIQUE": "archive_id_duplicate", "MPI-NAME-REQUIRED": "name_missing",
    "MPI-NAME-PLACEHOLDER": "name_placeholder", "MPI-NAME-PLAUSIBLE": "name_invalid", "MPI-NAME-FORM": "name_dot_variant",
    "MPI-SEX-CODE": "sex_invalid", "MPI-MARITAL-CODE": "marital_invalid", "MPI-ETHNICITY-CODE": "ethnicity_invalid",
    "MPI-ID-REQUIRED": "id_missing", "MPI-ID-VALID": "id_invalid", "MPI-ID-LEGACY15": "id_legacy_15",
    "MPI-ID-FORM": "id_format", "MPI-ID-BIRTH": "id_birth_mismatch", "MPI-ID-SEX": "id_sex_mismatch",
    "MPI-ID-ONE-ACTIVE": "id_shared_active", "MPI-PHONE-REQUIRED": "phone_missing",
    "MPI-PHONE-PLACEHOLDER": "phone_placeholder", "MPI-PHONE-VALID": "phone_invalid",
    "MPI-BIRTH-PLAUSIBLE": "birth_implausible", "MPI-BIRTH-BEFORE-CREATED": "birth_after_created",
    "MPI-DEATH-DATE-REQUIRED": "death_date_missing", "MPI-DEATH-AFTER-BIRTH": "death_before_birth",
    "MPI-ADDRESS-REQUIRED": "address_missing", "MPI-ADCODE-EXISTS": "adcode_invalid",
    "MPI-ADCODE-IN-DISTRICT": "adcode_outside_district", "MPI-ORG-REGISTERED": "org_unregistered",
    "ORG-CODE-UNIQUE": None, "ORG-LEVEL-CODE": None, "ORG-FEED-ACTIVE": "feed_silent",
    "OPV-ARCHIVE-EXISTS": "orphan_archive", "OPV-ORG-REGISTERED": "org_unregistered",
    "OPV-UPLOAD-T1": "upload_lag", "OPV-UPLOAD-AFTER-VISIT": "upload_before_event",
    "OPV-NOT-BEFORE-BIRTH": "record_before_birth", "OPV-NOT-AFTER-DEATH": "record_after_death",
    "OPV-DX-REQUIRED": "diagnosis_missing", "OPV-DX-FORMAT": "diagnosis_malformed",
    "OPV-DX-CATEGORY": "diagnosis_unknown", "OPV-DX-NAME": "diagnosis_name_mismatch",
    "IPS-ARCHIVE-EXISTS": "orphan_archive", "IPS-ORG-REGISTERED": None,
    "IPS-DISCHARGE-AFTER-ADMIT": "discharge_before_admit", "IPS-UPLOAD-T1": "upload_lag",
    "IPS-NOT-AFTER-DEATH": "record_after_death", "IPS-DX-FORMAT": "diagnosis_malformed",
    "LAB-ARCHIVE-EXISTS": "orphan_archive", "LAB-UPLOAD-T1": "upload_lag",
    "LAB-VALUE-NUMERIC": "lab_value_non_numeric", "LAB-UNIT": "lab_unit_invalid",
    "LAB-RANGE-ORDERED": "lab_range_inverted", "LAB-FLAG-CONSISTENT": "lab_flag_inconsistent",
    "EXAM-ARCHIVE-EXISTS": "orphan_archive", "EXAM-HEIGHT-RANGE": "height_out_of_range",
    "EXAM-WEIGHT-RANGE": "weight_out_of_range", "EXAM-BMI": "bmi_inconsistent",
    "EXAM-SBP-RANGE": "bp_out_of_range", "EXAM-DBP-RANGE": "bp_out_of_range",
    "EXAM-BP-ORDERED": "bp_inverted", "EXAM-GLUCOSE-RANGE": "glucose_out_of_range",
    "FU-ARCHIVE-EXISTS": "orphan_archive", "FU-DISEASE-CODE": None, "FU-NEXT-AFTER": "next_date_not_after",
    "FU-INTERVAL-92D": None, "FU-BP-ORDERED": "bp_inverted", "FU-GLUCOSE-RANGE": "glucose_out_of_range",
    "LAB-ORG-REGISTERED": None, "LAB-NOT-AFTER-DEATH": None, "EXAM-ORG-REGISTERED": None,
    "EXAM-NOT-AFTER-DEATH": None, "FU-ORG-REGISTERED": None, "FU-NOT-AFTER-DEATH": None,
    # value-set conformance of the remaining coded columns (tests/core/test_value_sets.py)
    "MPI-ID-TYPE-CODE": None, "MPI-STATUS-CODE": None, "ORG-CODE-FORMAT": None, "ORG-ADCODE-EXISTS": None,
    "OPV-DEPT-CODE": None, "IPS-DISCHARGE-STATUS-CODE": None, "IPS-DX-CATEGORY": None,
    "LAB-ITEM-CODE": None, "LAB-FLAG-CODE": None,
    # future upload times are not injected: the clean platform has none (tests/pipelines/test_nightly_watermark.py makes one)
    "OPV-UPLOAD-NOT-FUTURE": None, "IPS-UPLOAD-NOT-FUTURE": None, "LAB-UPLOAD-NOT-FUTURE": None,
    # DQD check types and registration facts (issue 19)
    "MPI-CREATED-NOT-FUTURE": "created_in_future",
    # future update times are not injected: the person table's time column, which the incremental duplicate
    # scan treats as a case of its own (tests/dedup/test_dedup_times_and_index.py makes one)
    "MPI-UPDATED-NOT-FUTURE": None, "MPI-DEATH-NOT-FUTURE": "death_in_future",
    "MPI-CREATED-BEFORE-UPDATED": "created_after_updated", "MPI-ALIVE-NO-DEATH-DATE": "alive_with_death_date",
    "MPI-BIRTH-PLACEHOLDER": "birth_placeholder", "MPI-DEATH-PLACEHOLDER": "death_placeholder",
    "MPI-CREATED-PLACEHOLDER": "created_placeholder", "MPI-ID-FORM-BY-TYPE": "id_type_mismatch",
    "MPI-PHONE-MOBILE-PREFIX": "phone_prefix_unallocated", "MPI-ADDRESS-AREA": "address_area_mismatch",
    "OPV-VISIT-ID-UNIQUE": "record_id_duplicate",
    "OPV-VISIT-NOT-FUTURE": "event_in_future", "OPV-DX-SEX": "diagnosis_sex_implausible",
    "OPV-ORG-ACTIVE": "org_inactive",
    "IPS-STAY-ID-UNIQUE": "record_id_duplicate", "IPS-ADMIT-NOT-FUTURE": "event_in_future",
    "IPS-DISCHARGE-NOT-FUTURE": "event_in_future",
    "IPS-UPLOAD-AFTER-DISCHARGE": "upload_before_event", "IPS-DX-NAME": "diagnosis_name_mismatch",
    "IPS-NOT-BEFORE-BIRTH": None, "IPS-DX-SEX": "diagnosis_sex_implausible",
    "IPS-ORG-ACTIVE": "org_inactive",
    "LAB-RESULT-ID-UNIQUE": "record_id_duplicate",
    "LAB-SAMPLE-NOT-FUTURE": "event_in_future", "LAB-REPORT-NOT-FUTURE": "event_in_future",
    "LAB-REPORT-AFTER-SAMPLE": "sample_after_report",
    "LAB-UPLOAD-AFTER-REPORT": "upload_before_event", "LAB-NOT-BEFORE-BIRTH": None,
    "LAB-ORG-ACTIVE": "org_inactive",
    "EXAM-ID-UNIQUE": "record_id_duplicate",
    "EXAM-DATE-NOT-FUTURE": "event_in_future", "EXAM-NOT-BEFORE-BIRTH": None,
    "EXAM-ORG-ACTIVE": "org_inactive",
    "FU-ID-UNIQUE": "record_id_duplicate",
    "FU-DATE-NOT-FUTURE": "event_in_future", "FU-NOT-BEFORE-BIRTH": None,
    "FU-ORG-ACTIVE": "org_inactive",
    # the archive collaboration: deaths and moves (issue 21)
    "DEATH-REG-ID-REQUIRED": None, "DEATH-REG-DATE-REQUIRED": None, "DEATH-REG-DATE-NOT-FUTURE": None,
    "DEATH-REG-CAUSE-FORMAT": None, "DEATH-REG-CAUSE-CATEGORY": None, "DEATH-REG-ORG-REGISTERED": None,
    "DEATH-REG-ARCHIVE-CLOSED": "death_archive_active", "DEATH-REG-DATE-AGREES": "death_date_disagrees",
    "MPI-DEATH-REGISTERED": "death_unregistered",
    "OPV-NOT-AFTER-REGISTERED-DEATH": "service_after_registered_death",
    "IPS-NOT-AFTER-REGISTERED-DEATH": "service_after_registered_death",
    "EXAM-NOT-AFTER-REGISTERED-DEATH": "service_after_registered_death",
    "FU-NOT-AFTER-REGISTERED-DEATH": "service_after_registered_death",
    "FU-NOT-AFTER-MOVE-OUT": "followup_after_move", "MOVE-DIRECTION-CODE": None, "MOVE-ARCHIVE-EXISTS": None,
    "MOVE-ORG-REGISTERED": None,
    "MOVE-IN-HAS-OUT": "move_in_without_out", "MOVE-ONE-ACTIVE": "two_active_after_move",
    # decision support: the published figures (issue 20)
    "STAT-AGREES-DETAIL": "statistic_disagrees", "STAT-INDICATOR-CODE": "statistic_indicator_unknown",
    "STAT-INDICATOR-REQUIRED": None, "STAT-PERIOD-FORMAT": "statistic_period_malformed",
    "STAT-PERIOD-NOT-FUTURE": "statistic_period_future", "STAT-VALUE-REQUIRED": None,
    "STAT-VALUE-NUMBER": "statistic_value_malformed", "STAT-ORG-REGISTERED": "statistic_org_unregistered",
    "STAT-PUBLISHED-ONCE": "statistic_duplicate",
    # infectious-disease reporting (issue 20)
    "OPV-INFECTIOUS-REPORTED": "infectious_unreported", "IPS-INFECTIOUS-REPORTED": "infectious_unreported",
    "INF-DX-REQUIRED": None, "INF-DX-FORMAT": None, "INF-DX-CATEGORY": None, "INF-DX-NOTIFIABLE": None,
    "INF-STATUS-CODE": None, "INF-DIAGNOSIS-NOT-FUTURE": None, "INF-REPORT-NOT-FUTURE": None,
    "INF-REPORT-AFTER-DIAGNOSIS": None, "INF-REPORT-TIMELY": "infectious_report_late",
    "INF-CARD-UNIQUE": "infectious_report_duplicate", "INF-ARCHIVE-EXISTS": "infectious_card_orphan",
    "INF-ORG-REGISTERED": None,
    # the practitioner register and the health-record browser's access log (issue 20)
    "PRAC-POST-UNIQUE": "practitioner_post_duplicate", "PRAC-ORG-REGISTERED": "practitioner_org_unregistered",
    "PRAC-NAME-REQUIRED": "practitioner_name_missing", "PRAC-TITLE-CODE": "practitioner_title_unknown",
    "PRAC-REGISTERED-NOT-FUTURE": "practitioner_registered_future", "ACCESS-ID-UNIQUE": None, "ACCESS-DOCTOR-REQUIRED": None,
    "ACCESS-ARCHIVE-EXISTS": None, "ACCESS-ORG-REGISTERED": None, "ACCESS-PURPOSE-CODE": None,
    "ACCESS-PURPOSE-REQUIRED": None, "ACCESS-VIEWED-CODES": None,
    "ACCESS-TIME-PLAUSIBLE": "access_in_future", "ACCESS-DOCTOR-REGISTERED": "access_doctor_unregistered",
    "ACCESS-DOCTOR-OF-ORG": "access_doctor_not_of_org", "ACCESS-CARE-RELATIONSHIP": "access_without_care",
    "ACCESS-BULK": "access_bulk", "ACCESS-CLOSED-ARCHIVE": "access_closed_archive",
    # referrals (systems 7, 8, 9) and the resource centre's slots (6) (issue 20)
    "REF-ID-UNIQUE": None, "REF-TYPE-CODE": None, "REF-DIRECTION-CODE": None, "REF-STATUS-CODE": None,
    "REF-PERIOD-CODE": None, "REF-DEPT-CODE": None, "REF-EXAM-ITEM-CODE": None, "REF-ARCHIVE-EXISTS": None,
    "REF-FROM-ORG-REGISTERED": None, "REF-TO-ORG-REGISTERED": None, "REF-TO-ORG-ACTIVE": None,
    "REF-DIRECTION-LEVEL": "referral_direction_wrong", "REF-DX-REQUIRED": None, "REF-DX-FORMAT": "diagnosis_malformed",
    "REF-DX-CATEGORY": None, "REF-REQUESTED-NOT-FUTURE": None,
    "REF-APPOINTMENT-AFTER-REQUEST": "appointment_before_request", "REF-SLOT-REQUIRED": None,
    "REF-SLOT-EXISTS": "slot_unknown", "REF-SLOT-MATCH": "appointment_outside_slot", "REF-ARRIVED-AT-REQUIRED": None,
    "REF-ARRIVED-AFTER-REQUEST": None, "REF-ARRIVED-NOT-FUTURE": None, "REF-UPDATED-NOT-FUTURE": None,
    "REF-UPDATED-AFTER-ARRIVAL": None, "REF-ARRIVAL-RECORDED-72H": "arrival_recorded_late",
    "REF-REQUEST-ANSWERED": "request_unanswered", "REF-OUT-CLOSED-LOOP": "arrival_without_visit",
    "REF-EXAM-CLOSED-LOOP": "arrival_without_exam_record", "REF-IN-CLOSED-LOOP": "arrival_without_stay",
    "REF-OUT-OPEN-LOOP": "open_loop_outpatient", "REF-EXAM-OPEN-LOOP": "open_loop_exam",
    "REF-IN-OPEN-LOOP": "open_loop_inpatient",
    "SLOT-ID-UNIQUE": None, "SLOT-ORG-REGISTERED": None, "SLOT-ORG-ACTIVE": "org_inactive", "SLOT-KIND-CODE": None,
    "SLOT-PERIOD-CODE": None, "SLOT-DEPT-CODE": None, "SLOT-DEPT-REQUIRED": None, "SLOT-EXAM-ITEM-CODE": None,
    "SLOT-DATE-REQUIRED": None, "SLOT-PUBLISHED-NOT-FUTURE": None, "SLOT-PUBLISHED-BEFORE-DATE": None,
    "SLOT-CAPACITY-COUNT": None, "SLOT-BOOKED-COUNT": None, "SLOT-BOOKED-WITHIN-CAPACITY": "slot_overbooked",
}
# measures (DQD measurePersonCompleteness): a share of archives, judged against the rule's threshold
MEASURES = {"MPI-EXAM-COMPLETENESS"}


def demo_cfg(demo, tmp_path) -> config.Config:
    cfg = demo_config(demo)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    cfg["demo"]["truth_dir"] = str(demo / "truth")
    for s in cfg["sources"].values():
        s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{demo}/")
    return config.load(write_config(tmp_path / "healthqa.yml", cfg))


@pytest.fixture(scope="module")
def parts(demo, tmp_path_factory):
    """Each result by its id: a rule split per system has one per system (REF-X, REF-X@8, REF-X@9)."""
    cfg = demo_cfg(demo, tmp_path_factory.mktemp("val"))
    results = {}
    for source in cfg.sources:
        run = validate_adhoc(cfg, ValidationRequest(source, all_keys=True))
        for tv, r in run.results:
            results[r.rule.id] = (tv.table, r)
    return results


@pytest.fixture(scope="module")
def validated(parts) -> dict:
    """The results by rule, a rule split per system (REF-X, REF-X@8, REF-X@9) as one: its parts' rows
    together (each row is in one part)."""
    out: dict = {}
    for pid, (table, r) in parts.items():
        rid = rule_of(pid)
        if rid not in out:
            out[rid] = (table, replace(r, violating_keys=list(r.violating_keys or [])))
            continue
        w = out[rid][1]
        w.violations += r.violations
        w.denominator += r.denominator
        w.violating_keys += r.violating_keys or []
        w.status = "error" if "error" in (w.status, r.status) else w.status
    return out


def test_every_rule_ran(validated):
    assert set(validated) == set(FAMILY) | MEASURES
    errors = {k: r.error for k, (_, r) in validated.items() if r.status == "error"}
    assert not errors


def test_injected_defects_found_on_exactly_the_injected_rows(validated, demo):
    truth = pd.read_csv(demo / "truth" / "defects.csv", dtype=str, keep_default_na=False)
    found: dict[tuple[str, str], set] = {}
    for rule_id, (table, r) in validated.items():
        if rule_id in MEASURES:
            assert r.status == "pass" and r.violations > 0, (rule_id, r.status, r.violation_pct)
            continue
        fam = FAMILY[rule_id]
        if fam is None:
            assert r.violations == 0, f"{rule_id}: {r.violations} violations where nothing was injected, e.g. {r.sample_keys[:3]}"
            continue
        found.setdefault((table, fam), set()).update(r.violating_keys)
    problems = []
    for (table, fam), keys in sorted(found.items()):
        stated = set(truth.loc[(truth["table"] == table) & (truth["defect"] == fam), "key"])
        # per family, as `pytest -s` shows it: recall on the injected rows, and false flags on the others
        print(f"{table}.{fam}: recall {len(keys & stated)}/{len(stated)}, false flags {len(keys - stated)}")
        if keys != stated:
            problems.append(f"{table}.{fam}: missed {sorted(stated - keys)[:3]} ({len(stated - keys)}), "
                            f"extra {sorted(keys - stated)[:3]} ({len(keys - stated)})")
    assert not problems, "\n".join(problems)
    injected = set(map(tuple, truth[["table", "defect"]].drop_duplicates().values))
    assert injected <= set(found), injected - set(found)  # every injected family has a rule


def test_no_rule_flags_a_valid_record_of_any_false_flag_kind(validated, demo, capsys):
    """Rare-character names, passport and travel-permit holders, national clinical edition codes
    (truth/valid_kinds.csv): every rule, none of them flagged; the count per kind is printed."""
    from ..demo import truthcheck as tc

    kinds = pd.read_csv(demo / "truth" / "valid_kinds.csv", dtype=str, keep_default_na=False)
    # a resident with no health exam is no defect of the archive: the completeness rule measures the
    # exam table's coverage of the residents (DQD measurePersonCompleteness), not the record
    coverage = {r.id for t in {t for t, _ in validated.values()} for r in suites.rules_for(t)
                if r.type == "person_has_record"}
    flagged: dict[str, dict[str, set]] = {}
    for rule_id, (table, r) in validated.items():
        if rule_id in coverage:
            continue
        flagged.setdefault(rule_id, {})[table] = set(r.violating_keys or [])
    summary = tc.false_flags(kinds, flagged)
    with capsys.disabled():
        tc.print_false_flags(summary)
    assert {k for k, (n, _) in summary.items() if n} == set(kinds["kind"]) and len(summary) >= 6
    assert not {k: by_rule for k, (_, by_rule) in summary.items() if by_rule}
    listed = validated["OPV-DX-NAME"][1]
    assert listed.denominator > 0  # the demo loads the sample code list: its codes' names are judged


def test_rates_and_institution_breakdown(validated):
    _, r = validated["OPV-DX-FORMAT"]
    assert 0 < r.violation_pct < 5
    assert sum(v["violations"] for v in r.by_org.values()) == r.violations
    assert len(r.sample_keys) == min(50, r.violations)


@pytest.mark.parametrize("server", [pytest.param("pg_db", marks=pytest.mark.postgres),
                                    pytest.param("mariadb_db", marks=pytest.mark.mariadb)])
def test_same_suite_same_results_on_database_servers(demo, tmp_path, request, server, parts):
    """The demo copied into PostgreSQL / MariaDB validates to the same numbers as from SQLite."""
    url = request.getfixturevalue(server)
    cfg = demo_config(demo)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    for s in cfg["sources"].values():
        s["url"] = url  # one database holds all three stores' tables in the copy
    c = config.load(write_config(tmp_path / "healthqa.yml", cfg))
    got = {}
    for source in ("mpi", "drc", "qc"):
        for _, r in validate_adhoc(c, ValidationRequest(source)).results:
            got[r.rule.id] = (r.status, r.violations, r.denominator)
    expected = {k: (r.status, r.violations, r.denominator) for k, (_, r) in parts.items()}
    assert got == expected


DIRTY = {
    "DABH": ["33021100100100001", "33021100100100002", "33021100100100003", "33021100100100004",
             "33021100100100005", "33021100100100006", "33021100100100007", "33021100100100008"],
    "XM": ["王伟", " 李娜 ", "", None, "çŽ‹ä¼Ÿ", "张三之子", "Wang", "陳偉"],
    "XBDM": ["2", " 2", "1", "", None, "男", "2", "2"],
    "CSRQ": ["1949-12-31", "19491231", "1949/12/31", "31/12/1949", "", None, "1949-12-31 00:00:00", "not a date"],
    "ZJLXDM": ["01"] * 8,
    "SFZH": ["11010519491231002X", "11010519491231002x", "11010519491231002×", "１１０１０５１９４９１２３１００２Ｘ",
             " 11010519491231002X ", "", None, "110105491231002"],
    "DAZT": ["3", "3", "3", "3", "3", "3", "3", "1"],
    "SG": ["170", "170.5", " 160 ", "1.7m", "", None, "一米七", "165"],
}


@pytest.mark.postgres
def test_dirty_values_never_crash_and_are_counted(pg_db, tmp_path):
    """Text where numbers and dates belong, full-width digits, x and ×, blanks vs NULL, mojibake."""
    from sqlalchemy import create_engine

    from healthqa.expectations import suite
    from healthqa.expectations.rule_types import RuleContext
    from healthqa.expectations.runner import validate_frame

    eng = create_engine(pg_db)
    pd.DataFrame(DIRTY).to_sql("dirty_person", eng, index=False, if_exists="replace")
    eng.dispose()
    src = config.Source.model_validate({"kind": "sqlalchemy", "url": pg_db, "tables": {"person": {
        "table": "dirty_person", "columns": {"archive_id": "DABH", "name": "XM", "sex_code": "XBDM",
                                             "birth_date": "CSRQ", "id_type_code": "ZJLXDM", "id_number": "SFZH",
                                             "status_code": "DAZT"}}}})
    from healthqa.connectors.sources import reader

    with reader("dirty", src) as r:
        df = r.read_all("person")
    rules = [x for x in suite.builtin("person").rules if set(x.columns) <= set(df.columns) and not x.needs]
    res = {x.rule.id: x for x in validate_frame(df, "person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")),
                                                all_keys=True)}
    assert all(x.status in ("pass", "fail", "not_applicable") for x in res.values()), \
        {k: x.error for k, x in res.items() if x.status == "error"}
    for x in res.values():  # every row is either outside the rule, passing, or counted as violating
        assert 0 <= x.violations <= x.denominator <= len(df)
    assert res["MPI-NAME-REQUIRED"].violations == 2  # '' and NULL alike
    assert set(res["MPI-ID-FORM"].violating_keys) == {DIRTY["DABH"][i] for i in (1, 2, 3, 4)}
    assert res["MPI-ID-LEGACY15"].violating_keys == [DIRTY["DABH"][7]]
    assert res["MPI-ID-VALID"].violations == 0 and res["MPI-ID-VALID"].denominator == 6
    # '31/12/1949' and 'not a date' cannot be read as dates: counted, never dropped
    assert set(res["MPI-ID-BIRTH"].violating_keys) == {DIRTY["DABH"][3], DIRTY["DABH"][7]}
    assert res["MPI-SEX-CODE"].violating_keys == [DIRTY["DABH"][5]]  # ' 2' is trimmed; 男 is not a code
    assert DIRTY["DABH"][4] in res["MPI-NAME-PLAUSIBLE"].violating_keys  # mojibake
    assert DIRTY["DABH"][5] in res["MPI-NAME-PLACEHOLDER"].violating_keys


def test_the_demo_names_each_family_s_rules_as_this_test_does(validated, parts, demo):
    """healthqa.demo.families (what `healthqa demo` prints its truth check with) maps each family to
    the rules this test holds to it, and its summary of a night finds every family whole and states
    exactly that no valid record of any kind was flagged: from what a night stores (the 50 smallest
    sample keys, and every flagged key among the valid records it watched), not from every key."""
    from types import SimpleNamespace

    from healthqa.demo.families import RULES, summary

    assert {fam: tuple(r for r, f in FAMILY.items() if f == fam) for fam in set(FAMILY.values()) - {None}} == RULES
    results = [SimpleNamespace(table=t, rule_id=rid, violations=r.violations, sample_keys=r.sample_keys,
                               watched_keys=r.watched_keys) for rid, (t, r) in parts.items()]
    families, kinds = summary(demo / "truth", results)
    injected = pd.read_csv(demo / "truth" / "defects.csv", dtype=str, keep_default_na=False)
    assert {(f.table, f.family) for f in families} == set(map(tuple, injected[["table", "defect"]].values))
    assert {(f.table, f.family): f.recall for f in families if f.recall != 1.0} == {}
    valid = pd.read_csv(demo / "truth" / "valid_kinds.csv", dtype=str, keep_default_na=False)
    assert {k.kind: (k.records, k.flagged, k.complete) for k in kinds} == \
        {kind: (len(set(g["key"])), 0, True) for kind, g in valid.groupby("kind")}
    # the check is exact where sample keys alone could not be: rules flagged more rows than they keep
    capped = {rid for rid, (t, r) in validated.items() if r.violations > len(r.sample_keys) and t in set(valid["table"])}
    assert capped
