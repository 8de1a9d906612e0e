"""Reading for an audit: source checks, the scope of a table, and chunked reads that stage
incremental watermarks on the run (which advance only if the run succeeds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd

from healthqa import canonical
from healthqa.config import Config
from healthqa.connectors.readers import Reader, TableCheck
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.connectors.values import parse_times
from healthqa.errors import SourceError
from healthqa.store import AuditStore, RunContext

log = logging.getLogger("healthqa.extract")


def check_sources(config: Config) -> dict[str, list[TableCheck] | SourceError]:
    """Connect to every source and check its mapping; an unreachable source is reported, not raised."""
    out: dict[str, list[TableCheck] | SourceError] = {}
    for name in config.sources:
        try:
            with open_source(config, name) as r:
                out[name] = r.check()
        except SourceError as e:
            out[name] = e
    return out


def arrival_mark_column(column: str) -> str:
    """The watermark name of an arrival column (apart from the time columns' own)."""
    return f"arrival:{column}"


def scope_for(reader: Reader, store: AuditStore | None, table: str, **filters) -> Scope:
    """The table's configured sampling, its watermark (incremental) and the command line's filters.

    An incremental read also takes late arrivals (docs/design.md "Late arrivals"): the rows loaded
    after the last night's arrival mark where the table has an ``arrival_column``, else the rows of
    the ``overlap_hours`` before the watermark that no night counted yet. A read capped at ``rows``
    takes the oldest rows after the watermark only, as before (a re-read would eat its cap)."""
    sampling = reader.cfg.sampling_for(table)
    if sampling.method != "incremental" or store is None:
        return Scope(sampling=sampling, **filters)
    tc = sampling.time_column or canonical.table(table).time
    wm = store.watermarks.get(reader.name, table, tc) if tc else None
    if sampling.rows:
        return Scope(sampling=sampling, watermark=wm, **filters)
    arrival = sampling.arrival_column
    return Scope(sampling=sampling, watermark=wm, fresh_only=True, seen=store.watermarks.counted(reader.name, table),
                 arrival_mark=store.watermarks.get(reader.name, table, arrival_mark_column(arrival)) if arrival else None,
                 overlap=timedelta(0) if arrival else timedelta(hours=sampling.overlap_hours), **filters)


def read_table(reader: Reader, table: str, scope: Scope, ctx: RunContext | None = None) -> Iterator[pd.DataFrame]:
    """Yield the scoped chunks; once all are read, stage the incremental watermark on the run.

    The watermark is the latest time read (aware times as local time of the configuration's
    timezone). A read capped at ``rows`` took the oldest rows in time order and says how it stopped;
    when rows at the last instant it read were left behind, the watermark stops just before that
    instant, so the next run reads them (the rows already read at that instant are read again).
    """
    tc = reader.time_column(table, scope)
    incremental = scope.sampling.method == "incremental"
    latest = None
    seen: list[np.ndarray] = []  # times read, kept only for a capped read (at most ``rows`` of them)
    fetched = _Fetched(scope, ctx.started_at) if ctx is not None and scope.fresh_only else None
    if fetched is not None:
        reader.fetched[table] = []
    try:
        for df in reader.read(table, scope):
            if incremental and tc in df and len(df):
                when = parse_times(df[tc], reader.tz).dropna()
                if len(when):
                    latest = max(latest, when.max()) if latest is not None else when.max()
                    if scope.sampling.rows:
                        seen.append(when.to_numpy())
            if fetched is not None:
                fetched.take(reader.fetched[table], latest)
            yield df
    finally:
        reader.fetched.pop(table, None)
    capped = reader.capped.get(table)
    if incremental and capped is not None:
        latest = _capped_watermark(reader, table, capped, latest, seen)
    unreadable = reader.unreadable.get(table)
    if unreadable:
        log.warning("无法读取的值 unreadable values: source %s table %s: %s (bytes in no known encoding), "
                    "counted by the rules",
                    reader.name, table, ", ".join(f"{c} {n}" for c, n in unreadable.items()))
    lines = reader.undecodable_lines.get(table)
    if lines:
        log.warning("无法解码的行 undecodable lines: source %s table %s: %d lines in neither UTF-8 nor GB18030 "
                    "(lines %s), counted by the rules", reader.name, table, len(lines),
                    ", ".join(map(str, lines[:10])) + (" …" if len(lines) > 10 else ""))
    if ctx is not None and incremental and latest is not None:
        ctx.stage_watermark(reader.name, table, tc, latest.to_pydatetime())
    if fetched is not None:
        fetched.stage(ctx, reader.name, table, latest)


class _Fetched:
    """What a night fetched that the next night will fetch again, taken off the reader chunk by chunk
    (``Reader.fetched``): the rows inside the overlap before the watermark this night leaves, or whose
    time is no time at all, and the latest load time (``arrival_column``). The watermark it leaves is
    at least the lesser of the latest time counted and the run's start, so rows older than that bound
    less the overlap are dropped as the read goes: a first night's whole read keeps about the overlap."""

    def __init__(self, scope: Scope, started_at):
        self.scope, self.started_at = scope, pd.Timestamp(started_at)
        self.rows = pd.DataFrame({"key": pd.Series(dtype=object), "time": pd.Series(dtype="datetime64[ns]"),
                                  "timeless": pd.Series(dtype=bool)})
        self.arrived = None

    def _mark(self, latest):
        marks = [pd.Timestamp(t) for t in (self.scope.watermark,) if t is not None]
        if latest is not None:
            marks.append(min(latest, self.started_at))
        return max(marks) if marks else None

    def take(self, parts: list[pd.DataFrame], latest) -> None:
        if not parts:
            return
        new = pd.concat(parts, ignore_index=True)
        parts.clear()
        arrived = pd.to_datetime(new["arrived"], errors="coerce").dropna()
        if len(arrived):
            self.arrived = max(self.arrived, arrived.max()) if self.arrived is not None else arrived.max()
        self.rows = self._again(pd.concat([self.rows, new[["key", "time", "timeless"]]], ignore_index=True),
                                latest, final=False)

    def _again(self, rows: pd.DataFrame, latest, final: bool) -> pd.DataFrame:
        mark = self._mark(latest)
        keep = rows["timeless"].astype(bool)
        if not self.scope.overlap:
            return rows[keep]
        if mark is None:  # no time read yet: nothing to measure the overlap from
            return rows if not final else rows[keep]
        near = rows["time"] > mark - self.scope.overlap
        return rows[keep | ((near & (rows["time"] <= mark)) if final else near)]

    def stage(self, ctx: RunContext, source: str, table: str, latest) -> None:
        ctx.stage_counted(source, table, set(self._again(self.rows, latest, final=True)["key"]))
        if self.scope.sampling.arrival_column and self.arrived is not None:
            ctx.stage_watermark(source, table, arrival_mark_column(self.scope.sampling.arrival_column),
                                self.arrived.to_pydatetime())


def _capped_watermark(reader: Reader, table: str, capped, latest, seen: list[np.ndarray]):
    nxt = parse_times(pd.Series([capped.next_time], dtype=object), reader.tz).iloc[0]
    if latest is not None and pd.notna(nxt) and nxt <= latest:
        times = np.concatenate(seen) if seen else np.array([], dtype="datetime64[ns]")
        before = times[times < np.datetime64(nxt)]
        if len(before):
            latest = pd.Timestamp(before.max())
        else:
            log.warning("同一时刻的记录超过上限 more rows at one instant than the cap: source %s table %s: "
                        "more than rows=%d rows at %s; those beyond the cap are not read — raise sampling.rows",
                        reader.name, table, capped.rows, nxt)
    log.warning("增量读取达到上限 incremental read capped: source %s table %s: capped at rows=%d; the oldest "
                "rows were read, newer rows are left for the next run (watermark %s)", reader.name, table, capped.rows,
                latest if latest is not None else "unchanged")
    return latest
