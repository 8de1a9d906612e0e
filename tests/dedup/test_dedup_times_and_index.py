"""The duplicate scan's update times and index, when they are odd: ``0000-00-00 00:00:00`` beside
offset-aware times, archives dated in the future, and an index that does not match its audit store
(a store restored from a copy) — each said, counted, never fatal and never silently slow."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from healthqa.dedup import cluster
from healthqa.pipelines.dedup import run_dedup
from healthqa.store import AuditStore

from ..pipelines.cli_run import invoke
from .test_dedup_hardening import add_duplicate, configure, found_new, platform
from .test_dedup_incremental import copy_store


def test_zero_dates_beside_offset_aware_times_are_no_time():
    records = pd.DataFrame({"updated_at": ["0000-00-00 00:00:00", "2026-11-20 10:00:00+08:00",
                                           "2026-11-21 09:00:00", None]})
    t = cluster.traits(records, [])
    assert t["updated"].tolist()[0] == 0 and t["updated"].tolist()[3] == 0  # no time
    assert 0 < t["updated"].tolist()[1] < t["updated"].tolist()[2]


@pytest.mark.slow
def test_a_scan_over_zero_dates_and_offsets_runs_and_counts_them(demo, tmp_path):
    folder = platform(demo, tmp_path)
    with sqlite3.connect(folder / "mpi.db") as conn:
        first, second = [r[0] for r in conn.execute("SELECT DABH FROM T_GRDA ORDER BY DABH LIMIT 2")]
        conn.execute("UPDATE T_GRDA SET GXSJ = '0000-00-00 00:00:00' WHERE DABH = ?", (first,))
        conn.execute("UPDATE T_GRDA SET GXSJ = '2026-11-20 10:00:00+08:00' WHERE DABH = ?", (second,))
    cfg = configure(folder, tmp_path / "healthqa.yml")
    store = AuditStore(cfg.store.url)
    full = run_dedup(cfg, store, incremental=True)
    assert full.result.stats["updated_at_unreadable"] == 1
    night = run_dedup(cfg, store, incremental=True)  # the nightly's scan, against the index
    assert night.incremental and night.result.stats["index"] == "used"


@pytest.mark.slow
def test_a_future_update_time_is_capped_counted_and_not_compared_every_night(demo, tmp_path):
    folder = platform(demo, tmp_path)
    cfg = configure(folder, tmp_path / "healthqa.yml")
    store = AuditStore(cfg.store.url)
    run_dedup(cfg, store, incremental=True)
    add_duplicate(folder, updated="2099-01-01 00:00:00")  # a clinic's clock set wrong
    night = run_dedup(cfg, store, incremental=True)
    assert found_new(night) and night.result.stats["updated_at_future"] == 1
    assert "archive(s) updated after the run's start" in store.runs.get(night.run_id).message
    assert store.watermarks.get("mpi", "person", "dedup:updated_at") <= store.runs.get(night.run_id).started_at
    quiet = run_dedup(cfg, store, incremental=True)  # unchanged since: not compared again
    assert quiet.result.stats["compared"] == 0 and quiet.result.stats["candidate_pairs"] == 0
    with sqlite3.connect(folder / "mpi.db") as conn:  # ... but a change to it is noticed
        conn.execute("UPDATE T_GRDA SET LXDH = '13900000000' WHERE DABH = '33021100100199999'")
    assert run_dedup(cfg, store, incremental=True).result.stats["compared"] == 1


@pytest.mark.slow
def test_incremental_dedup_against_an_index_of_another_store_copy_says_so(demo, tmp_path):
    """The audit store restored from a copy taken before the last scan: the index on disk is a later
    run's. The scan reads the whole MPI — and says so on the terminal and in its run."""
    folder = platform(demo, tmp_path)
    cfg = configure(folder, tmp_path / "healthqa.yml")
    db = cfg.store.url.removeprefix("sqlite:///")
    run_dedup(cfg, AuditStore(cfg.store.url), incremental=True)
    copy_store(db, tmp_path / "backup.db")  # through SQLite: the store is in WAL mode
    run_dedup(cfg, AuditStore(cfg.store.url), incremental=True)
    copy_store(tmp_path / "backup.db", db)
    res = invoke("dedup", "--config", cfg.path, "--incremental")
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "读取整个主索引 reading the whole MPI" in said and "restored from a copy" in said, res.output
    last = AuditStore(cfg.store.url).runs.recent(1)[0]
    assert "reading the whole MPI" in last.message and "restored from a copy" in last.message
