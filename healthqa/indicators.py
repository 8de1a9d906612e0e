"""The decision-support platform's published indicators, recomputed from the detail they count.

卫生综合管理与决策支持平台 publishes monthly figures per institution and for the district
(``drc.published_statistic``). Each indicator of ``codelists/statistic_indicators.yml`` says which
detail table it counts and how (``method``); ``recompute`` makes the same figures from that table's
rows, so the audit can hold each published figure to its source. The rule types
(expectations/rule_types_statistic.py) read the detail through reference providers; the synthetic
platform (demo/) publishes its figures with the same functions, so that its valid figures agree.

A recomputation is a ``Recomputed``: the values by ``"YYYY-MM|ORG"`` (``ORG`` the institution code,
trimmed and upper-case; ``*`` the district total) and the first month start the detail fully covers
(a month before it, or a trailing window reaching before it, cannot be recomputed). A month, institution
pair absent from the values is 0 for the counting methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from . import canonical, clock, codelists
from . import standards as st

TOTAL = "*"  # the district total's institution in a recomputation's keys
CODE_LIST = "statistic_indicators"
ARCHIVE_YEARS = 10  # the archives method recomputes at most this many years back
NOTHING = pd.Timestamp.max  # the coverage of no detail at all: no month can be recomputed


@dataclass(frozen=True)
class Indicator:
    code: str
    zh: str
    en: str
    table: str  # canonical detail table
    method: str
    count: str = ""  # the column whose distinct values are counted
    time: str = ""
    org: str = ""  # the institution column (default: the table's own)
    months: int = 1  # managed: the trailing window, in months
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """The detail columns the recomputation reads."""
        if self.method == "archives":
            return ("archive_id", self.org, "created_at", "status_code", "death_date")
        return tuple(dict.fromkeys([self.count, self.org, self.time, *self.where]))


@dataclass(frozen=True)
class Recomputed:
    values: pd.Series  # "YYYY-MM|ORG" -> value
    covers_from: pd.Timestamp | None  # the first month start fully covered; None: every month


@cache
def indicators() -> dict[str, Indicator]:
    """The indicators of the data file, by code."""
    out = {}
    for code, spec in codelists.load(CODE_LIST)["codes"].items():
        spec = dict(spec)
        if "org" not in spec:
            spec["org"] = canonical.table(spec["table"]).org or "org_code"
        spec["where"] = {c: tuple(map(str, v if isinstance(v, list) else [v])) for c, v in (spec.get("where") or {}).items()}
        if spec["method"] not in METHODS:
            raise ValueError(f"{CODE_LIST}.yml {code}: unknown method {spec['method']!r} (known: {', '.join(METHODS)})")
        out[str(code)] = Indicator(code=str(code), **spec)
    return out


def _factorize(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each value's number among the distinct values (-1: missing); values that cannot be hashed as
    they are (a signalling NaN a driver may hand over) are compared as their text."""
    try:
        return pd.factorize(s, use_na_sentinel=True)
    except TypeError:
        return pd.factorize(st.text(s), use_na_sentinel=True)


def org_key(s: pd.Series) -> pd.Series:
    """Institution codes as the figures and the detail are matched: trimmed, upper-case (each
    distinct code converted once: a table has a few dozen institutions and a million rows)."""
    codes, uniques = _factorize(s)
    keys = st.text(pd.Series(uniques, dtype=object)).str.upper().to_numpy()
    out = np.where(codes >= 0, keys[np.maximum(codes, 0)] if len(keys) else None, None)
    return pd.Series(out, index=s.index, dtype=object)


def _codes(s: pd.Series) -> np.ndarray:
    """Each value's number among the distinct trimmed texts (-1: missing): counted as integers."""
    codes, uniques = _factorize(s)
    if not len(uniques):
        return codes
    text_codes, _ = pd.factorize(st.text(pd.Series(uniques, dtype=object)), use_na_sentinel=True)
    return np.where(codes >= 0, text_codes[np.maximum(codes, 0)], -1)


def month_no(t: pd.Series) -> pd.Series:
    """Months as integers (year * 12 + month - 1); NaN where the time is unreadable."""
    return t.dt.year * 12 + t.dt.month - 1


