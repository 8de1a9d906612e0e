"""Issue 18, first criterion: one store down blames only that store.

Each of the three demo stores is moved away in turn (retries 0), and the nightly audit runs as a user
runs it (``healthqa run nightly`` in a process of its own, so that the terminal is the real one; its
flows on the worker's Prefect API, ``conftest.prefect_api_url``, not on a local API of its own) and
as the plain function (``run_nightly``). The other stores' tables are all validated and stored, with
rows; exactly one 一级 fault finding exists and it names the store that is down; no traceback reaches
stdout or stderr; the exit code is 1; the report says which rules could not run and why. With the
register's store (DRC) down the duplicate scan still runs, without institution levels, and says so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from healthqa import config
from healthqa.expectations import suite
from healthqa.pipelines import fault_log
from healthqa.pipelines.nightly import run_nightly
from healthqa.reports.rules_run import rules_run
from healthqa.store import AuditStore

from ..conftest import command_env, copy_platform, demo_config, write_config

pytestmark = pytest.mark.slow  # whole nights, four of them in processes of their own

STORES = ("mpi", "drc", "qc")
READ_FAULTS = {"store_unreachable", "table_unreadable", "run_incomplete"}


def _platform(demo: Path, folder: Path, down: str, **orchestration) -> Path:
    """A copy of the demo platform with a fresh audit store and ``down``'s file moved away."""
    copy_platform(demo, folder)
    cfg = demo_config(folder)
    cfg["reports"] = {**cfg.get("reports", {}), "out_dir": str(folder / "reports")}
    cfg["orchestration"] = {**cfg.get("orchestration", {}), "retries": 0, **orchestration}
    (folder / "gone").mkdir()
    shutil.move(folder / f"{down}.db", folder / "gone" / f"{down}.db")
    return write_config(folder / "healthqa.yml", cfg)


def _night_blames_only(cfg: config.Config, run_id: int, down: str) -> str:
    """The checks every path shares; returns the run report's text."""
    with AuditStore(cfg.store.url) as store:
        stored = store.results.of_run(run_id)
        for source in STORES:
            if source == down:
                assert not [r for r in stored if r.source == down]
                continue
            tables = suite.tables_with_suite(cfg.sources[source].tables)
            rows = {t: max((r.denominator for r in stored if (r.source, r.table) == (source, t)), default=0)
                    for t in tables}
            assert all(n > 0 for n in rows.values()), (source, rows)
        findings = store.findings.list()
        read_faults = [f for f in findings if f.kind == "fault" and f.subject in READ_FAULTS]
        assert [(f.source, f.subject, f.level) for f in read_faults] == [(down, "store_unreachable", "一级")]
        assert [f.source for f in findings if f.kind == "fault" and f.level == "一级"] == [down]
        # a rule not run because the store was down is no finding of its own
        errors = {(r.source, r.table, r.rule_id) for r in stored if r.status == "error"}
        assert not [f for f in findings if (f.source, f.table_name, f.subject) in errors]
        ran = rules_run(cfg, store, run_id)
    assert ran.ran > 0 and ran.could_not > 0
    reasons = list(ran.not_run)
    assert any(f"数据源无法连接：{down}" in why for why in reasons), reasons
    if down == "mpi":  # the other stores' rules that look into the MPI: not run, with the reason
        assert any(why.startswith(f"参照数据不可用 reference unavailable: {down} unreachable") for why in reasons)
    report = sorted((Path(cfg.reports.out_dir)).glob(f"run-{run_id}.html"))
    assert report, "the run report was written"
    text = report[0].read_text(encoding="utf-8")
    assert "rules that could not run" in text and f"数据源无法连接：{down}" in text
    assert "every rule is within its threshold" not in text
    if down == "drc":  # the duplicate scan ran without the register's levels: the report says so
        assert "survivors chosen without institution levels (drc unreachable" in text
    return text


