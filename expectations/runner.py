"""The validation runner: rules of a suite on a table's rows, DQD-style results.

Per rule: violating rows (numerator), rows the rule applies to (denominator), violation %, status
``pass | fail | not_applicable | error`` (n/a when the denominator is 0; error when it could not run,
with the reason, without stopping the other rules), keys of up to 50 violating rows, and violations
by institution. A tiny violation rate never rounds to zero: the percentage is kept unrounded and
shown with significant digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from healthqa import canonical
from healthqa.masking import mask_frame

from . import gx_bridge
from .rule_types import RuleContext
from .suite import Rule

SAMPLE_KEYS = 50
EXAMPLES_PER_ORG = 2  # violating rows shown per institution, with their values masked
EXAMPLES_MAX = 200


@dataclass
class RuleResult:
    rule: Rule
    status: str
    violations: int = 0
    denominator: int = 0
    sample_keys: list[str] = field(default_factory=list)
    by_org: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None
    violating_keys: list[str] | None = None  # every violating row's key, when asked for
    # a few violating rows: key, institution and the rule's columns, personal values masked
    examples: list[dict] = field(default_factory=list)

    @property
    def violation_pct(self) -> float | None:
        return 100.0 * self.violations / self.denominator if self.denominator else None

    def as_json(self) -> dict:
        r = self.rule
        return {
            "rule_id": r.id, "table": r.table, "columns": r.columns, "dimension": r.dimension, "kahn": r.kahn,
            "severity": r.severity, "system": r.system, "threshold_pct": r.threshold, "status": self.status,
            "violations": self.violations, "denominator": self.denominator, "violation_pct": self.violation_pct,
            "sample_keys": self.sample_keys, "by_org": self.by_org, "error": self.error,
            "description": {"zh": r.zh, "en": r.en}, "standard": r.standard,
        }


def format_pct(pct: float | None) -> str:
    """Percentages with significant digits: 0.0004 % stays visible instead of rounding to 0.00 %."""
    if pct is None:
        return "—"
    if pct == 0:
        return "0%"
    if pct >= 1:
        return f"{pct:.2f}%"
    return f"{pct:.2g}%"


def validate_frame(df: pd.DataFrame, table: str, rules: list[Rule], ctx: RuleContext,
                   missing_columns: dict[str, str] | None = None, all_keys: bool = False) -> list[RuleResult]:
    """Validate one table's rows with its rules; a rule whose columns are absent is an error result."""
    t = canonical.table(table)
    if not df.index.equals(pd.RangeIndex(len(df))):  # positions are row numbers (no copy when they are)
        df = df.reset_index(drop=True)
    ctx = replace(ctx, cache={})  # column conversions are shared by this table's rules only
    results: dict[str, RuleResult] = {}
    runnable = []
    for r in rules:
        absent = [c for c in r.columns if c not in df.columns]
        if absent:
            where = ", ".join(f"{c} ({(missing_columns or {}).get(c, 'not mapped')})" for c in absent)
            results[r.id] = RuleResult(r, "error", error=f"column missing: {where}")
            continue
        lacking = [n for n in r.needs if n not in ctx.references]
        if lacking:
            results[r.id] = RuleResult(r, "error", error=f"reference data not available: {', '.join(lacking)}")
            continue
        runnable.append(r)
    evaluations = gx_bridge.evaluate(df, runnable, ctx)
    keys = df[t.key].astype(str) if t.key in df else pd.Series(df.index.astype(str), index=df.index)
    keys = keys.to_numpy()
    if t.org and t.org in df:  # institutions as codes once, counted per rule with bincount
        codes, orgs = pd.factorize(df[t.org].astype(str), sort=True)
    for r in rules:
        if r.id in results:
            continue
        ev = evaluations[r.id]
        if ev.error:
            results[r.id] = RuleResult(r, "error", error=ev.error)
            continue
        applies, violates = ev.applies.to_numpy(), ev.violates.to_numpy()
        n_viol, n_den = int(violates.sum()), int(applies.sum())
        # GE's verdict (``mostly`` = 1 - threshold) is the status; n/a where nothing applies
        res = RuleResult(r, "not_applicable" if n_den == 0 else "pass" if ev.success else "fail", n_viol, n_den)
        rows = np.flatnonzero(violates)
        res.sample_keys = keys[rows[:SAMPLE_KEYS]].tolist()
        if all_keys:
            res.violating_keys = keys[rows].tolist()
        if t.org and t.org in df and n_den:
            # every institution the rule applied to, clean ones too: a finding on an institution is
            # resolved only by a run that saw its rows pass (reports/findings.py)
            v = np.bincount(codes[rows], minlength=len(orgs))
            d = np.bincount(codes[applies], minlength=len(orgs))
            res.by_org = {orgs[i]: {"violations": int(v[i]), "denominator": int(d[i])} for i in np.flatnonzero(d)}
        if n_viol:
            res.examples = _examples(df, t, r, rows, codes if t.org and t.org in df else None)
        results[r.id] = res
    return [results[r.id] for r in rules]


def _examples(df: pd.DataFrame, t: canonical.Table, rule: Rule, rows: np.ndarray, org_codes) -> list[dict]:
    """The first violating rows of each institution (or of the table), as the QC manager sees them:
    record key, institution and the rule's columns, with personal values masked (DESIGN's masks)."""
    if org_codes is None:
        picked = rows[:EXAMPLES_PER_ORG * 3]
    else:
        picked = rows[pd.Series(org_codes[rows]).groupby(org_codes[rows]).cumcount().to_numpy() < EXAMPLES_PER_ORG]
        picked = picked[:EXAMPLES_MAX]
    cols = [c for c in dict.fromkeys([t.key, *([t.org] if t.org else []), *rule.columns]) if c in df.columns]
    shown = mask_frame(df.iloc[picked][cols], t).astype(object).where(lambda x: x.notna(), None)
    out = []
    for rec in shown.to_dict("records"):
        key = rec.pop(t.key, None)
        org = rec.pop(t.org, None) if t.org else None
        out.append({"key": None if key is None else str(key), "org": None if org is None else str(org),
                    "values": {c: None if v is None else str(v) for c, v in rec.items()}})
    return out
