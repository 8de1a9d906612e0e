"""The extraction stage of an audit: read every mapped table of every source under its sampling.

Plain functions (no Prefect here): the flows in this package wire them together. One broken source
never stops the others; incremental watermarks are staged on the run and advance only if it succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from ..connectors import model
from ..connectors.config import Config
from ..connectors.errors import SourceError
from ..connectors.readers import Reader, TableCheck
from ..connectors.sampling import Scope
from ..connectors.sources import open_source
from ..connectors.store import AuditStore, RunContext


@dataclass
class TableRead:
    source: str
    table: str
    method: str
    rows: int = 0
    by_org: dict[str, int] = field(default_factory=dict)
    error: str | None = None


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
        tc = sampling.time_column or model.table(table).time
        wm = store.watermark(reader.name, table, tc) if tc else None
    return Scope(sampling=sampling, watermark=wm, **filters)


def read_table(reader: Reader, table: str, scope: Scope, ctx: RunContext | None = None) -> Iterator[pd.DataFrame]:
    """Yield the scoped chunks and stage the incremental watermark on the run as they pass."""
    tc = reader.time_column(table, scope)
    for df in reader.read(table, scope):
        if ctx is not None and scope.sampling.method == "incremental" and tc in df and len(df):
            latest = pd.to_datetime(df[tc], errors="coerce", format="mixed").max()
            if pd.notna(latest):
                ctx.stage_watermark(reader.name, table, tc, latest.to_pydatetime())
        yield df


def extract_all(config: Config, store: AuditStore, ctx: RunContext,
                on_table: Callable[[TableRead], None] | None = None) -> list[TableRead]:
    """Read every mapped table once under its sampling; return what was read, per table."""
    results = []
    for name in config.sources:
        try:
            reader = open_source(config, name)
            reader.connect()
        except SourceError as e:
            for t in config.sources[name].tables:
                tr = TableRead(name, t, config.sources[name].sampling_for(t).method, error=e.reason)
                results.append(tr)
                on_table and on_table(tr)
            continue
        try:
            for t in reader.tables():
                scope = scope_for(reader, store, t)
                tr = TableRead(name, t, scope.sampling.method)
                org = model.table(t).org
                try:
                    for df in read_table(reader, t, scope, ctx):
                        tr.rows += len(df)
                        if org and org in df:
                            for k, v in df[org].value_counts().items():
                                tr.by_org[str(k)] = tr.by_org.get(str(k), 0) + int(v)
                except SourceError as e:
                    tr.error = e.reason
                results.append(tr)
                on_table and on_table(tr)
        finally:
            reader.close()
    return results
