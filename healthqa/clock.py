"""healthqa's one clock: what time it is for the audit store (runs, decisions, the audit log,
findings), the incremental watermarks and the console's sessions and log-in lock-out — and how a
time is shown.

Times are naive wall-clock times of the configuration's ``timezone`` (the platform's zone, in which
the sources keep their naive times too), to the microsecond: a steward's decision and the run that
reads the decisions a moment later must not share a timestamp, nor two failed log-ins of one second.
The host's own zone (``TZ``) never enters: ``config.load`` sets the zone (``set_zone``), and until a
configuration is loaded it is the configuration's default, Asia/Shanghai. A ``Clock`` given a zone
reads that zone's time instead.

Every time shown to a user goes through ``shown`` (``2026-12-07 15:09 (UTC+8)``: the configured zone,
labelled) or, in machine formats (JSON, CSV, webhooks), ``iso`` (``2026-12-07T15:09:00+08:00``); the
templates have both as Jinja filters (``jinja_filters``). Dates alone (a report's day, a quarter)
carry no zone.

Tests do not sleep to let time pass: ``with clock.frozen() as c: … c.advance(seconds=7)`` stops the
clock for every thread of the process (the console's handlers run in a thread pool) and moves it on.
A test that runs the command line in a subprocess stops that process' clock with the environment
variable ``HEALTHQA_NOW`` (for tests only): an ISO time, with an offset (``2026-11-25T09:00:00+08:00``,
one instant whatever the zones) or without (read in the configured zone).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Asia/Shanghai"  # Config.timezone's default
NOW_ENV = "HEALTHQA_NOW"

_zone: tzinfo = ZoneInfo(DEFAULT_ZONE)


def zone() -> tzinfo:
    """The configured zone: the one every stored and shown time is in."""
    return _zone


def set_zone(name: str) -> None:
    """Make ``name`` (an IANA name, checked by the configuration) the zone of the process' times."""
    global _zone
    _zone = ZoneInfo(name)


class Clock:
    """Wall-clock time in ``zone`` (the configured zone when None), naive."""

    def __init__(self, zone: tzinfo | None = None):
        self.zone = zone

    def now(self) -> datetime:
        return datetime.now(self.zone or _zone).replace(tzinfo=None)


class FrozenClock(Clock):
    """A clock that stands still until it is moved on. An aware ``at`` is one instant, read in the
    configured zone; a naive one is taken as it is."""

    def __init__(self, at: datetime):
        super().__init__()
        self.at = at

    def now(self) -> datetime:
        return local(self.at)

    def advance(self, **delta: float) -> datetime:
        """Move on by ``timedelta(**delta)`` (``seconds=7``, ``minutes=5`` …); the new time."""
        self.at += timedelta(**delta)
        return self.now()


def _from_env() -> Clock:
    pinned = os.environ.get(NOW_ENV, "").strip()
    if not pinned:
        return Clock()
    try:
        return FrozenClock(datetime.fromisoformat(pinned))
    except ValueError:
        raise ValueError(f"{NOW_ENV}: not an ISO time: {pinned!r} (e.g. 2026-11-25T09:00:00+08:00)") from None


_clock: Clock = _from_env()


def now() -> datetime:
    """The time now, by the clock in use: naive, in the configured zone."""
    return _clock.now()


@contextmanager
def frozen(at: datetime | None = None) -> Iterator[FrozenClock]:
    """The clock stopped at ``at`` (default: the time now) for the block, process-wide."""
    global _clock
    before, _clock = _clock, FrozenClock(at or _clock.now())
    try:
        yield _clock
    finally:
        _clock = before


def local(at: datetime) -> datetime:
    """``at`` as a naive time of the configured zone (an aware time converted, a naive one as it is)."""
    return at if at.tzinfo is None else at.astimezone(_zone).replace(tzinfo=None)


def aware(at: datetime | str) -> datetime:
    """A stored time (naive: of the configured zone; or its ISO text) with its zone attached; an aware
    time converted to the configured zone."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=_zone) if at.tzinfo is None else at.astimezone(_zone)


def label(at: datetime | str | None = None) -> str:
    """The zone's label at ``at`` (default: now), as people write it: ``UTC+8``, ``UTC-3:30``, ``UTC``."""
    offset = aware(now() if at is None else at).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    if not minutes:
        return "UTC"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def shown(at: datetime | str | None, seconds: bool = False, missing: str = "—") -> str:
    """A time as a user reads it: in the configured zone, to the minute (or second), labelled —
    ``2026-12-07 15:09 (UTC+8)``; ``missing`` when there is none."""
    if at is None or at == "":
        return missing
    t = aware(at)
    return t.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" ({label(t)})"


def iso(at: datetime | str | None) -> str | None:
    """A time for machines (JSON, CSV, webhooks): ISO 8601 to the second with the zone's offset —
    ``2026-12-07T15:09:00+08:00``; None when there is none."""
    if at is None or at == "":
        return None
    return aware(at).isoformat(timespec="seconds")


def jinja_filters() -> dict[str, Callable]:
    """``{{ t|shown }}``, ``{{ t|shown(seconds=True) }}`` and ``{{ t|iso }}`` for the templates."""
    return {"shown": shown, "iso": iso}
