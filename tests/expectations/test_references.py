"""Reference providers and typed rule parameters (issue 17, item 3).

A provider whose source cannot be read leaves only the rules that need its reference data not run,
with the reason Chinese first; the table's other rules run and pass or fail as usual, and with the MPI
gone a night still validates and stores every other source's tables. Every rule type's parameters are a
pydantic model checked when a suite loads: a typo is an error naming the suite file, the rule and the key.
"""

from __future__ import annotations

import pickle
import shutil

import pandas as pd
import pytest

from healthqa.errors import ConfigError, SourceUnreachable
from healthqa.expectations import references, rule_types, suite
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc
from healthqa.store.results import rule_of

UNAVAILABLE = "参照数据不可用 reference unavailable: mpi unreachable"


def _needs_mpi(rule: suite.Rule) -> bool:
    """Whether a reference the rule needs reads a table of the MPI's store (person, archive_move)."""
    from healthqa import canonical

    return any(canonical.table(t).store == "mpi" for n in rule.needs for t in references.PROVIDERS[n].reads)


def test_an_unreachable_provider_leaves_only_its_rules_not_run(platform, monkeypatch):
    cfg, _, _ = platform
    opened = references.open_source

    def open_source(c, name):
        if name == "mpi":
            raise SourceUnreachable("mpi", "connection refused")
        return opened(c, name)

    monkeypatch.setattr(references, "open_source", open_source)
    run = validate_adhoc(cfg, ValidationRequest("drc", ["outpatient_visit"]))
    results = {r.rule.id: r for _, r in run.results}
    needing = {i for i, r in results.items() if _needs_mpi(r.rule)}
    assert needing == {"OPV-ARCHIVE-EXISTS", "OPV-NOT-BEFORE-BIRTH", "OPV-NOT-AFTER-DEATH", "OPV-DX-SEX",
                       "OPV-NOT-AFTER-REGISTERED-DEATH"}
    for i in needing:
        assert results[i].status == "error" and results[i].error.startswith(UNAVAILABLE), results[i].error
        assert "connection refused" in results[i].error
    others = [r for i, r in results.items() if i not in needing]
    assert all(r.status in ("pass", "fail", "not_applicable") and r.error is None for r in others)
    assert {r.status for r in others} >= {"pass", "fail"}  # they ran and judged the rows as usual
    # the institution register lives in another source: its rule ran
    assert results["OPV-ORG-REGISTERED"].status in ("pass", "fail") and results["OPV-ORG-REGISTERED"].denominator


def test_with_the_mpi_moved_away_every_other_source_is_validated_and_stored(platform):
    from healthqa.pipelines.nightly import run_nightly

    cfg, store, folder = platform
    (folder / "gone").mkdir()
    shutil.move(folder / "mpi.db", folder / "gone" / "mpi.db")
    res = run_nightly(cfg)
    assert set(res.failures) == {"mpi"} and set(res.validations) == {"drc", "qc"}
    stored = store.results.of_run(res.run_id)
    assert {r.source for r in stored} == {"drc", "qc"}
    assert {r.table for r in stored} >= {"organization", "outpatient_visit", "inpatient_stay", "lab_result",
                                         "health_exam", "chronic_followup"}
    rules = {r.id: r for t in suite.builtin_tables() for r in suite.builtin(t).rules}
    for r in stored:
        if _needs_mpi(rules[rule_of(r.rule_id)]):  # a split rule's part (REF-ID-UNIQUE@8) is its rule's
            assert r.status == "error" and r.error.startswith(UNAVAILABLE), (r.rule_id, r.error)
        else:
            assert r.status != "error", (r.rule_id, r.error)


def test_a_provider_needing_an_unmapped_column_is_unavailable_and_the_others_are_not(platform):
    cfg, _, _ = platform
    del cfg.sources["mpi"].tables["person"].columns["death_date"]
    got = references.resolve(cfg, {"person.archive_id", "person.death_date", "no.such"}, pd.Timestamp("2026-11-25"))
    assert isinstance(got["person.archive_id"], set) and got["person.archive_id"]
    assert got["person.death_date"] == references.Unavailable("person.death_date not mapped")
    assert isinstance(got["no.such"], references.Unavailable)


SUITE = """
table: health_exam
rules:
  - id: SITE-HEIGHT-RANGE
    type: between
    params: {column: height_cm, {params}}
    zh: 身高在合理范围
    en: Height in range
    dimension: 一致性
    kahn: plausibility.atemporal/verification
    standard: site
    severity: 二级
    threshold: 0
"""


@pytest.mark.parametrize(("params", "expected"), [
    ("mni: 40, max: 250", "rules.SITE-HEIGHT-RANGE.params.mni: unknown parameter of rule type between"),
    ("min: low", "rules.SITE-HEIGHT-RANGE.params.min: Input should be a valid number"),
])
def test_a_parameter_typo_is_an_error_naming_the_file_the_rule_and_the_key(tmp_path, params, expected):
    f = tmp_path / "health_exam.yml"
    f.write_text(SUITE.replace("{params}", params), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        suite.rules_for("health_exam", str(tmp_path))
    assert str(e.value).startswith(f"{f}: {expected}"), str(e.value)


def test_a_reference_no_provider_makes_is_refused_when_the_suite_loads():
    text = SUITE.replace("type: between", "type: references").replace(
        "{column: height_cm, {params}}", "{column: archive_id, reference: person.archiv_id}")
    with pytest.raises(ConfigError, match=r"rules.SITE-HEIGHT-RANGE.params.reference: no reference data named "
                                          r"'person.archiv_id'"):
        suite.parse("x.yml", text)


def test_every_shipped_suite_loads_and_every_shipped_type_declares_its_parameters():
    for t in suite.builtin_tables():
        for r in suite.builtin(t).rules:
            assert isinstance(r.typed_params, rule_types.RuleParams), r.id
    shipped = [rt for rt in rule_types.REGISTRY.values() if rt.origin.startswith("healthqa.expectations.")]
    assert len(shipped) > 30 and all(rt.typed for rt in shipped)
    assert rule_types.get("between").parse({"column": "sbp"}).min == float("-inf")  # a default, typed
    rule = suite.builtin("health_exam").rules[0]  # results carry their rule to the flow, from any process
    assert pickle.loads(pickle.dumps(rule)).typed_params == rule.typed_params


def test_a_request_is_plain_data_a_task_can_carry():
    from datetime import datetime

    r = ValidationRequest("drc", ["outpatient_visit"], ["A1"], datetime(2026, 11, 1), None, all_keys=True)
    assert r.tables == ("outpatient_visit",) and r.orgs == ("A1",) and hash(r)
    assert pickle.loads(pickle.dumps(r)) == r
    assert r.scope_doc(["outpatient_visit"]) == {"source": "drc", "tables": ["outpatient_visit"], "orgs": ["A1"],
                                                 "since": "2026-11-01T00:00:00", "until": None}
