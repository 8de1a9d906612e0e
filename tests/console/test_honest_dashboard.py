"""Issue 18, honest reports on the QC manager's dashboard: after a night with the QC store down and
a night with every store down, the dashboard says which night scored nothing, which rules of the
night it shows could not run and why, which score rests on few rows, and no change is "首次 first"."""

from __future__ import annotations

import shutil

import pytest

from healthqa.console.app import create_app
from healthqa.pipelines.nightly import run_nightly

from ..conftest import copy_after_night
from .console_site import PASSWORD, USERS, logged_in

pytestmark = pytest.mark.slow  # three nights


def _move(folder, stores, to):
    for s in stores:
        shutil.move(folder / (f"{s}.db" if to == "gone" else f"gone/{s}.db"),
                    folder / (f"gone/{s}.db" if to == "gone" else f"{s}.db"))


def test_the_dashboard_says_what_did_not_run_and_what_rests_on_few_rows(demo_after_night, tmp_path):
    """The first night is the session's (``demo_after_night``), every source up."""
    cfg, store, _, _ = copy_after_night(demo_after_night, tmp_path, console={"failed_login_delay_s": 0},
                                        orchestration={"retries": 0})
    with store:
        for name, role in USERS.items():
            store.users.add(name, role, PASSWORD, actor="test")
    (tmp_path / "gone").mkdir()
    _move(tmp_path, ["qc"], "gone")
    shown = run_nightly(cfg).run_id
    _move(tmp_path, ["mpi", "drc"], "gone")
    nothing = run_nightly(cfg).run_id
    _move(tmp_path, ["mpi", "drc", "qc"], "back")

    client, _ = logged_in(create_app(cfg), "qc1")
    dash = client.get("/dashboard").text
    assert f"latest scored run #{shown}" in dash
    assert f"nightly audit #{nothing} scored nothing" in dash  # the newer night is not hidden
    assert "could not run" in dash and "数据源无法连接：qc" in dash  # the shown night's rules that did not run
    assert "仅 " in dash and " rows</span>" in dash  # system 11 on the register's few rows says so
    assert "首次 first" not in dash and ">no change<" not in dash  # nothing was first; changes in words
    # the night that scored nothing keeps its report, which says why
    assert f'href="/reports/run/{nothing}.html"' in client.get("/reports").text
    report = client.get(f"/reports/run/{nothing}.html").text
    assert "没有规则运行" in report and "every rule is within its threshold" not in report
