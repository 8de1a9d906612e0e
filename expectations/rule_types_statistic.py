"""Rule types of the decision-support platform (卫生综合管理与决策支持平台): its published figures.

The platform publishes monthly figures (``drc.published_statistic``): per indicator of
``codelists/statistic_indicators.yml``, month and institution (or the district total, the district's
code as institution), a value. The leaders read these numbers; the audit holds each to the same figure
recomputed from the detail it counts (healthqa/indicators.py). The recomputation needs the whole
month's detail, not the night's sample or incremental window: each indicator has a reference provider
(``statistic.<CODE>``) that reads the few columns it counts of its detail table, whole. A figure whose
detail cannot be read (its table not mapped, its source down) is not judged — the rule names what was
not had — and an open month, or one whose late arrivals may still come, is not judged either.
Imported by ``rule_types`` (its last lines).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from healthqa import indicators as ind

from .references import Rows, Unavailable, reference
from .rule_types import Column, Outcome, RuleContext, RuleParams, _Cols, rule_type


def _provide(code: str, spec: ind.Indicator) -> None:
    def make(rows: Rows) -> ind.Recomputed:
        return ind.recompute(code, rows[spec.table])
    make.__doc__ = (f"{spec.zh} {spec.en} ({code}) per institution and month, recomputed from the whole "
                    f"{spec.table} table ({spec.method}).")
    reference(f"statistic.{code}", reads={spec.table: spec.columns})(make)


for _code, _spec in ind.indicators().items():  # one provider per indicator of the data file
    _provide(_code, _spec)

RECOMPUTED = tuple(f"statistic.{c}" for c in ind.indicators())


def _recomputed(value) -> ind.Recomputed:
    """A provider's recomputation, or a rule example's ``{"YYYY-MM|ORG": value}`` (covering from its
    earliest month)."""
    if isinstance(value, ind.Recomputed):
        return value
    s = pd.Series(value)
    starts = ind.period_start(pd.Series(s.index.astype(str).str.split("|").str[0], dtype=object))
    return ind.Recomputed(pd.to_numeric(s, errors="coerce"), starts.min() if starts.notna().any() else ind.NOTHING)


def _figure_keys(df: pd.DataFrame, p, ctx: RuleContext) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(indicator code upper-case, period start, institution key with the district total as ``*``)."""
    c = _Cols(df, ctx)

    def compute():
        code = c.text(p.indicator).str.upper()
        start = ind.period_start(df[p.period])
        org = ind.org_key(df[p.org])
        return code, start, org.where(org != ctx.district.upper(), ind.TOTAL)
    return ctx.memo(("statistic_keys", p.indicator, p.period, p.org), compute)


class AgreesParams(RuleParams):
    indicator: Column
    period: Column = Field(description="the month, YYYY-MM")
    org: Column = Field(description="the institution, or the district's code for the district total")
    value: Column
    relative: float = Field(0.01, ge=0, description="the relative difference tolerated (of the recomputed figure)")
    absolute: float = Field(1.0, ge=0, description="the absolute difference tolerated (small figures)")
    settle_days: int = Field(7, ge=0, description="a month is judged once it ended this many days before the "
                                                  "reference time (late arrivals; the open month is never judged)")


@rule_type("statistic_agrees", params=AgreesParams, linked=RECOMPUTED,
           expectation="ExpectMulticolumnValuesToAgreeWithRecomputedStatistic")
def statistic_agrees(df: pd.DataFrame, p: AgreesParams, ctx: RuleContext) -> Outcome:
    """A published figure agrees with the same figure recomputed from the detail it counts (its
    indicator's entry in statistic_indicators.yml): the difference is at most the larger of
    ``absolute`` (1) and ``relative`` (1 %) of the recomputed figure. Applies to figures with a
    numeric value, of a month that ended ``settle_days`` (7) before the reference time and that the
    detail fully covers; a figure whose detail cannot be read (table not mapped) is not judged."""
    code, start, org = _figure_keys(df, p, ctx)
    value = _Cols(df, ctx).number(p.value)
    settled = (start + pd.DateOffset(months=1) + pd.Timedelta(days=p.settle_days)) <= ctx.as_of
    key = pd.Series(ind.month_text(ind.month_no(start).fillna(0)), index=df.index) + "|" + org.fillna("")
    recomputed = pd.Series(np.nan, index=df.index)
    applies = pd.Series(False, index=df.index)
    for c in code.dropna().unique():
        got = ctx.references.get(f"statistic.{c}")
        if got is None or isinstance(got, Unavailable):  # unknown indicator or detail not had: not judged
            continue
        r = _recomputed(got)
        rows = code == c
        recomputed[rows] = key[rows].map(r.values).astype(float).fillna(0.0)
        covered = start >= r.covers_from if r.covers_from is not None else start.notna()
        applies |= rows & covered
    applies &= settled & value.notna() & org.notna() & np.isfinite(value)
    tolerance = np.maximum(p.absolute, p.relative * recomputed.abs())
    return applies, applies & ((value - recomputed).abs() > tolerance)


class PeriodParams(RuleParams):
    column: Column = Field(description="the month, YYYY-MM")


@rule_type("month_not_future", params=PeriodParams, expectation="ExpectColumnValuesToBeMonthsNotInTheFuture")
def month_not_future(df: pd.DataFrame, p: PeriodParams, ctx: RuleContext) -> Outcome:
    """A month (YYYY-MM) that has begun by the reference time. Applies to well-formed months (the
    form is a rule of its own)."""
    start = ind.period_start(df[p.column])
    applies = start.notna()
    return applies, applies & (start > ctx.as_of)


class OrgOrDistrictParams(RuleParams):
    column: Column = Field(description="the institution, or the district's code for the district total")


@rule_type("org_registered_or_district", params=OrgOrDistrictParams, references=("organization.org_code",),
           expectation="ExpectColumnValuesToBeRegisteredInstitutionsOrTheDistrict")
def org_registered_or_district(df: pd.DataFrame, p: OrgOrDistrictParams, ctx: RuleContext) -> Outcome:
    """The institution is in the register (compared trimmed and upper-case), or is the district's
    code (a district total)."""
    org = ind.org_key(df[p.column])
    if "organization.org_code#upper" not in ctx.indexes:
        ctx.indexes["organization.org_code#upper"] = pd.Index(
            sorted({str(o).strip().upper() for o in ctx.reference("organization.org_code")}), dtype=object)
    known = pd.Series(ctx.indexes["organization.org_code#upper"].get_indexer(org) >= 0, index=df.index)
    applies = org.notna()
    return applies, applies & ~known & (org != ctx.district.upper())


class OnePublicationParams(RuleParams):
    indicator: Column
    period: Column
    org: Column


def _publication_key(df: pd.DataFrame, p: OnePublicationParams, ctx: RuleContext) -> pd.Series:
    code, _, org = _figure_keys(df, p, ctx)
    return code + "|" + _Cols(df, ctx).text(p.period) + "|" + org


@rule_type("one_publication", params=OnePublicationParams, whole_table=True, partition=_publication_key,
           expectation="ExpectMulticolumnValuesToBePublishedOnce")
def one_publication(df: pd.DataFrame, p: OnePublicationParams, ctx: RuleContext) -> Outcome:
    """One figure per indicator, month and institution (or district): every figure of a key published
    twice violates (which of them the leaders read is anyone's guess)."""
    key = _publication_key(df, p, ctx)
    applies = key.notna()
    return applies, applies & key.duplicated(keep=False)
