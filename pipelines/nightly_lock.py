"""The nightly audit's lock on its audit store, apart from the stages (``nightly.py`` loads pandas and
the rule engine) so that a command can ask for it before it starts Prefect's API or a flow run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from healthqa.config import Config
from healthqa.errors import HealthqaError
from healthqa.store import AuditStore
from healthqa.store.locks import Busy


class NightlyInProgress(HealthqaError):
    """A second nightly audit on the same audit store is refused: nothing would be counted twice."""


# set while this command holds the lock for the flow run it starts (``held_for_run``); the flow runs
# in the command's thread and context, so it does not take the lock a second time
_HELD: ContextVar[bool] = ContextVar("healthqa_nightly_lock_held", default=False)


@contextmanager
def nightly_lock(store: AuditStore) -> Iterator[None]:
    """Hold the nightly lock of ``store`` for the block; NightlyInProgress at once if another process
    holds it (unless this command already holds it for this run: ``held_for_run``)."""
    if _HELD.get():
        yield
        return
    try:
        with store.locks.hold("nightly"):
            yield
    except Busy:
        running = [r for r in store.runs.recent(20, kind="nightly") if r.status == "running"]
        since = f" (run {running[0].id}, started {running[0].started_at:%Y-%m-%d %H:%M})" if running else ""
        raise NightlyInProgress(f"另一次夜间稽核正在运行 another nightly audit is running on this audit store{since}; "
                                "try again when it has ended") from None


@contextmanager
def held_for_run(cfg: Config) -> Iterator[None]:
    """The command's hold on the nightly lock, from its first second to its end: a second command is
    refused at once — not after Prefect's API has started and a flow run has begun, and not let
    through while the first is still starting. The flow the command runs inside the block uses this
    hold instead of taking the lock again; a flow started by a deployment takes it itself."""
    with AuditStore(cfg.store.url) as store, nightly_lock(store):
        token = _HELD.set(True)
        try:
            yield
        finally:
            _HELD.reset(token)
