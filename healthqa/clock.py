"""healthqa's one clock: what time it is for the audit store (runs, decisions, the audit log,
findings), the incremental watermarks and the console's sessions and log-in lock-out.

Times are naive wall-clock times to the microsecond: a steward's decision and the run that reads the
decisions a moment later must not share a timestamp, nor two failed log-ins of one second. The clock
reads the machine's local time; a ``Clock`` given a zone reads that zone's, so that "now in the
configured ``timezone``" is one ``Clock(ZoneInfo(cfg.timezone))`` away.

Reports, the console and the command line read the same clock for "now" (overdue, a run's reference
time, a report's date). Tests do not sleep to let time pass: ``with clock.frozen() as c: … c.advance(seconds=7)`` stops the
clock for every thread of the process (the console's handlers run in a thread pool) and moves it on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, tzinfo


class Clock:
    """Wall-clock time in ``zone`` (the machine's local time when None), naive."""

    def __init__(self, zone: tzinfo | None = None):
        self.zone = zone

    def now(self) -> datetime:
        return datetime.now(self.zone).replace(tzinfo=None)


class FrozenClock(Clock):
    """A clock that stands still until it is moved on."""

    def __init__(self, at: datetime):
        super().__init__()
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        """Move on by ``timedelta(**delta)`` (``seconds=7``, ``minutes=5`` …); the new time."""
        self.at += timedelta(**delta)
        return self.at


_clock: Clock = Clock()


def now() -> datetime:
    """The time now, by the clock in use."""
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
