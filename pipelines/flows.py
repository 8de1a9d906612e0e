"""Prefect 3 flows over the audit's plain stages (``pipelines/nightly.py``): Prefect only wires them.

``nightly_audit`` runs the nightly stages as tasks of one flow run: each source's check, then each of
its tables' validation, and the duplicate scan are tasks on the configured task runner (threads, a
process pool or Dask: ``orchestration.task_runner``), retried with backoff (``orchestration.retries``
/ ``retry_delay_s``) and, when one finally fails, recorded with its reason while the others go on;
then the scores and findings, the report and publishing. The flow ends ``Completed`` when every
stage ran, whatever the data looked like, and ``Failed`` — with what could not run as its message —
when a source, a table or a stage could not run. Its one parameter is the configuration's path.
``adhoc_validate`` (the engineer's check), ``dedup_scan_flow`` (the full duplicate scan) and
``quarterly_report`` are flows too; ``deployments`` serves them all (``healthqa schedule``) and
``deploy_to_pool`` registers them on a Prefect server for a work pool (``healthqa deploy``).

With ``orchestration.partitions`` above 1, a table with an institution column is validated by
several tasks — one per bucket of its institutions' codes for the per-row rules, one for the
whole-table rules — whose tallies ``Night.combined`` merges into exactly one pass's results; on Dask,
the duplicate scan's candidate pairs are made and compared by blocking-key partition, one Dask task
each, before the scoring and clustering run once.

Privacy: tasks carry the configuration, run ids and names, never records, and keep no results
(``persist_result=False``, no cache keys over their inputs); what they send back to the flow is rule
counts with masked examples and keys (through the task runner, never Prefect's result storage); task
names are source and table names; the artifacts are scores, rule ids and counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from .prefect_api import one_shot  # Prefect's settings, decided before Prefect loads

# isort: split
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from healthqa import config as config_mod
from healthqa.config import Config, Orchestration
from healthqa.errors import ConfigError, HealthqaError, SourceError
from healthqa.expectations.references import SharedReads
from healthqa.store import AuditStore, RunContext

from . import fault_log, runner_choice
from .nightly import (
    DedupSummary,
    Night,
    NightlyResult,
    TableOutcome,
    TablePart,
    check_source,
    dedup_scan,
    nightly_scope,
    validate_table,
    validate_table_part,
)
from .nightly_lock import NightlyInProgress, nightly_lock
from .validate import ValidationRequest, ValidationRun, partitions, validate_adhoc

# the CLI's progress callback for the ad-hoc flow (a callable is no flow parameter: parameters are
# stored by the Prefect API); the flow runs in the caller's thread and context
ON_TABLE: ContextVar = ContextVar("healthqa_on_table", default=None)
# set by the CLI that refused filters matching nothing before the flow started: not counted twice
FILTERS_CHECKED: ContextVar = ContextVar("healthqa_filters_checked", default=False)

QUIET = {"persist_result": False, "cache_policy": NO_CACHE, "log_prints": False}
fault_log.in_task_process()  # a process pool's or Dask worker's import: its tracebacks go where the night's do


# Tasks take plain data (the configuration, a run's id and start, names) and return plain data (rule
# results with counts and masked examples, staged watermarks, a dedup run's counts), so that any task
# runner — threads, processes, a Dask cluster — can run them; none returns or persists a record.
@task(name="source", **QUIET)
def _check(cfg: Config, name: str) -> list:
    return check_source(cfg, name)


@task(name="validate", **QUIET)
def _validate(cfg: Config, run: RunContext, source: str, table: str, shared: SharedReads | None = None) -> TableOutcome:
    return validate_table(cfg, run, source, table, shared=shared)


@task(name="validate part", **QUIET)
def _validate_part(cfg: Config, run: RunContext, source: str, table: str, part: tuple[int, int] | None,
                   shared: SharedReads | None = None) -> TablePart:
    return validate_table_part(cfg, run, source, table, part, shared=shared)


@task(name="duplicate scan", **QUIET)
def _dedup(cfg: Config, source: str, incremental: bool, dask_parts: int = 1, shared: SharedReads | None = None) -> DedupSummary:
    return dedup_scan(cfg, source, incremental, candidates=_compare_on_dask(dask_parts) if dask_parts > 1 else None,
                      shared=shared)


def _dedup_parts(orch: Orchestration) -> int:
    """The duplicate scan's blocking-key partitions: Dask tasks, so only on Dask (else one pass)."""
    return orch.partitions_for("person") if orch.task_runner == "dask" else 1


