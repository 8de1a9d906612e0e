"""The steward's review in the audit store (``store.review``): the queue of suggested pairs, least
certain first; one pair as the scan stored it; decisions that refer only to pairs the scan produced,
with one merge / not-the-same-person in force per pair (a second steward is told who decided);
undo of one's own recent decision; bulk decisions (``StewardBatch``): a score band accepted after a
steward reviewed a random sample of it with no error, or the pairs above the configured threshold
accepted by the system, each undone as one; the merges to export, each with its steward (or
"system") and time, and the band behind it; and the audit log the console writes (log-ins,
reveals) and reads.

It sits beside ``store.dedup`` (the scan's records) and reads the same tables; the scan writes them.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import and_, bindparam, case, delete, exists, func, insert, literal_column, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from healthqa.clock import now, shown
from healthqa.errors import HealthqaError, StoreError

from .models import (
    ArchiveOrg,
    AuditLog,
    DedupCluster,
    DedupClusterMember,
    DedupPair,
    ReviewCount,
    ReviewCountKey,
    Run,
    StewardBatch,
    StewardDecision,
    User,
    stored_id,
)

if TYPE_CHECKING:
    from .store import AuditStore

OPEN_PAIRS = ("review", "match")  # what the scan suggests a steward look at
FINAL = ("merge", "not_same")  # decisions that close a pair for everyone (skip hides it from one steward)


class ReviewError(HealthqaError):
    """A decision the console refuses, with the reason the steward reads."""


class PairNotFound(ReviewError):
    pass


class AlreadyDecided(ReviewError):
    def __init__(self, decided: Decided):
        who, at = decided.user or "?", shown(decided.decided_at, seconds=True)
        super().__init__(f"这对档案已由 {who} 于 {at} 处理（{decided.label}）"
                         f" / already decided by {who} at {at} ({decided.decision})")
        self.decided = decided


LABELS = {"merge": "合并", "not_same": "不是同一人", "skip": "跳过"}
SYSTEM = "system"  # who decided the merges accepted above the configured threshold
SAMPLE_MIN = 30  # the least sample of a score band a steward reviews (all of a smaller band)


def sample_size(n: int, least: int = SAMPLE_MIN) -> int:
    """Pairs of a band of ``n`` a steward reviews before accepting it: all of a small band, at least
    ``least``, and √n of a large one (a band of 1,145: 34)."""
    return min(n, max(least, math.ceil(math.sqrt(n))))


@dataclass(frozen=True)
class PairRow:
    source: str
    left: str
    right: str
    score: float
    decision: str  # the scan's: match | review
    explanation: dict | None
    created_at: datetime
    run_id: int


@dataclass(frozen=True)
class BandGroup:
    """Suggested pairs alike for a score band's count (``Review.band_groups``)."""

    band: int  # index of the band's lower edge
    decision: str  # the scan's: match | review
    reaches: tuple[bool, ...]  # the score at or above each cut (the spec's thresholds)
    levels: tuple[str | None, ...]  # each field's agreement level in the explanation
    n: int


@dataclass(frozen=True)
class Decided:
    id: int
    source: str
    left: str
    right: str
    decision: str
    survivor: str | None
    user: str | None
    user_id: int | None
    decided_at: datetime
    undone_at: datetime | None
    note: str | None = None
    batch_id: int | None = None
    basis: str | None = None  # a bulk merge: the band and sample, or the threshold, behind it

    @property
    def label(self) -> str:
        return LABELS.get(self.decision, self.decision)

    @property
    def retired(self) -> str | None:
        if self.decision != "merge" or self.survivor is None:
            return None
        return self.right if self.survivor == self.left else self.left


@dataclass(frozen=True)
class Grouping:
    """How the queue's score bands group the suggested pairs (``Review.band_groups``): the bands'
    lower edges, the spec's fields (each one's agreement level) and its thresholds (the cuts)."""

    edges: tuple[float, ...]
    fields: tuple[str, ...]
    cuts: tuple[float, ...]

    @classmethod
    def of(cls, definition: dict) -> Grouping:
        return cls(tuple(definition["edges"]), tuple(definition["fields"]), tuple(definition["cuts"]))

    @property
    def definition(self) -> dict:
        return {"edges": list(self.edges), "fields": list(self.fields), "cuts": list(self.cuts)}

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.definition, sort_keys=True).encode()).hexdigest()

    def group(self, score: float, decision: str, explanation: dict | None) -> str | None:
        """The pair's group as ``band_groups`` counts it in SQL (``_group_columns``), as JSON text;
        None for a pair it does not count (not open, or scored outside the bands)."""
        if decision not in OPEN_PAIRS or not self.edges[0] <= score <= 1.0:
            return None
        band = max(k for k, e in enumerate(self.edges) if score >= e)
        return json.dumps([band, decision, [int(score >= c) for c in self.cuts],
                           [_level(explanation, f) for f in self.fields]], ensure_ascii=False, separators=(",", ":"))


def _level(explanation, field: str) -> str | None:
    """``explanation[field]["level"]`` as the store's JSON path reads it as text."""
    v = explanation.get(field) if isinstance(explanation, dict) else None
    lv = v.get("level") if isinstance(v, dict) else None
    return lv if lv is None or isinstance(lv, str) else json.dumps(lv)


def _pair(p) -> PairRow:
    return PairRow(p.source, p.left_id, p.right_id, p.score, p.decision, p.explanation, p.created_at, p.run_id)


def _suggested(rows, source: str, a: str, b: str) -> PairRow:
    """The pair of ``rows`` (``_PAIR``'s); PairNotFound for anything the scan did not suggest."""
    if not rows or rows[0].decision not in OPEN_PAIRS:
        raise PairNotFound(f"{a} / {b}: 不是查重建议的档案对，不能处理 / not a pair the duplicate scan "
                           f"suggested for source {source}; nothing was recorded")
    return _pair(rows[0])


