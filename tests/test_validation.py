"""Validation on the synthetic platform: every injected defect family is found on exactly the rows in
truth/defects.csv, and rules whose defects were not injected find nothing (false-positive control)."""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.connectors import config
from healthqa.pipelines.validate import validate_source

from .conftest import demo_config, write_config

# rule -> the generator's defect family it must find; None: nothing of the kind is injected
FAMILY = {
    "MPI-ARCHIVE-REQUIRED": None, "MPI-ARCHIVE-FORMAT": "archive_id_format",
    "MPI-ARCHIVE-UNIQUE": "archive_id_duplicate", "MPI-NAME-REQUIRED": "name_missing",
    "MPI-NAME-PLACEHOLDER": "name_placeholder", "MPI-NAME-PLAUSIBLE": "name_invalid",
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
    "OPV-DX-CATEGORY": "diagnosis_unknown",
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
}


def demo_cfg(demo, tmp_path) -> config.Config:
    cfg = demo_config(demo)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    cfg["demo"]["truth_dir"] = str(demo / "truth")
    for s in cfg["sources"].values():
        s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{demo}/")
    return config.load(write_config(tmp_path / "healthqa.yml", cfg))


@pytest.fixture(scope="module")
def validated(demo, tmp_path_factory):
    cfg = demo_cfg(demo, tmp_path_factory.mktemp("val"))
    results = {}
    for source in cfg.sources:
        run = validate_source(cfg, source, all_keys=True)
        for tv, r in run.results:
            results[r.rule.id] = (tv.table, r)
    return results


def test_every_rule_ran(validated):
    assert set(validated) == set(FAMILY)
    errors = {k: r.error for k, (_, r) in validated.items() if r.status == "error"}
    assert not errors


def test_injected_defects_found_on_exactly_the_injected_rows(validated, demo):
    truth = pd.read_csv(demo / "truth" / "defects.csv", dtype=str, keep_default_na=False)
    found: dict[tuple[str, str], set] = {}
    for rule_id, (table, r) in validated.items():
        fam = FAMILY[rule_id]
        if fam is None:
            assert r.violations == 0, f"{rule_id}: {r.violations} violations where nothing was injected, e.g. {r.sample_keys[:3]}"
            continue
        found.setdefault((table, fam), set()).update(r.violating_keys)
    problems = []
    for (table, fam), keys in found.items():
        stated = set(truth.loc[(truth["table"] == table) & (truth["defect"] == fam), "key"])
        if keys != stated:
            problems.append(f"{table}.{fam}: missed {sorted(stated - keys)[:3]} ({len(stated - keys)}), "
                            f"extra {sorted(keys - stated)[:3]} ({len(keys - stated)})")
    assert not problems, "\n".join(problems)
    injected = set(map(tuple, truth[["table", "defect"]].drop_duplicates().values))
    assert injected <= set(found), injected - set(found)  # every injected family has a rule


def test_rates_and_institution_breakdown(validated):
    _, r = validated["OPV-DX-FORMAT"]
    assert 0 < r.violation_pct < 5
    assert sum(v["violations"] for v in r.by_org.values()) == r.violations
    assert len(r.sample_keys) == min(50, r.violations)
