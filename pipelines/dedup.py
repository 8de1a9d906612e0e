"""Duplicate-archive screening as plain functions: read the archives, deduplicate, keep the results.

Full runs replace the source's suggested pairs and clusters (re-running is idempotent). Incremental
runs (``incremental=True``) read only the archives created, changed or removed since the last dedup
run (``_read_night``), match them against the index with the model that run learned and make again
only the clusters they touched (``dedup/night.py``), so a night with nothing new changes nothing;
without a usable index they read every archive and make every cluster again (``_whole``), the same
way. Steward decisions are respected both ways: a pair marked "not the same person" is never
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
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from healthqa import canonical
from healthqa import standards as st
from healthqa.clock import now
from healthqa.config import Config, Sampling, TableMap
from healthqa.connectors.readers import KEY_BATCH
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import open_source
from healthqa.dedup import engine, evaluate, guards, index
from healthqa.dedup import spec as specs
from healthqa.dedup.cluster import survivor_fields
from healthqa.dedup.deduplicator import CandidateMaker, Deduplicator
from healthqa.dedup.model import FSModel
from healthqa.dedup.night import NightResult, Stored, Tonight
from healthqa.dedup.normalise import unreadable_times, update_times
from healthqa.errors import HealthqaError, SourceError
from healthqa.expectations.references import SharedReads
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
        found = r.cluster_docs()
        doc = {"clusters": [c["members"] for c in found if c["status"] == "proposed"],
               "clusters_to_review": [c["members"] for c in found if c["status"] == "review"],
               "survivors": {c["survivor"]: [k for k in c["members"] if k != c["survivor"]]
                             for c in found if c["status"] == "proposed" and c["survivor"] is not None},
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


def _org_levels(cfg: Config, shared: SharedReads | None = None) -> tuple[dict[str, str], str | None]:
    """The register's level of each institution (a cluster's survivor is preferably an archive of a
    higher-level institution) and, when the levels cannot be had, what the scan did without them:
    the register's store down must not stop the duplicate scan of the MPI, only that preference.
    ``shared``: the night's reads (the register read once a night)."""
    src = cfg.source_of("organization")
    if src is None:
        return {}, None
    try:
        if shared is not None:
            df = shared.whole(cfg, src, "organization", ["org_code", "level"])
            if "level" not in df.columns:
                return {}, None
        else:
            with open_source(cfg, src) as r:
                if "level" not in r.present_columns("organization"):
                    return {}, None
                df = r.read_all("organization", Scope(sampling=Sampling(method="full")), columns=["org_code", "level"])
    except SourceError as e:
        return {}, (f"未用机构等级选择保留档案 survivors chosen without institution levels "
                    f"({e.fault})")
    return dict(zip(st.text(df["org_code"]), st.text(df["level"]))), None


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