@dataclass(frozen=True)
class Batch:
    id: int
    source: str
    kind: str  # band | auto
    user_id: int | None
    low: float
    high: float
    threshold: float | None
    pairs: list[tuple[str, str]]
    sample: list[tuple[str, str]]
    status: str  # sampling | accepted | rejected
    error: tuple[str, str] | None
    created_at: datetime
    decided_at: datetime | None
    undone_at: datetime | None

    @property
    def basis(self) -> str:
        """What the batch's merges rest on, in words (the export's ``basis``)."""
        if self.kind == "auto":
            return f"auto-accept score >= {self.threshold!r} (batch {self.id})"
        return (f"band {self.low!r}-{self.high!r}, sample {len(self.sample)} of {len(self.pairs)} reviewed "
                f"without error (batch {self.id})")


def _batch(b) -> Batch:
    return Batch(b.id, b.source, b.kind, b.user_id, b.low, b.high, b.threshold,
                 [tuple(p) for p in b.pairs or []], [tuple(p) for p in b.sample or []], b.status,
                 tuple(b.error) if b.error else None, b.created_at, b.decided_at, b.undone_at)


def _decided(d, user: str | None, basis: str | None = None) -> Decided:
    """A decision (a ``StewardDecision`` or a row of its columns) with who made it."""
    return Decided(d.id, d.source, d.left_id, d.right_id, d.decision, d.survivor_id, user, d.user_id, d.decided_at,
                   d.undone_at, d.note, d.batch_id, basis)


def _in_force():
    return and_(StewardDecision.undone_at.is_(None), StewardDecision.decision != "skip")


# The console's questions, built once with bound parameters: building a statement cost more CPU
# than PostgreSQL spends answering it (issue 23), and SQLAlchemy compiles a built one only once.
_DECISION = (*StewardDecision.__table__.c, User.name.label("user_name"))
_PAIR = select(DedupPair).where(DedupPair.source == bindparam("source"), DedupPair.left_id == bindparam("left"),
                                DedupPair.right_id == bindparam("right"))
_PAIR_LOCKED = _PAIR.with_for_update()


def _decisions_on_pair(which):
    """The decisions ``which`` selects on one pair (bound: source, left, right), with their stewards' names."""
    return (select(*_DECISION).outerjoin(User, User.id == StewardDecision.user_id)
            .where(StewardDecision.source == bindparam("source"), StewardDecision.left_id == bindparam("left"),
                   StewardDecision.right_id == bindparam("right"), which))


_IN_FORCE = _decisions_on_pair(_in_force())
_RECENT = (select(*_DECISION).outerjoin(User, User.id == StewardDecision.user_id)
           .where(StewardDecision.user_id == bindparam("user_id"))
           .order_by(StewardDecision.decided_at.desc(), StewardDecision.id.desc()).limit(bindparam("limit")))
_COUNT_MINE = (select(StewardDecision.decision, func.count())
               .where(StewardDecision.user_id == bindparam("user_id"), StewardDecision.decided_at >= bindparam("since"),
                      StewardDecision.undone_at.is_(None)).group_by(StewardDecision.decision))
_NEWEST_CLUSTER = (select(DedupCluster.id).join(DedupClusterMember, DedupClusterMember.cluster_id == DedupCluster.id)
                   .where(DedupCluster.source == bindparam("source"), DedupClusterMember.archive_id == bindparam("archive"))
                   .order_by(DedupCluster.id.desc()).limit(1).scalar_subquery())
_CLUSTER_OF = (select(DedupCluster.id, DedupCluster.status, DedupCluster.survivor_id, DedupCluster.proposal,
                      DedupClusterMember.archive_id)
               .join(DedupClusterMember, DedupClusterMember.cluster_id == DedupCluster.id)
               .where(DedupCluster.id == _NEWEST_CLUSTER).order_by(DedupClusterMember.archive_id))
_NEWEST_RUN = select(Run.id).where(Run.kind == "dedup").order_by(Run.id.desc()).limit(1).scalar_subquery()
_PAIRS_VERSION = select(_NEWEST_RUN, select(Run.status).where(Run.id == _NEWEST_RUN).scalar_subquery(),
                        select(func.max(DedupPair.id)).scalar_subquery())


# -- the closed pairs' counts (``review_counts``) ---------------------------------------------------
# A change of decisions (a decision, an undo, a batch) shares this PostgreSQL advisory lock and
# locks its pairs' rows; a recount takes the lock alone, so it reads no decision whose count change
# is still uncommitted. SQLite runs one writer at a time, but Python's driver begins a transaction
# only at the first write: both begin with one (``_SQLITE_WRITER``) so that what they read is what
# they change (a test of concurrent decisions found counts off by one without it).
COUNTS_LOCK = 0x6871_7263
_SQLITE_WRITER = text("UPDATE review_count_keys SET counted_at = counted_at WHERE source = :source")
_COUNT_KEYS = select(ReviewCountKey.grouping, ReviewCountKey.definition).where(
    ReviewCountKey.source == bindparam("source"))
# the same, after the lock shared (one statement: it is on every decision's way)
_COUNT_KEYS_LOCKED = text(
    "SELECT k.grouping, k.definition FROM (SELECT pg_advisory_xact_lock_shared(:lock)) AS l "
    "LEFT OUTER JOIN review_count_keys AS k ON k.source = :source"
).columns(ReviewCountKey.grouping, ReviewCountKey.definition)
_PAIRS_LOCKED = (select(DedupPair.left_id, DedupPair.right_id, DedupPair.score, DedupPair.decision,
                        DedupPair.explanation)
                 .where(DedupPair.source == bindparam("source"),
                        tuple_(DedupPair.left_id, DedupPair.right_id).in_(bindparam("pairs", expanding=True)))
                 .order_by(DedupPair.left_id, DedupPair.right_id).with_for_update())
_IN_FORCE_ON = (select(StewardDecision.left_id, StewardDecision.right_id, StewardDecision.decision,
                       StewardDecision.user_id)
                .where(StewardDecision.source == bindparam("source"), StewardDecision.undone_at.is_(None),
                       tuple_(StewardDecision.left_id, StewardDecision.right_id).in_(bindparam("pairs", expanding=True))))
