"""A fixed window of counted events in the store (log-in attempts per client address, match-API calls
per token), shared by every console process.

Two conditional UPDATEs in the caller's transaction: the window started again if it ended, then the
event counted if there is room. Events counted together through several processes are counted one
after the other, whichever process takes them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update


def count_in(s, key, started, count, value: str, per_window: int, at: datetime, window: timedelta) -> bool:
    """Count one event of ``value`` (``key``'s row) at ``at``: True when counted, False when its window
    holds ``per_window`` already (or the row is missing). ``key``, ``started``, ``count``: the model's
    columns."""
    table = key.class_
    s.execute(update(table).where(key == value, started <= at - window).values({started: at, count: 0}))
    return s.execute(update(table).where(key == value, count < per_window).values({count: count + 1})).rowcount == 1
