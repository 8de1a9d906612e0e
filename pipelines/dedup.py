"""Duplicate-archive screening as plain functions: read the archives, deduplicate, keep the results.

Full runs replace the source's suggested pairs and clusters (re-running is idempotent). Incremental
runs (``incremental=True``) match only archives created or changed since the last dedup run against
the whole index, with the model that run learned. Steward decisions are respected both ways: a pair
marked "not the same person" is never suggested again unless the decision is undone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import delete, select

from healthqa import canonical
from healthqa.config import Config, Sampling
from healthqa.errors import SourceError
from ..connectors.sampling import Scope
from ..connectors.sources import open_source
from healthqa.store import AuditStore
from healthqa.store.models import DedupCluster, DedupClusterMember, DedupPair, Run, StewardDecision
from healthqa.store.store import now
from ..dedup import engine, evaluate
from ..dedup import spec as specs
from ..dedup.cluster import choose_survivors, clusters
from ..dedup.merge import Merge
from ..dedup.model import FSModel
from healthqa import standards as st

WATERMARK = "dedup:updated_at"


@dataclass
class DedupRun:
    run_id: int | None
    source: str
    result: engine.DedupResult
    incremental: bool
    evaluation: dict | None = None

    def as_json(self) -> dict:
        r = self.result
        keep = r.pairs[r.pairs["decision"].isin(["match", "review"])]
        doc = {
            "run_id": self.run_id, "source": self.source, "incremental": self.incremental,
            "stats": {k: v for k, v in r.stats.items()},
            "pairs": [{"left": a, "right": b, "score": float(s), "decision": d, "explanation": r.explain(row)}
                      for (a, b, s, d), (_, row) in zip(keep[["left", "right", "score", "decision"]].itertuples(index=False),
                                                        keep.iterrows())],
            "clusters": [[r.keys[m] for m in c.members] for c in r.clusters if c.status == "proposed"],
            "clusters_to_review": [[r.keys[m] for m in c.members] for c in r.clusters if c.status == "review"],
            "survivors": {r.keys[c.survivor]: [r.keys[m] for m in c.members if m != c.survivor]
                          for c in r.clusters if c.status == "proposed" and c.survivor is not None},
            "model": r.model.describe(),
        }
        if self.evaluation:
            doc["evaluation"] = self.evaluation
        return doc


def active_decisions(store: AuditStore, source: str) -> pd.DataFrame:
    with store.session() as s:
        rows = s.execute(select(StewardDecision).where(StewardDecision.source == source,
                                                       StewardDecision.undone_at.is_(None))
                         .order_by(StewardDecision.decided_at)).scalars().all()
        return pd.DataFrame([{"left": r.left_id, "right": r.right_id, "decision": r.decision,
                              "user_id": r.user_id, "decided_at": r.decided_at} for r in rows],
                            columns=["left", "right", "decision", "user_id", "decided_at"]) \
            .drop_duplicates(["left", "right"], keep="last")


def _org_levels(cfg: Config) -> dict[str, str]:
    src = cfg.source_of("organization")
    if src is None:
        return {}
    with open_source(cfg, src) as r:
        if "level" not in r.present_columns("organization"):
            return {}
        df = r.read_all("organization", Scope(sampling=Sampling(method="full")), columns=["org_code", "level"])
    return dict(zip(st.text(df["org_code"]), st.text(df["level"])))


def _index_path(cfg: Config, source: str) -> Path:
    """Where the normalised archives of the last run are kept for the next incremental run: beside
    the configuration (the index holds personal data, as the audit store does)."""
    base = cfg.path.parent if cfg.path else Path.cwd()
    return base / f".healthqa-dedup-index-{source}.parquet"


def _last_model(store: AuditStore, source: str, spec: specs.Spec) -> FSModel | None:
    with store.session() as s:
        runs = s.execute(select(Run).where(Run.kind == "dedup", Run.status == "success").order_by(Run.id.desc())).scalars()
        for r in runs:
            if (r.scope or {}).get("source") == source and (r.scope or {}).get("model"):
                return FSModel.from_dict(spec, r.scope["model"])
    return None


def run_dedup(cfg: Config, store: AuditStore, source: str | None = None, spec_path: str | None = None,
              truth: str | Path | None = None, incremental: bool = False,
              progress: Callable[[str], None] | None = None) -> DedupRun:
    spec_path = spec_path or cfg.dedup.spec
    spec = specs.load(spec_path) if spec_path else specs.builtin()
    if cfg.dedup.thresholds:  # the site's thresholds outrank the spec's
        spec = spec.model_copy(update={"thresholds": specs.Thresholds(**cfg.dedup.thresholds.model_dump())})
    source = cfg.source_of(spec.table, source, required=True)
    extra = [c for c in ("updated_at", "org_code", "status_code", "created_at") if c in canonical.table(spec.table).columns]
    with open_source(cfg, source) as r:
        df = r.read_all(spec.table, Scope(sampling=Sampling(method="full")), columns=spec.columns + extra)
    decisions = active_decisions(store, source)
    only, prior_model, wm = None, None, None
    updated = pd.to_datetime(df["updated_at"], errors="coerce", format="mixed") if "updated_at" in df else None
    if incremental and updated is not None:
        wm = store.watermarks.get(source, spec.table, WATERMARK)
        prior_model = _last_model(store, source, spec)
        if wm is not None and prior_model is not None:
            only = (updated > pd.Timestamp(wm)).to_numpy()
        else:
            incremental = False  # nothing to build on yet: a full run
    index_file = _index_path(cfg, source)
    index = pd.read_parquet(index_file) if incremental and index_file.exists() else None
    result = engine.deduplicate(df, spec, decisions=decisions, only=only, org_levels=_org_levels(cfg),
                                progress=progress, model=prior_model, index=index)
    result.prepared.to_parquet(index_file, index=False)
    if incremental:
        _recluster_with_stored(store, source, result)
    with store.runs.start("dedup", {"source": source, "table": spec.table, "incremental": incremental,
                                    "spec": spec_path or "builtin", "model": result.fs_model.to_dict()}) as ctx:
        _persist(store, ctx.id, source, result, incremental)
        if updated is not None and updated.notna().any():
            ctx.stage_watermark(source, spec.table, WATERMARK, updated.max().to_pydatetime())
    run = DedupRun(ctx.id, source, result, incremental)
    if truth:
        t = evaluate.read_truth(truth)
        run.evaluation = evaluate.evaluate(zip(result.matches["left"], result.matches["right"]),
                                           engine.cluster_keys(result), t)
    return run


def _recluster_with_stored(store: AuditStore, source: str, result: engine.DedupResult) -> None:
    """An incremental run's clusters: the stored matches of earlier runs plus this run's."""
    with store.session() as s:
        stored = s.execute(select(DedupPair.left_id, DedupPair.right_id).where(
            DedupPair.source == source, DedupPair.decision == "match")).all()
    pos = {k: n for n, k in enumerate(result.keys)}
    m = result.matches
    edges = [(pos[a], pos[b]) for a, b in stored if a in pos and b in pos] + list(zip(m["i"], m["j"]))
    if not edges:
        return
    i, j = (np.array(x) for x in zip(*edges))
    result.clusters = clusters(len(result.keys), i, j, result.valid_id, result.cannot_link)
    choose_survivors(result.clusters, result.records, result.valid_id)
    result.stats["clusters"] = len(result.clusters)


def _persist(store: AuditStore, run_id: int, source: str, result: engine.DedupResult, incremental: bool) -> None:
    keep = result.pairs[result.pairs["decision"].isin(["match", "review"]) | result.pairs.get("steward", pd.Series(dtype=object)).notna()]
    at = now()
    with store.session() as s:
        if not incremental:  # a full run replaces what it suggested before
            s.execute(delete(DedupPair).where(DedupPair.source == source))
        else:
            pairs = list(zip(keep["left"], keep["right"]))
            for a, b in pairs:
                s.execute(delete(DedupPair).where(DedupPair.source == source, DedupPair.left_id == a,
                                                  DedupPair.right_id == b))
        s.add_all([DedupPair(run_id=run_id, source=source, left_id=a, right_id=b, score=float(sc), decision=d,
                             explanation=result.explain(row), created_at=at)
                   for (a, b, sc, d), (_, row) in zip(keep[["left", "right", "score", "decision"]].itertuples(index=False),
                                                      keep.iterrows())])
        old = s.execute(select(DedupCluster.id).where(DedupCluster.source == source,
                                                      DedupCluster.status.in_(["proposed", "review"]))).scalars().all()
        if old:
            s.execute(delete(DedupClusterMember).where(DedupClusterMember.cluster_id.in_(old)))
            s.execute(delete(DedupCluster).where(DedupCluster.id.in_(old)))
        for c in result.clusters:
            row = DedupCluster(run_id=run_id, source=source, status=c.status,
                               survivor_id=result.keys[c.survivor] if c.survivor is not None else None,
                               proposal={"reason": c.reason,
                                         "fill_from": {f: result.keys[m] for f, m in c.proposal.items()}},
                               created_at=at)
            s.add(row)
            s.flush()
            s.add_all([DedupClusterMember(cluster_id=row.id, archive_id=result.keys[m]) for m in c.members])


def accepted_merges(store: AuditStore, source: str) -> list[Merge]:
    """Merges the steward accepted: each cluster of 'merge' decisions retires into its survivor
    (the survivor the last dedup run proposed for it, else the first archive decided)."""
    d = active_decisions(store, source)
    d = d[d["decision"] == "merge"]
    if d.empty:
        return []
    with store.session() as s:
        survivors = dict(s.execute(select(DedupClusterMember.archive_id, DedupCluster.survivor_id)
                                   .join(DedupCluster, DedupCluster.id == DedupClusterMember.cluster_id)
                                   .where(DedupCluster.source == source)).all())
    keys = sorted(set(d["left"]) | set(d["right"]))
    pos = {k: n for n, k in enumerate(keys)}
    i = np.array([pos[a] for a in d["left"]])
    j = np.array([pos[b] for b in d["right"]])
    out = []
    for c in clusters(len(keys), i, j, None):
        members = [keys[m] for m in c.members]
        survivor = next((survivors[m] for m in members if survivors.get(m) in members), members[0])
        stamp = d["decided_at"].max()
        out += [Merge(survivor, m, decided_at=str(stamp)) for m in members if m != survivor]
    return out


def decide(store: AuditStore, source: str, left: str, right: str, decision: str, user: str | None = None,
           note: str | None = None) -> None:
    """Record a steward decision (the console's verbs; also used by tests and tools)."""
    from healthqa.store.models import AuditLog

    if decision not in ("merge", "not_same", "skip"):
        raise ValueError(f"decision must be merge, not_same or skip, not {decision!r}")
    a, b = sorted((left, right))
    with store.session() as s:
        s.add(StewardDecision(source=source, left_id=a, right_id=b, decision=decision, note=note, decided_at=now()))
        s.add(AuditLog(at=now(), user_name=user, action=f"steward_{decision}", subject=f"{a}|{b}",
                       detail={"source": source}))


def undo(store: AuditStore, source: str, left: str, right: str, user: str | None = None) -> int:
    from healthqa.store.models import AuditLog

    a, b = sorted((left, right))
    with store.session() as s:
        rows = s.execute(select(StewardDecision).where(
            StewardDecision.source == source, StewardDecision.left_id == a, StewardDecision.right_id == b,
            StewardDecision.undone_at.is_(None))).scalars().all()
        for r in rows:
            r.undone_at = now()
        s.add(AuditLog(at=now(), user_name=user, action="steward_undo", subject=f"{a}|{b}", detail={"source": source}))
        return len(rows)

