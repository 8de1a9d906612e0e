"""``healthqa schedule`` prints a line per run its flows end (issue 22): read from a small audit store."""

from __future__ import annotations

from datetime import datetime

from healthqa import clock
from healthqa.store import AuditStore

T0 = datetime(2026, 11, 20, 2, 0)


def test_a_line_per_ended_run_with_its_report(tmp_path):
    from healthqa.pipelines.cli.schedule import ended_runs, run_line

    (tmp_path / "run-2.html").write_text("<html></html>", encoding="utf-8")
    with AuditStore(f"sqlite:///{tmp_path / 'audit.db'}") as store, clock.frozen(T0) as c:
        with store.runs.start("nightly", {"sources": ["mpi"]}):
            c.advance(seconds=1)
        with store.runs.start("nightly", {"sources": ["mpi"]}):
            c.advance(seconds=4)
        printed: set[int] = set()
        (run,) = ended_runs(store, 1, printed)  # run 1 ended before the schedule started
        printed.add(run.id)
        assert run_line(run, tmp_path) == f"运行 run 2 夜间稽核 nightly 完成 success 4 s 报告 report {tmp_path / 'run-2.html'}"
        assert ended_runs(store, 1, printed) == []  # once
