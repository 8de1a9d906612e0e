"""The decision-support platform's published figures: computed from the platform's own detail, a few
published wrong.

卫生综合管理与决策支持平台 publishes, each month, every indicator of
``codelists/statistic_indicators.yml`` per institution and for the district (the district's code as
institution). The figures are the same recomputation the audit makes (healthqa/indicators.py) of the
detail as written, accumulated chunk by chunk (``Figures.add``: a chunk's visits, follow-ups and
archives never belong to another chunk, so the chunks' figures add up) and published once every chunk
is written (``publish``), so that the valid figures agree with their detail.

Defects (truth/defects.csv, table published_statistic): a figure off by more than the tolerance or a
month double-counted (``statistic_disagrees``), a figure for an institution the register does not know
(``statistic_org_unregistered``), a value that is not a number (``statistic_value_malformed``), a figure
published twice (``statistic_duplicate``, both rows), an indicator code not in the list
(``statistic_indicator_unknown``), a malformed month (``statistic_period_malformed``) and a month still
to come (``statistic_period_future``). District totals without a defect are valid records of the kind a
careless registration rule flags (truth/valid_kinds.csv ``district_total``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthqa import indicators as ind

from .truth import Truth
from .world import World

FAMILIES = ("statistic_disagrees", "statistic_org_unregistered", "statistic_value_malformed", "statistic_duplicate",
            "statistic_indicator_unknown", "statistic_period_malformed", "statistic_period_future")
MONTHS = 12  # months published back from the reference time
SETTLE_DAYS = 7  # STAT-AGREES-DETAIL's settle_days: younger months are published but not judged
SHARE = 0.01  # of the figures, per family (at least one)
MALFORMED = ["{:,}", "约{}", "—"]  # a thousands separator, an "about", a dash for a missing figure


class Figures:
    """The detail's figures, recomputed chunk by chunk."""

    def __init__(self) -> None:
        self.parts: dict[str, list[ind.Recomputed]] = {c: [] for c in ind.indicators()}

    def add(self, table: str, df: pd.DataFrame) -> None:
        """The chunk's rows of ``table`` as written (canonical columns and values)."""
        for code, spec in ind.indicators().items():
            if spec.table == table:
                self.parts[code].append(ind.recompute(code, df))

    def whole(self) -> dict[str, ind.Recomputed]:
        return {c: ind.combine(parts) for c, parts in self.parts.items()}


def _month_no(t: pd.Timestamp) -> int:
    return t.year * 12 + t.month - 1


def publish(world: World, rng: np.random.Generator, figures: Figures, truth: Truth) -> pd.DataFrame:
    """The platform's publications of the last ``MONTHS`` months, with their defects in the truth."""
    as_of = pd.Timestamp(world.as_of)
    now = _month_no(as_of)
    district = world.district["adcode"]
    registered = set(world.institutions["org_code"].str.upper())
    rows = []
    for code, r in figures.whole().items():
        keys = r.values.index.to_series().str.split("|", expand=True) if len(r.values) else None
        if keys is None:
            continue
        period, org = keys[0], keys[1]
        start = ind.period_start(period)
        covered = start >= r.covers_from if r.covers_from is not None else start.notna()
        m = ind.month_no(start)
        keep = covered & (m >= now - MONTHS) & (m < now) & (org.isin(registered) | (org == ind.TOTAL))
        rows.append(pd.DataFrame({"indicator_code": code, "period": period[keep].to_numpy(),
                                  "org_code": org[keep].replace(ind.TOTAL, district).to_numpy(),
                                  "_value": r.values[keep.to_numpy()].to_numpy(), "_start": start[keep].to_numpy()}))
    pub = pd.concat(rows, ignore_index=True).sort_values(["period", "indicator_code", "org_code"], ignore_index=True)
    # published a few days into the next month (the monthly report), never after the reference time
    next_month = pub["_start"] + pd.DateOffset(months=1)
    at = next_month + pd.to_timedelta(rng.integers(2 * 86400, 6 * 86400, len(pub)), unit="s")
    pub["published_at"] = at.where(at < as_of, as_of - pd.Timedelta(hours=2)).to_numpy()
    pub["value"] = pub["_value"].round().astype(np.int64).astype(str)
    pub.insert(0, "statistic_id", [f"FB{i:010d}" for i in range(len(pub))])
    judged = (next_month + pd.Timedelta(days=SETTLE_DAYS) <= as_of) & (pub["_value"] >= 2)
    return _defects(world, rng, pub, judged, truth)


