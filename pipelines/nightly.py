"""The nightly audit, as plain functions: the stages that exist run in order over every source.

Stages so far: check every source's mapping, then validate every mapped table under its sampling
(incremental tables read what arrived since the last successful night). One broken source never
stops the rest: the run is then ``partial``, and only the sources that were read advance their
incremental watermarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from healthqa.config import Config
from healthqa.errors import SourceError
from ..connectors.readers import TableCheck
from healthqa.store import AuditStore
from .extract import check_sources
from .dedup import DedupRun, run_dedup
from .validate import ValidationRun, validate_source


@dataclass
class NightlyResult:
    run_id: int
    checks: dict[str, list[TableCheck] | SourceError]
    validations: dict[str, ValidationRun] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # source -> reason
    dedup: "DedupRun | None" = None

    @property
    def rules_failed(self) -> bool:
        return any(v.failed for v in self.validations.values())


def run_nightly(cfg: Config, on_table: Callable[[str], None] | None = None) -> NightlyResult:
    checks = check_sources(cfg)
    store = AuditStore(cfg.store.url)
    try:
        ctx = store.start_run("nightly", {"sources": list(cfg.sources), "config": str(cfg.path)})
        res = NightlyResult(ctx.id, checks)
        try:
            for name in cfg.sources:
                if isinstance(checks[name], SourceError):
                    res.failures[name] = checks[name].reason
                    continue
                staged = dict(ctx.pending_watermarks)
                try:
                    res.validations[name] = validate_source(cfg, name, store=store, nightly=ctx, on_table=on_table)
                except SourceError as e:
                    res.failures[name] = e.reason
                    ctx.pending_watermarks = staged  # what this source staged does not count
        except BaseException as e:
            store.finish_run(ctx, ok=False, message=f"{type(e).__name__}: {e}"[:2000])
            raise
        store.finish_run(ctx, ok=True, partial=bool(res.failures),
                         message="; ".join(f"{s}: {e}" for s, e in res.failures.items())[:2000] or None)
        # duplicate screening: new and changed archives against the index (a full run the first time)
        src = next((n for n, s in cfg.sources.items() if "person" in s.tables), None)
        if src is not None and src not in res.failures:
            try:
                res.dedup = run_dedup(cfg, store, source=src, incremental=True)
            except SourceError as e:
                res.failures[src] = e.reason
            except Exception as e:  # noqa: BLE001 - the night's other results must still be reported
                res.failures["dedup"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        return res
    finally:
        store.close()
