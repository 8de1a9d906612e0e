"""The nightly audit, as plain functions: the stages run in order over every source, in one run.

Stages so far: check every source's mapping, validate every mapped table under its sampling
(incremental tables read what arrived since the last successful night), then screen the resident
archives for duplicates (new and changed archives against the index). One broken source or stage
never stops the rest: the run is then ``partial`` with what could not run as its message, and only
the sources that were read advance their incremental watermarks. The run is finished — and its
watermarks advance — only after the last stage.
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
    failures: dict[str, str] = field(default_factory=dict)  # source or stage -> reason
    dedup: "DedupRun | None" = None
    status: str = "running"  # the run's status once finished: success | partial

    @property
    def rules_failed(self) -> bool:
        return any(v.failed for v in self.validations.values())


def run_nightly(cfg: Config, on_table: Callable[[str], None] | None = None) -> NightlyResult:
    checks = check_sources(cfg)
    with AuditStore(cfg.store.url) as store:
        with store.runs.start("nightly", {"sources": list(cfg.sources), "config": str(cfg.path)}) as run:
            res = NightlyResult(run.id, checks)

            def failed(what: str, reason: str) -> None:
                res.failures[what] = reason
                run.problem(f"{what}: {reason}")

            for name in cfg.sources:
                if isinstance(checks[name], SourceError):
                    failed(name, checks[name].reason)
                    continue
                try:
                    with run.attempt():  # what a failing source staged does not count
                        res.validations[name] = validate_source(cfg, name, store=store, nightly=run,
                                                                on_table=on_table)
                except SourceError as e:
                    failed(name, e.reason)
            # duplicate screening: new and changed archives against the index (a full run the first time)
            src = cfg.source_of("person")
            if src is not None and src not in res.failures:
                try:
                    res.dedup = run_dedup(cfg, store, source=src, incremental=True)
                except SourceError as e:
                    failed(src, e.reason)
                except Exception as e:  # noqa: BLE001 - the night's other results must still be reported
                    failed("dedup", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
        res.status = "partial" if run.problems else "success"
        return res