def _defects(world: World, rng: np.random.Generator, pub: pd.DataFrame, judged: pd.Series, truth: Truth) -> pd.DataFrame:
    k = max(1, round(SHARE * len(pub)))
    district = world.district["adcode"]
    order = rng.permutation(pub.index[judged.to_numpy() & (pub["org_code"] != district).to_numpy()])
    picks = iter(np.array_split(order[: 6 * k], 6))
    key = "statistic_id"

    off = next(picks)
    v = pub.loc[off, "_value"].to_numpy()
    doubled = rng.random(len(off)) < 0.5
    factor = np.where(rng.random(len(off)) < 0.5, rng.uniform(1.15, 1.4, len(off)), rng.uniform(0.6, 0.85, len(off)))
    wrong = np.where(doubled, 2 * v, np.floor(v * factor) - 2 * (factor < 1) + 2 * (factor > 1))
    pub.loc[off, "value"] = np.maximum(wrong, 0).astype(np.int64).astype(str)
    truth.defect("published_statistic", pub.loc[off, key], "value", "statistic_disagrees",
                 np.where(doubled, "month double-counted", "figure off by more than the tolerance").tolist())

    unreg = next(picks)  # a code no detail row carries, its figure 0: it agrees, only the institution is wrong
    pub.loc[unreg, "org_code"] = [f"ZH-CLINIC-{90 + i}" for i in range(len(unreg))]
    pub.loc[unreg, "value"] = "0"
    truth.defect("published_statistic", pub.loc[unreg, key], "org_code", "statistic_org_unregistered",
                 "figure for an institution not in the register")

    bad = next(picks)
    forms = np.array(MALFORMED)[rng.integers(0, len(MALFORMED), len(bad))]
    pub.loc[bad, "value"] = [f.format(int(x)) if "{" in f else f for f, x in zip(forms, pub.loc[bad, "_value"])]
    pub.loc[bad, "value"] = pub.loc[bad, "value"].where(pub.loc[bad, "value"].str.contains(r"\D"), "—")
    truth.defect("published_statistic", pub.loc[bad, key], "value", "statistic_value_malformed", "value not a number")

    unknown = next(picks)
    pub.loc[unknown, "indicator_code"] = pub.loc[unknown, "indicator_code"].str[:-1]  # OPV_VISIT, DM_MANAGE …
    truth.defect("published_statistic", pub.loc[unknown, key], "indicator_code", "statistic_indicator_unknown",
                 "indicator code not in the list")

    periods = next(picks)
    half = len(periods) // 2
    malformed, future = periods[:half + len(periods) % 2], periods[half + len(periods) % 2:]
    pub.loc[malformed, "period"] = pub.loc[malformed, "period"].str.replace("-", "")  # 202609
    truth.defect("published_statistic", pub.loc[malformed, key], "period", "statistic_period_malformed",
                 "period not YYYY-MM")
    ahead = ind.month_no(ind.period_start(pub.loc[future, "period"])).astype(np.int64) + MONTHS + 2  # distinct, all ahead
    pub.loc[future, "period"] = ind.month_text(ahead)
    truth.defect("published_statistic", pub.loc[future, key], "period", "statistic_period_future",
                 "period still to come")

    again = next(picks)  # published twice: the same figure again days later, under a new number
    copies = pub.loc[again].copy()
    copies["statistic_id"] = [f"FB{len(pub) + i:010d}" for i in range(len(copies))]
    copies["published_at"] = (pd.to_datetime(copies["published_at"]) + pd.Timedelta(days=3)).clip(
        upper=pd.Timestamp(world.as_of) - pd.Timedelta(hours=1)).to_numpy()
    truth.defect("published_statistic", list(pub.loc[again, key]) + list(copies[key]), "statistic_id",
                 "statistic_duplicate", "figure published twice")
    pub = pd.concat([pub, copies], ignore_index=True)
    totals = pub.loc[pub["org_code"] == district, key]
    truth.rows("valid_kinds", zip(["published_statistic"] * len(totals), totals, ["district_total"] * len(totals)))
    return pub.drop(columns=["_value", "_start"])
