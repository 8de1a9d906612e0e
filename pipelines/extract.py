"""Reading for an audit: source checks, the scope of a table, and chunked reads that stage
incremental watermarks on the run (which advance only if the run succeeds).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from healthqa import canonical
from healthqa.config import Config
from healthqa.connectors.readers import Reader, TableCheck
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.errors import SourceError
from healthqa.store import AuditStore, RunContext


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
    """Yield the scoped chunks and stage the incremental watermark on the run as they pass."""
    tc = reader.time_column(table, scope)
    for df in reader.read(table, scope):
        if ctx is not None and scope.sampling.method == "incremental" and tc in df and len(df):
            latest = pd.to_datetime(df[tc], errors="coerce", format="mixed").max()
            if pd.notna(latest):
                ctx.stage_watermark(reader.name, table, tc, latest.to_pydatetime())
        yield df
