"""A night's duplicate screening against the incremental index (``index.py``): the archives added,
changed or removed since the last run, without the rest of the MPI in memory.

    result = Deduplicator(spec, model=stored_model, decisions=...).night.screen(tonight, idx, stored)

The night's archives are normalised and keyed; the index's blocking-hash columns give the archives
sharing a block with them — every live archive of such a block, so block sizes and the passes'
order are the full run's — and only those rows are taken from the index. Names' term frequencies
count the index's live rows, less the archives the night replaces, plus the night's. Candidates are
made and scored exactly as a full run makes and scores the pairs involving these archives (the
Deduplicator's ``inference`` verbs, with the stored model). A pair whose steward decision was made
or undone since the last run is scored again too.

Clusters: the edges are the stored matches (less those of archives redone or removed, and of pairs
scored again), the night's matches and the stewards' merges, less their "not the same person"
(``dd.clustering.edges``). Only the connected components the night touched are made again — those
holding an archive it redid or removed, or whose steward decisions changed, and those holding a
member of a stored cluster with such an archive — with their survivors from the traits the index
keeps; the other stored clusters cannot have changed and stay as they are. What the night leaves and
replaces of the stored clusters is the ``NightResult``'s own, beside what any run finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import blocking, compare
from .cluster import components, traits
from .engine import Candidates, DedupResult, ordered, positions, record_order, valid_ids
from .index import TRAITS, Index
from .model import SupervisedModel, pair_tf
from .normalise import block_column, prepare
from .spec import Spec

if TYPE_CHECKING:
    from .deduplicator import Deduplicator


@dataclass
class Tonight:
    """The MPI tonight: ``rows``, every row of the archive numbers to compare again (new, changed);
    ``gone``, the numbers removed from it; ``records``, how many archives it holds now."""

    rows: pd.DataFrame
    gone: set[str]
    records: int


@dataclass
class Stored:
    """What the audit store holds from the runs before: ``matches``, the match pairs (columns left,
    right); ``clusters``, the open clusters (cluster_id, status, survivor, archive_id — a row per
    member); ``changed``, the pairs whose steward decision was made or undone since the last run."""

    matches: pd.DataFrame
    clusters: pd.DataFrame
    changed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["left", "right"]))


@dataclass
class NightResult(DedupResult):
    """A night's result: what it found, and what it does to the stored clusters — those it leaves
    as they are (status, survivor, members by archive number) and the ids of those it replaces —
    and the decided pairs it scored again (their decision changed)."""

    kept_clusters: list[dict] = field(default_factory=list)
    replaced_clusters: list[int] = field(default_factory=list)
    rescored: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["left", "right"]))

    def cluster_docs(self) -> list[dict]:
        """Every cluster after the night: the stored ones it left, then those it made."""
        return self.kept_clusters + super().cluster_docs()


class Night:
    """``dd.night``: a night's screening against the incremental index."""

    def __init__(self, dd: Deduplicator):
        self._dd = dd

    def screen(self, tonight: Tonight, idx: Index, stored: Stored) -> NightResult:
        """The night's archives (``tonight``) against the index ``idx`` with the Deduplicator's model,
        the clusters they touched made again from the ``stored`` ones (module docstring)."""
        dd, spec = self._dd, self._dd.spec
        t0 = time.perf_counter()
        dd.say("normalising")
        order = record_order(tonight.rows, spec)
        night = tonight.rows.iloc[order].reset_index(drop=True)
        PN = prepare(night, spec)
        TN = traits(night, idx.fields)
        redone = set(PN["key"])
        replaced = redone | tonight.gone
        decisions = dd.decisions
        decided = decisions[decisions["decision"].isin(["merge", "not_same"])] if decisions is not None else None
        changed = stored.changed

        dd.say("blocking and comparing")
        # the index's rows sharing a block with a night archive, and those of decided pairs (the
        # stewards' model learns from them)
        want = [idx.having(block_column(p), _nonzero(PN[block_column(p)])) for p in range(len(spec.blocking))]
        keys = set(changed["left"]) | set(changed["right"])
        if decided is not None:
            keys |= set(decided["left"]) | set(decided["right"])
        want.append(idx.having("key", sorted(keys - replaced)))
        pos = np.unique(np.concatenate(want))
        cols = [c for c in idx.normalised if not c.endswith("__tf")]
        PC = idx.take(pos, cols)
        PC = PC[~PC["key"].isin(replaced)]
        C = pd.concat([PC, PN[[c for c in PN.columns if not c.endswith("__tf")]]], ignore_index=True)
        only = np.r_[np.zeros(len(PC), dtype=bool), np.ones(len(PN), dtype=bool)]
        by_key = np.argsort(C["key"].to_numpy(dtype=object), kind="stable")  # the full run's record order
        C, only = C.iloc[by_key].reset_index(drop=True), only[by_key]
        _term_frequencies(C, spec, idx, PN, replaced)
        records = tonight.records
        stats: dict = {"records": records}
        bstats = blocking.BlockingStats()
        i, j, lv, tf = dd.inference.candidates(C, only=only, stats=bstats)
        stats["candidate_pairs"] = len(i)
        stats["blocking"] = bstats.passes
        stats["reduction_ratio"] = 1 - len(i) / max(records * (records - 1) / 2, 1)
        again = _pairs_decided_again(C, changed, redone, i, j)
        if len(again[0]):
            ri, rj = again
            rtf = pair_tf(C, spec, ri, rj)
            i, j = np.r_[i, ri], np.r_[j, rj]
            lv = np.concatenate([lv, compare.levels(C, spec, ri, rj)])
            tf = np.r_[tf, rtf if rtf is not None else np.full(len(ri), np.nan)]
        stats["rescored_pairs"] = len(again[0])

        dd.say("classifying")
        pairs, scorer = dd.inference.predict(C, Candidates(i, j, lv, tf))
        if isinstance(scorer, SupervisedModel):
            stats["supervised_on"] = scorer.labels
        rescored = ordered(changed[["left", "right"]]) if len(changed) else changed[["left", "right"]]

        dd.say("clustering")
        earlier = stored.matches
        e = ordered(earlier[["left", "right"]]) if len(earlier) else earlier[["left", "right"]]
        if len(rescored) and len(e):  # their verdict is this run's now
            e = e.merge(rescored, how="left", indicator=True)
            e = e.loc[e["_merge"] == "left_only", ["left", "right"]]
        edges = dd.clustering.edges(pairs, e, sorted(replaced))
        touched = replaced | set(rescored["left"]) | set(rescored["right"])
        K, replaced_ids, kept = _touched(edges, stored.clusters, touched)
        L = _records(K, spec, idx, PN, TN)
        lkeys = L["key"].to_numpy(dtype=object)
        valid = valid_ids(L, spec)
        ei, ej = positions(lkeys, edges[edges["left"].isin(K)])
        found = dd.clustering.cluster(lkeys, ei, ej, valid)
        dd.clustering.choose_survivors(found, L[list(TRAITS)], idx.fields, valid)
        for c in found:  # positions after the pairs' records
            c.members = [m + len(C) for m in c.members]
            c.survivor = c.survivor + len(C) if c.survivor is not None else None
            c.proposal = {f: m + len(C) for f, m in c.proposal.items()}
        stats["seconds"] = time.perf_counter() - t0
        again_m, again_r = _rescored_counts(pairs, rescored)
        stats.update({"matches": int((pairs["decision"] == "match").sum()),
                      "review": int((pairs["decision"] == "review").sum()),
                      # the summary tells the night's new suggestions from the pairs scored again
                      # because a steward decided or undid them (those are not new matches)
                      "rescored_matches": again_m, "rescored_review": again_r,
                      "clusters": len(kept) + len(found),
                      "clusters_to_review": sum(k["status"] == "review" for k in kept) + sum(c.status == "review" for c in found),
                      "clusters_made": len(found), "clusters_replaced": len(replaced_ids)})
        keys_all = np.concatenate([C["key"].to_numpy(dtype=object), lkeys])
        return NightResult(spec, keys_all, pairs, found, scorer, stats, PN, order, TN,
                           kept_clusters=kept, replaced_clusters=replaced_ids, rescored=rescored)


