"""Issue 22 from a terminal: `healthqa findings ack|assign|resolve` on several ids (all of them or none),
the findings as one line each when piped, notes and assignee in the table and in --json, and
`healthqa findings report` — on the small audit store of tests/reports/service_store.py."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest

from healthqa import clock

from ..reports.service_store import RAW_ID, RULE, build
from .cli_run import invoke, refused


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Read only: the tests that change findings build their own."""
    return build(tmp_path_factory.mktemp("findings-cli"))


def _states(folder) -> dict[int, tuple]:
    with sqlite3.connect(folder / "audit.db") as conn:
        return {r[0]: r[1:] for r in conn.execute("SELECT id, state, acknowledged_by, assignee FROM findings")}


def _log_size(folder) -> int:
    with sqlite3.connect(folder / "audit.db") as conn:
        return conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]


def test_several_ids_are_all_changed_or_none(tmp_path):
    path, ids = build(tmp_path)
    before, logged = _states(tmp_path), _log_size(tmp_path)
    # one id that names no finding: nothing changes, and the message names it
    line = refused(invoke("findings", "ack", ids["open"], ids["notice"], 4242, "--config", path), "4242")
    assert "no such finding" in line and "nothing changed" in line
    refused(invoke("findings", "assign", ids["open"], 4242, 4343, "li.si", "--config", path), "findings 4242, 4343")
    # one already resolved: the same
    refused(invoke("findings", "resolve", ids["open"], ids["repaired"], "--config", path), f"finding {ids['repaired']}")
    assert _states(tmp_path) == before and _log_size(tmp_path) == logged
    # all good: every one changed, one line each
    res = invoke("findings", "ack", ids["open"], ids["notice"], "--config", path)
    assert res.exit_code == 0, res.output
    assert res.output.count("已确认 acknowledged") == 2
    res = invoke("findings", "assign", ids["open"], ids["notice"], "zhao.liu", "--config", path)
    assert res.exit_code == 0 and res.output.count("assigned to zhao.liu") == 2, res.output
    after = _states(tmp_path)
    assert after[ids["open"]][0] == after[ids["notice"]][0] == "acknowledged"
    assert after[ids["open"]][2] == after[ids["notice"]][2] == "zhao.liu"
    res = invoke("findings", "resolve", ids["open"], ids["notice"], "--note", "误报", "--config", path)
    assert res.exit_code == 0 and res.output.count("已关闭 resolved") == 2, res.output


def _piped(res) -> dict[int, dict]:
    """The piped listing: a header, then one tab-separated line per finding, as {id: {column: value}}."""
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if not line.startswith("JSON: ")]
    header, rows = lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    assert all(len(r) == len(header) for r in rows), lines
    return {int(r[0]): dict(zip(header, r, strict=True)) for r in rows}


def test_piped_findings_are_one_line_each_with_the_rule_as_a_column(site, tmp_path):
    path, ids = site
    with clock.frozen(datetime(2026, 11, 21, 10)):
        listed = _piped(invoke("findings", "--config", path))
        resolved = _piped(invoke("findings", "--config", path, "--state", "resolved", "--json", tmp_path / "f.json"))
    assert set(listed) == {ids["open"], ids["notice"]} and {r["rule"] for r in listed.values()} == {RULE}
    assert listed[ids["open"]]["overdue"] == "response"  # 二级, nobody answered in 2 hours
    assert listed[ids["open"]]["response_due_at"] == "2026-11-20 04:00 (UTC+8)"
    repaired = resolved[ids["repaired"]]
    assert repaired["assignee"] == "li.si" and "li.si: 原因：前置机接口截断身份证末位" in repaired["notes"]
    exported = {f["id"]: f for f in json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))}
    assert exported[ids["repaired"]]["assignee"] == "li.si"
    note, = exported[ids["repaired"]]["notes"]
    assert note["by"] == "li.si" and note["at"] == "2026-11-20T04:00:00+08:00" and "补传" in note["text"]
    assert exported[ids["repaired"]]["acknowledged_at"] == "2026-11-20T03:00:00+08:00"


def test_findings_report_writes_the_service_report(site, tmp_path):
    path, ids = site
    res = invoke("findings", "report", ids["open"], "--config", path, "--out", tmp_path / "svc.html")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "svc.html").read_text(encoding="utf-8")
    assert "售后服务报告" in page and "未修复 not resolved" in page and RAW_ID not in page
    refused(invoke("findings", "report", 4242, "--config", path), "finding 4242: no such finding")
