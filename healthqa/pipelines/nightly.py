"""The nightly audit, as plain functions: the stages that exist run in order over every source.

Stages so far: check every source's mapping, then extract every mapped table under its sampling.
One broken source never stops the rest: the run is then ``partial``, and only the tables that were
read advance their incremental watermarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..connectors.config import Config
from ..connectors.errors import SourceError
from ..connectors.readers import TableCheck
from ..connectors.store import AuditStore
from .extract import TableRead, check_sources, extract_all


@dataclass
class NightlyResult:
    run_id: int
    checks: dict[str, list[TableCheck] | SourceError]
    reads: list[TableRead]

    @property
    def failed(self) -> list[TableRead]:
        return [r for r in self.reads if r.error]


def run_nightly(cfg: Config, on_table: Callable[[TableRead], None] | None = None) -> NightlyResult:
    checks = check_sources(cfg)
    store = AuditStore(cfg.store.url)
    try:
        ctx = store.start_run("nightly", {"sources": list(cfg.sources), "config": str(cfg.path)})
        try:
            reads = extract_all(cfg, store, ctx, on_table=on_table)
        except BaseException as e:
            store.finish_run(ctx, ok=False, message=f"{type(e).__name__}: {e}"[:2000])
            raise
        failed = {(r.source, r.table): r.error for r in reads if r.error}
        ctx.pending_watermarks = {k: v for k, v in ctx.pending_watermarks.items() if (k[0], k[1]) not in failed}
        store.finish_run(ctx, ok=True, partial=bool(failed),
                         message="; ".join(f"{s}.{t}: {e}" for (s, t), e in failed.items())[:2000] or None)
        return NightlyResult(ctx.id, checks, reads)
    finally:
        store.close()
