"""The closed pairs' counts the store keeps on each decision (``review_counts``, migration 0014), which
the queue's score bands subtract: after merges, not-the-same, skips (one's own, another's, twice,
under a merge), undo, a band accepted and undone, the system's merges and concurrent decisions, they
equal a recount from the decisions in force — on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter

import pytest
from sqlalchemy import insert

from healthqa.clock import now
from healthqa.store import AuditStore
from healthqa.store.models import DedupPair, StewardDecision, User
from healthqa.store.review import AlreadyDecided, Grouping, ReviewError

GROUPING = Grouping((0.5, 0.7, 0.9), ("name", "id_number"), (0.6, 0.95))
VERSION = "v1"
LEVELS = ("equal", "different", None)


def _make(url: str, n: int = 120) -> tuple[AuditStore, list[tuple[str, str]], list[int]]:
    store = AuditStore(url)
    with store.runs.start("dedup", {"source": "mpi"}) as run:
        pass
    rng = random.Random(7)
    rows = []
    for k in range(n):
        score = rng.uniform(0.45, 1.0)
        why = {"name": {"level": rng.choice(LEVELS)}, "id_number": {"level": rng.choice(LEVELS)}}
        rows.append({"run_id": run.id, "source": "mpi", "left_id": f"A{k:04d}", "right_id": f"B{k:04d}", "score": score,
                     "decision": "match" if score >= 0.95 else "review", "explanation": why, "created_at": now()})
    with store.session() as s:
        s.execute(insert(DedupPair), rows)
        s.execute(insert(User), [{"name": f"s{k}", "role": "steward", "active": True, "created_at": now()}
                                 for k in range(4)])
    users = sorted(u.id for u in store.users.list())
    return store, [(r["left_id"], r["right_id"]) for r in rows], users


def _expected(store: AuditStore, user_id: int) -> Counter:
    """The groups of the pairs closed for ``user_id``, read from every decision in force."""
    with store.session() as s:
        ds = s.query(StewardDecision).filter(StewardDecision.undone_at.is_(None)).all()
        pairs = {(p.left_id, p.right_id): p for p in s.query(DedupPair)}
        closed = {(d.left_id, d.right_id) for d in ds if d.decision != "skip" or d.user_id == user_id}
        out = Counter()
        for k in closed:
            g = GROUPING.group(pairs[k].score, pairs[k].decision, pairs[k].explanation)
            if g is not None:
                out[g] += 1
    return out


def _kept(store: AuditStore, user_id: int, version: str = VERSION) -> Counter:
    return Counter({json.dumps([g.band, g.decision, [int(x) for x in g.reaches], list(g.levels)], ensure_ascii=False,
                               separators=(",", ":")): g.n
                    for g in store.review.closed_counts("mpi", user_id, GROUPING, version)})


def _same(store: AuditStore, users: list[int], version: str = VERSION) -> None:
    for u in users:
        assert _kept(store, u, version) == _expected(store, u)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def made(request, tmp_path):
    url = request.getfixturevalue("pg_store_url") if request.param == "postgresql" else \
        f"sqlite:///{tmp_path / 'audit.db'}"
    store, pairs, users = _make(url)
    yield store, pairs, users
    store.close()


def test_the_kept_counts_equal_a_recount_after_every_kind_of_decision(made):
    store, pairs, users = made
    a, b, c, _ = users
    r = store.review
    r.decide("mpi", *pairs[0], "skip", user_id=a, user="s0")  # before the counts exist: the recount finds it
    _same(store, users)  # (the first read counts them)
    r.decide("mpi", *pairs[1], "merge", user_id=a, user="s0", survivor=pairs[1][0])
    r.decide("mpi", *pairs[2], "not_same", user_id=b, user="s1")
    r.decide("mpi", *pairs[3], "skip", user_id=a, user="s0")
    r.decide("mpi", *pairs[3], "skip", user_id=a, user="s0")  # twice: one pair
    r.decide("mpi", *pairs[3], "skip", user_id=b, user="s1")
    r.decide("mpi", *pairs[4], "skip", user_id=None, user="tool")  # closes it for nobody
    _same(store, users)
    merge = r.decide("mpi", *pairs[3], "merge", user_id=c, user="s2", survivor=pairs[3][1])  # over two skips
    _same(store, users)
    with pytest.raises(AlreadyDecided):
        r.decide("mpi", *pairs[3], "not_same", user_id=a, user="s0")
    _same(store, users)
    r.undo(merge.id, user_id=c, user="s2")  # the skips under it close the pair again for their stewards
    _same(store, users)
    skip = r.recent(a, 1)[0]
    r.undo(skip.id, user_id=a, user="s0")  # one of two skips undone: still skipped
    _same(store, users)
    r.undo(r.recent(a, 2)[1].id, user_id=a, user="s0")
    _same(store, users)
    # a band through its sample, accepted, undone as one; the system's merges above a threshold
    band = [p for _, p in r.queue("mpi", user_id=a, low=0.7, high=0.9, limit=500)]
    batch = r.start_batch("mpi", 0.7, 0.9, band, user_id=a, user="s0", least=1, seed=1)
    r.accept_batch(batch.id, {(p.left, p.right): p.left for p in band}, user_id=a, user="s0")
    _same(store, users)
    r.undo_batch(batch.id, user_id=a, user="s0")
    _same(store, users)
    r.auto_accept("mpi", 0.95, [p for _, p in r.queue("mpi", user_id=None, low=0.95, limit=500)])
    _same(store, users)
    # a recount from scratch agrees with what the decisions kept
    kept = {u: _kept(store, u) for u in users}
    assert r.recount("mpi", GROUPING, VERSION) == -1  # counted for this version already: nothing done
    assert r.recount("mpi", GROUPING, VERSION, force=True) > 0
    assert {u: _kept(store, u) for u in users} == kept
    # a new version of the pairs (a scan wrote some): recounted on the next read
    with store.session() as s:
        s.query(DedupPair).filter(DedupPair.left_id == pairs[2][0]).update({"score": 0.3})  # out of the bands
    _same(store, users, "v2")


def test_concurrent_decisions_keep_the_counts_right(made):
    """Stewards deciding the same pairs at once (merges, not-same and skips racing): one final decision
    a pair, and the counts equal a recount."""
    store, pairs, users = made
    store.review.closed_counts("mpi", users[0], GROUPING, VERSION)  # counted: every decision changes them now
    work = pairs[:40]
    errors: list = []

    def steward(k: int) -> None:
        rng = random.Random(k)
        for p in rng.sample(work, len(work)):
            d = rng.choice(["merge", "not_same", "skip"])
            try:
                store.review.decide("mpi", *p, d, user_id=users[k], user=f"s{k}", survivor=p[0])
            except AlreadyDecided:
                pass
            except ReviewError as e:  # a SQLite writer waiting beyond its busy time: told, nothing written
                errors.append(e)

    threads = [threading.Thread(target=steward, args=(k,), daemon=True) for k in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not errors
    with store.session() as s:
        finals = Counter((d.left_id, d.right_id) for d in s.query(StewardDecision)
                         .filter(StewardDecision.undone_at.is_(None), StewardDecision.decision != "skip"))
    assert finals and max(finals.values()) == 1
    _same(store, users)


@pytest.mark.postgres
def test_a_read_of_the_console_sends_no_begin_nor_commit(pg_store_url):
    """``AuditStore.rows`` (the console's reads: a queue page makes six) runs its one statement in
    autocommit: one round trip to the server instead of BEGIN, the statement and COMMIT."""
    from sqlalchemy import event

    store = AuditStore(pg_store_url)
    seen: list[bool] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _autocommit(conn, cursor, statement, parameters, context, executemany):
        seen.append(conn.connection.dbapi_connection.autocommit)

    store.review.recent(1, 10)
    store.review.pairs_version()
    with store.session() as s:  # a write's transaction is still one
        s.execute(insert(User), {"name": "w", "role": "steward", "active": True, "created_at": now()})
    assert seen == [True, True, False]
    store.close()