_CLOSED_ROWS = (select(DedupPair.left_id, DedupPair.right_id, DedupPair.score, DedupPair.decision,
                       DedupPair.explanation, StewardDecision.decision.label("decided"), StewardDecision.user_id)
                .join(StewardDecision, and_(StewardDecision.source == DedupPair.source,
                                            StewardDecision.left_id == DedupPair.left_id,
                                            StewardDecision.right_id == DedupPair.right_id))
                .where(StewardDecision.source == bindparam("source"), StewardDecision.undone_at.is_(None)))
_CLOSED_COUNTS = (select(ReviewCountKey.version, ReviewCount.grp, func.sum(ReviewCount.n))
                  .outerjoin(ReviewCount, and_(ReviewCount.source == ReviewCountKey.source,
                                               ReviewCount.grouping == ReviewCountKey.grouping,
                                               ReviewCount.scope.in_([literal_column("0"), bindparam("user_id")])))
                  .where(ReviewCountKey.source == bindparam("source"), ReviewCountKey.grouping == bindparam("grouping"))
                  .group_by(ReviewCountKey.version, ReviewCount.grp))
_IN_FORCE_ALL = _decisions_on_pair(StewardDecision.undone_at.is_(None))  # skips too


def _scope(decisions: Iterable[tuple[str, int | None]]) -> frozenset[int]:
    """Where a pair with these decisions in force (decision, user id) counts as closed: 0 (for
    everyone) under a merge or not-the-same-person, else each steward who skipped it (a tool's skip,
    without an account, closes it for nobody: ``_closed_for``)."""
    ds = list(decisions)
    if any(d != "skip" for d, _ in ds):
        return frozenset((0,))
    return frozenset(u for _, u in ds if u is not None)


def _keys_locked(c, source: str) -> list[tuple[str, dict]]:
    """The source's groupings, once the counts' lock is shared (PostgreSQL)."""
    if c.dialect.name == "postgresql":
        rows = c.execute(_COUNT_KEYS_LOCKED, {"lock": COUNTS_LOCK, "source": source}).all()
    else:
        c.execute(_SQLITE_WRITER, {"source": source})
        rows = c.execute(_COUNT_KEYS, {"source": source}).all()
    return [(g, d if isinstance(d, dict) else json.loads(d)) for g, d in rows if g is not None]


def _scopes(c, source: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], frozenset[int]]:
    found: dict[tuple[str, str], list] = {p: [] for p in pairs}
    for k in range(0, len(pairs), 500):
        for a, b, d, u in c.execute(_IN_FORCE_ON, {"source": source, "pairs": pairs[k:k + 500]}):
            found[(a, b)].append((d, u))
    return {p: _scope(ds) for p, ds in found.items()}


@lru_cache(maxsize=4)
def _bump_statement(dialect: str):
    """Add ``n`` to a count, the row made when missing (an upsert in both stores' dialects)."""
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ReviewCount)
    return ins.on_conflict_do_update(index_elements=["source", "grouping", "scope", "grp"],
                                     set_={"n": ReviewCount.n + ins.excluded.n})


def _count_changes(c, source: str, keys: list[tuple[str, dict]], rows: dict, before: dict, after: dict) -> None:
    """Write the change of the closed counts: pairs (``rows``: pair -> score, scan decision,
    explanation) closed ``before`` and ``after`` for these scopes."""
    delta: Counter = Counter()
    for key, definition in keys:
        grouping = Grouping.of(definition)
        for p, was in before.items():
            now_ = after[p]
            if was == now_ or p not in rows:
                continue
            grp = grouping.group(*rows[p])
            if grp is None:
                continue
            for scope in now_ - was:
                delta[(key, scope, grp)] += 1
            for scope in was - now_:
                delta[(key, scope, grp)] -= 1
    changes = [{"source": source, "grouping": k, "scope": sc, "grp": g, "n": n}
               for (k, sc, g), n in sorted(delta.items()) if n]
    if changes:
        c.execute(_bump_statement(c.dialect.name), changes)


@contextmanager
def _counted(c, source: str, pairs: Iterable[tuple[str, str]], flush=None) -> Iterator[None]:
    """Keep ``review_counts`` right across a change of the decisions on ``pairs`` made inside (on the
    connection ``c``, in its transaction; ``flush`` writes an ORM session's changes first)."""
    keys = _keys_locked(c, source)
    want = sorted({(str(a), str(b)) for a, b in pairs})
    if not keys or not want:
        yield
        return
    rows = {}
    for k in range(0, len(want), 500):
        rows.update({(a, b): (score, d, why) for a, b, score, d, why in
                     c.execute(_PAIRS_LOCKED, {"source": source, "pairs": want[k:k + 500]})})
    before = _scopes(c, source, want)
    yield
    if flush is not None:
        flush()
    _count_changes(c, source, keys, rows, before, _scopes(c, source, want))


def _closed_for(user_id):
    """Whether the pair (``DedupPair`` of the enclosing query) is closed for the steward ``user_id``: a
    merge or not-the-same-person in force, or their own skip. Asked pair by pair through the
    decisions' index (``ix_steward_pair``): ``OFFSET 0`` keeps PostgreSQL from turning it into an anti
    join, which without fresh statistics on the decisions compared every pair the queue passes with
    every decision (115 ms at 686 decisions, growing with each; 14 ms asked pair by pair)."""
    p, d = DedupPair, StewardDecision
    return (select(d.id).where(d.source == p.source, d.left_id == p.left_id, d.right_id == p.right_id,
                               d.undone_at.is_(None), or_(d.decision != "skip", d.user_id == user_id))
            .offset(0).exists())


@lru_cache(maxsize=128)
def _queue_statement(low: bool, high: bool, since: bool, until: bool, org: bool, after: bool):
    """``Review.queue``'s statement for the filters given (each a bound parameter)."""
    p = DedupPair
    closed = _closed_for(bindparam("user_id"))
    q = select(p.id, p.source, p.left_id, p.right_id, p.score, p.decision, p.created_at, p.run_id,
               p.explanation).where(p.source == bindparam("source"), p.decision.in_(OPEN_PAIRS), ~closed)
    if low:
        q = q.where(p.score >= bindparam("low"))
    if high:
        q = q.where(p.score <= bindparam("high"))
    if since:
        q = q.where(p.created_at >= bindparam("since"))
    if until:
        q = q.where(p.created_at < bindparam("until"))
    if org:
        o = ArchiveOrg
        q = q.where(or_(exists().where(o.source == p.source, o.archive_id == p.left_id, o.org_code == bindparam("org")),
                        exists().where(o.source == p.source, o.archive_id == p.right_id, o.org_code == bindparam("org"))))
    if after:
        q = q.where(or_(p.score > bindparam("after_score"),
                        and_(p.score == bindparam("after_score"), p.id > bindparam("after_id"))))
    return q.order_by(p.score, p.id).limit(bindparam("limit"))