def run_dedup(cfg: Config, store: AuditStore, source: str | None = None, spec_path: str | None = None,
              truth: str | Path | None = None, incremental: bool = False,
              progress: Callable[[str], None] | None = None, candidates: CandidateMaker | None = None,
              shared: SharedReads | None = None) -> DedupRun:
    spec_path = spec_path or cfg.dedup.spec
    spec = specs.load(spec_path) if spec_path else specs.builtin()
    if cfg.dedup.thresholds:  # the site's thresholds outrank the spec's
        spec = spec.model_copy(update={"thresholds": specs.Thresholds(**cfg.dedup.thresholds.model_dump())})
    source = cfg.source_of(spec.table, source, required=True)
    folder = index.data_dir(cfg)  # before the work: an unusable data directory stops the run at once
    ident = index.identity(cfg, source, spec)
    index_dir = index.path(folder, source, ident)
    index.remove_legacy(cfg, folder, source)
    extra = [c for c in ("updated_at", "org_code", "status_code", "created_at") if c in canonical.table(spec.table).columns]
    columns = spec.columns + extra
    seen = now()  # the decisions made from this moment on count as changed for the next night
    cap = pd.Timestamp(seen)  # update times after the run's start are taken as of it (``_capped``)
    cap = cap.tz_convert(cfg.timezone).tz_localize(None) if cap.tzinfo else cap
    decisions = store.dedup.active_decisions(source)
    prior_model, wm, idx, why, stored, foreign = None, None, None, "full run", None, False
    if incremental:
        wm = store.watermarks.get(source, spec.table, WATERMARK)
        stored = store.dedup.last_model(source)
        if stored and stored.get("inputs") != ident:
            stored, foreign = None, True  # learned on another table, mapping, spec or store: nothing to build on
        prior_model = FSModel.from_dict(spec, stored) if stored else None
        if wm is None or prior_model is None:
            incremental = False  # nothing to build on yet: a full run
    with open_source(cfg, source) as r:
        dated = "updated_at" in r.present_columns(spec.table)
        if incremental and dated:
            idx, why = index.load(index_dir, ident, stored.get("index"))
        if idx is not None:
            _check_inputs(_probe(r, spec), spec, source, r.mapping(spec.table), r.physical_name(spec.table))
            night = _read_night(r, spec, columns, idx, pd.Timestamp(wm), cfg.timezone, cap)
        else:
            df = r.read_all(spec.table, Scope(sampling=Sampling(method="full")), columns=columns)
            _check_inputs(df, spec, source, r.mapping(spec.table), r.physical_name(spec.table))
    levels, without_levels = _org_levels(cfg, shared)
    dd = Deduplicator(spec, model=prior_model, decisions=decisions, org_levels=levels, progress=progress,
                      candidates=candidates)
    if idx is not None:
        stored_state = Stored(store.dedup.matches(source), store.dedup.open_clusters(source),
                              store.dedup.decisions_changed(source, store.dedup.decisions_seen(source)))
        result: engine.DedupResult = dd.night.screen(night, idx, stored_state)
        updated, row_hashes, redone = night.updated, night.row_hashes, sorted(night.keys | night.gone)
        result.stats.update(compared=len(night.keys), removed=len(night.gone), **night.times)
    else:
        result, updated, row_hashes, redone, times = _whole(df, dd, columns, wm, incremental, cfg, store, source,
                                                            cap)
        result.stats.update(times)
    if without_levels:
        result.stats["institution_levels"] = without_levels
    result.stats["index"] = why if incremental else "full run"
    if idx is None and dated and (foreign or stored):  # asked to read the night, reading the whole MPI
        result.stats["index_note"] = whole_mpi_note(why, foreign, stored)
    token = uuid.uuid4().hex  # ties the index written below to this run's model
    with store.runs.start("dedup", {"source": source, "table": spec.table, "incremental": incremental,
                                    "spec": spec_path or "builtin", "decisions_seen": seen.isoformat(),
                                    "model": {**dd.fs_model.to_dict(), "inputs": ident, "index": token}}) as ctx:
        if updated is not None and updated.notna().any():
            mark = updated.max().to_pydatetime()
            if wm is None or mark > wm:
                ctx.stage_watermark(source, spec.table, WATERMARK, mark)
        _persist(store, ctx, source, result, redone)  # pairs, clusters, model, watermark: one transaction
    try:  # the index follows the committed run; a run without one only makes the next one slower
        frame = result.prepared.drop(columns=[c for c in result.prepared if c.endswith("__tf")])
        for k in index.TRAITS:  # added to that copy in place (``assign`` would copy it whole again)
            frame[index.TRAITS[k]] = result.traits[k].to_numpy()
        frame[index.ROW] = row_hashes.to_numpy()[result.order]  # in the index's order
        if idx is not None:
            result.stats["index_write"] = index.append(idx, frame, sorted(night.gone), ident, token, ctx.id)
        else:
            index.save(index_dir, frame, survivor_fields(df), ident, token, ctx.id)
    except OSError as e:  # a full disk: the run's results stand, the next night reads the whole MPI
        result.stats["index"] = f"not written: {e.strerror or e}"
        result.stats["index_error"] = (f"重复档案索引未能写入，下次将读取整个主索引 the duplicate index could not be "
                                       f"written ({e.strerror or e}): the next night reads the whole MPI")
    if cfg.dedup.auto_accept_above is not None:
        result.stats.update(_auto_accept(store, source, spec, cfg.dedup.auto_accept_above))
    _note(store, ctx.id, result.stats)
    run = DedupRun(ctx.id, source, result, incremental)
    if truth:
        t = evaluate.read_truth(truth)
        run.evaluation = evaluate.evaluate(zip(result.matches["left"], result.matches["right"]),
                                           engine.cluster_keys(result), t)
    return run


