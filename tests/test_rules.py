"""Every rule of every suite runs its own examples through Great Expectations: the rows under
``pass`` raise no violation, the rows under ``fail`` do."""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import validate_frame

RULES = [r for t in suite.builtin_tables() for r in suite.builtin(t).rules]


def context_for(rule) -> RuleContext:
    refs = {}
    for name, value in (rule.examples.context.get("references") or {}).items():
        if isinstance(value, dict):  # archive -> date
            refs[name] = pd.Series({k: pd.Timestamp(v) for k, v in value.items()})
        else:
            refs[name] = set(map(str, value))
    return RuleContext(as_of=pd.Timestamp("2026-11-25"), references=refs)


def frame(rows, rule) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in rule.columns:  # optional parameters absent from an example are simply missing
        if c not in df:
            df[c] = None
    return df


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_examples(rule):
    ctx = context_for(rule)
    (ok,) = validate_frame(frame(rule.examples.pass_, rule), rule.table, [rule], ctx)
    assert ok.status in ("pass", "not_applicable") and ok.violations == 0, (ok.status, ok.error)
    (bad,) = validate_frame(frame(rule.examples.fail, rule), rule.table, [rule], ctx)
    expected = rule.examples.violations or len(rule.examples.fail)
    assert bad.status == "fail" and bad.violations == expected, (bad.violations, bad.error)


def test_every_rule_type_in_use_is_documented():
    from healthqa.expectations import rule_types

    for r in RULES:
        assert rule_types.get(r.type).doc, r.type


def test_rule_ids_are_unique_across_suites():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))


def test_a_broken_rule_is_an_error_and_the_others_still_run():
    from healthqa.expectations import rule_types

    @rule_types.rule_type("test_explodes", columns=("column",))
    def explodes(df, p, ctx):
        raise ValueError("boom")

    good = suite.builtin("person").rules[0]
    bad = good.model_copy(update={"id": "TEST-BOOM", "type": "test_explodes"})
    df = pd.DataFrame({"archive_id": ["33021100100100001", None]})
    res = validate_frame(df, "person", [bad, good], RuleContext(as_of=pd.Timestamp("2026-11-25")))
    assert res[0].status == "error" and "boom" in res[0].error
    assert res[1].status == "fail" and res[1].violations == 1 and res[1].denominator == 2


def test_missing_column_is_a_finding_not_a_crash():
    rules = suite.builtin("person").rules
    df = pd.DataFrame({"archive_id": ["33021100100100001"]})
    res = {r.rule.id: r for r in validate_frame(df, "person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")),
                                                missing_columns={"name": "XM"})}
    assert res["MPI-NAME-REQUIRED"].status == "error"
    assert "column missing: name (XM)" in res["MPI-NAME-REQUIRED"].error
    assert res["MPI-ARCHIVE-FORMAT"].status == "pass"


def test_tiny_rates_never_round_to_zero():
    from healthqa.expectations.runner import format_pct

    assert format_pct(100 * 1 / 1_000_000) == "0.0001%"
    assert format_pct(0.0) == "0%"
    assert format_pct(12.345) == "12.35%"
