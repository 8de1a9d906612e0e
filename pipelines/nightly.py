"""The nightly audit, as plain functions: the stages run in order over every source, in one run.

Stages: check every source's mapping, validate every mapped table under its sampling (incremental
tables read what arrived since the last successful night), screen the resident archives for
duplicates (new and changed archives against the index), then score the night, reconcile its
findings (a source that could not be read is a finding too), write the run report and publish. One broken source or stage
never stops the rest: the run is then ``partial`` with what could not run as its message, and only
the sources that were read advance their incremental watermarks. The run is finished — and its
watermarks advance — only after the last stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from healthqa.config import Config
from healthqa.connectors.readers import TableCheck
from healthqa.errors import SourceError, SourceUnreachable
from healthqa.reports import run_report
from healthqa.reports.assess import Assessment, assess_run
from healthqa.reports.publish import Delivery, publish_run
from healthqa.store import AuditStore

from .dedup import DedupRun, run_dedup
from .extract import check_sources
from .validate import ValidationRun, validate_source


@dataclass
class NightlyResult:
    run_id: int
    checks: dict[str, list[TableCheck] | SourceError]
    validations: dict[str, ValidationRun] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # source or stage -> reason
    dedup: DedupRun | None = None
    status: str = "running"  # the run's status once finished: success | partial
    faults: list[dict] = field(default_factory=list)  # what could not run, as findings see it
    assessment: Assessment | None = None
    report: Path | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def rules_failed(self) -> bool:
        return any(v.failed for v in self.validations.values())


def run_nightly(cfg: Config, on_table: Callable[[str], None] | None = None) -> NightlyResult:
    checks = check_sources(cfg)
    with AuditStore(cfg.store.url) as store:
        with store.runs.start("nightly", {"sources": list(cfg.sources), "config": str(cfg.path)}) as run:
            res = NightlyResult(run.id, checks)

            def failed(what: str, reason: str, fault: str, source: str | None = None) -> None:
                res.failures[what] = reason
                run.problem(f"{what}: {reason}")
                res.faults.append({"source": source or what, "kind": fault, "reason": reason,
                                   "zh": FAULT_ZH.get(fault, fault) + f"：{what}"})

            def source_failed(name: str, e: SourceError) -> None:
                failed(name, e.reason, "store_unreachable" if isinstance(e, SourceUnreachable) else "table_unreadable")

            for name in cfg.sources:
                if isinstance(checks[name], SourceError):
                    source_failed(name, checks[name])
                    continue
                try:
                    with run.attempt():  # what a failing source staged does not count
                        res.validations[name] = validate_source(cfg, name, store=store, nightly=run,
                                                                on_table=on_table)
                except SourceError as e:
                    source_failed(name, e)
            # duplicate screening: new and changed archives against the index (a full run the first time)
            src = cfg.source_of("person")
            if src is not None and src not in res.failures:
                try:
                    res.dedup = run_dedup(cfg, store, source=src, incremental=True)
                except SourceError as e:
                    source_failed(src, e)
                except Exception as e:  # noqa: BLE001 - the night's other results must still be reported
                    failed("dedup", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}", "run_incomplete", src)
            try:  # scores and findings of the night, faults included
                res.assessment = assess_run(cfg, store, run.id, res.faults)
            except Exception as e:  # noqa: BLE001 - the night's results are stored; say what is missing
                failed("reports", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}", "run_incomplete", "*")
        res.status = "partial" if run.problems else "success"
        if res.assessment is not None:  # the report of the finished run, then publishing (never fails the night)
            res.report = run_report.write(cfg, store, run.id, cfg.reports.out_dir).html
            res.deliveries = publish_run(cfg, store, run.id, res.assessment.summary())
        return res


FAULT_ZH = {"store_unreachable": "数据源无法连接", "table_unreadable": "数据表无法读取", "run_incomplete": "稽核未能完整运行"}
