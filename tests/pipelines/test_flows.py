"""The nightly audit as a Prefect 3 flow on the ephemeral local API: the run and its results in the
audit store, artifacts without personal data, a source that cannot be read failing alone (retried
first), the flow's state saying so, and nothing personal in Prefect's logs, parameters or artifacts."""

from __future__ import annotations

import logging
import shutil
import sqlite3

import pytest

pytest.importorskip("prefect")

from healthqa.pipelines.flows import run_nightly_flow  # noqa: E402

from ..reports.test_report_render import personal_values  # noqa: E402

pytestmark = pytest.mark.slow  # whole nights as Prefect flows


def artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def task_runs_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def flow_run(state):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def test_the_nightly_flow_end_to_end_without_personal_data(small_platform, caplog):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    cfg, store, folder = small_platform
    results = PREFECT_LOCAL_STORAGE_PATH.value()
    before = set(results.rglob("*")) if results.exists() else set()
    with caplog.at_level(logging.DEBUG):
        outcome = run_nightly_flow(str(cfg.path))
    assert outcome.state.is_completed(), outcome.state.message
    res = outcome.result
    run = store.runs.get(res.run_id)
    assert run.kind == "nightly" and run.status == "success"
    assert {r.source for r in store.results.of_run(res.run_id)} == {"mpi", "drc", "qc"}
    assert store.scores.of_run(res.run_id) and res.report.is_file()
    fr = flow_run(outcome.state)
    assert fr.parameters == {"config_path": str(cfg.path)}  # a path, never a record
    arts = artifacts_of(fr.id)
    assert {a.key for a in arts} >= {"nightly-scores", "nightly-failed-rules", "nightly-report"}
    tasks = task_runs_of(fr.id)
    for name in ("source mpi", "validate mpi.person", "validate drc.lab_result", "duplicate scan", "scores and findings",
                 "report and publishing"):
        assert any(t.name.startswith(name) for t in tasks), name  # task names are source and table names
    text = "\n".join([str(a.data) for a in arts] + [r.getMessage() for r in caplog.records] +
                     [str(fr.parameters), fr.name] + [f"{t.name} {t.task_inputs}" for t in tasks])
    # nothing kept in Prefect's result storage: no task or flow result was persisted
    assert (set(results.rglob("*")) if results.exists() else set()) == before
    leaked = [v for v in personal_values(folder) if v in text]
    assert not leaked, f"personal values reached Prefect: {leaked[:5]}"
    assert "MPI-ID-VALID" in text  # the artifacts do say which rules failed


