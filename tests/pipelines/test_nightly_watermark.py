"""A future-dated row is a defect to report, not a clock to follow: the incremental watermark never
passes the run's own start, so rows that arrive afterwards are still validated by the next night."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import pytest
import yaml

from healthqa import clock, config
from healthqa.pipelines.flows import run_nightly_flow
from healthqa.pipelines.nightly import run_nightly

from ..conftest import write_config

pytestmark = pytest.mark.slow  # several nights each


def visit(conn, vid: str, upload: datetime) -> None:
    archive, org = conn.execute("SELECT dabh, jgdm FROM tb_mzjzjl LIMIT 1").fetchone()
    conn.execute("INSERT INTO tb_mzjzjl VALUES (?, ?, ?, '03', '2026-11-24 09:00:00', 'I10', '高血压', 'D001', ?)",
                 (vid, archive, org, upload.strftime("%Y-%m-%d %H:%M:%S")))


def test_a_future_dated_row_does_not_move_the_watermark_and_is_reported(after_night):
    cfg, store, folder, _ = after_night
    with sqlite3.connect(folder / "drc.db") as conn:
        visit(conn, "FUTURE-1", clock.now() + timedelta(days=9))  # a clock set wrong at a clinic
    second = run_nightly(cfg)
    run2 = store.runs.get(second.run_id)
    marks = {k: v for k, v in store.watermarks.all().items() if k[1] == "outpatient_visit"}
    assert marks and all(v <= run2.started_at for v in marks.values())
    reported = {r.rule_id: r for r in store.results.of_run(second.run_id) if r.table == "outpatient_visit"}
    future = reported["OPV-UPLOAD-NOT-FUTURE"]
    assert future.status == "fail" and future.violations == 1 and future.sample_keys == ["FUTURE-1"]

    with sqlite3.connect(folder / "drc.db") as conn:  # a visit uploaded after that night's start
        visit(conn, "LATE-1", clock.now())  # the platform's now, not the host's
    third = run_nightly(cfg)
    read = {tv.table: tv.rows for v in third.validations.values() for tv in v.tables}
    assert read["outpatient_visit"] >= 1
    keys = {k for r in store.results.of_run(third.run_id) if r.table == "outpatient_visit" for k in (r.sample_keys or [])}
    dx = {r.rule_id: r for r in store.results.of_run(third.run_id) if r.table == "outpatient_visit"}
    assert dx["OPV-DX-REQUIRED"].denominator >= 1  # the late visit was validated, not skipped
    assert "FUTURE-1" in keys  # and the future row is reported again until someone fixes it


@pytest.mark.parametrize("partitions", [1, 2])
def test_a_night_judges_its_rows_against_the_whole_table(platform, partitions):
    """Rules that compare rows (here: follow-ups at most 92 days apart) see the night's rows beside
    every earlier one: tonight's follow-up of a patient last seen months ago is late, though the
    earlier follow-up was read on another night. The same when the table is validated in institution
    partitions (the flow's tasks; the whole-table rules in a part of their own)."""
    _, store, folder = platform
    doc = yaml.safe_load((folder / "healthqa.yml").read_text(encoding="utf-8"))
    doc["sources"]["qc"]["sampling"] = {"method": "incremental"}
    doc["orchestration"] = {"partitions": partitions}
    cfg = config.load(write_config(folder / "healthqa.yml", doc))
    night = run_nightly if partitions == 1 else lambda c: run_nightly_flow(str(c.path)).result
    night(cfg)
    with sqlite3.connect(folder / "qc.db") as conn:
        row = conn.execute("SELECT * FROM JK_MBSF ORDER BY SFRQ DESC LIMIT 1").fetchone()
        names = [d[0] for d in conn.execute("SELECT * FROM JK_MBSF LIMIT 0").description]
        last = dict(zip(names, row))
        # the same patient and disease, a follow-up after that night's watermark, 120 days after the last
        when = (datetime.fromisoformat(last["SFRQ"]) + timedelta(days=120)).strftime("%Y-%m-%d")
        conn.execute(f"INSERT INTO JK_MBSF ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                     [{"SFJLID": "LATE-FU-1", "SFRQ": when}.get(n, last[n]) for n in names])
    second = night(cfg)
    read = {tv.table: tv.rows for v in second.validations.values() for tv in v.tables}
    assert read["chronic_followup"] == 1  # the night read its own row only
    r = {x.rule_id: x for x in store.results.of_run(second.run_id) if x.table == "chronic_followup"}["FU-INTERVAL-92D"]
    assert r.sample_keys == ["LATE-FU-1"] and r.violations == 1 and r.denominator == 1
