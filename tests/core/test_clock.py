"""The one clock (healthqa/clock.py): tests stop it and move it on instead of sleeping, and the audit
store keeps its times to the microsecond on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from healthqa import clock
from healthqa.store import AuditStore


def test_a_frozen_clock_stands_still_moves_on_and_is_given_back():
    at = datetime(2026, 11, 25, 8, 0, 0, 250_000)
    with clock.frozen(at) as c:
        assert clock.now() == at
        assert c.advance(seconds=6.5) == clock.now() == at + timedelta(seconds=6.5)
        seen = []
        t = threading.Thread(target=lambda: seen.append(clock.now()))  # the console's handlers run in threads
        t.start()
        t.join()
        assert seen == [at + timedelta(seconds=6.5)]
    assert abs(clock.now() - datetime.now()) < timedelta(seconds=5)


def test_the_clock_reads_a_zone_when_given_one():
    utc, shanghai = clock.Clock(ZoneInfo("UTC")).now(), clock.Clock(ZoneInfo("Asia/Shanghai")).now()
    assert utc.tzinfo is None and shanghai.tzinfo is None
    assert abs((shanghai - utc) - timedelta(hours=8)) < timedelta(seconds=5)


def _round_trip(url: str) -> None:
    at = datetime(2026, 11, 25, 2, 0, 0, 123_456)
    with AuditStore(url) as store, clock.frozen(at) as c:
        with store.runs.start("validate") as run:
            assert run.started_at == at
            run.stage_watermark("mpi", "person", "updated_at", at + timedelta(hours=1))  # capped at the start
            c.advance(microseconds=1)
        record = store.runs.get(run.id)
        assert (record.started_at, record.finished_at) == (at, at + timedelta(microseconds=1))
        assert store.watermarks.get("mpi", "person", "updated_at") == at
        store.review.log("qc1", "login_failed", "eng1")
        assert store.review.failures_since("eng1", at) == [at + timedelta(microseconds=1)]  # a microsecond later
        assert store.review.failures_since("eng1", at + timedelta(microseconds=1)) == []


def test_stored_times_keep_microseconds_on_sqlite(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.mark.postgres
def test_stored_times_keep_microseconds_on_postgresql(pg_store_url):
    _round_trip(pg_store_url)
