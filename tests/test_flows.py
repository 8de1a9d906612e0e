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

from .test_report_render import personal_values  # noqa: E402
from .test_reports import platform  # noqa: E402,F401 - a writable copy of the demo platform


def artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def flow_run(state):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def test_the_nightly_flow_end_to_end_without_personal_data(platform, caplog):  # noqa: F811
    cfg, store, folder = platform
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
    text = "\n".join([str(a.data) for a in arts] + [r.getMessage() for r in caplog.records] +
                     [str(fr.parameters), fr.name])
    leaked = [v for v in personal_values(folder) if v in text]
    assert not leaked, f"personal values reached Prefect: {leaked[:5]}"
    assert "MPI-ID-VALID" in text  # the artifacts do say which rules failed


def test_a_source_that_cannot_be_read_fails_alone(platform):  # noqa: F811
    cfg, store, folder = platform
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
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[
            outcome.state.state_details.flow_run_id])))
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