def _group_columns(edges: tuple[float, ...], fields: tuple[str, ...], cuts: tuple[float, ...]) -> list:
    """What a pair's band group is: its band, the scan's decision, the cuts reached, each field's level."""
    p = DedupPair
    bucket = case(*((p.score >= e, k) for k, e in reversed(list(enumerate(edges)))), else_=-1)
    reach = [case((p.score >= c, 1), else_=0) for c in cuts]
    levels = [p.explanation[f]["level"].as_string() for f in fields]
    return [bucket, p.decision, *reach, *levels]


def _band_group(r, cuts: int, fields: int, n: int) -> BandGroup:
    return BandGroup(int(r[0]), r[1], tuple(bool(x) for x in r[2:2 + cuts]), tuple(r[2 + cuts:2 + cuts + fields]), n)


@lru_cache(maxsize=32)
def _band_groups_statement(edges: tuple[float, ...], fields: tuple[str, ...], cuts: tuple[float, ...]):
    """``Review.band_groups``'s statement (the source a bound parameter)."""
    p = DedupPair
    cols = _group_columns(edges, fields, cuts)
    return (select(*cols, func.count()).where(p.source == bindparam("source"), p.decision.in_(OPEN_PAIRS),
                                              p.score >= edges[0], p.score <= 1.0).group_by(*cols))


@lru_cache(maxsize=8)
def _batches_statement(by_ids: bool, by_user: bool):
    """``Review.batches``'s statement: by id, or the latest (``limit``); one steward's or all."""
    q = select(*StewardBatch.__table__.c).where(StewardBatch.source == bindparam("source"))
    if by_ids:
        q = q.where(StewardBatch.id.in_(bindparam("ids", expanding=True)))
    else:
        q = q.limit(bindparam("limit"))
    if by_user:
        q = q.where(StewardBatch.user_id == bindparam("user_id"))
    return q.order_by(StewardBatch.id.desc())