def _auto_accept(store: AuditStore, source: str, spec, threshold: float) -> dict:
    """The open pairs the scan matched at or above ``threshold`` that no guard held back, merged by
    "system" as one batch (``dedup.auto_accept_above``; off by default)."""
    pairs = [p for p in store.review.band(source, threshold, 1.0, user_id=None)
             if p.decision == "match" and guards.held_back(spec, p.score, p.explanation) is None]
    store.review.auto_accept(source, threshold, pairs)
    return {"auto_accepted": len(pairs), "auto_accept_above": threshold}


def _whole(df: pd.DataFrame, dd: Deduplicator, columns: list[str], wm, incremental: bool, cfg: Config,
           store: AuditStore, source: str, start: pd.Timestamp):
    """Every archive read and normalised: a full run, or a night without a usable index (the new
    and changed archives compared, undated ones all of them, against the rest)."""
    only, times = None, {}
    updated = None
    if "updated_at" in df:
        updated, future, times = _capped(df["updated_at"], cfg.timezone, start)
    # archives without an update time, or with one after the run's start, are told changed by a hash
    # of their values (the others by the time)
    hash_rows = (updated.isna() | future) if updated is not None else None
    if incremental and updated is not None:
        only = ((updated > pd.Timestamp(wm)) | updated.isna()).to_numpy()
    elif incremental:
        only = np.ones(len(df), dtype=bool)
    earlier = store.dedup.matches(source) if incremental else None
    result = dd.deduplicate(df, only=only, earlier=earlier)
    redone = None
    if only is not None:  # and the archives stored pairs name that have left the MPI
        keys = st.text(df[dd.spec.key])
        stored = store.dedup.pairs(source)
        redone = sorted(set(keys[only]) | (set(stored["left"]) | set(stored["right"])) - set(keys))
    return result, updated, index.row_hash(df, columns, hash_rows), redone, times


def _capped(raw: pd.Series, tz: str, start: pd.Timestamp) -> tuple[pd.Series, pd.Series, dict]:
    """Update times as local times, those after the run's start capped at it (a clock set wrong at
    a clinic is not a change every night: such an archive is told changed by its values, as an
    undated one), which ones were capped, and the counts: capped, and unreadable (``0000-00-00``)."""
    updated = update_times(raw, tz)
    future = (updated > start).fillna(False)
    counts = {"updated_at_future": int(future.sum()), "updated_at_unreadable": unreadable_times(raw, updated)}
    return updated.mask(future, start), future, {k: v for k, v in counts.items() if v}


def whole_mpi_note(why: str, foreign: bool, stored: dict | None) -> str:
    """Why a night asked to screen only new and changed archives reads the whole MPI (said on the
    terminal and in the run, never silently: on a large MPI it is minutes instead of seconds)."""
    if foreign:
        reason = ("上次的模型和索引属于其他数据源、映射、规格或稽核库 the last model and index belong to another "
                  "source, mapping, spec or audit store")
    elif stored and stored.get("index_error"):
        reason = f"上次运行未能写入索引 the last run could not write its index ({stored['index_error']})"
    else:
        reason = {"missing": "索引不存在 the index is missing",
                  "damaged": "索引已损坏 the index is damaged",
                  "another source": "索引属于其他配置 the index is another configuration's",
                  "stale": "索引与稽核库不符（稽核库或索引从副本恢复？）the index does not match the audit store "
                           "(a store or index restored from a copy?)",
                  "full run": "没有上次的水位线 no watermark of an earlier run"}.get(why, why)
    return f"读取整个主索引 reading the whole MPI: {reason}"


