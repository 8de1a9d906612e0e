"""Shipped rules run on hand-made frames, their reference data made by the providers from crafted
rows of the tables they read (as a validation makes them): the helpers the rule-family tests share."""

from __future__ import annotations

import pandas as pd

from healthqa.expectations import suite
from healthqa.expectations.references import PROVIDERS
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import RuleResult, validate_frame


def context(rules, rows: dict[str, pd.DataFrame], as_of) -> RuleContext:
    """The references the rules need and those naming the other record of a violation; a table not
    in ``rows`` is not mapped (a provider reading any of several tables takes those that are)."""
    refs = {}
    for n in set().union(*(r.needs | r.linked for r in rules)):
        p = PROVIDERS[n]
        refs[n] = p.make({t: rows[t][list(c)] for t, c in p.reads.items() if t in rows})
    return RuleContext(as_of=as_of, references=refs)


def run_rule(table: str, rule_id: str, df: pd.DataFrame, rows: dict[str, pd.DataFrame], as_of,
             statuses=("pass", "fail")) -> RuleResult:
    """The shipped rule ``rule_id`` of ``table`` on ``df``, every violating key kept."""
    rules = [r for r in suite.builtin(table).rules if r.id == rule_id]
    (res,) = validate_frame(df, table, rules, context(rules, rows, as_of), all_keys=True)
    assert res.status in statuses, (res.status, res.error)
    return res
