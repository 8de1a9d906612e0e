"""The engineer's ad-hoc validations started from the console (``store.jobs``), kept in the audit store
so that every console process (``healthqa serve --workers N``) sees each job's state.

A job is held by the process that runs it the way a run is (store/locks.py): a lock named by the
job's owner token, taken before its row exists and let go after its end is written. A job still
``running`` whose lock nobody holds was interrupted (its process was killed, the console restarted,
the machine went down): whoever reads it next marks it ``interrupted`` — no timeout, no heartbeat.
A database that cannot tell who holds a lock (an in-memory SQLite store) never interrupts a job.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from healthqa.clock import now

from .models import ConsoleJob, stored_id

if TYPE_CHECKING:
    from .store import AuditStore

STATES = ("running", "done", "failed", "interrupted")
INTERRUPTED = "处理它的控制台进程已终止（重启、崩溃或被终止）/ the console process running it ended (restart, crash or kill)"
RECENT = 20
KEEP_DAYS = 90  # the default of console.job_keep_days


@dataclass(frozen=True)
class JobRecord:
    id: int
    user: str
    scope: dict  # source, tables, orgs, since and until (datetimes, or None)
    state: str
    started_at: datetime
    finished_at: datetime | None
    done_tables: list[str]
    run_id: int | None
    counts: dict
    failed_rules: list[dict]
    passed_rules: list[dict]  # the rules that pass now (a repair shows here)
    summary: dict | None
    error: str | None

    @property
    def tables(self) -> list[str]:
        return list(self.scope.get("tables") or [])


def _lock(owner: str) -> str:
    return f"job-{owner}"


def _when(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def _record(j: ConsoleJob) -> JobRecord:
    scope = dict(j.scope or {})
    scope["since"], scope["until"] = _when(scope.get("since")), _when(scope.get("until"))
    r = j.result or {}
    return JobRecord(j.id, j.user_name, scope, j.state, j.started_at, j.finished_at, list(j.done_tables or []),
                     j.run_id, r.get("counts") or {}, r.get("failed_rules") or [], r.get("passed_rules") or [],
                     r.get("summary"), j.error)


def _plain(value: Any) -> Any:
    """A JSON document of plain numbers (a rule's counts may be numpy's)."""
    return json.loads(json.dumps(value, default=lambda x: x.item() if hasattr(x, "item") else str(x)))


class Jobs:
    """``store.jobs``: a job's row while its process holds it, and every process's reading of it."""

    def __init__(self, store: AuditStore):
        self._store = store

    @contextmanager
    def running(self, user: str, scope: dict, keep_days: int = KEEP_DAYS) -> Iterator[int]:
        """``with store.jobs.running(user, scope) as job_id:`` — the job's row, ``running`` while the
        block runs in this process (its lock held); the block writes its end (``finish``). A block
        that ends without one leaves it to be read as interrupted. In the same transaction, the jobs
        that ended more than ``keep_days`` ago are deleted (``console.job_keep_days``): a job's row
        is the page an engineer follows, its run and findings stay in the store's history; a job
        still running is never deleted, however old."""
        owner = uuid.uuid4().hex
        locks = self._store.locks
        doc = {**scope, "since": _iso(scope.get("since")), "until": _iso(scope.get("until"))}
        with locks.hold(_lock(owner)):  # before the row exists: a reader never sees it running unheld
            with self._store.session() as s:
                s.execute(delete(ConsoleJob).where(ConsoleJob.state != "running", ConsoleJob.finished_at.is_not(None),
                                                   ConsoleJob.finished_at < now() - timedelta(days=keep_days)))
                row = ConsoleJob(user_name=user, scope=doc, state="running", owner=owner, started_at=now(),
                                 done_tables=[])
                s.add(row)
                s.flush()
                job_id = row.id
            yield job_id
        locks.release_file(_lock(owner))

    def progress(self, job_id: int, table: str) -> None:
        """One more table of the job validated."""
        with self._store.session() as s:
            row = s.get(ConsoleJob, job_id)
            if row is not None:
                row.done_tables = [*(row.done_tables or []), table]  # a new list: JSON columns track assignment

    def finish(self, job_id: int, state: str, *, run_id: int | None = None, result: dict | None = None,
               error: str | None = None) -> None:
        """The job's end: ``done`` with its run and result, or ``failed`` with the reason."""
        assert state in ("done", "failed"), state
        with self._store.session() as s:
            s.execute(update(ConsoleJob).where(ConsoleJob.id == job_id).values(
                state=state, run_id=run_id, result=_plain(result) if result is not None else None,
                error=error, finished_at=now()))

    def get(self, job_id: int) -> JobRecord | None:
        if not stored_id(job_id):
            return None
        with self._store.session() as s:
            row = s.get(ConsoleJob, job_id)
            rec = _record(row) if row is not None else None
        if rec is not None and rec.state == "running" and self._interrupt([job_id]):
            return self.get(job_id)
        return rec

    def recent(self, limit: int = RECENT) -> list[JobRecord]:
        """The newest jobs, newest first (those interrupted said so)."""
        q = select(ConsoleJob).order_by(ConsoleJob.id.desc()).limit(limit)
        with self._store.session() as s:
            jobs = [_record(j) for j in s.execute(q).scalars()]
        if self._interrupt([j.id for j in jobs if j.state == "running"]):
            return self.recent(limit)
        return jobs

    def reap(self) -> list[int]:
        """Mark ``interrupted`` every running job whose process is gone (the console's start)."""
        with self._store.session() as s:
            ids = list(s.execute(select(ConsoleJob.id).where(ConsoleJob.state == "running")).scalars())
        return self._interrupt(ids)

    def _interrupt(self, ids: list[int]) -> list[int]:
        """Of the running jobs ``ids``, those whose lock nobody holds, marked ``interrupted``."""
        locks = self._store.locks
        if not ids or not locks.can_tell:
            return []
        with self._store.session() as s:
            owners = dict(s.execute(select(ConsoleJob.id, ConsoleJob.owner)
                                    .where(ConsoleJob.id.in_(ids), ConsoleJob.state == "running")).all())
        gone = [i for i, owner in owners.items() if not locks.held(_lock(owner))]
        if not gone:
            return []
        with self._store.session() as s:
            # only a job still running: one whose end was written meanwhile keeps it
            s.execute(update(ConsoleJob).where(ConsoleJob.id.in_(gone), ConsoleJob.state == "running")
                      .values(state="interrupted", error=INTERRUPTED, finished_at=now()))
        self._store.runs.reap()  # the run it had started shows as crashed too, not running
        return gone


def _iso(v: datetime | str | None) -> str | None:
    return v.isoformat() if isinstance(v, datetime) else v