def _compare_on_dask(n: int) -> Callable:
    """``engine.compare_candidates`` as ``n`` Dask tasks, one per blocking-key partition, from a task
    running on the cluster: the normalised records are sent to the workers once (Dask's memory,
    never Prefect's results); the pairs and levels come back and are joined in (i, j) order."""
    from healthqa.dedup import engine

    def compare(P, spec, *, only=None, stats=None):
        from prefect_dask import get_dask_client

        with get_dask_client() as client:
            records = client.scatter(P, broadcast=True)
            parts = client.gather([client.submit(engine.compare_part, records, spec, (k, n), only, pure=False)
                                   for k in range(n)])
        return engine.compare_parts(parts, stats)

    return compare


@task(name="scores and findings", **QUIET)
def _assess(night: Night) -> None:
    night.assess()


@task(name="report and publishing", **QUIET)
def _finish(night: Night) -> NightlyResult:
    return night.finish()


@dataclass
class FlowOutcome:
    """What the CLI needs back from a flow run: the night's result and the run's final state."""

    result: NightlyResult
    state: State


def _counted(checks: dict) -> tuple[int | None, int | None]:
    """The rows of the tables the answering sources counted, between them, and the largest table's
    (None, None: nothing counted yet — the runner is as configured)."""
    counts = [tc.rows or 0 for ok, value in checks.values() if ok for tc in value]
    return (sum(counts), max(counts, default=0)) if checks else (None, None)


def task_runner(orch: Orchestration):
    """The task runner of ``orchestration.task_runner``: threads, a process pool, or Dask (a cluster
    at ``dask.address``, else a LocalCluster of ``dask.workers`` workers); ``auto`` not yet decided
    (``runner_choice.choose``) is one thread."""
    if orch.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=orch.workers)
    if orch.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError("orchestration.task_runner: dask needs the dask extra "
                              "(pip install 'healthqa[dask]')") from None
        logging.getLogger("distributed").setLevel(logging.WARNING)  # the audit's own lines, not the scheduler's
        d = orch.dask
        if d.address:
            return DaskTaskRunner(address=d.address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": d.workers, "threads_per_worker": 1,
                                              "processes": d.processes, "dashboard_address": ":0"})
    return ThreadPoolTaskRunner(max_workers=1 if orch.task_runner == "auto" else orch.workers)


