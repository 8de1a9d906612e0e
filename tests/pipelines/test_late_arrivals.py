"""Late arrivals are validated the next night, and nothing is counted twice.

Rows uploaded after a night with a time before its watermark (a clinic's late batch) are read by the
next night: the demo re-reads the 48 h before the watermark and counts only the rows no night counted
(docs/design.md "Late arrivals"; tests/connectors/test_late_arrivals.py reads by a load stamp). A time
in another format than ISO, or no time at all, is counted once — not fetched and counted every night."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from healthqa.pipelines.nightly import run_nightly

pytestmark = pytest.mark.slow  # several nights each

NON_ISO = "2026/11/20 08:00:00"  # a time, in another format than ISO, older than the watermark
NO_TIME = "2026/13/45 08:00"  # no time at all: a defect, counted once


def visit(conn, vid: str, upload: str, dx: str | None = "I10", org: str | None = None) -> None:
    archive, first_org = conn.execute("SELECT dabh, jgdm FROM tb_mzjzjl ORDER BY jzlsh LIMIT 1").fetchone()
    cols = [d[1] for d in conn.execute("PRAGMA table_info(tb_mzjzjl)")]
    row = {"jzlsh": vid, "dabh": archive, "jgdm": org or first_org, "ksdm": "03", "jzsj": "2026-11-20 07:00:00",
           "zdbm": dx, "zdmc": "高血压", "jzysgh": "D001", "scsj": upload}
    row.update({c: upload for c in cols if c not in row})  # the load stamp, where a test added one
    conn.execute(f"INSERT INTO tb_mzjzjl ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [row[c] for c in cols])


def read_rows(night) -> dict[str, int]:
    return {tv.table: tv.rows for v in night.validations.values() for tv in v.tables}


def results(store, run_id: int) -> dict:
    return {r.rule_id: r for r in store.results.of_run(run_id) if r.table == "outpatient_visit"}


def counts(store) -> dict[str, tuple[int, int]]:
    return {f.fingerprint: (f.violations, f.rows_checked) for f in store.findings.known()
            if f.table_name == "outpatient_visit" and f.kind == "rule"}


def test_late_rows_are_validated_the_next_night_and_counted_once(platform):
    cfg, store, folder = platform
    with sqlite3.connect(folder / "drc.db") as conn:
        visit(conn, "NONISO-1", NON_ISO)
        visit(conn, "NOTIME-1", NO_TIME)
    first = run_nightly(cfg)
    assert read_rows(first)["outpatient_visit"] > 1000  # the first night reads the table whole
    mark = store.watermarks.get("drc", "outpatient_visit", "upload_time")
    late = (mark - timedelta(hours=6)).strftime("%Y-%m-%d %H:%M:%S")  # before the watermark, inside 48 h
    with sqlite3.connect(folder / "drc.db") as conn:
        org, other = (conn.execute(f"SELECT jgdm FROM tb_mzjzjl WHERE jgdm IS NOT NULL ORDER BY jgdm {o} LIMIT 1")
                      .fetchone()[0] for o in ("DESC", "ASC"))
        for i in range(3):  # a clinic's late batch, without diagnoses
            visit(conn, f"LATE-{i}", late, dx=None, org=org)
        visit(conn, "NOTIME-2", NO_TIME, org=other)  # arrives after the first night: counted the next night, once
    before = counts(store)

    second = run_nightly(cfg)
    assert read_rows(second)["outpatient_visit"] == 4  # the late batch and the new time-less row, nothing else
    dx = results(store, second.run_id)["OPV-DX-REQUIRED"]
    assert dx.violations == 3 and sorted(dx.sample_keys) == ["LATE-0", "LATE-1", "LATE-2"]
    after = counts(store)
    fp = f"rule:drc.outpatient_visit:OPV-DX-REQUIRED:{org}"
    was = before.get(fp, (0, 0))
    assert after[fp] == (was[0] + 3, was[1] + 3)  # a night's new rows add to the finding, once

    third = run_nightly(cfg)  # a quiet night: the overlap is fetched again, but nothing in it is new
    assert read_rows(third)["outpatient_visit"] == 0
    assert counts(store) == after  # no finding counts a row twice
    assert not any(r.violations for r in results(store, third.run_id).values())