def month_text(m: np.ndarray | pd.Series) -> np.ndarray:
    m = np.asarray(m, dtype=np.int64)
    if not len(m):  # numpy's text functions refuse empty arrays
        return np.array([], dtype=str)
    return np.char.add(np.char.add((m // 12).astype(str), "-"), np.char.zfill((m % 12 + 1).astype(str), 2))


def period_start(period: pd.Series) -> pd.Series:
    """The first day of each well-formed ``YYYY-MM`` period (NaT otherwise)."""
    t = st.text(period)
    ok = t.str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").eq(True)
    return pd.to_datetime(t.where(ok) + "-01", format="%Y-%m-%d", errors="coerce")


def _keys(months: pd.Series, orgs: pd.Series) -> pd.Index:
    return pd.Index(np.char.add(np.char.add(month_text(months), "|"), orgs.to_numpy(dtype=str)))


def _by_month(frame: pd.DataFrame, orgs: np.ndarray) -> pd.Series:
    """Distinct ``v`` per (month ``m``, institution ``o``: its number in ``orgs``, -1 none) and per
    month over the district; all three columns integers."""
    per_org = frame[frame["o"] >= 0].drop_duplicates(["m", "o", "v"]).groupby(["m", "o"]).size()
    total = frame.drop_duplicates(["m", "v"]).groupby("m").size()
    values = np.concatenate([per_org.to_numpy(), total.to_numpy()]).astype(float)
    if not len(values):
        return pd.Series(dtype=float, index=pd.Index([], dtype=object))
    months = pd.Series(np.concatenate([per_org.index.get_level_values(0), total.index]))
    names = np.concatenate([orgs[per_org.index.get_level_values(1).to_numpy()].astype(str), [TOTAL] * len(total)])
    return pd.Series(values, index=_keys(months, pd.Series(names)))


def _detail(ind: Indicator, df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The detail's counted values, institutions and months as integers, and the institutions' keys."""
    keep = pd.Series(True, index=df.index)
    for c, allowed in ind.where.items():
        keep &= st.text(df[c]).isin(allowed)
    df = df[keep]
    t = st.datetimes(df[ind.time])
    org, orgs = pd.factorize(org_key(df[ind.org]), use_na_sentinel=True)
    frame = pd.DataFrame({"v": _codes(df[ind.count]), "o": org, "t": t, "m": month_no(t)})
    frame = frame[(frame["v"] >= 0) & frame["m"].notna()]
    return frame.assign(m=frame["m"].astype(np.int64)), np.asarray(orgs, dtype=object)


def _count(ind: Indicator, df: pd.DataFrame) -> Recomputed:
    frame, orgs = _detail(ind, df)
    first = frame["t"].min()
    return Recomputed(_by_month(frame.drop(columns="t"), orgs), NOTHING if pd.isna(first) else first.normalize())


def _managed(ind: Indicator, df: pd.DataFrame) -> Recomputed:
    frame, orgs = _detail(ind, df)
    first = frame["t"].min()
    frame = frame.drop(columns="t").drop_duplicates()
    # each record counts in its month and the ``months - 1`` after it (the trailing window ending there)
    spread = pd.concat([frame.assign(m=frame["m"] + k) for k in range(ind.months)], ignore_index=True)
    covers = NOTHING if pd.isna(first) else first.normalize() + pd.DateOffset(months=ind.months - 1)
    return Recomputed(_by_month(spread, orgs), covers)


def _archives(ind: Indicator, df: pd.DataFrame) -> Recomputed:
    """Archives (records of the MPI) active at each month's end: created by then, and active now
    (status 1) or deceased (status 2) after it. A moved-out archive (status 3) carries no date of
    the move: it counts in no month."""
    created = month_no(st.datetimes(df["created_at"]))
    status = st.text(df["status_code"])
    death = month_no(st.datetimes(df["death_date"]))
    now = int(month_no(pd.Series([pd.Timestamp(clock.now())])).iloc[0])
    lo = now - 12 * ARCHIVE_YEARS
    end = pd.Series(np.where(status == "1", now + 1, np.where(status == "2", death, np.nan)), index=df.index)
    ok = created.notna() & end.notna()
    start = created[ok].clip(lower=lo).astype(np.int64)
    stop = end[ok].clip(upper=now + 1).astype(np.int64)
    live = start < stop
    org, names = pd.factorize(org_key(df[ind.org])[ok][live], use_na_sentinel=True)
    org = np.where(org >= 0, org, len(names))  # no institution: the district total only
    width = now + 2 - lo
    grid = np.zeros((len(names) + 1, width), dtype=np.int64)  # institution x month: +1 created, -1 closed
    np.add.at(grid, (org, start[live].to_numpy() - lo), 1)
    np.add.at(grid, (org, stop[live].to_numpy() - lo), -1)
    counts = grid.cumsum(axis=1)[:, :-1]  # months lo..now
    o, m = np.nonzero(counts[:-1] > 0)
    total = counts.sum(axis=0)
    values = np.concatenate([counts[o, m], total]).astype(float)
    keys = _keys(pd.Series(np.concatenate([m, np.arange(width - 1)]) + lo),
                 pd.Series(np.concatenate([np.asarray(names, dtype=object)[o].astype(str), [TOTAL] * (width - 1)])))
    created_first = created.min()
    return Recomputed(pd.Series(values, index=keys), _month_start(lo) if created_first < lo else None)


def _month_start(m: int) -> pd.Timestamp:
    return pd.Timestamp(year=m // 12, month=m % 12 + 1, day=1)


METHODS: dict[str, Callable[[Indicator, pd.DataFrame], Recomputed]] = {
    "count": _count, "managed": _managed, "archives": _archives}


def recompute(code: str, df: pd.DataFrame) -> Recomputed:
    """The indicator ``code`` recomputed from its detail table's rows (``df``: at least its columns)."""
    ind = indicators()[code]
    return METHODS[ind.method](ind, df)


def combine(parts: Iterable[Recomputed]) -> Recomputed:
    """Recomputations of disjoint parts of the detail (a generator's chunks, whose counted values
    never span two parts) as one: values summed, the earliest coverage."""
    parts = list(parts)
    values = pd.concat([p.values for p in parts]).groupby(level=0).sum() if parts else pd.Series(dtype=float)
    starts = [p.covers_from for p in parts]
    covers = None if not parts or any(s is None for s in starts) else min(starts)  # type: ignore[type-var]
    return Recomputed(values, covers)
