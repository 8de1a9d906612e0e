"""A night is stored whole or re-done: when the audit store fails while a night's scores and findings
are written — a SQLite store that is full, a PostgreSQL store whose connections are terminated — no
watermark moves, nothing of the assessment is kept, the run is not ``success`` and says its
assessment is pending; the next night assesses it first and files every finding an uninterrupted
copy of the same demo night files, with the failed run's scores."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from healthqa import config
from healthqa.clock import frozen
from healthqa.pipelines import nightly
from healthqa.pipelines.flows import run_nightly_flow
from healthqa.pipelines.nightly import run_nightly
from healthqa.store import AuditStore

from ..conftest import PG_ADMIN, copy_platform
from .cli_run import invoke

# two nights on each of four copies of the demo; the uninterrupted copy built once (one worker)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("atomic_night")]

NIGHT_1, NIGHT_2 = datetime(2026, 11, 26, 2, 0), datetime(2026, 11, 27, 2, 0)


def findings_of(url: str) -> dict[str, tuple]:
    with AuditStore(url) as store:
        return {f.fingerprint: (f.state, f.level, f.violations, f.rows_checked) for f in store.findings.list()}


def filed_by(url: str, run_id: int) -> set[str]:
    with AuditStore(url) as store:
        return {f.fingerprint for f in store.findings.events_of_run(run_id)["new"]}


def scores_of(url: str, run_id: int) -> dict[tuple[str, str], tuple]:
    with AuditStore(url) as store:
        return {(s["level"], s["subject"]): (s["conformance"], s["checks"], s["rows"]) for s in store.scores.of_run(run_id)}


@pytest.fixture(scope="module")
def uninterrupted(demo, tmp_path_factory):
    """The same two demo nights with nothing failing: what each filed, its scores, the watermarks."""
    cfg, store, _ = copy_platform(demo, tmp_path_factory.mktemp("uninterrupted"))
    with frozen(NIGHT_1):
        first = run_nightly(cfg)
    with frozen(NIGHT_2):
        run_nightly(cfg)
    marks = store.watermarks.all()
    store.close()
    return {"filed": filed_by(cfg.store.url, first.run_id), "scores": scores_of(cfg.store.url, first.run_id),
            "marks": marks, "findings": findings_of(cfg.store.url)}


@contextmanager
def sqlite_full(store: AuditStore):
    """The audit store's file may not grow by one page (SQLite's own SQLITE_FULL, "database or disk is
    full", as on a full disk) for the block; then it may again."""
    def limit(dbapi_conn, *_):
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    def unlimit(dbapi_conn, *_):
        dbapi_conn.execute("PRAGMA max_page_count = 1073741823")

    event.listen(store.engine, "checkout", limit)
    try:
        yield
    finally:
        event.remove(store.engine, "checkout", limit)
        event.listen(store.engine, "checkout", unlimit)


@contextmanager
def pg_terminated(store: AuditStore):
    """Every connection to the audit store's PostgreSQL database is terminated (pg_terminate_backend,
    as a server restart or a fail-over does) the moment the assessment writes its first finding."""
    name = make_url(store.url).database
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")

    def kill(conn, cursor, statement, *_):
        if statement.lstrip().upper().startswith("INSERT INTO FINDINGS"):
            event.remove(store.engine, "before_cursor_execute", kill)
            with admin.connect() as c:
                c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": name})

    event.listen(store.engine, "before_cursor_execute", kill)
    try:
        yield
    finally:
        if event.contains(store.engine, "before_cursor_execute", kill):
            event.remove(store.engine, "before_cursor_execute", kill)
        admin.dispose()


def flow_night(cfg):
    return run_nightly_flow(str(cfg.path)).result


@pytest.mark.parametrize("backend, night, by_report", [
    ("sqlite", run_nightly, True), ("sqlite", flow_night, False),
    pytest.param("postgresql", run_nightly, False, marks=pytest.mark.postgres)],
    ids=["sqlite-report", "sqlite-flow", "postgresql"])
def test_a_store_failure_during_assessment_loses_nothing(demo, tmp_path, monkeypatch, request, backend, night, by_report,
                                                         uninterrupted):
    """The failed night is assessed by the next night before it reads anything, or before that by
    ``healthqa report --run N`` (``by_report``)."""
    cfg, store, folder = copy_platform(demo, tmp_path)
    store.close()
    fail = sqlite_full
    if backend == "postgresql":
        url = request.getfixturevalue("pg_store_url")
        cfg.path.write_text(cfg.path.read_text(encoding="utf-8").replace(cfg.store.url, url), encoding="utf-8")
        cfg, fail = config.load(cfg.path), pg_terminated
    url = cfg.store.url

    real = nightly.assess_run
    calls = []

    def failing(*args, **kw):  # the night's own assessment, with the audit store failing under it
        calls.append(args[2])
        with fail(args[1]):
            return real(*args, **kw)

    monkeypatch.setattr(nightly, "assess_run", failing)
    with frozen(NIGHT_1):
        first = night(cfg)
    monkeypatch.setattr(nightly, "assess_run", real)
    assert calls == [first.run_id]

    with AuditStore(url) as store:
        run = store.runs.get(first.run_id)
        # no watermark of the night moved: its rows are not yet accounted for (the duplicate scan is a
        # run of its own, whose pairs were stored whole: its watermark is its own)
        assert [k for k in store.watermarks.all() if not k[2].startswith("dedup:")] == []
        assert store.scores.of_run(first.run_id) == []  # nothing half-written: scores and findings, or neither
        assert store.findings.list() == []
        assert run.status == "partial" and first.exit_code == 1
        assert re.search("database or disk is full" if backend == "sqlite" else "terminat|closed", run.message), run.message
        assert "assessment pending" in run.message and run.assessment_pending
        assert store.results.of_run(first.run_id)  # the rule results stored before the failure stand
    shown = invoke("runs", "--config", cfg.path)
    assert shown.exit_code == 0 and "assessment pending" in shown.output, shown.output

    if by_report:
        with frozen(NIGHT_1.replace(hour=8)):
            written = invoke("report", "--config", cfg.path, "--run", first.run_id)
        assert written.exit_code == 0 and f"assessed now: run {first.run_id}" in written.output, written.output
    with frozen(NIGHT_2):
        second = night(cfg)
    assert [a.run_id for a in second.caught_up] == ([] if by_report else [first.run_id])
    assert filed_by(url, first.run_id) == uninterrupted["filed"]  # every finding of that night, filed once
    assert scores_of(url, first.run_id) == uninterrupted["scores"]
    with AuditStore(url) as store:
        run = store.runs.get(first.run_id)
        assert not run.assessment_pending
        assert f"assessed later ({'healthqa report' if by_report else f'run {second.run_id}'})" in run.message
        assert store.runs.get(second.run_id).status == "success"
        assert store.watermarks.all() == uninterrupted["marks"]  # the held ones advanced, then the night's own
    assert findings_of(url) == uninterrupted["findings"]  # and the next night goes on as if nothing happened
