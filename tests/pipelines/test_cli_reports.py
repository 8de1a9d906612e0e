"""`healthqa report` and `healthqa findings` as the QC manager and the engineer use them."""

from __future__ import annotations

import getpass
import json
import sqlite3

import pytest

from .cli_run import invoke, refused

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli_readers")]  # the session's demo (conftest.built)


def test_the_demo_ends_with_the_report(built):
    folder, res = built
    out = res.output.replace("\n", "")
    assert "先打开稽核报告 open the report first" in out
    assert str(folder / "reports" / "run-") in out and list((folder / "reports").glob("run-*.html"))


def test_report_of_the_latest_run_and_the_quarter(built, tmp_path):
    folder, _ = built
    cfg = folder / "healthqa.yml"
    res = invoke("report", "--config", cfg, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    html = next(tmp_path.glob("run-*.html")).read_text(encoding="utf-8")
    assert "数据质量稽核报告" in html
    res = invoke("report", "--config", cfg, "--quarter", "2026Q4", "--out", tmp_path)
    assert res.exit_code == 0 and (tmp_path / "inspection-2026Q4.html").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["--quarter", "2026Q5"], "expected a quarter like 2026Q4"),
    (["--run", "99999"], "run 99999: no such run"),
    (["--run", "1", "--quarter", "2026Q4"], "choose one"),
])
def test_report_misuse_is_one_line(built, args, fragment):
    folder, _ = built
    refused(invoke("report", "--config", folder / "healthqa.yml", *args), fragment)


def test_findings_list_filter_and_change_from_a_terminal(built, tmp_path):
    folder, _ = built
    cfg = folder / "healthqa.yml"
    res = invoke("findings", "--config", cfg, "--json", tmp_path / "f.json")
    assert res.exit_code == 0, res.output
    listed = json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))
    assert listed and all(f["state"] != "resolved" for f in listed)
    level_two = invoke("findings", "--config", cfg, "--level", "二级", "--json", tmp_path / "two.json")
    assert level_two.exit_code == 0
    assert all(f["level"] == "二级" for f in json.loads((tmp_path / "two.json").read_text(encoding="utf-8")))

    fid = listed[0]["id"]
    for args, said in ((["ack", fid], "acknowledged"), (["assign", fid, "li.si"], "assigned to li.si"),
                       (["note", fid, "已电话通知机构"], "noted"), (["resolve", fid, "--note", "误报"], "resolved")):
        res = invoke("findings", *args, "--config", cfg)
        assert res.exit_code == 0 and said in res.output, res.output
    with sqlite3.connect(folder / "audit.db") as conn:
        log = conn.execute("SELECT user_name, action FROM audit_log WHERE subject = ? ORDER BY id", (str(fid),)).fetchall()
    me = getpass.getuser()
    assert log == [(me, "finding_acknowledged"), (me, "finding_assigned"), (me, "finding_note"), (me, "finding_resolved")]
    resolved = invoke("findings", "--config", cfg, "--state", "resolved", "--json", tmp_path / "r.json")
    assert resolved.exit_code == 0
    assert fid in {f["id"] for f in json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))}


@pytest.mark.parametrize("args, fragment", [
    (["ack", "99999"], "finding 99999: no such finding"),
    (["--state", "closed"], "--state: expected one of"),
    (["--level", "三级"], "--level: expected"),
    (["note", "1", "   "], "note: the text is empty"),
])
def test_findings_misuse_is_one_line(built, args, fragment):
    folder, _ = built
    cfg = folder / "healthqa.yml"
    head, rest = (args[:2], args[2:]) if args[0] in ("ack", "note") else ([], args)
    refused(invoke("findings", *head, *rest, "--config", cfg), fragment)


def test_runs_shows_last_night_at_a_glance(built):
    folder, _ = built
    res = invoke("runs", "--config", folder / "healthqa.yml", "--last", 5)
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if "夜间稽核" in line]  # a run's first line: Chinese over English
    assert rows and rows[-1].split("│")[5].strip() == "完成"
    assert any(ch.isdigit() for ch in rows[-1].split("│")[7])  # rows read
    refused(invoke("runs", "--config", folder / "healthqa.yml", "--last", 0), "--last")


def test_the_demo_ends_saying_how_to_open_the_console(built):
    folder, res = built
    cfg = folder / "healthqa.yml"
    tail = res.output.rsplit("先打开稽核报告", 1)[-1]
    assert "打开控制台 open the console" in tail
    assert f"healthqa users add NAME --role steward --config {cfg}" in tail
    assert f"healthqa serve --config {cfg}" in tail
