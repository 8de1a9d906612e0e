"""The locks a command takes before it starts Prefect's API or a flow run — the nightly audit's on its
audit store, the schedule's on its audit store and PREFECT_HOME — apart from the stages (``nightly.py``
loads pandas and the rule engine), so that a second command is refused in a second."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from pathlib import Path

from healthqa import clock
from healthqa.config import Config
from healthqa.errors import HealthqaError
from healthqa.store import AuditStore
from healthqa.store.locks import Busy, flocked


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
        since = f" (run {running[0].id}, started {clock.shown(running[0].started_at)})" if running else ""
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


@contextmanager
def serving_lock(cfg: Config) -> Iterator[None]:
    """One ``healthqa schedule`` per audit store — two would audit every night twice — and, without
    a Prefect server, one per PREFECT_HOME: the local server's database holds deployments by name,
    so a second site's schedule there would take the first one's deployments over."""
    from prefect.settings import PREFECT_HOME

    from .prefect_api import server_url

    with AuditStore(cfg.store.url) as store, ExitStack() as held:
        try:
            held.enter_context(store.locks.hold("schedule"))
        except Busy:
            raise HealthqaError("另一个 healthqa schedule 已在为此稽核库按计划运行 another healthqa schedule is "
                                "already serving this audit store's deployments") from None
        if not server_url():
            home = Path(PREFECT_HOME.value())
            try:
                held.enter_context(flocked(home / "healthqa-schedule.lock", "schedule"))
            except Busy:
                raise HealthqaError(f"另一个 healthqa schedule 已在使用 PREFECT_HOME {home} another healthqa schedule "
                                    "serves its deployments from this PREFECT_HOME; give this site a PREFECT_HOME "
                                    "of its own (e.g. PREFECT_HOME=/var/lib/healthqa/prefect-SITE)") from None
        yield
