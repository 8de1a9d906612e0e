"""The one clock (healthqa/clock.py): tests stop it and move it on instead of sleeping, and the audit
store keeps its times to the microsecond on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
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
    assert abs(clock.now() - datetime.now(clock.zone()).replace(tzinfo=None)) < timedelta(seconds=5)


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


@pytest.fixture
def shanghai():
    """The configured zone Asia/Shanghai for the test, the zone before it given back."""
    before = clock.zone()
    clock.set_zone("Asia/Shanghai")
    yield
    clock._zone = before


@pytest.fixture
def host_zone(monkeypatch):
    """Set the host's zone (TZ) of this process for the test: ``host_zone("UTC")``."""
    def set_tz(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_tz
    monkeypatch.undo()
    time.tzset()


def test_a_time_is_shown_in_the_configured_zone_and_labelled(shanghai):
    stored = datetime(2026, 12, 7, 15, 9, 30, 250_000)  # as the store keeps it: naive, the platform's zone
    assert clock.shown(stored) == "2026-12-07 15:09 (UTC+8)"
    assert clock.shown(stored, seconds=True) == "2026-12-07 15:09:30 (UTC+8)"
    assert clock.iso(stored) == "2026-12-07T15:09:30+08:00"
    instant = datetime(2026, 12, 7, 7, 9, 30, tzinfo=UTC)  # an aware time is converted, not relabelled
    assert clock.shown(instant) == "2026-12-07 15:09 (UTC+8)" and clock.iso(instant) == "2026-12-07T15:09:30+08:00"
    assert clock.shown("2026-12-07T15:09:30") == "2026-12-07 15:09 (UTC+8)"  # ISO text (a finding's notes)
    assert (clock.shown(None), clock.iso(None)) == ("—", None)
    assert datetime.fromisoformat(clock.iso(stored)) == stored.replace(microsecond=0, tzinfo=clock.zone())
    for name, label in (("Asia/Kolkata", "UTC+5:30"), ("America/St_Johns", "UTC-3:30"), ("UTC", "UTC")):
        clock.set_zone(name)
        assert clock.label(datetime(2026, 12, 7, 12)) == label
        assert clock.shown(datetime(2026, 12, 7, 12)) == f"2026-12-07 12:00 ({label})"
    clock.set_zone("Europe/Berlin")  # the label of the time's own offset: summer and winter differ
    assert (clock.label(datetime(2026, 7, 1, 12)), clock.label(datetime(2026, 12, 1, 12))) == ("UTC+2", "UTC+1")


def test_the_host_zone_never_moves_the_clock(shanghai, host_zone):
    """The clock reads the configured zone's time: on a UTC host and on a Shanghai host alike."""
    seen = []
    for tz in ("UTC", "Asia/Shanghai", "America/New_York"):
        host_zone(tz)
        seen.append(clock.now())
    assert all(abs(t - seen[0]) < timedelta(seconds=5) for t in seen)
    assert abs(seen[0] - datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=8)) < timedelta(seconds=5)
    host_zone("UTC")
    assert clock.shown(datetime(2026, 12, 7, 15, 9)) == "2026-12-07 15:09 (UTC+8)"


def test_loading_a_configuration_sets_the_zone(demo, tmp_path, shanghai):
    import yaml

    from healthqa import config

    doc = yaml.safe_load((demo / "healthqa.yml").read_text(encoding="utf-8"))
    (tmp_path / "healthqa.yml").write_text(yaml.safe_dump({**doc, "timezone": "Asia/Kolkata"}), encoding="utf-8")
    config.load(tmp_path / "healthqa.yml")
    assert clock.label() == "UTC+5:30"
    assert abs(clock.now() - datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=5, minutes=30)) < timedelta(seconds=5)
    (tmp_path / "healthqa.yml").write_text(yaml.safe_dump({**doc, "timezone": "Mars/Olympus"}), encoding="utf-8")
    with pytest.raises(config.ConfigError, match="timezone: unknown time zone 'Mars/Olympus'"):
        config.load(tmp_path / "healthqa.yml")


def test_healthqa_now_stops_a_subprocess_clock_at_one_instant():
    """HEALTHQA_NOW (for tests) stops the clock of a process started with it: an instant with an offset
    is the same time in the configured zone whatever the host's zone; a bad value is refused."""
    code = "from healthqa import clock; print(clock.now().isoformat(), clock.shown(clock.now()))"
    out = set()
    for tz in ("UTC", "Asia/Shanghai"):
        env = {**os.environ, "TZ": tz, clock.NOW_ENV: "2026-11-24T18:30:00Z"}
        ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        out.add(ran.stdout.strip())
    assert out == {"2026-11-25T02:30:00 2026-11-25 02:30 (UTC+8)"}
    env = {**os.environ, clock.NOW_ENV: "yesterday"}
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode != 0 and "HEALTHQA_NOW: not an ISO time: 'yesterday'" in ran.stderr
