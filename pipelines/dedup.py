"""Duplicate-archive screening as plain functions: read the archives, deduplicate, keep the results.

Full runs replace the source's suggested pairs and clusters (re-running is idempotent). Incremental
runs (``incremental=True``) match only archives created or changed since the last dedup run against
the whole index, with the model that run learned; their clusters are made the full run's way from
the stored matches and the night's (``engine.match_edges``), so a night with nothing new changes
nothing. Steward decisions are respected both ways: a pair marked "not the same person" is never
suggested again unless the decision is undone. The audit store's dedup records are read and written
through ``store.dedup`` only.

A run either stores everything or nothing: its pairs, clusters, model and watermark commit in one
transaction with the run's end. Degraded inputs (no archives, a spec field whose column is unmapped,
missing or empty) stop it before anything is computed, so the suggestions and the model a nightly
reuses stay as they were. The incremental index (``dedup/index.py``) follows the committed run.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from healthqa import canonical
from healthqa import standards as st
from healthqa.config import Config, Sampling, TableMap
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.dedup import engine, evaluate, index
from healthqa.dedup import spec as specs
from healthqa.dedup.merge import Merge, in_order
from healthqa.dedup.model import FSModel
from healthqa.errors import HealthqaError
from healthqa.store import AuditStore
from healthqa.store.runs import RunContext

WATERMARK = "dedup:updated_at"


@dataclass
class DedupRun:
    run_id: int | None
    source: str
    result: engine.DedupResult
    incremental: bool
    evaluation: dict | None = None

    def _header(self) -> dict:
        return {"run_id": self.run_id, "source": self.source, "incremental": self.incremental,
                "stats": dict(self.result.stats.items())}

    def _tail(self) -> dict:
        r = self.result
        doc = {"clusters": [r.members(c) for c in r.clusters if c.status == "proposed"],
               "clusters_to_review": [r.members(c) for c in r.clusters if c.status == "review"],
               "survivors": {r.keys[c.survivor]: [k for k in r.members(c) if k != r.keys[c.survivor]]
                             for c in r.clusters if c.status == "proposed" and c.survivor is not None},
               "model": r.model.describe()}
        if self.evaluation:
            doc["evaluation"] = self.evaluation
        return doc

    def _suggested(self) -> pd.DataFrame:
        r = self.result
        return r.pairs[r.pairs["decision"].isin(["match", "review"])]

    def as_json(self) -> dict:
        keep = self._suggested()
        pairs = [{"left": a, "right": b, "score": float(s), "decision": d, "explanation": json.loads(e)}
                 for a, b, s, d, e in zip(keep["left"], keep["right"], keep["score"], keep["decision"],
                                          self.result.explanations(keep))]
        return {**self._header(), "pairs": pairs, **self._tail()}

    def write_json(self, path: Path, chunk: int = 50_000) -> None:
        """The document ``as_json`` describes, streamed: pairs are written a chunk at a time from
        their columns, never held as a list of dicts."""
        keep = self._suggested()
        with Path(path).open("w", encoding="utf-8") as fh:
            head = json.dumps(self._header(), ensure_ascii=False, default=str)
            fh.write(head[:-1] + ', "pairs": [')
            for k in range(0, len(keep), chunk):
                part = keep.iloc[k:k + chunk]
                text = ('{"left": ' + part["left"].map(_js) + ', "right": ' + part["right"].map(_js)
                        + ', "score": ' + part["score"].map(float.__repr__) + ', "decision": "' + part["decision"]
                        + '", "explanation": ' + self.result.explanations(part) + "}")
                fh.write(("," if k else "") + "\n" + ",\n".join(text))
            fh.write("], " + json.dumps(self._tail(), ensure_ascii=False, default=str)[1:] + "\n")


def _js(v) -> str:
    return json.dumps(v, ensure_ascii=False)


def _org_levels(cfg: Config) -> dict[str, str]:
    src = cfg.source_of("organization")
    if src is None:
        return {}
    with open_source(cfg, src) as r:
        if "level" not in r.present_columns("organization"):
            return {}
        df = r.read_all("organization", Scope(sampling=Sampling(method="full")), columns=["org_code", "level"])
    return dict(zip(st.text(df["org_code"]), st.text(df["level"])))


class DedupInputError(HealthqaError):
    """The archives cannot be deduplicated as configured: none at all, or a spec field without values
    (a mapping typo would otherwise quietly replace good suggestions with poorer ones)."""


def _check_inputs(df: pd.DataFrame, spec: specs.Spec, source: str, tm: TableMap, physical: str) -> None:
    """Stop before anything is computed or stored when the inputs are degraded: an empty table, or
    a spec field whose column is not mapped, not found, or empty in every row. The stored
    suggestions and the model a nightly reuses stay as they were."""
    where = f"source {source}, table {spec.table} ({physical})"
    if df.empty:
        raise DedupInputError(f"查重表没有档案，已保留之前的结果 / {where}: no archives to deduplicate; "
                              "the stored suggestions are kept")
    bad = []
    for f in spec.fields:
        if f.column not in tm.columns:
            bad.append(f"{f.name} (column {f.column} is not mapped)")
        elif f.column not in df:
            bad.append(f"{f.name} (column {tm.physical(f.column)} not found)")
        elif _empty(df[f.column]):
            bad.append(f"{f.name} (column {tm.physical(f.column)} is empty in every row)")
    if bad:
        raise DedupInputError(f"查重字段无数据，未运行查重，已保留之前的结果 / {where}: dedup field "
                              f"{'; '.join(bad)}: fix sources.{source}.tables.{spec.table}.columns or the "
                              "comparison spec (dedup.spec); the stored suggestions and model are kept")


def _empty(s: pd.Series) -> bool:
    """No value in the column (NULL or blank): looked at a slice at a time, since one value will do."""
    s = s.dropna()
    return all(st.missing(s.iloc[k:k + 10_000]).all() for k in range(0, len(s), 10_000))


def _local_times(s: pd.Series, tz: str) -> pd.Series:
    """Update times as naive local times of the configured zone: times with an offset are converted,
    naive times are taken as local; what cannot be read is NaT."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns (later: raises) on mixed offsets; handled below
        try:
            t = pd.to_datetime(s, errors="coerce", format="mixed")
        except (ValueError, TypeError):
            t = pd.Series(s, dtype=object)
    if isinstance(t.dtype, pd.DatetimeTZDtype):
        return t.dt.tz_convert(tz).dt.tz_localize(None)
    if t.dtype != object:
        return t

    def one(v):
        try:
            v = pd.Timestamp(v)
        except (ValueError, TypeError):
            return pd.NaT
        return v.tz_convert(tz).tz_localize(None) if v is not pd.NaT and v.tzinfo else v

    return pd.to_datetime(t.map(one), errors="coerce")