@pytest.mark.parametrize("down", STORES)
def test_the_command_blames_only_the_store_that_is_down(small_demo, tmp_path, down, prefect_api_url):
    """With the QC store down, the night's tasks on threads retry once (``test_a_retry_is_one_line``
    for the threads runner: the same night, so it is run once, here)."""
    retry = {"retries": 1, "retry_delay_s": [0.1], "task_runner": "threads"} if down == "qc" else {}
    path = _platform(small_demo, tmp_path, down, **retry)
    ran = subprocess.run([sys.executable, "-m", "healthqa", "run", "nightly", "--config", str(path)],
                         capture_output=True, text=True, env=command_env(prefect_api_url, COLUMNS="200"), timeout=600)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    if retry:
        _one_retry_line(ran, tmp_path)
    assert "Traceback" not in ran.stdout and "Traceback" not in ran.stderr, ran.stderr
    assert "could not run" in ran.stdout or "无法连接" in ran.stdout + ran.stderr
    cfg = config.load(path)
    with AuditStore(cfg.store.url) as store:
        run_id = store.runs.recent(1, kind="nightly")[0].id
    _night_blames_only(cfg, run_id, down)
    log = fault_log.log_path(cfg)  # the traceback went beside the audit store
    assert log == tmp_path / fault_log.LOG_NAME and "SourceUnreachable" in log.read_text(encoding="utf-8")
    if down == "drc":
        assert "survivors chosen without institution levels (drc unreachable" in ran.stdout
    # the run history, read back in this process: what is tested is its table, not a process of its own
    from .cli_run import app, runner

    runs = runner.invoke(app, ["runs", "--config", str(path)], env={"COLUMNS": "400"})
    assert runs.exit_code == 0 and "未能运行 could not run" in runs.stdout and f"数据源无法连接：{down}" in runs.stdout


@pytest.mark.parametrize("down", STORES)
def test_the_function_blames_only_the_store_that_is_down(small_demo, tmp_path, down, capfd):
    cfg = config.load(_platform(small_demo, tmp_path, down))
    res = run_nightly(cfg)
    assert set(res.failures) == {down}
    assert set(res.validations) == set(STORES) - {down}
    _night_blames_only(cfg, res.run_id, down)
    if down == "drc":  # the duplicate scan ran without the register's levels, and said so
        assert res.dedup is not None and "drc unreachable" in res.dedup.stats["institution_levels"]
    if down == "mpi":
        assert res.dedup is None  # nothing to scan
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def _one_retry_line(ran: subprocess.CompletedProcess, folder: Path) -> None:
    assert ran.returncode == 1 and "Traceback" not in ran.stderr + ran.stdout, ran.stderr
    assert ran.stderr.count("qc 无法连接，0.1 s 后重试 retrying in 0.1 s (1/1)") == 1, ran.stderr
    assert "Traceback" in (folder / fault_log.LOG_NAME).read_text(encoding="utf-8")


def test_a_retry_is_one_line(small_demo, tmp_path, prefect_api_url):
    """Whichever process runs the task: its retry is one line, its traceback goes to the log file —
    here in the processes of a process pool; on threads in ``test_the_command_blames_only_the_store_that_is_down[qc]``."""
    path = _platform(small_demo, tmp_path, "qc", retries=1, retry_delay_s=[0.1], task_runner="processes")
    ran = subprocess.run([sys.executable, "-m", "healthqa", "run", "nightly", "--config", str(path)],
                         capture_output=True, text=True, env=command_env(prefect_api_url), timeout=600)
    _one_retry_line(ran, tmp_path)


def test_a_bug_keeps_its_traceback_for_the_terminal():
    import logging

    e = RuntimeError("a bug")
    assert not fault_log.expected(e)
    record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, (RuntimeError, e, None))
    record.task_run_id = "r1"
    divert = fault_log._Divert(logging.NullHandler())
    assert divert.filter(record)  # shown

