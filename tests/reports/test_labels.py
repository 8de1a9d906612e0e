"""What a user reads for a run's state and scope, and for a canonical table: Chinese first, never a
Python repr — one implementation (reports/labels.py) for the CLI, the console and the reports."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from rich.console import Console

from healthqa.reports.labels import scope_text, status_text, table_text


def test_scopes_read_chinese_first_without_python_reprs():
    nightly = scope_text({"sources": ["drc", "mpi"], "config": "/etc/healthqa.yml"})
    assert nightly == "数据源 drc, mpi"
    scoped = scope_text({"source": "drc", "tables": ["outpatient_visit"], "orgs": ["330211001"],
                         "since": "2026-11-18T00:00:00", "until": "2026-11-20T23:59:59.999999"})
    assert scoped == "数据源 drc · 表 门诊就诊记录 outpatient_visit · 机构 330211001 · 2026-11-18→2026-11-20"
    # the console's job keeps its window as datetimes
    job = scope_text({"source": "mpi", "tables": ["person"], "orgs": [], "since": datetime(2026, 11, 18, 8), "until": None})
    assert job == "数据源 mpi · 表 居民健康档案（主索引） person · 2026-11-18 08:00→…"
    assert scope_text(None) == scope_text({"model": {"x": 1}}) == "全部 everything"
    assert table_text("drc.death_registration") == "死亡登记 drc.death_registration"
    assert status_text("partial") == "部分完成 partial"


def test_the_runs_table_shows_kind_state_and_scope_chinese_first():
    from healthqa.pipelines.cli.render import runs_table

    run = SimpleNamespace(id=7, kind="nightly", status="partial", scope={"sources": ["drc", "mpi"], "config": "/x.yml"},
                          started_at=datetime(2026, 11, 20, 2), finished_at=datetime(2026, 11, 20, 2, 1))
    console = Console(record=True, width=300)
    console.print(runs_table([(run, [], "")]))
    out = console.export_text()
    assert "夜间稽核" in out and "部分完成" in out and "数据源 drc, mpi" in out
    assert "[" not in out and "config" not in out


def test_the_terminal_tables_name_canonical_tables_chinese_first():
    from healthqa.pipelines.cli.render import nightly_table

    rule = SimpleNamespace(id="OPV-DX-REQUIRED", threshold=0.0)
    failing = SimpleNamespace(rule=rule, status="fail", violations=3, denominator=10, violation_pct=30.0)
    tv = SimpleNamespace(table="outpatient_visit", sampling={"method": "full"}, rows=10, results=[failing])
    res = SimpleNamespace(run_id=3, status="success", validations={"drc": SimpleNamespace(tables=[tv])}, failures={})
    console = Console(record=True, width=300)
    console.print(nightly_table(res))
    assert "门诊就诊记录 outpatient_visit" in console.export_text()
