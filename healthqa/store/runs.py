"""Runs and watermarks: the one lifecycle every run follows, and the questions asked about past runs.

A run is started, does its work, and is finished exactly once: ``success`` when everything ran,
``partial`` when part of it could not run (a source down, a stage failed) and the rest did, ``failed``
when it stopped. Incremental watermarks staged on the run advance when it finishes, unless it failed
or its assessment is pending: a night whose scores and findings could not be stored keeps its staged
watermarks and faults on its row (``assessment_pending``) until a later run assesses it
(``Runs.pending``, ``Runs.assessed_in``) — its rows are read once and its findings filed once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, null, select

from healthqa.clock import now

from .models import CountedKey, Run, Watermark, stored_id

if TYPE_CHECKING:
    from .store import AuditStore

STATUSES = ("running", "success", "partial", "failed")
MESSAGE_CHARS = 2000


@dataclass
class RunContext:
    """A run in progress. Watermarks staged here advance only when the run finishes without failing;
    problems noted here make it ``partial``."""

    id: int
    kind: str
    started_at: datetime = field(default_factory=now)
    pending_watermarks: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    # late arrivals: per (source, table), the keys the next night fetches again and must not count
    pending_counted: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    finished: bool = False  # its end was committed together with its results (``Runs.finish_in``)
    held: list[dict] | None = None  # the faults of a night whose assessment is pending (``hold_assessment``)

    def stage_watermark(self, source: str, table: str, column: str, value: datetime | None) -> None:
        """A watermark never passes the run's own start: a row dated in the future is a defect for
        the rules to report (…-UPLOAD-NOT-FUTURE), not a clock to follow — following it would skip
        every row that arrives before that date."""
        if value is None:
            return
        if value > self.started_at:
            value = self.started_at
        k = (source, table, column)
        self.pending_watermarks[k] = max(value, self.pending_watermarks.get(k, value))

    def stage_counted(self, source: str, table: str, keys) -> None:
        """Keys this night counted that the next night's read fetches again (parts of a table add up);
        they replace the table's kept keys when the run finishes, with the watermarks."""
        self.pending_counted.setdefault((source, table), set()).update(keys)

    def hold_assessment(self, faults: list[dict]) -> None:
        """The run's scores and findings could not be stored: when it finishes, its staged watermarks
        and ``faults`` are kept on its row for a later assessment instead of advancing."""
        self.held = [dict(f) for f in faults]

    def problem(self, what: str) -> None:
        """Part of the run could not run (``what`` says which and why); the rest goes on."""
        self.problems.append(" ".join(str(what).split()))

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """A part of the run whose staged watermarks count only if the part completes: when it raises,
        what it staged is dropped (and the exception goes on to the caller)."""
        staged = dict(self.pending_watermarks)
        counted = {k: set(v) for k, v in self.pending_counted.items()}
        try:
            yield
        except BaseException:
            self.pending_watermarks, self.pending_counted = staged, counted
            raise


@dataclass(frozen=True)
class RunRecord:
    """A run as the audit store holds it."""

    id: int
    kind: str
    status: str
    scope: dict | None
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    assessment_pending: bool = False  # its scores and findings are still to be stored (``Runs.pending``)


@dataclass(frozen=True)
class PendingAssessment:
    """A finished run whose scores and findings could not be stored: what it saw could not run."""

    run_id: int
    faults: list[dict]


def _record(r: Run) -> RunRecord:
    return RunRecord(r.id, r.kind, r.status, r.scope, r.started_at, r.finished_at, r.message,
                     r.assessment_pending is not None)


