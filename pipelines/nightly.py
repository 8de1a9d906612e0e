"""The nightly audit, as plain functions: the stages run in order over every source, in one run.

Stages: check every source's mapping, validate every mapped table under its sampling (incremental
tables read what arrived since the last successful night), screen the resident archives for
duplicates (new and changed archives against the index), then score the night, reconcile its
findings (a source that could not be read is a finding too), write the run report and publish.
One broken source or stage never stops the rest: the run is then ``partial`` with what could not run as its message, and only
the tables that were read advance their incremental watermarks. The run is finished — and its
watermarks advance — in the transaction that stores its scores and findings: a night whose
assessment could not be stored (the audit store full, its connection dropped) ends ``partial`` with
its watermarks held, and the next night assesses it before reading anything (``Night.catch_up``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from healthqa.config import Config
from healthqa.connectors.readers import TableCheck
from healthqa.connectors.sources import open_source
from healthqa.errors import SourceError, SourceUnreachable
from healthqa.expectations import references
from healthqa.expectations.references import SharedReads
from healthqa.reports import deliver
from healthqa.reports.assess import Assessment, assess_pending, assess_run
from healthqa.reports.deliver import Published
from healthqa.reports.institutions import refresh
from healthqa.reports.publish import Delivery
from healthqa.store import AuditStore, RunContext

from .dedup import notes as dedup_notes
from .dedup import run_dedup
from .nightly_lock import nightly_lock
from .scope import suite_tables
from .validate import (
    REGISTER_COLUMNS,
    TablePart,
    ValidationRequest,
    ValidationRun,
    combine_parts,
    night_reads,
    validate_nightly,
    validate_part,
)


@dataclass
class DedupSummary:
    """What the duplicate scan sends back to the night: its run and counts (the pairs are in the
    audit store), never the archives it compared."""

    run_id: int
    source: str
    incremental: bool
    stats: dict


@dataclass
class TableOutcome:
    """What one table's validation sends back to the night: its rule results (counts, masked
    examples, keys) and the watermarks it staged — no records."""

    validation: ValidationRun
    watermarks: dict[tuple[str, str, str], datetime]
    counted: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # keys the next night leaves out


@dataclass
class NightlyResult:
    run_id: int
    checks: dict[str, list[TableCheck] | SourceError]
    validations: dict[str, ValidationRun] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # source or stage -> reason
    dedup: DedupSummary | None = None
    status: str = "running"  # the run's status once finished: success | partial
    faults: list[dict] = field(default_factory=list)  # what could not run, as findings see it
    assessment: Assessment | None = None
    caught_up: list[Assessment] = field(default_factory=list)  # earlier nights assessed first (``Night.catch_up``)
    report: Path | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    retried: list[Published] = field(default_factory=list)  # earlier runs' undelivered publishing, sent again
    notes: list[str] = field(default_factory=list)  # said on the run without making it partial
    runner: str | None = None  # the flow's task runner and why (runner_choice.Choice.line), Chinese first

    @property
    def exit_code(self) -> int:
        """The audit's exit code: 0 it ran in full, whatever the data looked like (failing rules are
        findings, not a failed audit); 1 part of it could not run (a source unreachable or mis-mapped,
        a table or a stage)."""
        checked = all(not isinstance(c, SourceError) and all(tc.ok for tc in c) for c in self.checks.values())
        return 0 if checked and not self.failures else 1


# -- the stages that read sources: plain data in, plain data out, so that they run anywhere (a thread,
# a process, a Dask worker); each opens its source and the audit store itself unless given one -------

def check_source(cfg: Config, name: str) -> list[TableCheck]:
    """Connect to one source and check its mapping. Raises SourceError when it cannot (a retry may
    succeed)."""
    with open_source(cfg, name) as r:
        return r.check()


def _store(cfg: Config, store: AuditStore | None):
    return nullcontext(store) if store is not None else AuditStore(cfg.store.url, upgrade=False)


def validate_table(cfg: Config, run: RunContext, source: str, table: str, store: AuditStore | None = None,
                   on_table: Callable[[str], None] | None = None, shared: SharedReads | None = None) -> TableOutcome:
    """Validate one table within the nightly ``run`` (its configured sampling: incremental tables read
    what arrived since the last successful night) and record its results. The watermarks it stages
    go back with the outcome and count only when the night takes it (``Night.validated``).
    ``shared``: the night's reference reads, shared with its other table tasks (``Night.shared_reads``)."""
    staged = RunContext(run.id, run.kind, run.started_at)
    with _store(cfg, store) as st:
        v = validate_nightly(cfg, st, staged, ValidationRequest(source, (table,)), on_table, shared)
    return TableOutcome(v, staged.pending_watermarks, staged.pending_counted)


def validate_table_part(cfg: Config, run: RunContext, source: str, table: str, part: tuple[int, int] | None,
                        store: AuditStore | None = None, shared: SharedReads | None = None) -> TablePart:
    """One part of a table's nightly validation (``validate.validate_part``), for ``Night.combined``."""
    staged = RunContext(run.id, run.kind, run.started_at)
    with _store(cfg, store) as st:
        out = validate_part(cfg, st, staged, source, table, part, shared)
    out.watermarks, out.counted = staged.pending_watermarks, staged.pending_counted
    return out


