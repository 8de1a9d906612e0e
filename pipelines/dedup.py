"""Duplicate-archive screening as plain functions: read the archives, deduplicate, keep the results.

Full runs replace the source's suggested pairs and clusters (re-running is idempotent). Incremental
runs (``incremental=True``) match only archives created or changed since the last dedup run against
the whole index, with the model that run learned; their clusters are made the full run's way from
the stored matches and the night's (``engine.match_edges``), so a night with nothing new changes
nothing. Steward decisions are respected both ways: a pair marked "not the same person" is never
suggested again unless the decision is undone. The audit store's dedup records are read and written
through ``store.dedup`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from healthqa import canonical
from healthqa import standards as st
from healthqa.config import Config, Sampling
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.dedup import engine, evaluate
from healthqa.dedup import spec as specs
from healthqa.dedup.cluster import clusters
from healthqa.dedup.merge import Merge
from healthqa.dedup.model import FSModel
from healthqa.store import AuditStore

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
            "stats": dict(r.stats.items()),
            "pairs": [{"left": a, "right": b, "score": float(s), "decision": d, "explanation": r.explain(row)}
                      for (a, b, s, d), (_, row) in zip(keep[["left", "right", "score", "decision"]].itertuples(index=False),
                                                        keep.iterrows())],
            "clusters": [r.members(c) for c in r.clusters if c.status == "proposed"],
            "clusters_to_review": [r.members(c) for c in r.clusters if c.status == "review"],
            "survivors": {r.keys[c.survivor]: [k for k in r.members(c) if k != r.keys[c.survivor]]
                          for c in r.clusters if c.status == "proposed" and c.survivor is not None},
            "model": r.model.describe(),
        }
        if self.evaluation:
            doc["evaluation"] = self.evaluation
        return doc


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
    decisions = store.dedup.active_decisions(source)
    only, prior_model, wm = None, None, None
    updated = pd.to_datetime(df["updated_at"], errors="coerce", format="mixed") if "updated_at" in df else None
    if incremental and updated is not None:
        wm = store.watermarks.get(source, spec.table, WATERMARK)
        stored = store.dedup.last_model(source)
        prior_model = FSModel.from_dict(spec, stored) if stored else None
        if wm is not None and prior_model is not None:
            only = (updated > pd.Timestamp(wm)).to_numpy()
        else:
            incremental = False  # nothing to build on yet: a full run
    index_file = _index_path(cfg, source)
    index = pd.read_parquet(index_file) if incremental and index_file.exists() else None
    earlier = store.dedup.matches(source) if incremental else None
    result = engine.deduplicate(df, spec, decisions=decisions, only=only, org_levels=_org_levels(cfg),
                                progress=progress, model=prior_model, index=index, earlier=earlier)
    result.prepared.to_parquet(index_file, index=False)
    with store.runs.start("dedup", {"source": source, "table": spec.table, "incremental": incremental,
                                    "spec": spec_path or "builtin", "model": result.fs_model.to_dict()}) as ctx:
        redone = None if only is None else st.text(df[spec.key])[only].tolist()
        _persist(store, ctx.id, source, result, redone)
        if updated is not None and updated.notna().any():
            ctx.stage_watermark(source, spec.table, WATERMARK, updated.max().to_pydatetime())
    run = DedupRun(ctx.id, source, result, incremental)
    if truth:
        t = evaluate.read_truth(truth)
        run.evaluation = evaluate.evaluate(zip(result.matches["left"], result.matches["right"]),
                                           engine.cluster_keys(result), t)
    return run


def _persist(store: AuditStore, run_id: int, source: str, result: engine.DedupResult,
             redone: list[str] | None) -> None:
    """Pairs worth keeping (suggested, or judged by a steward) and every cluster, by archive number.
    Where several rows share an archive number, the best-scored pair of them is kept. ``redone``:
    the archives an incremental run compared again (None: a full run)."""
    steward = result.pairs.get("steward", pd.Series(dtype=object, index=result.pairs.index))
    keep = result.pairs[result.pairs["decision"].isin(["match", "review"]) | steward.notna()]
    keep = keep.sort_values("score", ascending=False, kind="stable").drop_duplicates(["left", "right"])
    pairs = [{"left": a, "right": b, "score": float(sc), "decision": d, "explanation": result.explain(row)}
             for (a, b, sc, d), (_, row) in zip(keep[["left", "right", "score", "decision"]].itertuples(index=False),
                                                keep.iterrows())]
    found = [{"status": c.status, "survivor": result.keys[c.survivor] if c.survivor is not None else None,
              "proposal": {"reason": c.reason, "fill_from": {f: result.keys[m] for f, m in c.proposal.items()}},
              "members": result.members(c)} for c in result.clusters]
    store.dedup.save(run_id, source, pairs, found, redone=redone)


def accepted_merges(store: AuditStore, source: str) -> list[Merge]:
    """Merges the steward accepted: each cluster of 'merge' decisions retires into its survivor
    (the survivor the last dedup run proposed for it, else the first archive decided)."""
    d = store.dedup.active_decisions(source)
    d = d[d["decision"] == "merge"]
    if d.empty:
        return []
    survivors = store.dedup.survivors(source)
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
    store.dedup.decide(source, left, right, decision, user=user, note=note)


def undo(store: AuditStore, source: str, left: str, right: str, user: str | None = None) -> int:
    return store.dedup.undo(source, left, right, user=user)