def _rescored_counts(pairs: pd.DataFrame, rescored: pd.DataFrame) -> tuple[int, int]:
    """Of the night's match and review pairs, how many were scored again after a steward decision."""
    if not len(rescored) or not len(pairs):
        return 0, 0
    again = pd.MultiIndex.from_frame(ordered(rescored[["left", "right"]]))
    hit = pd.MultiIndex.from_frame(ordered(pairs[["left", "right"]])).isin(again)
    return int((hit & (pairs["decision"] == "match").to_numpy()).sum()), \
        int((hit & (pairs["decision"] == "review").to_numpy()).sum())


def _nonzero(h: pd.Series) -> np.ndarray:
    v = h.to_numpy(dtype=np.int64)
    return np.unique(v[v != 0])


def _term_frequencies(C: pd.DataFrame, spec: Spec, idx: Index, PN: pd.DataFrame, replaced: set[str]) -> None:
    """Each ``tf`` field's frequency among the MPI's archives now, as a full run counts it: the
    index's live rows, less those of the archives the night replaces, plus the night's."""
    old = None
    for f in (f for f in spec.fields if f.tf):
        if old is None:
            old = idx.take(idx.having("key", sorted(replaced)), [f.name]) if replaced else pd.DataFrame({f.name: []})
        values = C[f.name].dropna().unique()
        counts, total = idx.counts(f.name, values)
        n = pd.Series(counts, dtype=np.int64).reindex(values, fill_value=0)
        n = n.sub(old[f.name].value_counts(), fill_value=0).add(PN[f.name].value_counts(), fill_value=0)
        total += int(PN[f.name].notna().sum()) - int(old[f.name].notna().sum())
        C[f"{f.name}__tf"] = C[f.name].map(n.astype(np.int64) / total).astype(float)


