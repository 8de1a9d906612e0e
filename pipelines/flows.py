"""Prefect 3 flows over the audit's plain stages (``pipelines/nightly.py``): Prefect only wires them.

``nightly_audit`` runs the nightly stages as tasks of one flow run: each source's validation is its
own task, retried with backoff (``orchestration.retries`` / ``retry_delay_s``) and, when it finally
fails, recorded as a failed source with its reason while the other sources go on; then the duplicate
scan, the scores and findings, the report and publishing. The flow ends ``Completed`` when every
stage ran, whatever the data looked like, and ``Failed`` — with what could not run as its message —
when a source or a stage could not run. Its one parameter is the configuration's path.

Privacy: tasks carry the run's objects, never records, and keep no results (``persist_result=False``,
no cache keys over their inputs); task names are source names; the artifacts are scores, rule ids
and counts — no value of any record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # a terminal and a log file get the audit's own lines
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry: sites have no internet

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.states import Completed, Failed, State  # noqa: E402

from healthqa import config as config_mod  # noqa: E402
from healthqa.errors import HealthqaError, SourceError  # noqa: E402
from healthqa.store import AuditStore  # noqa: E402

from .nightly import Night, NightlyResult, nightly_lock, nightly_scope  # noqa: E402

QUIET = {"persist_result": False, "cache_policy": NO_CACHE, "log_prints": False}


@task(name="source", **QUIET)
def _source(night: Night, name: str) -> None:
    night.audit_source(name)


@task(name="duplicate scan", **QUIET)
def _dedup(night: Night, source: str) -> None:
    night.dedup(source)


@task(name="scores and findings", **QUIET)
def _assess(night: Night) -> None:
    night.assess()


@dataclass
class FlowOutcome:
    """What the CLI needs back from a flow run: the night's result and the run's final state."""

    result: NightlyResult
    state: State


@flow(name="nightly-audit", persist_result=False, log_prints=False, validate_parameters=False)
def nightly_audit(config_path: str) -> State:
    """The nightly audit of the configuration at ``config_path``."""
    cfg = config_mod.load(config_path)
    orch = cfg.orchestration
    retrying = {"retries": orch.retries, "retry_delay_seconds": list(orch.retry_delay_s),
                "retry_condition_fn": _worth_retrying}
    with AuditStore(cfg.store.url) as store, nightly_lock(store):
        with store.runs.start("nightly", nightly_scope(cfg)) as run:
            night = Night(cfg, store, run)
            for name in cfg.sources:  # independent branches: one that cannot be read never stops the others
                state = _source.with_options(name=f"source {name}", **retrying)(night, name, return_state=True)
                if state.is_failed():
                    night.stage_failed(name, _exception(state))
            src = night.person_source()
            if src is not None:
                state = _dedup.with_options(**retrying)(night, src, return_state=True)
                if state.is_failed():
                    night.stage_failed("dedup", _exception(state), src)
            state = _assess(night, return_state=True)
            if state.is_failed():
                night.stage_failed("reports", _exception(state))
        res = night.finish()
    _artifacts(res)
    if res.failures:
        return Failed(message="; ".join(f"{k}: {v}" for k, v in res.failures.items())[:1000], data=res)
    return Completed(message=f"run {res.run_id}: every stage ran", data=res)


@flow(name="quarterly-report", persist_result=False, log_prints=False, validate_parameters=False)
def quarterly_report(config_path: str, quarter: str | None = None) -> str:
    """The inspection report (HTML and PDF) of ``quarter`` (e.g. 2026Q4), by default the quarter that
    ended last — the schedule runs it on the first day of the next."""
    from datetime import date

    from healthqa.reports import quarterly

    cfg = config_mod.load(config_path)
    if quarter is None:
        today = date.today()
        q = (today.month - 1) // 3  # 0..3: the current quarter's index; the one before ended last
        quarter = f"{today.year - 1}Q4" if q == 0 else f"{today.year}Q{q}"
    with AuditStore(cfg.store.url) as store:
        written = quarterly.write(cfg, store, quarterly.parse_quarter(quarter), cfg.reports.out_dir, pdf=True)
    create_markdown_artifact(key="quarterly-report", description="巡检报告 inspection report",
                             markdown=f"# {quarter} 巡检报告\n\nHTML: `{written.html}`\n\nPDF: `{written.pdf}`")
    return str(written.html)


def deployments(cfg) -> list:
    """The schedule of the configuration: the nightly audit and the quarterly inspection report on
    their cron strings in the configured time zone (``orchestration``)."""
    from prefect.schedules import Cron

    o, params = cfg.orchestration, {"config_path": str(cfg.path)}
    return [nightly_audit.to_deployment(name="nightly", parameters=params,
                                        schedule=Cron(o.nightly_cron, timezone=o.timezone)),
            quarterly_report.to_deployment(name="quarterly", parameters=params,
                                           schedule=Cron(o.quarterly_cron, timezone=o.timezone))]


def run_nightly_flow(config_path: str) -> FlowOutcome:
    """Run the nightly flow once, on Prefect's ephemeral local API unless ``PREFECT_API_URL`` points
    at a server: no server, no account, nothing to start."""
    state = nightly_audit(str(config_path), return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, HealthqaError):  # refused before it began (configuration, a nightly already running)
        raise result
    if isinstance(result, BaseException):  # the flow itself broke (not a source or a stage)
        raise result
    return FlowOutcome(result, state)


def _worth_retrying(task, task_run, state) -> bool:
    """A source that could not be read (down, timing out) may answer later; a bug will not."""
    return isinstance(_exception(state), SourceError)


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
