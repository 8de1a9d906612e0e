"""Sampling: which rows of a table an audit reads.

Strategies (docs/design.md / the configuration's ``sampling``):

- ``full``: every row (optionally capped at ``rows``);
- ``random``: ``rows`` rows drawn with a reproducible ``seed``;
- ``stratified``: like random, but every institution gets at least ``per_org_min`` rows (or all it has);
- ``incremental``: rows whose time column is later than the last successful run's watermark; the
  nightly also reads late arrivals (rows loaded since the last night with an earlier time): those
  loaded after the last night's ``arrival_column`` mark where the source stamps loads, else those
  within ``overlap_hours`` before the watermark that no night counted yet (``Scope.seen``).

``since`` / ``until`` windows (``window_bound``: a bound as an engineer types it, on the command
line or in the console) and institution filters apply to all of them. Readers push filters and
limits into SQL; random and stratified draws read only the key (and institution) column to choose
rows, then fetch the chosen rows by key, so a large table is never loaded whole to sample it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from healthqa.config import Sampling

if TYPE_CHECKING:  # NumPy and pandas load with the first draw: reports and the CLI read scopes without them
    import numpy as np
    import pandas as pd

TIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
TIME_EXAMPLES = "2026-11-20, 2026-11-20 08:30 or 2026-11-20T08:30:00"


def window_bound(text: str, *, upper: bool = False) -> datetime:
    """A bound of the engineer's time window as typed on the command line or in the console, in the
    platform's local time; ValueError when it is none of ``TIME_FORMATS``. A date alone as the
    ``upper`` bound is the end of that day — ``--until 2026-11-20`` takes the 20th's rows too —, as
    the lower bound its start."""
    text = text.strip()
    for i, f in enumerate(TIME_FORMATS):
        try:
            when = datetime.strptime(text, f)
        except ValueError:
            continue
        return when + timedelta(days=1, microseconds=-1) if upper and i == 0 else when
    raise ValueError(f"not a date or time: {text!r}")


@dataclass(frozen=True)
class Scope:
    """What to read from one table: the sampling plus filters an engineer adds on the command line."""

    sampling: Sampling = field(default_factory=Sampling)
    orgs: tuple[str, ...] = ()
    org_missing: bool = False  # also the rows without an institution code (a partition of the table)
    since: datetime | None = None
    until: datetime | None = None
    watermark: datetime | None = None  # incremental: read rows strictly after this
    # with a lower time bound, also the rows without a time (NULL or blank): the duplicate scan's
    # night reads those and tells the changed ones by a hash of their values
    undated: bool = False
    # the nightly's incremental read (pipelines/extract.scope_for), late arrivals and rows counted once:
    overlap: timedelta = timedelta(0)  # also re-read this long before the watermark (rows that came late)
    arrival_mark: datetime | None = None  # with sampling.arrival_column: also the rows loaded after this
    seen: frozenset[str] = frozenset()  # keys of rows an earlier night counted that this read fetches again
    # leave out what no night should count again: rows of ``seen``, and rows the source's query
    # returned whose time, read as a time, is not after the bound (text in another format than ISO)
    fresh_only: bool = False

    @property
    def time_window(self) -> tuple[datetime | None, datetime | None]:
        """The effective (exclusive lower, inclusive-or-exclusive upper) bounds on the time column."""
        lo = max((t for t in (self.since, self.sampling.since) if t), default=None)
        if self.sampling.method == "incremental" and self.watermark:
            mark = self.watermark - self.overlap
            lo = max(lo, mark) if lo else mark
        hi = min((t for t in (self.until, self.sampling.until) if t), default=None)
        return lo, hi

    @property
    def arrivals(self) -> tuple[str, datetime] | None:
        """(arrival column, mark): an incremental read also takes the rows loaded after the mark."""
        col = self.sampling.arrival_column
        if self.sampling.method == "incremental" and col and self.arrival_mark is not None and self.watermark:
            return col, self.arrival_mark
        return None

    def describe(self) -> dict:
        """The read as a rule result records it (its ``sampling``): the table's sampling, and what
        narrowed it — institutions, an engineer's window, an incremental watermark. Whether the read
        saw a finding's rows whole is decided from this record (``read_extent``)."""
        doc = self.sampling.model_dump(mode="json", exclude_none=True, exclude={"overlap_hours"})
        if self.orgs:
            doc["orgs"] = sorted(self.orgs)
        if self.since or self.until:
            doc["window"] = {"since": self.since.isoformat() if self.since else None,
                             "until": self.until.isoformat() if self.until else None}
        if self.sampling.method == "incremental":  # None: the first read, before there was a watermark
            doc["watermark"] = self.watermark.isoformat() if self.watermark is not None else None
            if self.arrivals:
                doc["arrived_after"] = self.arrivals[1].isoformat()
            elif self.overlap and self.watermark is not None:
                doc["overlap_hours"] = self.overlap.total_seconds() / 3600
        return doc

    @property
    def draws(self) -> bool:
        """True when rows are chosen by key (random or stratified) rather than streamed."""
        return self.sampling.method in ("random", "stratified")


def choose_keys(keys: pd.DataFrame, sampling: Sampling) -> np.ndarray:
    """Choose the keys to read from a frame of ``key`` (and ``org`` for stratified) columns.

    Keys are sorted first, so the draw depends on the seed and the set of keys, never on the order a
    database happened to return them in.
    """
    import numpy as np

    keys = keys.dropna(subset=["key"]).drop_duplicates("key").sort_values("key", kind="stable")
    rng = np.random.default_rng(sampling.seed)
    n = len(keys)
    want = min(sampling.rows or n, n)
    if sampling.method == "random" or "org" not in keys:
        idx = np.sort(rng.choice(n, size=want, replace=False)) if want < n else np.arange(n)
        return keys["key"].to_numpy()[idx]
    # Stratified: a floor of per_org_min rows per institution, the rest drawn from the remaining
    # rows uniformly, so large institutions keep their share without small ones vanishing.
    order = rng.permutation(n)
    shuffled = keys.iloc[order].reset_index(drop=True)
    org = shuffled["org"].fillna("<NULL>")
    rank = org.groupby(org, sort=False).cumcount()
    floor = rank < sampling.per_org_min
    taken = shuffled.index[floor]
    rest = shuffled.index[~floor]
    extra = max(want - len(taken), 0)
    chosen = np.concatenate([taken.to_numpy(), rest.to_numpy()[:extra]])
    return np.sort(shuffled["key"].to_numpy()[chosen])


WHOLE, NEW_ROWS, PART = "whole", "new_rows", "part"


def read_extent(doc: dict | None) -> str:
    """How much of a table a recorded read (``Scope.describe``) saw:

    - ``whole``: every row — of the table, or of each institution it was filtered to (``orgs``): a
      full read without a cap or a time window, or an incremental read with no watermark yet;
    - ``new_rows``: only the rows after an incremental watermark (a night's new arrivals);
    - ``part``: a window, a random or stratified draw, or a capped read.

    Only a ``whole`` read has seen every row a finding is about, so only it can verify a repair. A
    record without these details (stored by an older version) is read as the configured sampling
    says: full is whole; an incremental read that did not record its watermark is taken as part."""
    doc = doc or {}
    method = doc.get("method", "full")
    if method not in ("full", "incremental") or doc.get("rows") or doc.get("since") or doc.get("until") \
            or doc.get("window"):
        return PART
    if method == "incremental" and "watermark" not in doc:
        return PART  # recorded before reads said their watermark: it may have read only new rows
    return NEW_ROWS if doc.get("watermark") else WHOLE