class Runs:
    """``store.runs``: start and finish runs, and find past ones."""

    def __init__(self, store: AuditStore):
        self._store = store

    @contextmanager
    def start(self, kind: str, scope: dict | None = None) -> Iterator[RunContext]:
        """``with store.runs.start("nightly", scope) as run:`` — the run is ``success`` when the block
        ends, ``partial`` if the block noted problems (``run.problem(...)``), ``failed`` with the
        exception as its message if the block raises (the exception goes on)."""
        owner = uuid.uuid4().hex
        locks = self._store.locks
        with locks.hold(f"run-{owner}"):  # held while the run runs; released by the OS if the process dies
            self.reap()
            with self._store.session() as s:
                started = now()
                row = Run(kind=kind, status="running", scope=scope, started_at=started, owner=owner)
                s.add(row)
                s.flush()
                ctx = RunContext(id=row.id, kind=kind, started_at=started)
            try:
                yield ctx
            except BaseException as e:
                if not ctx.finished:
                    self._finish(ctx, "failed", "; ".join([*ctx.problems, f"{type(e).__name__}: {e}"]))
                raise
            if not ctx.finished:
                self._finish(ctx, "partial" if ctx.problems else "success", "; ".join(ctx.problems) or None)
        locks.release_file(f"run-{owner}")

    def reap(self) -> list[int]:
        """Mark ``crashed`` the runs still ``running`` whose process is gone (nobody holds their lock):
        they never show as complete, and their staged watermarks never advance."""
        locks = self._store.locks
        if not locks.can_tell:
            return []
        with self._store.session() as s:
            stale = [r for r in s.execute(select(Run).where(Run.status == "running", Run.owner.is_not(None))).scalars()
                     if not locks.held(f"run-{r.owner}")]
            for r in stale:
                r.status, r.finished_at = "crashed", now()
                r.message = "进程在运行结束前终止 the process ended before the run finished (kill, crash or power loss)"
            return [r.id for r in stale]

    def _finish(self, ctx: RunContext, status: str, message: str | None) -> None:
        with self._store.session() as s:
            self.finish_in(s, ctx, status, message)

    def finish_in(self, s, ctx: RunContext, status: str | None = None, message: str | None = None) -> None:
        """End the run inside the caller's transaction ``s``, so that what the run wrote, its status
        and its watermarks commit together or not at all. The caller sets ``ctx.finished`` once the
        transaction has committed (the run's block then ends without finishing it again)."""
        status = status or ("partial" if ctx.problems else "success")
        message = message or ("; ".join(ctx.problems) or None)
        row = s.get(Run, ctx.id)
        row.status, row.finished_at = status, now()
        row.message = " ".join(message.split())[:MESSAGE_CHARS] if message else None
        if status == "failed":
            return
        if ctx.held is not None:  # assessed later: the watermarks advance with its findings (``assessed_in``)
            row.assessment_pending = {"faults": ctx.held, "watermarks": [
                [src, table, col, value.isoformat()] for (src, table, col), value in ctx.pending_watermarks.items()],
                "counted": [[src, table, sorted(keys)] for (src, table), keys in ctx.pending_counted.items()]}
        else:
            self._store.watermarks._advance(s, ctx.id, ctx.pending_watermarks)
            self._store.watermarks._keep_counted(s, ctx.id, ctx.pending_counted)

    def pending(self, kind: str = "nightly", upto: int | None = None) -> list[PendingAssessment]:
        """The runs of ``kind`` (up to run ``upto`` when given) whose assessment is pending, oldest first."""
        q = select(Run).where(Run.assessment_pending.is_not(None), Run.kind == kind).order_by(Run.id)
        if upto is not None:
            q = q.where(Run.id <= upto)
        with self._store.session() as s:
            return [PendingAssessment(r.id, list((r.assessment_pending or {}).get("faults") or []))
                    for r in s.execute(q).scalars() if r.assessment_pending is not None]

    def assessed_in(self, s, run_id: int, by: str) -> None:
        """Run ``run_id``'s scores and findings are written in the caller's transaction ``s``: its held
        watermarks advance in the same transaction, and nothing is pending any more."""
        row = s.get(Run, run_id)
        held = row.assessment_pending or {}
        self._store.watermarks._advance(s, run_id, {(src, table, col): datetime.fromisoformat(value)
                                                    for src, table, col, value in held.get("watermarks") or []})
        self._store.watermarks._keep_counted(s, run_id, {(src, table): set(keys)
                                                         for src, table, keys in held.get("counted") or []})
        row.assessment_pending = null()  # SQL NULL, not the JSON document null
        done = f"评估已补做 assessed later ({by})"
        row.message = f"{row.message}; {done}"[:MESSAGE_CHARS] if row.message else done

    def note(self, run_id: int, what: str, *, partial: bool = False, scope: dict | None = None) -> None:
        """What was learned about a run after it was recorded — its report or index could not be
        written, it read more than it had to — added to its message (``healthqa runs`` shows it).
        ``partial``: a ``success`` run did not deliver everything and becomes ``partial`` (its results
        and watermarks stand). ``scope``: keys merged into its scope."""
        with self._store.session() as s:
            row = s.get(Run, run_id)
            if row is None:
                return
            what = " ".join(str(what).split())
            row.message = (f"{row.message}; {what}" if row.message else what)[:MESSAGE_CHARS]
            if partial and row.status == "success":
                row.status = "partial"
            if scope:
                row.scope = {**(row.scope or {}), **scope}  # a new document: JSON columns track assignment

    def get(self, run_id: int) -> RunRecord | None:
        if not stored_id(run_id):
            return None
        with self._store.session() as s:
            row = s.get(Run, run_id)
            return _record(row) if row else None

    def recent(self, limit: int = 20, kind: str | None = None) -> list[RunRecord]:
        """The latest runs, newest first."""
        q = select(Run).order_by(Run.id.desc()).limit(limit)
        if kind:
            q = q.where(Run.kind == kind)
        with self._store.session() as s:
            return [_record(r) for r in s.execute(q).scalars()]

    def between(self, start: datetime, end: datetime) -> list[RunRecord]:
        """Runs started in [start, end), oldest first."""
        q = select(Run).where(Run.started_at >= start, Run.started_at < end).order_by(Run.id)
        with self._store.session() as s:
            return [_record(r) for r in s.execute(q).scalars()]

    def last_success(self, kind: str, scope: dict | None = None,
                     where: Callable[[dict], bool] | None = None) -> RunRecord | None:
        """The newest successful run of ``kind`` whose scope equals ``scope`` (when given) and
        satisfies ``where`` (when given). Scopes are JSON documents compared in Python: SQLite and
        PostgreSQL do not compare JSON alike."""
        q = select(Run).where(Run.kind == kind, Run.status == "success").order_by(Run.id.desc())
        with self._store.session() as s:
            for r in s.execute(q.execution_options(yield_per=200)).scalars():
                if (scope is None or r.scope == scope) and (where is None or where(r.scope or {})):
                    return _record(r)
        return None