def notes(stats: dict) -> list[str]:
    """What a duplicate scan's counts cannot say, in words (the terminal's and the run's): why it
    read the whole MPI, an index it could not write, update times capped or unreadable."""
    out = [stats[k] for k in ("index_note", "index_error") if stats.get(k)]
    if stats.get("updated_at_future"):
        out.append(f"{stats['updated_at_future']:,} 份档案更新时间晚于运行开始，按运行开始计 archive(s) updated "
                   "after the run's start, taken as of the run's start")
    if stats.get("updated_at_unreadable"):
        out.append(f"{stats['updated_at_unreadable']:,} 个更新时间无法识别，按无时间处理 update time(s) unreadable "
                   "(e.g. 0000-00-00), taken as none")
    again = stats.get("rescored_matches", 0) + stats.get("rescored_review", 0)
    if again:  # not new suggestions: the pairs a steward decided or undid, scored again
        new_m = stats["matches"] - stats["rescored_matches"]
        new_r = stats["review"] - stats["rescored_review"]
        out.append(f"新匹配 {new_m:,} 对、新待审核 {new_r:,} 对；另有 {again:,} 对是数据管理员处理后重新评分的"
                   f"（匹配 {stats['rescored_matches']:,}、待审核 {stats['rescored_review']:,}），不是新发现 — "
                   f"{new_m:,} new match(es), {new_r:,} new to review; {again:,} pair(s) re-scored after "
                   "steward decisions, not new")
    if stats.get("auto_accepted"):
        out.append(f"{stats['auto_accepted']:,} 对得分 ≥ {stats['auto_accept_above']} 的档案对由系统自动合并 "
                   f"(system), 可在控制台撤销前导出核对 — merged by the system above the configured threshold")
    return out


def _note(store: AuditStore, run_id: int, stats: dict) -> None:
    """``notes`` on the run (``healthqa runs``); an index not written is kept with its model, so
    that the next night says why it reads the whole MPI."""
    said = notes(stats)
    if not said:
        return
    scope = None
    if stats.get("index_error"):
        run = store.runs.get(run_id)
        model = (run.scope or {}).get("model") if run else None
        scope = {"model": {**model, "index_error": stats["index"].removeprefix("not written: ")}} if model else None
    with suppress(Exception):  # the same full disk may refuse this too: the terminal still says it
        store.runs.note(run_id, "; ".join(said), scope=scope)


@dataclass
class _Night(Tonight):
    """The night's archives (``Tonight``), with what the run keeps of them."""

    updated: pd.Series  # the rows' update times (local)
    row_hashes: pd.Series  # the undated rows' value hashes (0 for the others)
    keys: set[str]  # the archive numbers of ``rows``
    times: dict  # counts of update times capped at the run's start and unreadable (``_capped``)


def _probe(r, spec: specs.Spec) -> pd.DataFrame:
    """Enough archives to tell that the table has some and that every spec field has a value
    somewhere (``_check_inputs``): the first rows, and only when a field is empty in all of them,
    that field's column through the table until a value shows."""
    cols = [f.column for f in spec.fields]
    first = r.read_all(spec.table, Scope(sampling=Sampling(method="full", rows=1000)), columns=spec.columns)
    empty = [c for c in dict.fromkeys(cols) if c in first and _empty(first[c])]
    if first.empty or not empty:
        return first
    parts = [first]
    for c in empty:
        for chunk in r.read(spec.table, Scope(sampling=Sampling(method="full")), columns=[c]):
            if not _empty(chunk[c]):
                parts.append(chunk[~st.missing(chunk[c])].head(1))
                break
    return pd.concat(parts, ignore_index=True)