def run_dedup(cfg: Config, store: AuditStore, source: str | None = None, spec_path: str | None = None,
              truth: str | Path | None = None, incremental: bool = False,
              progress: Callable[[str], None] | None = None, candidates: Callable | None = None) -> DedupRun:
    spec_path = spec_path or cfg.dedup.spec
    spec = specs.load(spec_path) if spec_path else specs.builtin()
    if cfg.dedup.thresholds:  # the site's thresholds outrank the spec's
        spec = spec.model_copy(update={"thresholds": specs.Thresholds(**cfg.dedup.thresholds.model_dump())})
    source = cfg.source_of(spec.table, source, required=True)
    folder = index.data_dir(cfg)  # before the work: an unusable data directory stops the run at once
    ident = index.identity(cfg, source, spec)
    index_file = index.path(folder, source, ident)
    index.remove_legacy(cfg, source)
    extra = [c for c in ("updated_at", "org_code", "status_code", "created_at") if c in canonical.table(spec.table).columns]
    with open_source(cfg, source) as r:
        df = r.read_all(spec.table, Scope(sampling=Sampling(method="full")), columns=spec.columns + extra)
        _check_inputs(df, spec, source, r.mapping(spec.table), r.physical_name(spec.table))
    decisions = store.dedup.active_decisions(source)
    only, prior_model, wm, idx, row_hashes = None, None, None, None, None
    updated = _local_times(df["updated_at"], cfg.timezone) if "updated_at" in df else None
    # archives without an update time are told changed by a hash of their values (the others by the time)
    hash_rows = updated.isna() if updated is not None else None
    why = "full run"
    if incremental and updated is not None:
        wm = store.watermarks.get(source, spec.table, WATERMARK)
        stored = store.dedup.last_model(source)
        if stored and stored.get("inputs") != ident:
            stored = None  # learned on another table, mapping, spec or store: nothing to build on
        prior_model = FSModel.from_dict(spec, stored) if stored else None
        if wm is not None and prior_model is not None:
            idx, why = index.load(index_file, ident, stored.get("index"))
            only = (updated > pd.Timestamp(wm)).to_numpy()
            # an archive without an update time is compared when it is new or its values changed
            # (all of them when there is no index to tell)
            undated = updated.isna().to_numpy()
            if idx is not None:
                row_hashes = index.row_hash(df, spec.columns, hash_rows)
                u = np.flatnonzero(undated)
                if len(u):
                    hashed = idx[idx[index.ROW] != 0]
                    seen = pd.MultiIndex.from_arrays([hashed["key"], hashed[index.ROW]])
                    mine = pd.MultiIndex.from_arrays([st.text(df[spec.key]).iloc[u], row_hashes.iloc[u]])
                    undated[u] = ~mine.isin(seen)
            only |= undated
        else:
            incremental = False  # nothing to build on yet: a full run
    earlier = store.dedup.matches(source) if incremental else None
    result = engine.deduplicate(df, spec, decisions=decisions, only=only, org_levels=_org_levels(cfg),
                                progress=progress, model=prior_model, earlier=earlier, candidates=candidates,
                                index=None if idx is None else idx.drop(columns=[index.ROW]))
    result.stats["index"] = why if incremental else "full run"
    token = uuid.uuid4().hex  # ties the index written below to this run's model
    with store.runs.start("dedup", {"source": source, "table": spec.table, "incremental": incremental,
                                    "spec": spec_path or "builtin",
                                    "model": {**result.fs_model.to_dict(), "inputs": ident, "index": token}}) as ctx:
        redone = None if only is None else st.text(df[spec.key])[only].tolist()
        if updated is not None and updated.notna().any():
            ctx.stage_watermark(source, spec.table, WATERMARK, updated.max().to_pydatetime())
        _persist(store, ctx, source, result, redone)  # pairs, clusters, model, watermark: one transaction
    try:  # the index follows the committed run; a run without one only makes the next one slower
        if row_hashes is None:
            row_hashes = index.row_hash(df, spec.columns, hash_rows)
        rows = row_hashes.to_numpy()[result.order]  # in the index's order
        index.save(index_file, result.prepared.assign(**{index.ROW: rows}), ident, token, ctx.id)
    except OSError as e:
        result.stats["index"] = f"not written: {e.strerror or e}"
    run = DedupRun(ctx.id, source, result, incremental)
    if truth:
        t = evaluate.read_truth(truth)
        run.evaluation = evaluate.evaluate(zip(result.matches["left"], result.matches["right"]),
                                           engine.cluster_keys(result), t)
    return run


