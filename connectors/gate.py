"""Caps on simultaneous readers per source: a production database never sees more of healthqa's
queries at once than its ``max_concurrent_queries``, however many tasks the audit runs.

A reader holds one slot of its source from ``connect`` to ``close`` (a reader runs one query at a
time, so readers bound queries). Slots are counted per process with a semaphore; inside a Dask worker
(the audit's tasks on a cluster) with a ``distributed.Semaphore`` named for the source, which the
scheduler counts over every worker. A thread that already holds a slot of a source (a reader that
opens a second one for reference data) does not wait for another: it could wait for itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_held = threading.local()


def _cluster_semaphore(source: str, cap: int):
    """A cluster-wide semaphore when running in a Dask worker, else None."""
    if "distributed" not in sys.modules:  # a Dask worker has imported it; a plain command need not
        return None
    try:
        from distributed import Semaphore, get_worker
    except ImportError:
        return None
    try:
        get_worker()
    except ValueError:  # not in a worker
        return None
    return Semaphore(max_leases=cap, name=f"healthqa-source-{source}")


@contextmanager
def slot(source: str, cap: int) -> Iterator[None]:
    """Hold one of ``cap`` slots of ``source`` for the block."""
    held = getattr(_held, "sources", None)
    if held is None:
        held = _held.sources = {}
    if held.get(source):
        held[source] += 1
        try:
            yield
        finally:
            held[source] -= 1
        return
    sem = _cluster_semaphore(source, cap)
    if sem is None:
        with _lock:
            sem = _slots.setdefault((source, cap), threading.BoundedSemaphore(cap))
    sem.acquire()
    held[source] = 1
    try:
        yield
    finally:
        held[source] = 0
        sem.release()