class Review:
    """``store.review``: what the steward's console reads and writes."""

    def __init__(self, store: AuditStore):
        self._store = store

    # -- the queue -------------------------------------------------------------------------------
    def queue(self, source: str, *, user_id: int | None, org: str | None = None, low: float | None = None,
              high: float | None = None, since: datetime | None = None, until: datetime | None = None,
              after: tuple[float, int] | None = None, limit: int = 50) -> list[tuple[int, PairRow]]:
        """Pairs the scan suggested that nobody has closed (and this steward has not skipped), least
        certain first: review pairs below match pairs, each by score ascending (the index
        ``ix_dedup_pairs_queue``). ``after``: the (score, pair id) a previous page ended on. Rows come
        with their explanation (a page of them: the guard that held a pair back is read from it)."""
        q = _queue_statement(low is not None, high is not None, since is not None, until is not None, bool(org),
                             after is not None)
        params = {"source": source, "user_id": user_id, "low": low, "high": high, "since": since, "until": until,
                  "org": org, "after_score": after[0] if after else None, "after_id": after[1] if after else None,
                  "limit": limit}
        return [(pid, PairRow(src, a, b, score, d, why, at, run))
                for pid, src, a, b, score, d, at, run, why in self._store.rows(q, params)]

    def pair(self, source: str, left: str, right: str) -> PairRow:
        """The pair as the scan stored it; PairNotFound for anything the scan did not suggest."""
        a, b = sorted((left, right))
        return _suggested(self._store.rows(_PAIR, {"source": source, "left": a, "right": b}), source, a, b)

    def cluster_of(self, source: str, archive: str) -> dict | None:
        """The stored cluster holding ``archive``: id, status, survivor, proposal, members."""
        rows = self._store.rows(_CLUSTER_OF, {"source": source, "archive": archive})  # one row a member
        if not rows:
            return None
        c = rows[0]
        return {"id": c.id, "status": c.status, "survivor": c.survivor_id, "proposal": c.proposal,
                "members": [r.archive_id for r in rows]}

    def survivors_of(self, source: str, archives: Iterable[str]) -> dict[str, str | None]:
        """Archive -> the survivor of the newest stored cluster holding it (one query, for a band)."""
        want = sorted(set(archives))
        out: dict[str, str | None] = {}
        with self._store.session() as s:
            for k in range(0, len(want), 500):
                rows = s.execute(select(DedupClusterMember.archive_id, DedupCluster.survivor_id, DedupCluster.id)
                                 .join(DedupCluster, DedupClusterMember.cluster_id == DedupCluster.id)
                                 .where(DedupCluster.source == source,
                                        DedupClusterMember.archive_id.in_(want[k:k + 500]))
                                 .order_by(DedupCluster.id)).all()
                out.update({a: sv for a, sv, _ in rows})  # the newest cluster last: it wins
        return out

    def clusters_to_review(self, source: str, limit: int = 100) -> list[dict]:
        """Clusters the scan held back for a steward (they would chain two people), largest first."""
        with self._store.session() as s:
            size = func.count(DedupClusterMember.archive_id)
            rows = s.execute(select(DedupCluster.id, DedupCluster.survivor_id, size)
                             .join(DedupClusterMember, DedupClusterMember.cluster_id == DedupCluster.id)
                             .where(DedupCluster.source == source, DedupCluster.status == "review")
                             .group_by(DedupCluster.id, DedupCluster.survivor_id)
                             .order_by(size.desc(), DedupCluster.id).limit(limit)).all()
            members: dict[int, list[str]] = {}
            for cid, aid in s.execute(select(DedupClusterMember.cluster_id, DedupClusterMember.archive_id)
                                      .where(DedupClusterMember.cluster_id.in_([r[0] for r in rows]))
                                      .order_by(DedupClusterMember.archive_id)):
                members.setdefault(cid, []).append(aid)
        return [{"id": cid, "survivor": sv, "members": members.get(cid, [])} for cid, sv, _ in rows]

    def pairs_within(self, source: str, members: list[str]) -> list[PairRow]:
        """The suggested pairs between archives of one cluster."""
        with self._store.session() as s:
            rows = s.execute(select(DedupPair).where(DedupPair.source == source, DedupPair.left_id.in_(members),
                                                     DedupPair.right_id.in_(members),
                                                     DedupPair.decision.in_(OPEN_PAIRS))
                             .order_by(DedupPair.score)).scalars().all()
            return [_pair(p) for p in rows]

    # -- decisions -------------------------------------------------------------------------------
    def in_force(self, source: str, left: str, right: str) -> Decided | None:
        a, b = sorted((left, right))
        rows = self._store.rows(_IN_FORCE, {"source": source, "left": a, "right": b})
        return _decided(rows[0], rows[0].user_name) if rows else None

    def decide(self, source: str, left: str, right: str, decision: str, *, user_id: int | None, user: str | None,
               survivor: str | None = None, note: str | None = None, detail: dict | None = None) -> Decided:
        """Record a steward's decision on a pair the scan suggested, and write it to the audit log:
        the one way a decision is made (the console, tools and tests alike). At most one merge or
        not-the-same-person is in force per pair: a pair already decided raises AlreadyDecided naming
        who decided it — also when two stewards decide it at the same moment (the database's unique
        index refuses the second). ``survivor``: for a merge, the archive kept. ``user_id`` None: a
        tool's decision, without a console account."""
        if decision not in LABELS:
            raise ReviewError(f"decision must be one of {', '.join(LABELS)}, not {decision!r}")
        a, b = sorted((left, right))
        if decision == "merge" and survivor not in (a, b):
            raise ReviewError(f"合并须指定保留的档案 / a merge keeps {a} or {b}, not {survivor!r}")
        at = now()
        kept = survivor if decision == "merge" else None
        row = {"source": source, "left_id": a, "right_id": b, "decision": decision, "user_id": user_id,
               "survivor_id": kept, "note": note, "decided_at": at}
        key = {"source": source, "left": a, "right": b}
        try:
            with self._store.transaction() as c:  # Core statements: the ORM's unit of work cost more than them
                # the counts' lock first, then the pair's row (every change of decisions: ``_counted``)
                keys = _keys_locked(c, source)
                pair = _suggested(c.execute(_PAIR_LOCKED if keys else _PAIR, key).all(), source, a, b)
                known = c.execute(_IN_FORCE_ALL, key).all()  # skips too: they are counted
                final = next((k for k in known if k.decision != "skip"), None)
                if decision != "skip" and final is not None:
                    raise AlreadyDecided(_decided(final, final.user_name))
                new_id = c.execute(insert(StewardDecision), row).inserted_primary_key[0]
                if keys:  # the closed counts in the same transaction: they never drift from the decisions
                    was = _scope((k.decision, k.user_id) for k in known)
                    _count_changes(c, source, keys, {(a, b): (pair.score, pair.decision, pair.explanation)},
                                   {(a, b): was}, {(a, b): _scope([*((k.decision, k.user_id) for k in known),
                                                                   (decision, user_id)])})
                c.execute(insert(AuditLog), {"at": at, "user_name": user, "action": f"steward_{decision}",
                                             "subject": f"{a}|{b}",
                                             "detail": {"source": source,
                                                        **({"survivor": survivor} if decision == "merge" else {}),
                                                        **(detail or {})}})
            return Decided(new_id, source, a, b, decision, kept, user, user_id, at, None, note)
        except StoreError:
            known = self.in_force(source, a, b) if decision != "skip" else None
            if known is not None:  # the other steward's transaction committed first
                raise AlreadyDecided(known) from None
            raise

    def get(self, decision_id: int) -> Decided:
        with self._store.session() as s:
            row = s.execute(select(StewardDecision, User.name).outerjoin(User, User.id == StewardDecision.user_id)
                            .where(StewardDecision.id == decision_id)).first()
        if row is None:
            raise ReviewError(f"decision {decision_id}: no such decision / 没有这条处理记录")
        return _decided(*row)

    def undo(self, decision_id: int, *, user_id: int | None, user: str | None,
             within: timedelta | None = None) -> Decided:
        """Undo one's own decision (made within ``within``: the console's limit; None for a tool's
        own, which has none); it is kept, marked undone, and the undo written to the audit log. The
        one way a decision is undone."""
        at = now()
        with self._store.session() as s:
            d = s.get(StewardDecision, decision_id) if stored_id(decision_id) else None
            if d is None or d.user_id != user_id:
                raise ReviewError("只能撤销自己的处理 / you can undo only your own decisions")
            if d.undone_at is not None:
                raise ReviewError("这条处理已撤销 / this decision was already undone")
            if within is not None and at - d.decided_at > within:
                raise ReviewError(f"超过 {int(within.total_seconds() // 60)} 分钟的处理不能撤销 / decisions older "
                                  f"than {int(within.total_seconds() // 60)} minutes cannot be undone")
            with _counted(s.connection(), d.source, [(d.left_id, d.right_id)], flush=s.flush):
                d.undone_at = at
            s.add(AuditLog(at=at, user_name=user, action="steward_undo", subject=f"{d.left_id}|{d.right_id}",
                           detail={"source": d.source, "decision": d.decision, "decision_id": d.id}))
            s.flush()
            return _decided(d, user)

    def recent(self, user_id: int, limit: int = 20) -> list[Decided]:
        """One steward's latest decisions, newest first (undone ones too)."""
        return [_decided(r, r.user_name) for r in self._store.rows(_RECENT, {"user_id": user_id, "limit": limit})]

    def merges(self, source: str) -> list[Decided]:
        """The merges in force, oldest first, with who decided and the survivor they chose (for
        decisions made before stewards chose: the survivor the scan proposed, else the left one)."""
        with self._store.session() as s:
            rows = s.execute(select(StewardDecision, User.name).outerjoin(User, User.id == StewardDecision.user_id)
                             .where(StewardDecision.source == source, StewardDecision.decision == "merge",
                                    _in_force()).order_by(StewardDecision.decided_at, StewardDecision.id)).all()
        batches = {b.id: b for b in self.batches(source, ids={d.batch_id for d, _ in rows if d.batch_id})}
        out = []
        for d, name in rows:
            b = batches.get(d.batch_id) if d.batch_id else None
            x = _decided(d, SYSTEM if b is not None and b.kind == "auto" else name, b.basis if b else None)
            if x.survivor is None:
                c = self.cluster_of(source, x.left)
                sv = c["survivor"] if c and c["survivor"] in (x.left, x.right) else x.left
                x = Decided(**{**x.__dict__, "survivor": sv})
            out.append(x)
        return out

    def count_decided(self, source: str) -> dict[str, int]:
        """Decisions in force by kind (skips: every steward's in force)."""
        with self._store.session() as s:
            rows = s.execute(select(StewardDecision.decision, func.count()).where(
                StewardDecision.source == source, StewardDecision.undone_at.is_(None))
                .group_by(StewardDecision.decision)).all()
        return dict.fromkeys(LABELS, 0) | dict(rows)

    def count_mine(self, user_id: int, since: datetime) -> dict[str, int]:
        """One steward's decisions in force made since ``since``, by kind (index ``ix_steward_user``)."""
        rows = self._store.rows(_COUNT_MINE, {"user_id": user_id, "since": since})
        return dict.fromkeys(LABELS, 0) | dict(rows)

    # -- bulk decisions: a score band through its sample, the system above a threshold --------------
    def band(self, source: str, low: float, high: float, *, user_id: int | None) -> list[PairRow]:
        """The open pairs (as ``queue`` has them for this steward) scored from ``low`` up to below
        ``high`` (up to 1 inclusive when ``high`` is 1), with their explanations, by score. The
        caller leaves out the pairs a guard held back (``dedup.guards.held_back``)."""
        p = DedupPair
        closed = _closed_for(user_id)
        top = p.score <= high if high >= 1 else p.score < high
        q = (select(p).where(p.source == source, p.decision.in_(OPEN_PAIRS), ~closed, p.score >= low, top)
             .order_by(p.score, p.id))
        with self._store.session() as s:
            return [_pair(x) for x in s.execute(q).scalars()]

    def band_groups(self, source: str, edges: list[float], fields: list[str], cuts: list[float]) -> list[BandGroup]:
        """The suggested pairs scored from ``edges[0]`` up to 1 in the open decisions, counted in groups
        that decide a band's count without reading a pair: the band (the index of the last edge at or
        below the score), the scan's decision, whether the score reaches each of ``cuts`` (the
        thresholds), and the agreement level of each of ``fields`` in the explanation (the queue's
        bands: ``console/steward.py``, less the pairs ``closed_pairs`` names)."""
        q = _band_groups_statement(tuple(edges), tuple(fields), tuple(cuts))
        return [_band_group(r, len(cuts), len(fields), int(r[-1])) for r in self._store.rows(q, {"source": source})]

    def closed_counts(self, source: str, user_id: int | None, grouping: Grouping, version: str) -> list[BandGroup]:
        """The suggested pairs closed for the steward ``user_id`` (a merge or not-the-same-person in
        force, or their own skip), counted in ``band_groups``' groups: read from ``review_counts``,
        which every decision keeps in its own transaction — a few rows whatever the number of
        decisions. Recounted first when the counts are for another ``version`` of the pairs (a scan
        wrote pairs since) or were never counted (``recount``)."""
        params = {"source": source, "grouping": grouping.key, "user_id": user_id}
        rows = self._store.rows(_CLOSED_COUNTS, params)
        if not rows or rows[0][0] != version:
            self.recount(source, grouping, version)
            rows = self._store.rows(_CLOSED_COUNTS, params)
        out = []
        for _, grp, n in rows:
            if grp is None or not n:
                continue
            band, decision, reaches, levels = json.loads(grp)
            out.append(BandGroup(band, decision, tuple(bool(x) for x in reaches), tuple(levels), int(n)))
        return out

    def recount(self, source: str, grouping: Grouping, version: str, *, force: bool = False) -> int:
        """Count the closed pairs again from the decisions in force (the repair path: a store upgraded
        to 0013, a scan's new pairs, a grouping no console asked for before), unless they are
        already counted for ``version`` (``force``: in any case). Returns the pairs counted. Takes
        the counts' lock alone: no decision's change of them is half-way."""
        key = grouping.key
        with self._store.transaction() as c:
            if c.dialect.name == "postgresql":
                c.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": COUNTS_LOCK})
            else:
                c.execute(_SQLITE_WRITER, {"source": source})
            known = c.execute(select(ReviewCountKey.version).where(ReviewCountKey.source == source,
                                                                   ReviewCountKey.grouping == key)).first()
            if known is not None and known[0] == version and not force:
                return -1
            pairs: dict[tuple[str, str], list] = {}
            rows: dict[tuple[str, str], tuple] = {}
            for a, b, score, d, why, decided, user in c.execute(_CLOSED_ROWS, {"source": source}):
                pairs.setdefault((a, b), []).append((decided, user))
                rows[(a, b)] = (score, d, why)
            counts: Counter = Counter()
            for p, ds in pairs.items():
                grp = grouping.group(*rows[p])
                if grp is not None:
                    for scope in _scope(ds):
                        counts[(scope, grp)] += 1
            c.execute(delete(ReviewCount).where(ReviewCount.source == source, ReviewCount.grouping == key))
            c.execute(delete(ReviewCountKey).where(ReviewCountKey.source == source, ReviewCountKey.grouping == key))
            c.execute(insert(ReviewCountKey), {"source": source, "grouping": key, "definition": grouping.definition,
                                                "version": version, "counted_at": now()})
            if counts:
                c.execute(insert(ReviewCount), [{"source": source, "grouping": key, "scope": sc, "grp": g, "n": n}
                                                for (sc, g), n in sorted(counts.items())])
        return len(pairs)

    def pairs_version(self) -> tuple:
        """What changes whenever the suggested pairs may have, in one cheap query (two index ends):
        the newest dedup run and its state (a scan writes its pairs inside its run; the state moves
        when it ends), and the newest pair's id (a pair added outside a run, as a tool or test may)."""
        return tuple(self._store.rows(_PAIRS_VERSION)[0])

    def start_batch(self, source: str, low: float, high: float, pairs: list[PairRow], *, user_id: int | None,
                    user: str | None, least: int = SAMPLE_MIN, seed: int | None = None) -> Batch:
        """A band to accept: its pairs now, and a random sample of them (``sample_size``) for the
        steward to review before anything is decided."""
        if not pairs:
            raise ReviewError(f"得分段 {low}–{high} 没有可批量处理的档案对 / no pair of this band can be decided in bulk")
        members = [[x.left, x.right] for x in pairs]
        rng = random.Random(seed)
        sample = sorted(rng.sample(members, sample_size(len(members), least)))
        at = now()
        with self._store.session() as s:
            b = StewardBatch(source=source, kind="band", user_id=user_id, low=low, high=high, pairs=members,
                             sample=sample, status="sampling", created_at=at)
            s.add(b)
            s.flush()
            s.add(AuditLog(at=at, user_name=user, action="steward_band_sample", subject=f"batch {b.id}",
                           detail={"source": source, "band": [low, high], "pairs": len(members), "sample": sample}))
            s.flush()
            return _batch(b)

    def batch(self, batch_id: int) -> Batch:
        with self._store.session() as s:
            b = s.get(StewardBatch, batch_id) if stored_id(batch_id) else None  # no row holds an id beyond the range
            if b is None:
                raise ReviewError(f"batch {batch_id}: 没有这批处理 / no such batch")
            return _batch(b)

    def merged_by(self, batch_id: int) -> int:
        """How many merges a batch made (undone ones too)."""
        with self._store.session() as s:
            return s.execute(select(func.count()).where(StewardDecision.batch_id == batch_id)).scalar_one()

    def batches(self, source: str, *, ids: set[int] | None = None, user_id: int | None = None,
                limit: int = 20) -> list[Batch]:
        """Batches of a source, newest first: by id, or one steward's latest."""
        if ids is not None and not ids:
            return []
        q = _batches_statement(ids is not None, user_id is not None)
        return [_batch(b) for b in self._store.rows(q, {"source": source, "ids": sorted(ids or ()), "user_id": user_id,
                                                         "limit": limit})]

    def _open_batch(self, s, batch_id: int, user_id: int | None) -> StewardBatch:
        b = s.get(StewardBatch, batch_id)
        if b is None or b.user_id != user_id:
            raise ReviewError("只能处理自己的批次 / you can act only on your own batch")
        if b.status != "sampling":
            raise ReviewError(f"这批已处理（{b.status}）/ this batch was already {b.status}")
        return b

    def accept_batch(self, batch_id: int, survivors: dict[tuple[str, str], str], *, user_id: int | None,
                     user: str | None) -> tuple[Batch, int]:
        """The steward reviewed the sample and found no error: every pair of the band still open that
        ``survivors`` names is merged (keeping ``survivors[(left, right)]``; a pair it leaves out
        stays in the queue), each decision naming the batch, each written to the audit log with the
        band and the sample. Returns the batch and how many were merged (a pair another steward
        decided meanwhile is left as they decided it)."""
        known = self.batch(batch_id)
        open_now = {(x.left, x.right) for x in self.band(known.source, known.low, known.high, user_id=user_id)}
        at = now()
        with self._store.session() as s:
            b = self._open_batch(s, batch_id, user_id)
            band = {"batch": b.id, "band": [b.low, b.high], "sample": len(b.sample or [])}
            n = 0
            merging = [(left, right) for left, right in (tuple(p) for p in b.pairs or [])
                       if (left, right) in open_now and survivors.get((left, right)) in (left, right)]
            with _counted(s.connection(), b.source, merging, flush=s.flush):
                for left, right in merging:
                    survivor = survivors[(left, right)]
                    s.add(StewardDecision(source=b.source, left_id=left, right_id=right, decision="merge",
                                          user_id=user_id, survivor_id=survivor, decided_at=at, batch_id=b.id))
                    s.add(AuditLog(at=at, user_name=user, action="steward_merge", subject=f"{left}|{right}",
                                   detail={"source": b.source, "survivor": survivor, **band}))
                    n += 1
            b.status, b.decided_at = "accepted", at
            s.add(AuditLog(at=at, user_name=user, action="steward_band_accept", subject=f"batch {b.id}",
                           detail={"source": b.source, "band": [b.low, b.high], "merged": n, "sample": b.sample}))
            s.flush()
            return _batch(b), n

    def reject_batch(self, batch_id: int, left: str, right: str, *, user_id: int | None, user: str | None) -> Batch:
        """The steward marked a pair of the sample not the same person: that is recorded as their
        decision, and the band is rejected — nothing else of it is decided; its pairs stay in the
        queue, one by one."""
        a, b_ = sorted((left, right))
        with self._store.session() as s:
            b = self._open_batch(s, batch_id, user_id)
            if [a, b_] not in (b.sample or []):
                raise ReviewError(f"{a} / {b_}: 不在这批的样本中 / not in this batch's sample")
            source, band = b.source, [b.low, b.high]
        self.decide(source, a, b_, "not_same", user_id=user_id, user=user,
                    detail={"batch": batch_id, "band": band, "sample_error": True})
        at = now()
        with self._store.session() as s:
            b = self._open_batch(s, batch_id, user_id)
            b.status, b.decided_at, b.error = "rejected", at, [a, b_]
            s.add(AuditLog(at=at, user_name=user, action="steward_band_reject", subject=f"batch {b.id}",
                           detail={"source": source, "band": band, "error": [a, b_], "sample": b.sample}))
            s.flush()
            return _batch(b)

    def undo_batch(self, batch_id: int, *, user_id: int | None, user: str | None,
                   within: timedelta | None = None) -> int:
        """Undo every decision of an accepted batch at once (one's own, within ``within``); the
        decisions are kept, marked undone. Returns how many were undone."""
        at = now()
        with self._store.session() as s:
            b = s.get(StewardBatch, batch_id)
            if b is None or b.user_id != user_id:
                raise ReviewError("只能撤销自己的批次 / you can undo only your own batch")
            if b.status != "accepted" or b.undone_at is not None:
                raise ReviewError("这批未被接受或已撤销 / this batch was not accepted, or was already undone")
            if within is not None and b.decided_at is not None and at - b.decided_at > within:
                raise ReviewError(f"超过 {int(within.total_seconds() // 60)} 分钟的处理不能撤销 / decisions older "
                                  f"than {int(within.total_seconds() // 60)} minutes cannot be undone")
            ds = s.execute(select(StewardDecision).where(StewardDecision.batch_id == b.id,
                                                         StewardDecision.undone_at.is_(None))).scalars().all()
            with _counted(s.connection(), b.source, [(d.left_id, d.right_id) for d in ds], flush=s.flush):
                for d in ds:
                    d.undone_at = at
            b.undone_at = at
            s.add(AuditLog(at=at, user_name=user, action="steward_undo_batch", subject=f"batch {b.id}",
                           detail={"source": b.source, "band": [b.low, b.high], "undone": len(ds)}))
            s.flush()
            return len(ds)

    def auto_accept(self, source: str, threshold: float, pairs: list[PairRow]) -> Batch | None:
        """The system's merges of ``pairs`` (the open pairs scored at or above ``threshold`` that no
        guard held back: the caller's), one batch decided by "system" with the threshold; the
        survivor is the one the scan proposed for the cluster (``merges``)."""
        if not pairs:
            return None
        at = now()
        members = [[x.left, x.right] for x in pairs]
        with self._store.session() as s:
            b = StewardBatch(source=source, kind="auto", user_id=None, low=threshold, high=1.0, threshold=threshold,
                             pairs=members, sample=[], status="accepted", created_at=at, decided_at=at)
            s.add(b)
            s.flush()
            with _counted(s.connection(), source, [(left, right) for left, right in members], flush=s.flush):
                for left, right in members:
                    s.add(StewardDecision(source=source, left_id=left, right_id=right, decision="merge", user_id=None,
                                          decided_at=at, batch_id=b.id))
            s.add(AuditLog(at=at, user_name=SYSTEM, action="auto_accept", subject=f"batch {b.id}",
                           detail={"source": source, "threshold": threshold, "merged": len(members)}))
            s.flush()
            return _batch(b)

    # -- the institutions of archives (the queue's filter) ----------------------------------------
    def orgs_run(self, source: str) -> int | None:
        """The dedup run the stored institutions were read for (None: never read)."""
        with self._store.session() as s:
            return s.execute(select(ArchiveOrg.run_id).where(ArchiveOrg.source == source).limit(1)).scalar_one_or_none()

    def replace_orgs(self, source: str, run_id: int, pairs: Iterable[tuple[str, str | None]]) -> int:
        rows = [{"source": source, "archive_id": a, "org_code": o, "run_id": run_id}
                for a, o in sorted({(str(a), str(o or "")) for a, o in pairs})]
        with self._store.session() as s:
            s.execute(delete(ArchiveOrg).where(ArchiveOrg.source == source))
            for k in range(0, len(rows), 10_000):
                s.execute(insert(ArchiveOrg), rows[k:k + 10_000])
        return len(rows)

    def orgs(self, source: str) -> list[str]:
        with self._store.session() as s:
            return [o for o in s.execute(select(ArchiveOrg.org_code).where(ArchiveOrg.source == source)
                                         .distinct().order_by(ArchiveOrg.org_code)).scalars() if o]

    def latest_scan(self, source: str) -> int | None:
        """The newest successful dedup run of ``source``."""
        with self._store.session() as s:
            for rid, scope in s.execute(select(Run.id, Run.scope).where(Run.kind == "dedup", Run.status == "success")
                                        .order_by(Run.id.desc())):
                if (scope or {}).get("source") == source:
                    return rid
        return None

    # -- the audit log ---------------------------------------------------------------------------
    def log(self, user: str | None, action: str, subject: str | None = None, detail: dict | None = None) -> None:
        self.log_many([(user, action, subject, detail)])

    def log_many(self, entries: list[tuple[str | None, str, str | None, dict | None]]) -> None:
        """Entries (user, action, subject, detail) in one transaction: one commit for calls that
        arrive together (the match API's)."""
        if not entries:
            return
        with self._store.session() as s:
            self.log_many_in(s, entries)

    @staticmethod
    def log_many_in(s, entries: list[tuple[str | None, str, str | None, dict | None]]) -> None:
        """``log_many`` inside the caller's transaction ``s`` (the match API counts a batch's calls in it)."""
        s.add_all([AuditLog(at=now(), user_name=u, action=a, subject=sub, detail=d) for u, a, sub, d in entries])

    def logged(self, action: str, limit: int = 200) -> list[dict]:
        """The newest entries of one ``action`` (e.g. ``publish``), newest first."""
        q = select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(limit)
        with self._store.session() as s:
            return [{"at": a.at, "subject": a.subject, "detail": a.detail} for a in s.execute(q).scalars()]

    def failures_since(self, name: str, since: datetime) -> list[datetime]:
        """Times of failed log-ins of ``name`` after ``since`` and after its last successful one."""
        with self._store.session() as s:
            ok = s.execute(select(func.max(AuditLog.at)).where(AuditLog.action == "login", AuditLog.subject == name)
                           ).scalar_one_or_none()
            start = max(since, ok) if ok else since
            return list(s.execute(select(AuditLog.at).where(AuditLog.action == "login_failed", AuditLog.subject == name,
                                                            AuditLog.at > start).order_by(AuditLog.at)).scalars())

    def audit(self, *, user: str | None = None, limit: int = 200) -> list[dict]:
        """Audit-log entries, newest first (one user's, or everyone's)."""
        q = select(AuditLog).order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(limit)
        if user is not None:
            q = q.where(AuditLog.user_name == user)
        with self._store.session() as s:
            return [{"at": a.at, "user": a.user_name, "action": a.action, "subject": a.subject, "detail": a.detail}
                    for a in s.execute(q).scalars()]