def dedup_scan(cfg: Config, source: str, incremental: bool = True, store: AuditStore | None = None,
               candidates: Callable | None = None, shared: SharedReads | None = None) -> DedupSummary:
    """Duplicate screening of the archives in ``source`` — new and changed archives against the index
    (``incremental``; a full run the first time) or all of them — as a ``dedup`` run of its own.
    ``candidates``: how candidate pairs are made and compared (``engine.compare_candidates``'s
    signature; the flow passes one that spreads blocking-key partitions over a Dask cluster).
    ``shared``: the night's reads (the register's levels)."""
    with _store(cfg, store) as st:
        run = run_dedup(cfg, st, source=source, incremental=incremental, candidates=candidates, shared=shared)
    return DedupSummary(run.run_id, run.source, run.incremental, run.result.stats)


class Night:
    """One nightly audit's bookkeeping: what each stage sent back, what could not run, the staged
    watermarks. ``run_nightly`` calls the stages in order; the Prefect flow (``pipelines/flows.py``)
    runs the same stages as tasks and hands their outcomes here. A stage that finally fails is
    recorded with what could not run and the night goes on."""

    def __init__(self, cfg: Config, store: AuditStore, run: RunContext):
        self.cfg, self.store, self.run = cfg, store, run
        self.res = NightlyResult(run.id, {})
        self.register = None  # the register's names as the night read them (``shared_reads``), for the report

    @contextmanager
    def shared_reads(self, orch=None) -> Iterator[SharedReads | None]:
        """The night's shared reference reads for its table tasks (``references.SharedReads``), let
        go when the block ends — but for the register's names, kept for the night's report. None on
        a cluster of the site's (``dask.address``): its workers outlive the night, so its tasks read
        their references each as before."""
        if orch is not None and orch.task_runner == "dask" and orch.dask.address:
            yield None
            return
        shared = night_reads(self.cfg, self.run.id)
        try:
            yield shared
        finally:
            src = self.cfg.source_of("organization")
            if src is not None:
                self.register = references.held_rows(shared, src, "organization", REGISTER_COLUMNS)
            references.release(shared)

    def runner(self, line: str) -> None:
        """Which task runner the flow chose, and why: said on the night's output and in the log."""
        import logging

        self.res.runner = line
        logging.getLogger("healthqa").info(line)

    # -- what the stages sent back --------------------------------------------------------------------
    def checked(self, name: str, checks: list[TableCheck]) -> list[str]:
        """A source answered; returns its tables to validate."""
        self.res.checks[name] = checks
        return suite_tables(self.cfg, name)

    def combined(self, source: str, table: str, parts: list[TablePart]) -> None:
        """A table validated in parts: its results combined and recorded, as one task's would be."""
        v, marks = combine_parts(self.cfg, self.store, self.run, source, table, parts)
        counted: dict[tuple[str, str], set[str]] = {}
        for p in parts:  # the institution buckets' keys add up to the table's
            for k, keys in p.counted.items():
                counted.setdefault(k, set()).update(keys)
        self.validated(TableOutcome(v, marks, counted))

    def validated(self, outcome: TableOutcome) -> None:
        v = outcome.validation
        mine = self.res.validations.get(v.scope["source"])
        if mine is None:
            self.res.validations[v.scope["source"]] = v
        else:
            mine.tables += v.tables
            mine.scope["tables"] += v.scope["tables"]
        for (source, table, column), value in outcome.watermarks.items():
            self.run.stage_watermark(source, table, column, value)
        for (source, table), keys in outcome.counted.items():
            self.run.stage_counted(source, table, keys)

    def deduplicated(self, summary: DedupSummary) -> None:
        self.res.dedup = summary
        st = summary.stats
        if st.get("institution_levels"):  # part of the scan's work was done without the register
            self.run.problem(f"dedup: {st['institution_levels']}")
        if st.get("index_error"):  # the scan's results stand; the next night reads the whole MPI
            self.run.problem(f"dedup: {st['index_error']}")
            self.res.failures["dedup"] = st["index_error"]
        self.res.notes += [n for n in dedup_notes(st) if n != st.get("index_error")]

    def person_source(self) -> str | None:
        src = self.cfg.source_of("person")
        return None if src is None or src in self.res.failures else src

    def catch_up(self) -> None:
        """Before anything is read: earlier nights whose scores and findings could not be stored are
        assessed, oldest first, and their held watermarks advance with them — so this night reads
        only what arrived after them (each row read once, each finding filed once). If that fails
        too, the audit store is still unwell and the night stops here (the exception goes on):
        reading on would read those nights' rows a second time."""
        self.res.caught_up = assess_pending(self.cfg, self.store, by=f"run {self.run.id}")

    def assess(self) -> None:
        """Scores and findings of the night, what could not run included, stored in one transaction
        with the run's end and its watermarks."""
        self.res.assessment = assess_run(self.cfg, self.store, self.run.id, self.res.faults,
                                         then=lambda s: self.store.runs.finish_in(s, self.run))
        self.run.finished = True

    def assessment_failed(self, e: BaseException) -> None:
        """The night's scores and findings could not be stored: none of them was (one transaction).
        The run ends ``partial`` with its watermarks and faults held on its row, for the next night
        (or ``healthqa report --run N``) to assess it."""
        self.run.hold_assessment(self.res.faults)
        self.failed("assessment", f"评估未完成，下次运行补做 assessment pending, the next run assesses it — "
                    f"{type(e).__name__}: {e}", "run_incomplete", "*")

    def finish(self) -> NightlyResult:
        """After the run is closed: its report, then publishing, then what earlier nights could not
        deliver. Publishing never fails the night: what it could not deliver makes the run
        ``partial`` with the reason (``reports/deliver.py``) and is tried again by the next night."""
        self.res.status = "partial" if self.run.problems else "success"
        if self.res.notes:
            with suppress(Exception):  # a remark on the run; the terminal says it too
                self.store.runs.note(self.run.id, "; ".join(self.res.notes))
        if self.cfg.source_of("organization") not in self.res.failures:  # the report names institutions as of tonight
            refresh(self.cfg, self.store, rows=self.register)
        a = self.res.assessment
        mine, self.res.retried = deliver.after_night(self.cfg, self.store, self.run.id, a.summary() if a else None)
        if mine is not None:
            self.res.report, self.res.deliveries = mine.report, mine.deliveries
            if mine.undelivered:
                self.res.status = "partial"
                self.res.failures["publish"] = mine.reason()
        return self.res

    # -- what could not run ----------------------------------------------------------------------------
    def failed(self, what: str, reason: str, fault: str, source: str | None = None, table: str | None = None) -> None:
        reason = " ".join(str(reason).split())[:300]
        before = self.res.failures.get(what)  # a second table of the same source
        if before is not None and reason in before.split("; "):
            return  # the same fault seen again by another stage: said once, one finding
        self.res.failures[what] = reason if before is None else f"{before}; {reason}"
        self.run.problem(f"{what}: {reason}")
        # a table's fault is keyed by the table: two tables of a source are two findings, and a later
        # read of one table resolves its own
        self.res.faults.append({"source": source or what, "kind": fault, "reason": reason, "subject": table,
                                "table": table, "zh": FAULT_ZH.get(fault, fault) + f"：{what}" + (f".{table}" if table else "")})

    def check_failed(self, name: str, e: BaseException) -> None:
        if isinstance(e, SourceError):
            self.res.checks[name] = e
        self.stage_failed(name, e, name)

    def table_failed(self, source: str, table: str, e: BaseException) -> None:
        """One table could not be validated: the source is failed with the table named (its other
        tables' results stand)."""
        if isinstance(e, SourceError):
            self.failed(source, f"{table}: {e.reason}", _fault(e), table=table if _fault(e) == "table_unreadable" else None)
        else:
            self.failed(source, f"{table}: {type(e).__name__}: {e}", "run_incomplete", table=table)

    def source_failed(self, name: str, e: SourceError) -> None:
        self.failed(name, e.reason, _fault(e))

    def stage_failed(self, stage: str, e: BaseException, source: str | None = None) -> None:
        if isinstance(e, SourceError):
            self.source_failed(e.source if e.source in self.cfg.sources else stage, e)
        else:
            self.failed(stage, f"{type(e).__name__}: {e}", "run_incomplete", source or "*")


