"""Every coded column of the canonical model is checked against its value set by a shipped rule.

A column of type ``code`` holds a value from a code system (a code list, GB/T 2260, ICD-10, the
institution registry …). This test walks the model, not the suites, so a coded column added to the
model without a rule fails here until its value-set rule is written.
"""

from __future__ import annotations

import pytest

from healthqa import canonical, codelists
from healthqa.expectations import suite

# Rule types that judge a value against a set of valid codes, and the parameter naming the column.
VALUE_SET_TYPES = {
    "in_code_list": "column",  # a code list of healthqa/codelists, or the rule's own values
    "area_code_exists": "column",  # GB/T 2260, every code that ever existed
    "icd10_category_exists": "column",  # WHO ICD-10 categories
    "references": "column",  # a registry held by another table (institutions, archives)
    "org_registered_or_district": "column",  # the institution registry, or the district's own code (a total)
}
# The institution registry is itself the value set of every other org_code; its own codes can only be
# checked for the structure of their code system (GB 32100), which a pattern does.
STRUCTURE_ONLY = {("organization", "org_code"): "GB 32100"}

CODED = [(t.name, c.name) for t in canonical.tables().values() for c in t.columns.values() if c.type == "code"]


def value_set_rules(table: str, column: str) -> list[suite.Rule]:
    out = []
    for r in suite.builtin(table).rules if table in suite.builtin_tables() else []:
        if not r.enabled:
            continue
        param = VALUE_SET_TYPES.get(r.type)
        if r.params.get("absent"):  # a set the value must stay out of (inactive institutions): no value set
            continue
        # a value-set rule on the column, or a structure-only pattern that cites the column's standard
        if (param and r.params.get(param) == column) or (
                r.type == "matches" and r.params["column"] == column and (table, column) in STRUCTURE_ONLY
                and STRUCTURE_ONLY[(table, column)] in r.standard):
            out.append(r)
    return out


def test_the_model_has_coded_columns():
    assert len(CODED) >= 20  # the walk below is not vacuous


@pytest.mark.parametrize("table,column", CODED, ids=[f"{t}.{c}" for t, c in CODED])
def test_every_coded_column_has_a_value_set_rule(table, column):
    rules = value_set_rules(table, column)
    assert rules, f"{table}.{column} is coded but no shipped rule checks it against a value set"
    for r in rules:
        if r.type == "in_code_list" and "code_list" in r.params:
            cl = codelists.load(r.params["code_list"])
            assert cl["standard"], f"code list {r.params['code_list']} cites no standard"
            assert codelists.codes(r.params["code_list"]), r.params["code_list"]
        if r.type == "references":
            ref_table, ref_column = r.params["reference"].split(".")
            assert ref_column in canonical.table(ref_table).columns


def test_every_code_list_cites_its_standard_and_nothing_internal():
    from importlib import resources

    folder = resources.files("healthqa").joinpath("codelists")
    names = [f.name.removesuffix(".yml") for f in folder.iterdir() if f.name.endswith(".yml")]
    assert len(names) >= 10
    for name in names:
        text = folder.joinpath(f"{name}.yml").read_text("utf-8")
        assert codelists.load(name)["standard"], name
        for internal in ("DESIGN.md", "DOMAIN.md", "shared/", "../"):
            assert internal not in text, f"codelists/{name}.yml cites {internal}"