def _pairs_decided_again(C: pd.DataFrame, changed: pd.DataFrame, redone: set[str], i: np.ndarray,
                         j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Record positions of the pairs whose steward decision changed since the last run, between
    archives the night did not redo (those are compared anyway), that blocking did not give."""
    if not len(changed):
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    pairs = changed[~(changed["left"].isin(redone) | changed["right"].isin(redone))]
    a, b = positions(C["key"].to_numpy(dtype=object), pairs)
    a, b = np.minimum(a, b), np.maximum(a, b)
    seen = pd.MultiIndex.from_arrays([i.astype(np.int64), j.astype(np.int64)])
    new = ~pd.MultiIndex.from_arrays([a, b]).isin(seen) & (a != b)
    return a[new], b[new]


def _touched(edges: pd.DataFrame, stored: pd.DataFrame, touched: set[str]) -> tuple[set[str], list[int], list[dict]]:
    """The archive numbers of the components to make again, the stored clusters they replace, and
    the stored clusters left as they are (status, survivor, members)."""
    codes, uniques = pd.factorize(pd.concat([edges["left"], edges["right"]], ignore_index=True))
    n = len(uniques)
    labels = components(n, codes[:len(edges)], codes[len(edges):])
    hit = stored["cluster_id"][stored["archive_id"].isin(touched)].unique()
    seeds = touched | set(stored.loc[stored["cluster_id"].isin(hit), "archive_id"])
    at = uniques.get_indexer(pd.Index(list(seeds)))
    comps = np.unique(labels[at[at >= 0]])
    K = set(uniques[np.isin(labels, comps)]) if len(comps) else set()
    gone = stored["cluster_id"][stored["archive_id"].isin(K | touched)].unique()
    rest = stored[~stored["cluster_id"].isin(gone)].sort_values(["cluster_id", "archive_id"], kind="stable")
    cid = rest["cluster_id"].to_numpy()
    cuts = np.flatnonzero(cid[1:] != cid[:-1]) + 1
    first = np.r_[0, cuts] if len(cid) else np.array([], dtype=np.int64)
    # the members as slices of one list (tens of thousands of clusters are kept each night: an array
    # and a list per cluster cost more than the rest of this)
    ids, bounds = rest["archive_id"].tolist(), first.tolist() + [len(cid)]
    kept = [{"status": s, "survivor": v, "members": ids[a:b]}
            for s, v, a, b in zip(rest["status"].to_numpy()[first], rest["survivor"].to_numpy()[first], bounds, bounds[1:])]
    return K, [int(c) for c in gone], kept


def _records(K: set[str], spec: Spec, idx: Index, PN: pd.DataFrame, TN: pd.DataFrame) -> pd.DataFrame:
    """The records of the archive numbers ``K``, in the full run's order: the night's own, the
    others' from the index (their normalised ID number and survivor traits)."""
    idf = next((f.name for f in spec.fields if f.kind == "id_number_cn"), None)
    cols = ["key"] + ([idf, f"{idf}__valid", f"{idf}__legacy"] if idf else [])
    mine = PN["key"].isin(K).to_numpy()
    night = pd.concat([PN.loc[mine, cols].reset_index(drop=True), TN[mine].reset_index(drop=True)], axis=1)
    rest = sorted(K - set(PN["key"]))
    old = idx.take(idx.having("key", rest), cols + list(TRAITS.values())) if rest else None
    if old is not None:
        old = old.rename(columns={v: k for k, v in TRAITS.items()})
    L = pd.concat([x for x in (old, night) if x is not None and len(x)], ignore_index=True) if K else night.iloc[:0]
    return L.iloc[np.argsort(L["key"].to_numpy(dtype=object), kind="stable")].reset_index(drop=True)
