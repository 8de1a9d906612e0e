"""Scores and maintenance findings in the audit store: what reports, the CLI and the console read
and change. Plain data in and out (dicts, dataclasses); the lifecycle rules themselves live in
reports/findings.py, which decides, and this module keeps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select

from healthqa.clock import now
from healthqa.errors import HealthqaError

from .models import AuditLog, Finding, FindingEvent, Run, Score, stored_id

if TYPE_CHECKING:
    from .store import AuditStore

OPEN = ("new", "open", "acknowledged", "reopened")
LEVEL_RANK = {"一级": 0, "二级": 1, "提示": 2}
# the contract's 系统严重损坏 (severe system damage: a system under 30 % of its normal efficiency, or a
# serious data error) asks for a 7×24 emergency response: findings of these fault kinds carry the flag
# (reports/severe.py files the first two; a system's whole feed silent is 0 % of its normal)
EMERGENCY = frozenset({"system_volume_collapse", "serious_data_error", "system_feed_silent"})


def emergency(kind: str | None, subject: str | None) -> bool:
    """Whether a finding (its kind and subject) is severe system damage under the contract (7×24)."""
    return kind == "fault" and subject in EMERGENCY


class FindingNotFound(HealthqaError):
    pass


@dataclass
class FindingRow:
    """A finding as read from the store (every column, detached from the session)."""

    id: int
    fingerprint: str
    kind: str
    source: str
    subject: str
    table_name: str | None
    org_code: str | None
    system: str | None
    level: str
    title_zh: str
    title_en: str
    state: str
    violations: int
    rows_checked: int
    threshold_pct: float | None
    examples: list | None
    first_run_id: int
    last_run_id: int
    opened_at: datetime
    last_seen_at: datetime
    response_due_at: datetime | None
    fix_due_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    assignee: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    reopened_count: int
    notes: list | None

    @classmethod
    def of(cls, f: Finding) -> FindingRow:
        return cls(**{k: getattr(f, k) for k in cls.__dataclass_fields__})

    @property
    def violation_pct(self) -> float | None:
        return 100.0 * self.violations / self.rows_checked if self.rows_checked else None

    @property
    def emergency(self) -> bool:
        """Severe system damage under the contract: a 7×24 emergency response (``EMERGENCY``)."""
        return emergency(self.kind, self.subject)

    def overdue(self, at: datetime) -> dict[str, bool]:
        open_ = self.state in OPEN
        return {"response": bool(open_ and self.acknowledged_at is None and self.response_due_at
                                 and at > self.response_due_at),
                "fix": bool(open_ and self.fix_due_at and at > self.fix_due_at)}


# ``FindingRecords.list`` shadows ``list`` in its class: the methods after it name their types so
Rows = list[FindingRow]
Events = list[dict]


def urgency(f: FindingRow) -> tuple:
    """Most urgent first: the contract level, a 7×24 emergency first within it, then the most
    violating rows."""
    return (LEVEL_RANK.get(f.level, len(LEVEL_RANK)), not f.emergency, -f.violations, f.id)


class ScoreRecords:
    def __init__(self, store: AuditStore):
        self.store = store

    def replace(self, run_id: int, scores: Iterable[Mapping]) -> None:
        """The scores of a run; re-scoring the same run replaces them (idempotent)."""
        with self.store.session() as s:
            self.replace_in(s, run_id, scores)

    @staticmethod
    def replace_in(s, run_id: int, scores: Iterable[Mapping]) -> None:
        """``replace`` inside the caller's transaction ``s`` (a run's scores and findings commit together)."""
        s.execute(delete(Score).where(Score.run_id == run_id))
        s.add_all(Score(run_id=run_id, **dict(sc)) for sc in scores)

    def of_run(self, run_id: int) -> list[dict]:
        with self.store.session() as s:
            rows = s.execute(select(Score).where(Score.run_id == run_id).order_by(Score.id)).scalars().all()
            return [_as_dict(r) for r in rows]

    def history(self, level: str, subject: str, last: int = 30, before_run: int | None = None,
                kind: str | None = None, scope: dict | None = None) -> list[dict]:
        """The subject's scores over the last ``last`` scored runs, oldest first, with the run's time;
        only runs of ``kind`` and of exactly ``scope`` when given (a trend is one kind of run: an
        engineer's window beside a district-wide night is no trend)."""
        with self.store.session() as s:
            q = (select(Score, Run.started_at, Run.scope).join(Run, Run.id == Score.run_id)
                 .where(Score.level == level, Score.subject == subject))
            if before_run is not None:
                q = q.where(Score.run_id <= before_run)
            if kind is not None:
                q = q.where(Run.kind == kind)
            rows = []
            for sc, at, run_scope in s.execute(q.order_by(Score.run_id.desc())):
                if scope is None or run_scope == scope:  # JSON compared in Python: SQLite and PostgreSQL differ
                    rows.append((sc, at))
                if len(rows) == last:
                    break
            return [{**_as_dict(sc), "at": at} for sc, at in reversed(rows)]

    def latest_run(self, kind: str | None = None) -> int | None:
        """The newest run with scores (of ``kind`` when given)."""
        with self.store.session() as s:
            q = select(Score.run_id).join(Run, Run.id == Score.run_id)
            if kind is not None:
                q = q.where(Run.kind == kind)
            return s.execute(q.order_by(Score.run_id.desc()).limit(1)).scalar_one_or_none()

    def previous_run(self, run_id: int, kind: str | None = None) -> int | None:
        """The latest earlier run that has scores (of ``kind`` when given)."""
        with self.store.session() as s:
            q = select(Score.run_id).join(Run, Run.id == Score.run_id).where(Score.run_id < run_id)
            if kind is not None:
                q = q.where(Run.kind == kind)
            return s.execute(q.order_by(Score.run_id.desc()).limit(1)).scalar_one_or_none()


class FindingRecords:
    def __init__(self, store: AuditStore):
        self.store = store

    # -- what a run does ------------------------------------------------------------------------
    def known(self) -> list[FindingRow]:
        with self.store.session() as s:
            return [FindingRow.of(f) for f in s.execute(select(Finding)).scalars()]

    def record_run(self, run_id: int, *, new: Iterable[Mapping], seen: Iterable[tuple[int, Mapping]],
                   reopened: Iterable[tuple[int, Mapping]], resolved: Iterable[int], at: datetime | None = None) -> None:
        """Apply one run's reconciliation in one transaction. ``new``: full finding rows; ``seen`` and
        ``reopened``: (finding id, fields to update); ``resolved``: finding ids verified fixed."""
        with self.store.session() as s:
            self.record_run_in(s, run_id, new=new, seen=seen, reopened=reopened, resolved=resolved, at=at)

    @staticmethod
    def record_run_in(s, run_id: int, *, new: Iterable[Mapping], seen: Iterable[tuple[int, Mapping]],
                      reopened: Iterable[tuple[int, Mapping]], resolved: Iterable[int], at: datetime | None = None,
                      reasons: Mapping[int, str] | None = None) -> None:
        """``record_run`` inside the caller's transaction ``s`` (a run's scores and findings commit together).
        ``reasons``: why a finding was resolved or carried over when it is not the usual verdict (a rule
        split per system: reports/findings.py ``reconcile``), kept in the event and as the run's note."""
        at = at or now()
        reasons = reasons or {}
        new, seen, reopened, resolved = list(new), list(seen), list(reopened), list(resolved)
        # the new findings in one flush (one batched INSERT … RETURNING for their ids, not a round trip
        # each), then their events in the same order
        made = [Finding(**dict(row), state="new", first_run_id=run_id, last_run_id=run_id, opened_at=at,
                        last_seen_at=at, reopened_count=0) for row in new]
        s.add_all(made)
        s.flush()
        s.add_all([FindingEvent(finding_id=f.id, run_id=run_id, at=at, event="new", detail=_counts(row))
                   for f, row in zip(made, new, strict=True)])
        # the findings the run saw again, reopened or resolved, loaded in one query: ``s.get`` below then
        # finds each in the session
        known = [fid for fid, _ in seen] + [fid for fid, _ in reopened] + list(resolved)
        for start in range(0, len(known), 500):
            s.execute(select(Finding).where(Finding.id.in_(known[start:start + 500]))).scalars().all()
        for fid, upd in seen:
            f = s.get(Finding, fid)
            for k, v in upd.items():
                setattr(f, k, v)
            f.last_run_id, f.last_seen_at = run_id, at
            if f.state == "new":
                f.state = "open"
            s.add(FindingEvent(finding_id=fid, run_id=run_id, at=at, event="persisting",
                               detail=_because(f, run_id, at, reasons.get(fid), _counts(upd))))
        for fid, upd in reopened:
            f = s.get(Finding, fid)
            for k, v in upd.items():
                setattr(f, k, v)
            f.state, f.last_run_id, f.last_seen_at = "reopened", run_id, at
            f.resolved_at = f.resolved_by = f.acknowledged_at = f.acknowledged_by = None
            f.reopened_count += 1
            s.add(FindingEvent(finding_id=fid, run_id=run_id, at=at, event="reopened", detail=_counts(upd)))
        for fid in resolved:
            f = s.get(Finding, fid)
            f.state, f.resolved_at, f.resolved_by, f.last_run_id = "resolved", at, f"run {run_id}", run_id
            s.add(FindingEvent(finding_id=fid, run_id=run_id, at=at, event="resolved",
                               detail=_because(f, run_id, at, reasons.get(fid), {}) or None))

    def events_of_run(self, run_id: int) -> dict[str, list[FindingRow]]:
        """The findings a run made new, saw again, reopened and resolved."""
        out: dict[str, list[FindingRow]] = {"new": [], "persisting": [], "reopened": [], "resolved": []}
        with self.store.session() as s:
            rows = s.execute(select(FindingEvent.event, Finding).join(Finding, Finding.id == FindingEvent.finding_id)
                             .where(FindingEvent.run_id == run_id).order_by(FindingEvent.id)).all()
            for event, f in rows:
                out.setdefault(event, []).append(FindingRow.of(f))
        return out

    def last_change(self) -> int:
        """The newest event of any finding (a run's or a person's): a report of the findings rendered
        before it may be out of date."""
        with self.store.session() as s:
            return s.execute(select(func.max(FindingEvent.id))).scalar_one_or_none() or 0

    def opened_between(self, start: datetime, end: datetime) -> list[FindingRow]:
        """Findings first opened in [start, end)."""
        with self.store.session() as s:
            return [FindingRow.of(f) for f in s.execute(select(Finding).where(
                Finding.opened_at >= start, Finding.opened_at < end).order_by(Finding.id)).scalars()]

    def resolved_between(self, start: datetime, end: datetime) -> list[FindingRow]:
        with self.store.session() as s:
            return [FindingRow.of(f) for f in s.execute(select(Finding).where(
                Finding.resolved_at >= start, Finding.resolved_at < end).order_by(Finding.id)).scalars()]

    def worked_between(self, start: datetime, end: datetime) -> list[FindingRow]:
        """Findings a person acted on in [start, end) (acknowledged, assigned, noted, resolved by hand)."""
        with self.store.session() as s:
            worked = select(FindingEvent.finding_id).where(FindingEvent.actor.is_not(None), FindingEvent.at >= start,
                                                           FindingEvent.at < end)
            return [FindingRow.of(f) for f in s.execute(select(Finding).where(Finding.id.in_(worked))
                                                        .order_by(Finding.id)).scalars()]

    def open_at(self, at: datetime) -> list[FindingRow]:
        """Findings opened before ``at`` and not resolved by then (as far as the store knows now)."""
        with self.store.session() as s:
            return [FindingRow.of(f) for f in s.execute(select(Finding).where(
                Finding.opened_at < at, or_(Finding.resolved_at.is_(None), Finding.resolved_at >= at))
                .order_by(Finding.id)).scalars()]

    def notes_between(self, start: datetime, end: datetime) -> list[dict]:
        """Notes people wrote on findings in [start, end): the problems and requirements collected."""
        with self.store.session() as s:
            rows = s.execute(select(FindingEvent, Finding.title_zh).join(Finding, Finding.id == FindingEvent.finding_id)
                             .where(FindingEvent.event == "note", FindingEvent.at >= start, FindingEvent.at < end)
                             .order_by(FindingEvent.id)).all()
            return [{"finding_id": e.finding_id, "at": e.at, "by": e.actor, "text": (e.detail or {}).get("text", ""),
                     "finding": title} for e, title in rows]

    # -- what people read and do ----------------------------------------------------------------
    def get(self, finding_id: int) -> FindingRow:
        with self.store.session() as s:
            f = s.get(Finding, finding_id) if stored_id(finding_id) else None
            if f is None:
                raise FindingNotFound(f"问题 {finding_id} 不存在 / finding {finding_id}: no such finding")
            return FindingRow.of(f)

    def list(self, *, state: str | None = None, level: str | None = None, system: str | None = None,
             org: str | None = None, overdue: bool = False, at: datetime | None = None) -> Rows:
        """Findings, most urgent first. ``state="open"`` means every state that is not resolved."""
        at = at or now()
        with self.store.session() as s:
            q = select(Finding)
            if state == "open":
                q = q.where(Finding.state.in_(OPEN))
            elif state:
                q = q.where(Finding.state == state)
            if level:
                q = q.where(Finding.level == level)
            if system:
                q = q.where(Finding.system == system)
            if org:
                q = q.where(Finding.org_code == org)
            if overdue:
                q = q.where(Finding.state.in_(OPEN), or_(
                    (Finding.acknowledged_at.is_(None)) & (Finding.response_due_at < at), Finding.fix_due_at < at))
            rows = [FindingRow.of(f) for f in s.execute(q).scalars()]
        return sorted(rows, key=lambda f: (f.state == "resolved", *urgency(f)))

    def events(self, finding_id: int) -> Events:
        """What happened to a finding, oldest first: each run's verdict (new, persisting, resolved,
        reopened, with the counts it saw) and each person's action, with when and who."""
        with self.store.session() as s:
            rows = s.execute(select(FindingEvent).where(FindingEvent.finding_id == finding_id)
                             .order_by(FindingEvent.id)).scalars()
            return [{"at": e.at, "event": e.event, "run_id": e.run_id, "actor": e.actor, "detail": e.detail or {}}
                    for e in rows]

    def acknowledge(self, finding_id: int, user: str) -> FindingRow:
        return self.acknowledge_many([finding_id], user)[0]

    def assign(self, finding_id: int, assignee: str, user: str) -> FindingRow:
        return self.assign_many([finding_id], assignee, user)[0]

    def resolve(self, finding_id: int, user: str, note: str | None = None) -> FindingRow:
        """Resolved by hand (e.g. not a defect). If a later run sees it again, it reopens."""
        return self.resolve_many([finding_id], user, note)[0]

    def acknowledge_many(self, finding_ids: Iterable[int], user: str) -> Rows:
        """Acknowledge every finding of ``finding_ids`` or none (one unknown or resolved id refuses all)."""
        def change(f: Finding, at: datetime) -> dict:
            if f.state == "resolved":
                raise HealthqaError(f"finding {f.id} is resolved; nothing to acknowledge")
            f.state, f.acknowledged_at, f.acknowledged_by = "acknowledged", at, user
            return {}
        return self._change(finding_ids, user, "acknowledged", change)

    def assign_many(self, finding_ids: Iterable[int], assignee: str, user: str) -> Rows:
        def change(f: Finding, at: datetime) -> dict:
            before, f.assignee = f.assignee, assignee
            return {"from": before, "to": assignee}
        return self._change(finding_ids, user, "assigned", change)

    def note(self, finding_id: int, text: str, user: str) -> FindingRow:
        text = " ".join(text.split())
        if not text:
            raise HealthqaError("note: the text is empty")

        def change(f: Finding, at: datetime) -> dict:
            f.notes = [*(f.notes or []), {"at": at.isoformat(), "by": user, "text": text}]
            return {"text": text}
        return self._change([finding_id], user, "note", change)[0]

    def resolve_many(self, finding_ids: Iterable[int], user: str, note: str | None = None) -> Rows:
        """Resolve every finding of ``finding_ids`` by hand, or none."""
        def change(f: Finding, at: datetime) -> dict:
            if f.state == "resolved":
                raise HealthqaError(f"finding {f.id} is already resolved")
            f.state, f.resolved_at, f.resolved_by = "resolved", at, user
            if note:
                f.notes = [*(f.notes or []), {"at": at.isoformat(), "by": user, "text": " ".join(note.split())}]
            return {"note": note}
        return self._change(finding_ids, user, "resolved", change)

    def _change(self, finding_ids: Iterable[int], user: str, event: str, change) -> Rows:
        """``change`` applied to each finding in one transaction: every id unknown, or every finding
        the change refuses, is named in one error and nothing is changed (a list typed by hand with
        one wrong number must not leave half of it done)."""
        ids = list(dict.fromkeys(finding_ids))
        if not ids:
            raise HealthqaError("no finding ids given")
        at = now()
        with self.store.session() as s:
            stored = [i for i in ids if stored_id(i)]  # a larger number names no finding (and overflows a driver)
            found = {f.id: f for f in s.execute(select(Finding).where(Finding.id.in_(stored))).scalars()}
            _refuse_missing(ids, found, changing=True)
            refused, out = [], []
            for fid in ids:
                f = found[fid]
                try:
                    detail = change(f, at)
                except HealthqaError as e:
                    refused.append(str(e))
                    continue
                s.add(FindingEvent(finding_id=fid, at=at, event=event, actor=user, detail=detail or None))
                s.add(AuditLog(at=at, user_name=user, action=f"finding_{event}", subject=str(fid), detail=detail or None))
                out.append(f)
            if refused:  # raised inside the transaction: it rolls back whatever the others changed
                raise HealthqaError("; ".join(refused) + ("；均未更改 — nothing changed" if len(ids) > 1 else ""))
            s.flush()
            return [FindingRow.of(f) for f in out]


def _refuse_missing(ids: list[int], found, changing: bool = False) -> None:
    """One error naming every id that names no finding (and, for a change of several, that none changed)."""
    missing = [i for i in ids if i not in found]
    if not missing:
        return
    said = f"finding {missing[0]}: no such finding" if len(missing) == 1 else \
        f"findings {', '.join(map(str, missing))}: no such findings"
    if changing and len(ids) > 1:
        said = f"问题单 {', '.join(map(str, missing))} 不存在，均未更改 / {said} — nothing changed"
    else:
        said = f"问题单 {', '.join(map(str, missing))} 不存在 / {said}"
    raise FindingNotFound(said)


def _as_dict(row) -> dict:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


def _because(f: Finding, run_id: int, at: datetime, reason: str | None, detail: dict) -> dict:
    """The event's detail with ``reason``, which is also written as the run's note on the finding
    (the console and the service report show notes): a person reads why it closed or moved."""
    if not reason:
        return detail
    f.notes = [*(f.notes or []), {"at": at.isoformat(), "by": f"run {run_id}", "text": reason}]
    return {**detail, "reason": reason}


def _counts(row: Mapping) -> dict:
    return {k: row[k] for k in ("violations", "rows_checked", "level") if k in row}
