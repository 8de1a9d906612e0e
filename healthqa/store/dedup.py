"""The audit store's duplicate-archive records: suggested pairs, clusters, steward decisions.

``store.dedup`` is the one place the scan's tables are read and written: the dedup pipeline, the
steward console and the reports ask it, and never write queries of their own. Steward decisions are
read here (what a run respects) and recorded and undone in ``store.review`` alone (``decide``,
``undo``: one path, with its audit log, for the console and tools alike). Plain data in and out
(DataFrames, dicts); archives are named by their archive number, as the steward sees them.
pandas loads with the first question answered by a frame: a report's counts (``summary``) need none.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import DateTime, Float, Integer, String, Text, bindparam, column, delete, insert, or_, select, table, text, true

from healthqa.clock import now

from .models import DedupCluster, DedupClusterMember, DedupPair, Run, StewardBatch, StewardDecision

if TYPE_CHECKING:
    import pandas as pd

    from .runs import RunContext
    from .store import AuditStore

DECISIONS = ("merge", "not_same", "skip")
DECISION_COLUMNS = ["left", "right", "decision", "user_id", "decided_at"]


class DedupRecords:
    """Queries on the dedup tables of one audit store."""

    def __init__(self, store: AuditStore):
        self._store = store

    # -- steward decisions -------------------------------------------------------------------
    def active_decisions(self, source: str, *, people_only: bool = True) -> pd.DataFrame:
        """The decisions in force (not undone), the latest per pair: columns left, right, decision,
        user_id, decided_at. The system's own merges above the auto-accept threshold are left out:
        they repeat the scan's matches, and the stewards' model learns from people only
        (``people_only`` False: those too, for counting what is decided)."""
        import pandas as pd

        auto = select(StewardBatch.id).where(StewardBatch.kind == "auto")
        mine = or_(StewardDecision.batch_id.is_(None), StewardDecision.batch_id.not_in(auto)) if people_only else true()
        with self._store.session() as s:
            rows = s.execute(select(StewardDecision).where(StewardDecision.source == source,
                                                           StewardDecision.undone_at.is_(None), mine)
                             .order_by(StewardDecision.decided_at, StewardDecision.id)).scalars().all()
            return pd.DataFrame([{"left": r.left_id, "right": r.right_id, "decision": r.decision,
                                  "user_id": r.user_id, "decided_at": r.decided_at} for r in rows],
                                columns=DECISION_COLUMNS).drop_duplicates(["left", "right"], keep="last")

    # -- what the runs found -------------------------------------------------------------------
    def last_model(self, source: str) -> dict | None:
        """The model the newest successful dedup run of ``source`` learned (as it stored it)."""
        with self._store.session() as s:
            runs = s.execute(select(Run.scope).where(Run.kind == "dedup", Run.status == "success")
                             .order_by(Run.id.desc())).scalars()
            for scope in runs:
                if (scope or {}).get("source") == source and scope.get("model"):
                    return scope["model"]
        return None

    def decisions_seen(self, source: str):
        """When the newest successful dedup run of ``source`` read the steward decisions (its start,
        for a run that did not say); None when there is no such run. A decision of that very instant
        counts as not yet seen."""
        with self._store.session() as s:
            for scope, started in s.execute(select(Run.scope, Run.started_at).where(
                    Run.kind == "dedup", Run.status == "success").order_by(Run.id.desc())):
                if (scope or {}).get("source") == source:
                    seen = scope.get("decisions_seen")
                    return datetime.fromisoformat(seen) if seen else started
        return None

    def decisions_changed(self, source: str, since) -> pd.DataFrame:
        """The pairs whose steward decision was made or undone at or after ``since``: columns left,
        right (once each)."""
        import pandas as pd

        if since is None:
            return pd.DataFrame(columns=["left", "right"])
        with self._store.session() as s:
            rows = s.execute(select(StewardDecision.left_id, StewardDecision.right_id).where(
                StewardDecision.source == source,
                or_(StewardDecision.decided_at >= since, StewardDecision.undone_at >= since))).all()
        return pd.DataFrame(rows, columns=["left", "right"]).drop_duplicates(ignore_index=True)

    def open_clusters(self, source: str) -> pd.DataFrame:
        """The stored clusters awaiting a steward (proposed, review), a row per member: columns
        cluster_id, status, survivor, archive_id."""
        import pandas as pd

        with self._store.session() as s:
            rows = _plain_rows(s, select(DedupClusterMember.cluster_id, DedupCluster.status, DedupCluster.survivor_id,
                                         DedupClusterMember.archive_id)
                               .join(DedupCluster, DedupCluster.id == DedupClusterMember.cluster_id)
                               .where(DedupCluster.source == source, DedupCluster.status.in_(["proposed", "review"])))
        return pd.DataFrame(rows, columns=["cluster_id", "status", "survivor", "archive_id"])

    def matches(self, source: str) -> pd.DataFrame:
        """The stored match pairs of ``source``: columns left, right."""
        import pandas as pd

        with self._store.session() as s:
            rows = _plain_rows(s, select(DedupPair.left_id, DedupPair.right_id).where(
                DedupPair.source == source, DedupPair.decision == "match"))
        return pd.DataFrame(rows, columns=["left", "right"])

    def survivors(self, source: str) -> dict[str, str]:
        """Archive number -> the survivor proposed for its stored cluster."""
        with self._store.session() as s:
            return dict(s.execute(select(DedupClusterMember.archive_id, DedupCluster.survivor_id)
                                  .join(DedupCluster, DedupCluster.id == DedupClusterMember.cluster_id)
                                  .where(DedupCluster.source == source)).all())

    def clusters(self, source: str, statuses: Iterable[str] = ("proposed", "review")) -> list[dict]:
        """Stored clusters: status, survivor, proposal and members (sorted), ordered by id."""
        with self._store.session() as s:
            found = s.execute(select(DedupCluster).where(DedupCluster.source == source,
                                                         DedupCluster.status.in_(list(statuses)))
                              .order_by(DedupCluster.id)).scalars().all()
            members: dict[int, list[str]] = {}
            for cid, aid in s.execute(select(DedupClusterMember.cluster_id, DedupClusterMember.archive_id)
                                      .where(DedupClusterMember.cluster_id.in_([c.id for c in found]))):
                members.setdefault(cid, []).append(aid)
            return [{"id": c.id, "run_id": c.run_id, "status": c.status, "survivor": c.survivor_id,
                     "proposal": c.proposal, "members": sorted(members.get(c.id, []))} for c in found]

    def pairs(self, source: str) -> pd.DataFrame:
        """Stored pairs: columns left, right, score, decision, run_id."""
        import pandas as pd

        with self._store.session() as s:
            rows = s.execute(select(DedupPair.left_id, DedupPair.right_id, DedupPair.score, DedupPair.decision,
                                    DedupPair.run_id).where(DedupPair.source == source)).all()
        return pd.DataFrame(rows, columns=["left", "right", "score", "decision", "run_id"])

    def decisions_between(self, start, end) -> dict[str, int]:
        """Steward decisions in force that were made in [start, end), by kind (merge, not_same, skip)."""
        with self._store.session() as s:
            rows = s.execute(select(StewardDecision.decision).where(
                StewardDecision.decided_at >= start, StewardDecision.decided_at < end,
                StewardDecision.undone_at.is_(None))).scalars().all()
        return {d: rows.count(d) for d in DECISIONS}

    def summary(self, source: str) -> dict[str, int]:
        """Counts for reports: pairs suggested (match) and to review, decisions in force (merged,
        rejected as not the same person), and suggestions no steward has decided yet (pending)."""
        with self._store.session() as s:  # plain rows, no frames: a report loads no pandas for these counts
            pairs = s.execute(select(DedupPair.left_id, DedupPair.right_id, DedupPair.decision)
                              .where(DedupPair.source == source)).all()
            latest = {(a, b): d for a, b, d in s.execute(  # the decision in force per pair: the latest not undone
                select(StewardDecision.left_id, StewardDecision.right_id, StewardDecision.decision)
                .where(StewardDecision.source == source, StewardDecision.undone_at.is_(None))
                .order_by(StewardDecision.decided_at, StewardDecision.id))}
        final = [d for d in latest.values() if d in ("merge", "not_same")]
        done = {pair for pair, d in latest.items() if d in ("merge", "not_same")}
        pending = sum((a, b) not in done and (b, a) not in done for a, b, d in pairs if d in ("match", "review"))
        return {"suggested": sum(d == "match" for *_, d in pairs), "review": sum(d == "review" for *_, d in pairs),
                "merged": final.count("merge"), "rejected": final.count("not_same"), "pending": pending}

    def save(self, run: RunContext, source: str, pairs: pd.DataFrame | list[dict], clusters: list[dict],
             redone: Iterable[str] | None = None, replaced_clusters: Iterable[int] | None = None,
             rescored: pd.DataFrame | None = None) -> None:
        """Keep a run's findings and finish the run, in one transaction: its pairs, clusters, model
        (stored with the run, in force once the run has succeeded) and watermark are all kept, or,
        when anything fails, none is and the earlier run's stay. ``pairs``: a frame (or dicts) left,
        right, score, decision, explanation (a dict, or the JSON text of one); ``clusters``: dicts
        status, survivor, proposal, members (archive numbers).

        A full run (``redone`` None) replaces every stored pair of the source; an incremental run
        replaces the pairs involving the archives it compared again or that left the MPI
        (``redone``), the pairs it scored again (``rescored``: columns left, right) and the pairs it
        found anew. Clusters awaiting a steward (proposed, review) are all replaced, or, for a night
        that made only the clusters it touched, those of ``replaced_clusters`` (ids).

        Written in bulk (a district's run keeps hundreds of thousands of pairs): multi-row INSERTs
        through the driver's executemany, COPY on PostgreSQL, cluster ids from INSERT … RETURNING;
        no ORM object per row."""
        import numpy as np
        import pandas as pd

        at, run_id = now(), run.id
        pairs = pd.DataFrame(pairs, columns=None if isinstance(pairs, pd.DataFrame) or pairs else PAIR_COLUMNS)
        pairs = pairs.reset_index(drop=True)
        if "explanation" not in pairs:
            pairs["explanation"] = None
        explanation = [e if e is None or isinstance(e, str) else json.dumps(e, ensure_ascii=False)
                       for e in pairs["explanation"]]
        rows = pd.DataFrame({"run_id": run_id, "source": source, "left_id": pairs["left"].astype(str),
                             "right_id": pairs["right"].astype(str), "score": pairs["score"].astype(float),
                             "decision": pairs["decision"].astype(str), "explanation": explanation,
                             "created_at": at}, index=range(len(pairs)))
        with self._store.session() as s:
            postgres = s.bind.dialect.name == "postgresql"
            if postgres:
                # two dedups of one source at once: the second waits for the first to commit, then
                # replaces what it stored (without the lock both would insert the same pairs)
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                          {"key": zlib.crc32(f"healthqa dedup {source}".encode())})
            if redone is None:
                s.execute(delete(DedupPair).where(DedupPair.source == source))
            else:
                redone = sorted(set(redone))
                for k in range(0, len(redone), 500):  # bounded IN lists
                    part = redone[k:k + 500]
                    s.execute(delete(DedupPair).where(DedupPair.source == source, or_(
                        DedupPair.left_id.in_(part), DedupPair.right_id.in_(part))))
                again = list(zip(rows["left_id"], rows["right_id"]))
                if rescored is not None:
                    again += list(zip(rescored["left"], rescored["right"]))
                if again:  # pairs found or scored anew that an earlier run stored: replaced (one executemany)
                    s.connection().execute(delete(DedupPair).where(DedupPair.source == source,
                                                                   DedupPair.left_id == bindparam("l"),
                                                                   DedupPair.right_id == bindparam("r")),
                                           [{"l": a, "r": b} for a, b in again])
            if replaced_clusters is None:
                old = select(DedupCluster.id).where(DedupCluster.source == source,
                                                    DedupCluster.status.in_(["proposed", "review"]))
                s.execute(delete(DedupClusterMember).where(DedupClusterMember.cluster_id.in_(old)))
                s.execute(delete(DedupCluster).where(DedupCluster.id.in_(old.scalar_subquery())))
            else:
                ids = sorted(set(replaced_clusters))
                for k in range(0, len(ids), 500):
                    some = ids[k:k + 500]
                    s.execute(delete(DedupClusterMember).where(DedupClusterMember.cluster_id.in_(some)))
                    s.execute(delete(DedupCluster).where(DedupCluster.id.in_(some)))
            _bulk(s, PAIRS_TABLE, rows, postgres)
            if clusters:
                ids = _cluster_ids(s, [{"run_id": run_id, "source": source, "status": c["status"],
                                        "survivor_id": c.get("survivor"), "proposal": c.get("proposal"),
                                        "created_at": at} for c in clusters])
                members = pd.DataFrame({"cluster_id": np.repeat(ids, [len(dict.fromkeys(c["members"])) for c in clusters]),
                                        "archive_id": [m for c in clusters for m in dict.fromkeys(c["members"])]})
                _bulk(s, MEMBERS_TABLE, members, postgres)
            self._store.runs.finish_in(s, run)
        run.finished = True


PAIR_COLUMNS = ["left", "right", "score", "decision", "explanation"]
# the tables as plain Core tables for bulk inserts: the explanation arrives as JSON text already
PAIRS_TABLE = table("dedup_pairs", column("run_id", Integer), column("source", String), column("left_id", String),
                    column("right_id", String), column("score", Float), column("decision", String),
                    column("explanation", Text), column("created_at", DateTime))
MEMBERS_TABLE = table("dedup_cluster_members", column("cluster_id", Integer), column("archive_id", String))
BATCH = 50_000


def _plain_rows(s, stmt) -> list[tuple]:
    """The rows of a query of text and integer columns as the driver's own tuples, on the session's
    connection: SQLAlchemy's Row objects, and pandas building a frame from them one by one, cost
    three times the query at a night's hundred thousand stored pairs and cluster members."""
    dialect = s.bind.dialect
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[k] for k in compiled.positiontup or []] if dialect.positional else compiled.params
    cur = s.connection().connection.driver_connection.cursor()
    try:
        cur.execute(str(compiled), params)
        return cur.fetchall()
    finally:
        cur.close()