def _fault(e: SourceError) -> str:
    return "store_unreachable" if isinstance(e, SourceUnreachable) else "table_unreadable"


def nightly_scope(cfg: Config) -> dict:
    return {"sources": list(cfg.sources), "config": str(cfg.path)}


def run_nightly(cfg: Config, on_table: Callable[[str], None] | None = None) -> NightlyResult:
    """The nightly audit as plain functions, stage after stage (the flow runs the same stages)."""
    with AuditStore(cfg.store.url) as store, nightly_lock(store):
        with store.runs.start("nightly", nightly_scope(cfg)) as run:
            night = Night(cfg, store, run)
            night.catch_up()
            with night.shared_reads() as shared:
                for name in cfg.sources:
                    try:
                        tables = night.checked(name, check_source(cfg, name))
                    except SourceError as e:
                        night.check_failed(name, e)
                        continue
                    for t in tables:
                        try:
                            night.validated(validate_table(cfg, run, name, t, store, on_table, shared))
                        except Exception as e:  # noqa: BLE001 - one table that cannot run never stops the others
                            night.table_failed(name, t, e)
                src = night.person_source()
                if src is not None:
                    try:
                        night.deduplicated(dedup_scan(cfg, src, store=store, shared=shared))
                    except Exception as e:  # noqa: BLE001 - the night's other results must still be reported
                        night.stage_failed("dedup", e, src)
            try:
                night.assess()
            except Exception as e:  # noqa: BLE001 - the night's results are stored; it is assessed again later
                night.assessment_failed(e)
        return night.finish()


FAULT_ZH = {"store_unreachable": "数据源无法连接", "table_unreadable": "数据表无法读取", "run_incomplete": "稽核未能完整运行"}
