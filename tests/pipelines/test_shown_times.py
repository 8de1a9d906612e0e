"""Every time the command line and the reports show is in the platform's zone and says so: ``runs``,
``findings`` (deadlines), the run report and the quarterly report as ``2026-11-25 10:00 (UTC+8)``; the
findings exports (JSON, CSV) as ISO 8601 with the offset. Read from the CLI's demo, which is not
changed (stored times are naive times of the configured zone, Asia/Shanghai)."""

from __future__ import annotations

import csv
import json

import pytest

from healthqa import config
from healthqa.store import AuditStore

from .cli_run import invoke

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli_readers")]  # two reports; the session's CLI demo (built)


def test_the_command_line_and_reports_label_their_times(built, tmp_path):
    folder, _ = built
    path = folder / "healthqa.yml"
    cfg = config.load(path)
    with AuditStore(cfg.store.url) as store:
        run = store.runs.recent(1, kind="nightly")[0]
        # in whatever state another test left it (tests/pipelines/test_cli_reports.py resolves one)
        urgent = next(f for f in store.findings.list(state=None) if f.response_due_at)

    res = invoke("runs", "--config", path)
    assert res.exit_code == 0 and f"{run.started_at:%Y-%m-%d %H:%M:%S} (UTC+8)" in res.output, res.output

    res = invoke("findings", "--config", path, "--state", urgent.state, "--json", tmp_path / "f.json")
    assert res.exit_code == 0 and f"{urgent.response_due_at:%Y-%m-%d %H:%M} (UTC+8)" in res.output, res.output
    doc = next(d for d in json.loads((tmp_path / "f.json").read_text(encoding="utf-8")) if d["id"] == urgent.id)
    assert doc["response_due_at"] == f"{urgent.response_due_at:%Y-%m-%dT%H:%M:%S}+08:00"
    assert doc["opened_at"] == f"{urgent.opened_at:%Y-%m-%dT%H:%M:%S}+08:00"
    res = invoke("findings", "--config", path, "--state", urgent.state, "--json", tmp_path / "f.csv")
    assert res.exit_code == 0
    with (tmp_path / "f.csv").open(encoding="utf-8-sig") as fh:
        row = next(r for r in csv.DictReader(fh) if r["id"] == str(urgent.id))
    assert row["response_due_at"] == f"{urgent.response_due_at:%Y-%m-%dT%H:%M:%S}+08:00"
    assert row["last_seen_at"] == f"{urgent.last_seen_at:%Y-%m-%dT%H:%M:%S}+08:00"

    res = invoke("report", "--config", path, "--run", run.id, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    page = (tmp_path / f"run-{run.id}.html").read_text(encoding="utf-8")
    assert f"{run.started_at:%Y-%m-%d %H:%M} (UTC+8) – {run.finished_at:%Y-%m-%d %H:%M} (UTC+8)" in page
    assert "生成于 generated 20" in page and page.count("(UTC+8)") >= 3  # the footer and the deadlines too

    quarter = f"{run.started_at.year}Q{(run.started_at.month - 1) // 3 + 1}"
    res = invoke("report", "--config", path, "--quarter", quarter, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    page = (tmp_path / f"inspection-{quarter}.html").read_text(encoding="utf-8")
    assert "数据截至 figures as of 20" in page and page.count("(UTC+8)") >= 2  # as of, generated
