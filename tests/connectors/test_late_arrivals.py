"""An incremental night's read takes late arrivals and counts every row once: rows uploaded after a
night with a time before its watermark (an overlap re-read, or a source's load stamp), and times
stored as text in another format than ISO or no time at all — counted once, not every night."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta

import pytest
import yaml

from healthqa import config
from healthqa.connectors.sources import reader
from healthqa.errors import ConfigError
from healthqa.pipelines.extract import read_table, scope_for
from healthqa.store import AuditStore

from ..conftest import write_config
from .test_sampling import drc

TABLE = "outpatient_visit"


class Nights:
    """Nights of one incremental table: each reads what it counts, within a run of its own."""

    def __init__(self, demo, tmp_path, sampling: config.Sampling):
        self.path = tmp_path / "drc.db"
        shutil.copy(demo / "drc.db", self.path)
        self.store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
        self.cfg = drc(self.path, sampling)

    def run(self) -> list[str]:
        keys: list[str] = []
        with reader("drc", self.cfg) as r, self.store.runs.start("nightly") as ctx:
            for df in read_table(r, TABLE, scope_for(r, self.store, TABLE), ctx):
                keys += df["visit_id"].astype(str).tolist()
        return keys

    def insert(self, vid: str, upload: str, **extra) -> None:
        with sqlite3.connect(self.path) as conn:
            cols = ["jzlsh", "dabh", "jgdm", "jzsj", "scsj", *extra]
            conn.execute(f"INSERT INTO tb_mzjzjl ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                         [vid, "a", "b", "2026-11-20 07:00:00", upload, *extra.values()])

    def mark(self, hours: float = 0) -> str:
        wm = self.store.watermarks.get("drc", TABLE, "upload_time")
        return (wm + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


def test_a_late_row_inside_the_overlap_is_read_the_next_night_once(demo, tmp_path):
    nights = Nights(demo, tmp_path, config.Sampling(method="incremental"))  # overlap_hours: 48 by default
    assert len(nights.run()) > 1000
    nights.insert("LATE-1", nights.mark(-6))  # uploaded after the night, dated before its watermark
    nights.insert("NEW-1", nights.mark(+1))
    assert sorted(nights.run()) == ["LATE-1", "NEW-1"]  # the overlap's other rows were counted before
    assert nights.run() == []
    nights.insert("OLD-1", nights.mark(-49))  # beyond the overlap: only a whole read sees it
    assert nights.run() == []


def test_text_times_in_another_format_are_compared_as_times_and_no_time_counted_once(demo, tmp_path):
    nights = Nights(demo, tmp_path, config.Sampling(method="incremental"))
    nights.insert("NONISO-1", "2026/11/20 08:00:00")  # a time before the watermark, written otherwise
    nights.insert("NOTIME-1", "2026/13/45 08:00")  # no time at all
    first = nights.run()
    assert {"NONISO-1", "NOTIME-1"} <= set(first)
    assert nights.run() == []  # text that sorts after the watermark is not read again
    nights.insert("NOTIME-2", "yesterday")
    nights.insert("NONISO-2", nights.mark(+2).replace("-", "/"))  # after the watermark, written otherwise
    assert sorted(nights.run()) == ["NONISO-2", "NOTIME-2"]
    assert nights.run() == []


def test_a_load_stamp_reads_a_resent_batch_whatever_its_time(demo, tmp_path):
    nights = Nights(demo, tmp_path, config.Sampling(method="incremental", arrival_column="RKSJ"))
    with sqlite3.connect(nights.path) as conn:
        conn.execute("ALTER TABLE tb_mzjzjl ADD COLUMN rksj TEXT")
        conn.execute("UPDATE tb_mzjzjl SET rksj = scsj")
    assert len(nights.run()) > 1000
    nights.insert("RESENT-1", nights.mark(-24 * 10), rksj=nights.mark(+1))  # re-sent: ten days old, loaded now
    nights.insert("OLD-1", nights.mark(-24 * 10), rksj=nights.mark(-24 * 10))
    assert nights.run() == ["RESENT-1"]
    assert nights.run() == []
    assert nights.store.watermarks.get("drc", TABLE, "arrival:RKSJ") is not None


def test_an_arrival_column_is_only_for_incremental_sampling(demo, tmp_path):
    doc = yaml.safe_load((demo / "healthqa.yml").read_text(encoding="utf-8"))
    doc["sources"]["drc"]["tables"]["outpatient_visit"]["sampling"] = {"method": "full", "arrival_column": "rksj"}
    with pytest.raises(ConfigError) as e:
        config.load(write_config(tmp_path / "healthqa.yml", doc))
    assert "sources.drc.tables.outpatient_visit.sampling.arrival_column: 仅用于增量抽样 only for method 'incremental'" \
        in str(e.value)