class Watermarks:
    """``store.watermarks``: how far incremental sampling has read each table's time column."""

    def __init__(self, store: AuditStore):
        self._store = store

    def get(self, source: str, table: str, column: str) -> datetime | None:
        with self._store.session() as s:
            return s.execute(select(Watermark.value).where(
                Watermark.source == source, Watermark.table_name == table, Watermark.time_column == column
            )).scalar_one_or_none()

    def all(self) -> dict[tuple[str, str, str], datetime]:
        with self._store.session() as s:
            return {(w.source, w.table_name, w.time_column): w.value
                    for w in s.execute(select(Watermark)).scalars()}

    def counted(self, source: str, table: str) -> frozenset[str]:
        """Keys of rows a night counted that the next night's read fetches again (late arrivals)."""
        with self._store.session() as s:
            return frozenset(s.execute(select(CountedKey.key).where(
                CountedKey.source == source, CountedKey.table_name == table)).scalars())

    @staticmethod
    def _keep_counted(s, run_id: int, keys: dict[tuple[str, str], set[str]]) -> None:
        """Replace each staged table's counted keys, inside the session that finishes the run."""
        for (source, table), ks in keys.items():
            s.execute(delete(CountedKey).where(CountedKey.source == source, CountedKey.table_name == table))
            s.add_all(CountedKey(source=source, table_name=table, key=k, run_id=run_id) for k in sorted(ks))

    @staticmethod
    def _advance(s, run_id: int, values: dict[tuple[str, str, str], datetime]) -> None:
        """Move watermarks forward (never back) inside the session that finishes the run."""
        for (source, table, column), value in values.items():
            wm = s.get(Watermark, (source, table, column))
            if wm is None:
                s.add(Watermark(source=source, table_name=table, time_column=column, value=value,
                                run_id=run_id, updated_at=now()))
            elif value > wm.value:
                wm.value, wm.run_id, wm.updated_at = value, run_id, now()
