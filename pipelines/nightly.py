"""The nightly audit, as plain functions: the stages run in order over every source, in one run.

Stages: check every source's mapping, validate every mapped table under its sampling (incremental
tables read what arrived since the last successful night), screen the resident archives for
duplicates (new and changed archives against the index), then score the night, reconcile its
findings (a source that could not be read is a finding too), write the run report and publish.
One broken source or stage never stops the rest: the run is then ``partial`` with what could not run as its message, and only
the sources that were read advance their incremental watermarks. The run is finished — and its
watermarks advance — only after the last stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from healthqa.config import Config
from healthqa.connectors.readers import TableCheck
from healthqa.connectors.sources import open_source
from healthqa.errors import HealthqaError, SourceError, SourceUnreachable
from healthqa.reports import run_report
from healthqa.reports.assess import Assessment, assess_run
from healthqa.reports.publish import Delivery, publish_run
from healthqa.store import AuditStore, RunContext
from healthqa.store.locks import Busy

from .dedup import DedupRun, run_dedup
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


class Night:
    """One nightly audit's stages, each a plain method over the same run; ``run_nightly`` calls them
    in order, the Prefect flow (``pipelines/flows.py``) calls the same methods as tasks. A stage that
    raises is retried by the flow; one that finally fails is recorded with ``failed`` and the night
    goes on."""

    def __init__(self, cfg: Config, store: AuditStore, run: RunContext, on_table: Callable[[str], None] | None = None):
        self.cfg, self.store, self.run, self.on_table = cfg, store, run, on_table
        self.res = NightlyResult(run.id, {})

    # -- the stages ---------------------------------------------------------------------------------
    def audit_source(self, name: str) -> None:
        """Check one source's connection and mapping, then validate its tables. Raises SourceError
        when it cannot (a retry may succeed); what it staged counts only if it completes."""
        try:
            with open_source(self.cfg, name) as r:
                self.res.checks[name] = r.check()
        except SourceError as e:
            self.res.checks[name] = e
            raise
        with self.run.attempt():
            self.res.validations[name] = validate_source(self.cfg, name, store=self.store, nightly=self.run,
                                                         on_table=self.on_table)

    def person_source(self) -> str | None:
        src = self.cfg.source_of("person")
        return None if src is None or src in self.res.failures else src

    def dedup(self, source: str) -> None:
        """Duplicate screening: new and changed archives against the index (a full run the first time)."""
        self.res.dedup = run_dedup(self.cfg, self.store, source=source, incremental=True)

    def assess(self) -> None:
        """Scores and findings of the night, what could not run included."""
        self.res.assessment = assess_run(self.cfg, self.store, self.run.id, self.res.faults)

    def finish(self) -> NightlyResult:
        """After the run is closed: its report, then publishing (which never fails the night)."""
        self.res.status = "partial" if self.run.problems else "success"
        if self.res.assessment is not None:
            self.res.report = run_report.write(self.cfg, self.store, self.run.id, self.cfg.reports.out_dir).html
            self.res.deliveries = publish_run(self.cfg, self.store, self.run.id, self.res.assessment.summary())
        return self.res

    # -- what could not run ----------------------------------------------------------------------------
    def failed(self, what: str, reason: str, fault: str, source: str | None = None) -> None:
        reason = " ".join(str(reason).split())[:300]
        self.res.failures[what] = reason
        self.run.problem(f"{what}: {reason}")
        self.res.faults.append({"source": source or what, "kind": fault, "reason": reason,
                                "zh": FAULT_ZH.get(fault, fault) + f"：{what}"})

    def source_failed(self, name: str, e: SourceError) -> None:
        self.failed(name, e.reason, "store_unreachable" if isinstance(e, SourceUnreachable) else "table_unreadable")

    def stage_failed(self, stage: str, e: BaseException, source: str | None = None) -> None:
        if isinstance(e, SourceError):
            self.source_failed(e.source if e.source in self.cfg.sources else stage, e)
        else:
            self.failed(stage, f"{type(e).__name__}: {e}", "run_incomplete", source or "*")


class NightlyInProgress(HealthqaError):
    """A second nightly audit on the same audit store is refused: nothing would be counted twice."""


@contextmanager
def nightly_lock(store: AuditStore) -> Iterator[None]:
    try:
        with store.locks.hold("nightly"):
            yield
    except Busy:
        running = [r for r in store.runs.recent(20, kind="nightly") if r.status == "running"]
        since = f" (run {running[0].id}, started {running[0].started_at:%Y-%m-%d %H:%M})" if running else ""
        raise NightlyInProgress(f"另一次夜间稽核正在运行 another nightly audit is running on this audit store{since}; "
                                "try again when it has ended") from None


def nightly_scope(cfg: Config) -> dict:
    return {"sources": list(cfg.sources), "config": str(cfg.path)}


def run_nightly(cfg: Config, on_table: Callable[[str], None] | None = None) -> NightlyResult:
    """The nightly audit as plain functions, stage after stage (the flow runs the same stages)."""
    with AuditStore(cfg.store.url) as store, nightly_lock(store):
        with store.runs.start("nightly", nightly_scope(cfg)) as run:
            night = Night(cfg, store, run, on_table)
            for name in cfg.sources:
                try:
                    night.audit_source(name)
                except SourceError as e:
                    night.source_failed(name, e)
            src = night.person_source()
            if src is not None:
                try:
                    night.dedup(src)
                except Exception as e:  # noqa: BLE001 - the night's other results must still be reported
                    night.stage_failed("dedup", e, src)
            try:
                night.assess()
            except Exception as e:  # noqa: BLE001 - the night's results are stored; say what is missing
                night.stage_failed("reports", e)
        return night.finish()


FAULT_ZH = {"store_unreachable": "数据源无法连接", "table_unreadable": "数据表无法读取", "run_incomplete": "稽核未能完整运行"}