def _bulk(s, tbl, rows: pd.DataFrame, postgres: bool) -> None:
    """Insert a frame's rows: COPY on PostgreSQL (psycopg), else executemany in batches."""
    if not len(rows):
        return
    cols = list(rows.columns)
    if postgres:  # psycopg 3: COPY on the session's own connection, inside its transaction
        cur = s.connection().connection.driver_connection.cursor()
        with cur:
            if hasattr(cur, "copy"):
                with cur.copy(f"COPY {tbl.name} ({', '.join(cols)}) FROM STDIN") as cp:
                    for row in rows.itertuples(index=False, name=None):
                        cp.write_row(row)
                return
    values = rows.astype(object).where(rows.notna(), None)
    if s.bind.dialect.name == "sqlite":  # the driver's executemany on tuples: SQLAlchemy's per-row work
        _sqlite_bulk(s, tbl, values)       # was most of the write (0.1 s instead of 1 s for 100,000 rows)
        return
    stmt = insert(tbl)
    for k in range(0, len(values), BATCH):
        part = values.iloc[k:k + BATCH]
        s.connection().execute(stmt, [dict(zip(cols, r)) for r in part.itertuples(index=False, name=None)])


def _sqlite_bulk(s, tbl, values: pd.DataFrame) -> None:
    """``values`` (None for NULL) inserted by the sqlite3 driver's own executemany, inside the session's
    transaction; each column's values as SQLAlchemy binds them (its type's bind processor: a
    DateTime is stored as the text SQLAlchemy writes and reads back)."""
    dialect = s.bind.dialect
    cols = list(values.columns)
    data = []
    for c in cols:
        v = values[c].tolist()
        proc = tbl.c[c].type._cached_bind_processor(dialect)
        data.append([proc(x) for x in v] if proc is not None else v)
    sql = f"INSERT INTO {tbl.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    s.connection().connection.driver_connection.executemany(sql, zip(*data))


def _cluster_ids(s, rows: list[dict]) -> list[int]:
    """Insert clusters, returning their ids in order (INSERT … RETURNING where the dialect keeps the
    order of its parameters, else one statement per cluster)."""
    if s.bind.dialect.insert_executemany_returning_sort_by_parameter_order:
        return list(s.scalars(insert(DedupCluster).returning(DedupCluster.id, sort_by_parameter_order=True), rows))
    return [s.execute(insert(DedupCluster).values(**r)).inserted_primary_key[0] for r in rows]
