"""Reading for an audit: source checks, the scope of a table, and chunked reads that stage
incremental watermarks on the run (which advance only if the run succeeds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

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


def scope_for(reader: Reader, store: AuditStore | None, table: str, **filters) -> Scope:
    """The table's configured sampling, its watermark (incremental) and the command line's filters."""
    sampling = reader.cfg.sampling_for(table)
    wm = None
    if sampling.method == "incremental" and store is not None:
        tc = sampling.time_column or canonical.table(table).time
        wm = store.watermarks.get(reader.name, table, tc) if tc else None
    return Scope(sampling=sampling, watermark=wm, **filters)


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
    for df in reader.read(table, scope):
        if incremental and tc in df and len(df):
            when = parse_times(df[tc], reader.tz).dropna()
            if len(when):
                latest = max(latest, when.max()) if latest is not None else when.max()
                if scope.sampling.rows:
                    seen.append(when.to_numpy())
        yield df
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