def _read_night(r, spec: specs.Spec, columns: list[str], idx: index.Index, wm: pd.Timestamp, tz: str,
                start: pd.Timestamp) -> _Night:
    """The archives a night compares again, read without reading the MPI whole: the rows updated
    after the watermark or without an update time (the filter is the source's own SQL), every row
    of the archive numbers the index lacks or holds another number of rows of (from a read of the
    table's archive numbers alone), and of those sharing a number with a row read. An undated row
    counts as changed when its values are not those the index holds for its number."""
    key = spec.key
    keys = st.text(r.keys(spec.table))
    rows = r.read_all(spec.table, Scope(sampling=Sampling(method="incremental", time_column="updated_at"),
                                        watermark=wm.to_pydatetime(), undated=True), columns=columns)
    new, gone, recount, many = idx.differences(keys)
    nk = st.text(rows[key]) if len(rows) else pd.Series([], dtype=object)
    read = nk.value_counts()
    fetch = ((new | recount) - set(nk)) | {k for k, n in read.items() if many.get(k, 1) > n}
    if fetch:
        wanted = sorted(fetch)
        more = pd.concat([r.fetch(spec.table, wanted[k:k + KEY_BATCH], columns=columns)
                          for k in range(0, len(wanted), KEY_BATCH)], ignore_index=True)
        rows = pd.concat([rows[~nk.isin(fetch).to_numpy()], more], ignore_index=True) if len(rows) else more
        nk = st.text(rows[key])
    rows = rows.reset_index(drop=True)
    nk = nk.reset_index(drop=True)
    updated, future, times = _capped(rows["updated_at"], tz, start) if len(rows) else \
        (pd.Series([], dtype="datetime64[ns]"), pd.Series([], dtype=bool), {})
    undated = updated.isna() | future  # a time after the run's start tells nothing: the values do
    hashes = index.row_hash(rows, columns, undated)
    changed = ((updated > wm) & ~future) | nk.isin(new | recount | fetch)
    maybe = undated & ~changed
    if maybe.any():  # unchanged when the index holds this row's values under its number
        held = idx.take(idx.having("key", sorted(set(nk[maybe]))), ["key", index.ROW])
        seen = pd.MultiIndex.from_arrays([held["key"], held[index.ROW].astype(np.uint64)])
        changed |= maybe & ~pd.MultiIndex.from_arrays([nk, hashes.astype(np.uint64)]).isin(seen)
    redo = nk.isin(set(nk[changed])).to_numpy()
    return _Night(rows[redo].reset_index(drop=True), gone, len(keys), updated[redo].reset_index(drop=True),
                  hashes[redo].reset_index(drop=True), set(nk[redo]), times)


def _persist(store: AuditStore, run: RunContext, source: str, result: engine.DedupResult,
             redone: list[str] | None) -> None:
    """Pairs worth keeping (suggested, or judged by a steward) and the clusters made, by archive
    number. Where several rows share an archive number, the best-scored pair of them is kept.
    ``redone``: the archives an incremental run compared again or found removed (None: a full run)."""
    keep = result.kept()
    pairs = keep[["left", "right", "score", "decision"]].assign(explanation=result.explanations(keep))
    found = [{"status": c.status, "survivor": result.keys[c.survivor] if c.survivor is not None else None,
              "proposal": {"reason": c.reason, "fill_from": {f: result.keys[m] for f, m in c.proposal.items()}},
              "members": result.members(c)} for c in result.clusters]
    night = result if isinstance(result, NightResult) else None  # a night replaces only what it touched
    store.dedup.save(run, source, pairs, found, redone=redone,
                     replaced_clusters=night.replaced_clusters if night else None,
                     rescored=night.rescored if night else None)