def test_a_source_that_cannot_be_read_fails_alone(small_platform):
    cfg, store, folder = small_platform
    text = cfg.path.read_text(encoding="utf-8") + "\norchestration: {retries: 1, retry_delay_s: [0]}\n"
    cfg.path.write_text(text, encoding="utf-8")
    (folder / "gone").mkdir()
    shutil.move(folder / "qc.db", folder / "gone" / "qc.db")  # the QC store is unreachable tonight
    outcome = run_nightly_flow(str(cfg.path))
    assert outcome.state.is_failed() and "qc" in outcome.state.message
    res = outcome.result
    assert set(res.validations) == {"mpi", "drc"} and set(res.failures) == {"qc"}
    assert store.runs.get(res.run_id).status == "partial"
    found = {f.subject: f.level for f in store.findings.list(state="open") if f.source == "qc"}
    assert found.get("store_unreachable") == "一级"
    runs = task_runs_of(outcome.state.state_details.flow_run_id)
    qc = [t for t in runs if t.name.startswith("source qc")]
    assert qc and qc[0].run_count == 2  # tried again before being recorded as failed
    # the QC store comes back: the next night resolves its fault
    shutil.move(folder / "gone" / "qc.db", folder / "qc.db")
    again = run_nightly_flow(str(cfg.path))
    assert again.state.is_completed()
    assert store.findings.list(state="resolved") and not [f for f in store.findings.list(state="open")
                                                          if f.subject == "store_unreachable"]
    with sqlite3.connect(folder / "audit.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0] == 0


def test_the_schedule_registers_the_flows_with_their_cron_and_time_zone(small_platform):
    from healthqa.pipelines.flows import deployments

    cfg, _, _ = small_platform
    deps = {f"{d.flow_name}/{d.name}": d for d in deployments(cfg)}
    assert set(deps) == {"nightly-audit/nightly", "quarterly-report/quarterly", "dedup-scan/dedup-scan",
                         "adhoc-validate/adhoc-validate"}
    assert not deps["dedup-scan/dedup-scan"].schedules and not deps["adhoc-validate/adhoc-validate"].schedules
    nightly = deps["nightly-audit/nightly"].schedules[0].schedule
    quarterly = deps["quarterly-report/quarterly"].schedules[0].schedule
    assert (nightly.cron, nightly.timezone) == ("0 2 * * *", "Asia/Shanghai")
    assert (quarterly.cron, quarterly.timezone) == ("0 6 1 1,4,7,10 *", "Asia/Shanghai")
    assert deps["nightly-audit/nightly"].parameters == {"config_path": str(cfg.path)}
    # a site's own schedule, and a wrong one refused with its key
    from healthqa import config
    from healthqa.errors import ConfigError

    text = cfg.path.read_text(encoding="utf-8")
    cfg.path.write_text(text + "\norchestration: {nightly_cron: '30 1 * * 1-6', timezone: Asia/Urumqi}\n",
                        encoding="utf-8")
    mine = {d.name: d.schedules[0].schedule for d in deployments(config.load(cfg.path)) if d.schedules}
    assert (mine["nightly"].cron, mine["nightly"].timezone) == ("30 1 * * 1-6", "Asia/Urumqi")
    cfg.path.write_text(text + "\norchestration: {nightly_cron: 'every night'}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="orchestration.nightly_cron"):
        config.load(cfg.path)


def test_the_quarterly_flow_writes_the_inspection_report(after_night):
    from healthqa.pipelines.flows import quarterly_report

    cfg, _, _, _ = after_night  # a night to report on: the session's (conftest.demo_after_night)
    html = quarterly_report(str(cfg.path), "2026Q4")
    assert html.endswith("inspection-2026Q4.html")
    from pathlib import Path

    assert Path(html).is_file() and Path(html).with_suffix(".pdf").is_file()


def test_tasks_never_share_the_run_the_flow_stages_into(small_platform, monkeypatch):
    """The flow stages each table's watermarks on its run while other tasks start, and Prefect walks a
    task's parameters in the worker's thread: a run object shared with the tasks changed size under
    that walk and failed a night ('dictionary changed size during iteration'). The tasks get a copy
    of the run's id and start that nothing writes to."""
    from healthqa.pipelines import flows, nightly

    cfg, _, _ = small_platform
    flow_runs, task_runs = [], []
    night_init = nightly.Night.__init__

    def recording_init(self, cfg, store, run):
        flow_runs.append(run)
        night_init(self, cfg, store, run)

    def recording(real):
        def task_body(cfg, run, *args, **kw):
            task_runs.append(run)
            return real(cfg, run, *args, **kw)
        return task_body

    monkeypatch.setattr(nightly.Night, "__init__", recording_init)
    monkeypatch.setattr(flows, "validate_table", recording(flows.validate_table))
    outcome = run_nightly_flow(str(cfg.path))
    assert outcome.state.is_completed(), outcome.state.message
    (run,) = flow_runs
    assert run.pending_watermarks  # the flow did stage into its run …
    assert task_runs and all(t is not run for t in task_runs)  # … which no task was given
    assert {(t.id, t.started_at) for t in task_runs} == {(run.id, run.started_at)}
    assert not any(t.pending_watermarks for t in task_runs)  # and nothing wrote to what they were given