def _persist(store: AuditStore, run: RunContext, source: str, result: engine.DedupResult,
             redone: list[str] | None) -> None:
    """Pairs worth keeping (suggested, or judged by a steward) and every cluster, by archive number.
    Where several rows share an archive number, the best-scored pair of them is kept. ``redone``:
    the archives an incremental run compared again (None: a full run)."""
    keep = result.kept()
    pairs = keep[["left", "right", "score", "decision"]].assign(explanation=result.explanations(keep))
    found = [{"status": c.status, "survivor": result.keys[c.survivor] if c.survivor is not None else None,
              "proposal": {"reason": c.reason, "fill_from": {f: result.keys[m] for f, m in c.proposal.items()}},
              "members": result.members(c)} for c in result.clusters]
    store.dedup.save(run, source, pairs, found, redone=redone)


def accepted_merges(store: AuditStore, source: str) -> list[Merge]:
    """The merges stewards decided, from the stored decisions (no scan is run): each retires one
    archive into the survivor its steward chose — for a decision made without a choice, the
    survivor the scan proposed for its cluster — with who decided and when, in an order an MPI can
    carry out (``merge.in_order``)."""
    return in_order([Merge(d.survivor, d.retired, d.decided_at.isoformat(), d.user)
                     for d in store.review.merges(source)])


def decide(store: AuditStore, source: str, left: str, right: str, decision: str, user: str | None = None,
           note: str | None = None) -> None:
    """Record a steward decision (the console's verbs; also used by tests and tools)."""
    store.dedup.decide(source, left, right, decision, user=user, note=note)


def undo(store: AuditStore, source: str, left: str, right: str, user: str | None = None) -> int:
    return store.dedup.undo(source, left, right, user=user)