@contextmanager
def _api_for_children(orch: Orchestration) -> Iterator[None]:
    """Tasks in processes of this machine (a process pool, a local Dask cluster's workers) report to
    this process's API: on Prefect's ephemeral API (a flow called outside ``one_shot``, as a test
    may) they would each start one of their own. The local API of ``one_shot`` is already in
    ``PREFECT_API_URL``, which they inherit."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    children = orch.task_runner == "processes" or (orch.task_runner == "dask" and not orch.dask.address
                                                   and orch.dask.processes)
    if not children or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the ephemeral API this process already runs on (started if not)
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def _outcome(future) -> tuple[bool, object]:
    """(True, the task's value) or (False, why it failed), once the task has ended."""
    future.wait()
    state = future.state
    if state.is_completed():
        return True, state.result()
    return False, _exception(state)


@flow(name="nightly-audit", persist_result=False, log_prints=False, validate_parameters=False)
def nightly_audit(config_path: str) -> State:
    """The nightly audit of the configuration at ``config_path``."""
    cfg = config_mod.load(config_path)
    try:
        return _night(cfg)
    except NightlyInProgress as e:  # the lock taken since the command's own check: a message, no traceback
        return Failed(message=str(e), data=e)


def _night(cfg: Config) -> State:
    orch = cfg.orchestration
    retrying = {"retries": orch.retries, "retry_delay_seconds": list(orch.retry_delay_s),
                "retry_condition_fn": _worth_retrying}
    with AuditStore(cfg.store.url) as store, nightly_lock(store), fault_log.faults_to_file(cfg):
        with store.runs.start("nightly", nightly_scope(cfg)) as run:
            night = Night(cfg, store, run)
            night.catch_up()  # earlier nights whose assessment is pending, before anything is read
            # the tasks get a copy that nothing mutates: the flow stages watermarks on ``run`` while
            # other tasks start, and Prefect walks each task's parameters in the worker's thread
            # (a shared dict changing size under that walk failed a night in CI)
            ticket = RunContext(run.id, run.kind, run.started_at)
            checks: dict = {}
            if orch.task_runner == "auto":  # the sources' counts decide the runner: checked first, on threads
                with ThreadPoolTaskRunner(max_workers=max(1, len(cfg.sources))) as checker:
                    checks = {name: checker.submit(_check.with_options(name=f"source {name}", **retrying),
                                                   {"cfg": cfg, "name": name}) for name in cfg.sources}
                    checks = {name: _outcome(future) for name, future in checks.items()}
            choice = runner_choice.choose(cfg, *_counted(checks))
            night.runner(choice.line())
            orch = choice.orch
            with _api_for_children(orch), task_runner(orch) as runner, night.shared_reads(orch) as shared:
                # independent branches: a source that cannot be read never stops the others; its
                # tables start as soon as it has answered
                if not checks:
                    checks = {name: runner.submit(_check.with_options(name=f"source {name}", **retrying),
                                                  {"cfg": cfg, "name": name}) for name in cfg.sources}
                tables = {}
                for name, future in checks.items():
                    ok, value = future if isinstance(future, tuple) else _outcome(future)
                    if not ok:
                        night.check_failed(name, value)
                        continue
                    for t in night.checked(name, value):
                        n = partitions(cfg, name, t)
                        if n == 1:
                            tables[name, t] = runner.submit(
                                _validate.with_options(name=f"validate {name}.{t}", **retrying),
                                {"cfg": cfg, "run": ticket, "source": name, "table": t, "shared": shared})
                            continue
                        # the per-row rules by institution bucket, the whole-table rules apart
                        tables[name, t] = [runner.submit(
                            _validate_part.with_options(name=f"validate {name}.{t} {'whole-table' if p is None else p}",
                                                        **retrying),
                            {"cfg": cfg, "run": ticket, "source": name, "table": t, "part": p, "shared": shared})
                            for p in [*((k, n) for k in range(n)), None]]
                src = night.person_source()
                dedup = None if src is None else runner.submit(_dedup.with_options(**retrying), {
                    "cfg": cfg, "source": src, "incremental": True, "dask_parts": _dedup_parts(orch), "shared": shared})
                for (name, t), future in tables.items():
                    if isinstance(future, list):
                        outcomes = [_outcome(f) for f in future]
                        failed = next((value for ok, value in outcomes if not ok), None)
                        night.combined(name, t, [v for _, v in outcomes]) if failed is None else \
                            night.table_failed(name, t, failed)
                        continue
                    ok, value = _outcome(future)
                    night.validated(value) if ok else night.table_failed(name, t, value)
                if dedup is not None:
                    ok, value = _outcome(dedup)
                    night.deduplicated(value) if ok else night.stage_failed("dedup", value, src)
            state = _assess(night, return_state=True)
            if state.is_failed():  # nothing of it stored: held for the next night (``Night.assessment_failed``)
                night.assessment_failed(_exception(state))
        res = _finish(night)  # in the flow's process, after the run is closed
    _artifacts(res)
    if res.failures:
        return Failed(message="; ".join(f"{k}: {v}" for k, v in res.failures.items())[:1000], data=res)
    return Completed(message=f"run {res.run_id}: every stage ran", data=res)


@flow(name="adhoc-validate", persist_result=False, log_prints=False, validate_parameters=False)
def adhoc_validate(config_path: str, source: str, tables: list[str] | None = None, orgs: list[str] | None = None,
                   since: datetime | None = None, until: datetime | None = None) -> ValidationRun:
    """The engineer's check after a repair: one source, its tables, institutions and time window
    (parameters: names, codes and times — never a record). The result says, rule by rule, the
    change against the last run that read the same rows (pipelines/baseline.py)."""
    try:
        cfg = config_mod.load(config_path)
        with AuditStore(cfg.store.url) as store:
            request = ValidationRequest(source, tables or (), orgs or (), since, until)
            return validate_adhoc(cfg, request, store, on_table=ON_TABLE.get(), filters_checked=FILTERS_CHECKED.get())
    except HealthqaError as e:  # the engineer's mistake (a filter matching nothing): a message, no traceback
        return Failed(message=str(e), data=e)


@flow(name="dedup-scan", persist_result=False, log_prints=False, validate_parameters=False)
def dedup_scan_flow(config_path: str, source: str | None = None) -> DedupSummary:
    """A full duplicate scan of the resident archives (every archive against every other in its
    blocks), a ``dedup`` run of its own; the nightly audit screens only new and changed archives."""
    cfg = config_mod.load(config_path)
    source = cfg.source_of("person", source, required=True)
    orch = runner_choice.choose(cfg, None).orch  # auto: one thread (a single task unless on Dask)
    with _api_for_children(orch), task_runner(orch) as runner:
        out = runner.submit(_dedup.with_options(name=f"duplicate scan {source}"),
                            {"cfg": cfg, "source": source, "incremental": False, "dask_parts": _dedup_parts(orch)}).result()
    st = out.stats
    create_table_artifact(key="dedup-scan", description="重复档案筛查 duplicate scan (counts only)", table=[
        {"run": out.run_id, "source": out.source, "archives": st["records"], "candidate_pairs": st["candidate_pairs"],
         "matches": st["matches"], "review": st["review"], "clusters": st["clusters"]}])
    return out


@flow(name="quarterly-report", persist_result=False, log_prints=False, validate_parameters=False)
def quarterly_report(config_path: str, quarter: str | None = None) -> str:
    """The inspection report (HTML and PDF) of ``quarter`` (e.g. 2026Q4), by default the quarter that
    ended last — the schedule runs it on the first day of the next."""
    from healthqa import clock
    from healthqa.reports import quarterly

    cfg = config_mod.load(config_path)
    if quarter is None:
        today = clock.now().date()  # the platform's day, not the host's
        q = (today.month - 1) // 3  # 0..3: the current quarter's index; the one before ended last
        quarter = f"{today.year - 1}Q4" if q == 0 else f"{today.year}Q{q}"
    with AuditStore(cfg.store.url) as store:
        written = quarterly.write(cfg, store, quarterly.parse_quarter(quarter), cfg.reports.out_dir, pdf=True)
    create_markdown_artifact(key="quarterly-report", description="巡检报告 inspection report",
                             markdown=f"# {quarter} 巡检报告\n\nHTML: `{written.html}`\n\nPDF: `{written.pdf}`")
    return str(written.html)


def deployments(cfg, entrypoint_type=None) -> list:
    """The deployments of the configuration: the nightly audit and the quarterly inspection report
    on their cron strings in the configured time zone (``orchestration``); the full duplicate scan
    and the ad-hoc validation on demand (the latter with the engineer's ``source`` and filters)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    o, params = cfg.orchestration, {"config_path": str(cfg.path)}
    kw = {} if entrypoint_type is None else {"entrypoint_type": entrypoint_type}
    # one nightly at a time, and a second one that the schedule or a person starts meanwhile is
    # cancelled by the server before it runs (the nightly lock would refuse it later, as a failed run)
    alone = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    return [nightly_audit.to_deployment(name="nightly", parameters=params, concurrency_limit=alone,
                                        schedule=Cron(o.nightly_cron, timezone=o.timezone), **kw),
            quarterly_report.to_deployment(name="quarterly", parameters=params,
                                           schedule=Cron(o.quarterly_cron, timezone=o.timezone), **kw),
            dedup_scan_flow.to_deployment(name="dedup-scan", parameters=params, **kw),
            adhoc_validate.to_deployment(name="adhoc-validate", parameters=params, **kw)]


def deploy_to_pool(cfg, pool: str) -> list:
    """Register the deployments on the Prefect server of ``PREFECT_API_URL`` for a worker of the
    process work pool ``pool`` (created if missing); the worker imports the flows from the installed
    package, so nothing is built or pushed. Returns the deployments' ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.types.entrypoint import EntrypointType

    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    return [d.apply(work_pool_name=pool) for d in deployments(cfg, EntrypointType.MODULE_PATH)]


def run_nightly_flow(config_path: str) -> FlowOutcome:
    """Run the nightly flow once, on the command's local Prefect API (``prefect_api.one_shot``)
    unless ``PREFECT_API_URL`` points at a server: no server, no account, nothing to start."""
    with one_shot():
        state = nightly_audit(str(config_path), return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, HealthqaError):  # refused before it began (configuration, a nightly already running)
        raise result
    if isinstance(result, BaseException):  # the flow itself broke (not a source or a stage)
        raise result
    return FlowOutcome(result, state)


def run_validate_flow(config_path: str, request: ValidationRequest, on_table: Callable[[str], None] | None = None,
                      filters_checked: bool = False) -> ValidationRun:
    """The ad-hoc flow once for ``request`` (``healthqa validate`` on a Prefect server; without one the
    command calls ``validate_adhoc`` itself), on the command's local Prefect API unless
    ``PREFECT_API_URL`` points at a server; its errors for the engineer are raised as they are.
    ``filters_checked``: the caller has refused filters that match nothing (``require_matches``)."""
    tokens = ON_TABLE.set(on_table), FILTERS_CHECKED.set(filters_checked)
    try:
        with one_shot():
            # the flow's parameters stay names, codes and times (a deployment's parameters are JSON)
            state = adhoc_validate(str(config_path), request.source, list(request.tables) or None,
                                   list(request.orgs), request.since, request.until, return_state=True)
    finally:
        ON_TABLE.reset(tokens[0])
        FILTERS_CHECKED.reset(tokens[1])
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result


def _worth_retrying(task, task_run, state) -> bool:
    """A source that could not be read (down, timing out) may answer later; a bug will not. Prefect
    asks only while retries remain, so a yes is a retry about to happen: said in one line."""
    e = _exception(state)
    if not fault_log.expected(e):
        return False
    fault_log.announce_retry(e, task.retry_delay_seconds, task_run.run_count, task.retries)
    return True


def _exception(state: State) -> BaseException:
    try:
        e = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001 - a state without a readable result still failed
        return err
    return e if isinstance(e, BaseException) else SourceError("?", state.message or "failed")


def _artifacts(res: NightlyResult) -> None:
    """The run's scores and failed rules (rule ids and counts only) and where its report is."""
    a = res.assessment
    if a is not None:
        create_table_artifact(key="nightly-scores", description="质量得分 quality scores", table=[
            {"level": s.level, "subject": s.subject, "conformance": None if s.conformance is None else round(s.conformance, 3),
             "pass_rate": None if s.pass_rate is None else round(s.pass_rate, 2), "checks": s.checks, "passed": s.passed}
            for s in a.scores if s.level in ("overall", "system", "dimension")])
    failed = [{"source": name, "table": tv.table, "rule": r.rule.id, "violations": r.violations, "rows": r.denominator}
              for name, v in res.validations.items() for tv in v.tables for r in tv.results if r.status == "fail"]
    create_table_artifact(key="nightly-failed-rules", description="未通过的规则 failed rules (counts only)",
                          table=failed or [{"rule": "—", "violations": 0}])
    lines = [f"# 夜间稽核 nightly audit, run {res.run_id}: {res.status}"]
    if res.report:
        lines.append(f"稽核报告 report: `{res.report}`")
    lines += [f"- 未能运行 could not run — {k}: {v}" for k, v in res.failures.items()]
    create_markdown_artifact(key="nightly-report", markdown="\n\n".join(lines), description="run report")
