"""The pipeline's parts as plain functions over arrays and frames — what the ``Deduplicator``
(``deduplicator.py``) and a night (``night.py``) are made of: the records' order, candidate pairs and
their levels (also per blocking-key partition, a task a cluster can run), classification, the match
edges clusters are made of, and the result a run returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import blocking, compare, guards
from .cluster import Cluster
from .model import Scorer, pair_tf
from .spec import Spec

KEEP_SCORE = 0.01  # non-match pairs scoring below this are counted, not kept


class Candidates(NamedTuple):
    """Candidate pairs: record positions i < j, their (pairs, fields) comparison levels, and the
    term frequency of each pair (NaN without a ``tf`` field)."""

    i: np.ndarray
    j: np.ndarray
    lv: np.ndarray
    tf: np.ndarray


@dataclass
class DedupResult:
    """What a run found: its pairs and clusters, the model that scored them, its statistics; and the
    normalised records with their survivor traits (what the incremental index keeps)."""

    spec: Spec
    keys: np.ndarray  # record keys by position
    pairs: pd.DataFrame  # left, right, score, decision, i, j, and one level column per field
    clusters: list[Cluster]
    model: Scorer
    stats: dict = field(default_factory=dict)
    prepared: pd.DataFrame | None = None  # the normalised records: the next incremental run's index
    order: np.ndarray | None = None  # record k (of keys, prepared) is row order[k] of the frame given
    traits: pd.DataFrame | None = None  # cluster.traits of the records in ``prepared``

    def cluster_docs(self) -> list[dict]:
        """Every cluster after this run, by archive number: status, survivor, members."""
        return [{"status": c.status, "survivor": self.keys[c.survivor] if c.survivor is not None else None,
                 "members": self.members(c)} for c in self.clusters]

    def members(self, c: Cluster) -> list[str]:
        """A cluster's archive numbers (once each: the MPI may hold two rows under one number)."""
        return list(dict.fromkeys(self.keys[m] for m in c.members))

    def explain(self, row: pd.Series) -> dict:
        """Per field: the agreement level and its weight (why the pair matches or not)."""
        lv = np.array([[row[f"lv_{f.name}"] for f in self.spec.fields]], dtype=np.int8)
        tf = np.array([row["tf"]]) if "tf" in row and pd.notna(row["tf"]) else None
        w = self.model.weights(lv, tf)[0]
        return {f.name: {"level": compare.level_name(f, int(lv[0, k])), "weight": round(float(w[k]), 3)}
                for k, f in enumerate(self.spec.fields)}

    def explanations(self, pairs: pd.DataFrame) -> np.ndarray:
        """``explain`` for many pairs at once, as one compact JSON text per pair, built column-wise:
        a field's fragment is made once per distinct (level, weight) and the fragments are joined."""
        if not len(pairs):
            return np.array([], dtype=object)
        lv = pairs[[f"lv_{f.name}" for f in self.spec.fields]].to_numpy(dtype=np.int8)
        tf = pairs["tf"].to_numpy(dtype=float) if "tf" in pairs else None
        W = np.round(self.model.weights(lv, None if tf is None or np.isnan(tf).all() else tf), 3)
        out = np.full(len(pairs), "{", dtype=object)
        for k, f in enumerate(self.spec.fields):
            codes, uniq = pd.MultiIndex.from_arrays([lv[:, k], W[:, k]]).factorize()
            frag = np.array([("," if k else "") + json.dumps(f.name, ensure_ascii=False) + ':{"level":'
                             + json.dumps(compare.level_name(f, int(level)), ensure_ascii=False)
                             + f',"weight":{float(w)!r}}}' for level, w in uniq], dtype=object)
            out = out + frag[codes]
        return out + "}"

    def kept(self) -> pd.DataFrame:
        """The pairs a run keeps: suggested (match, review) or judged by a steward; where several rows
        share an archive number, the best-scored pair of them."""
        steward = self.pairs["steward"].notna() if "steward" in self.pairs else False
        keep = self.pairs[self.pairs["decision"].isin(["match", "review"]) | steward]
        return keep.sort_values("score", ascending=False, kind="stable").drop_duplicates(["left", "right"])

    @property
    def matches(self) -> pd.DataFrame:
        return self.pairs[self.pairs["decision"] == "match"]


def classify(P: pd.DataFrame, spec: Spec, scorer: Scorer, decisions: pd.DataFrame | None, i: np.ndarray,
             j: np.ndarray, lv: np.ndarray, tf: np.ndarray) -> pd.DataFrame:
    """The candidate pairs (i, j) of the records ``P`` scored by ``scorer`` and decided — the
    spec's thresholds, its guards, the stewards' own verdicts — and the pairs worth keeping: columns
    left, right, score, decision, i, j, tf, a level column per field, steward."""
    score = scores(scorer, lv, tf) if len(i) else np.array([])
    keys = P["key"].to_numpy(dtype=object)
    judged = np.zeros(len(i), dtype=bool)
    if decisions is not None and not decisions.empty:  # pairs a steward judged are always kept
        by = set(decisions["left"]) | set(decisions["right"])
        judged = np.isin(keys[i], list(by)) & np.isin(keys[j], list(by))
    # guards only lower decisions: a pair scoring below both the review threshold and KEEP_SCORE is
    # a non-match that is not kept whatever its levels, so only the others are decided (the
    # decisions of millions of household pairs, as text, were the largest temporaries of a run)
    maybe = (score >= min(spec.thresholds.review, KEEP_SCORE)) | judged
    i, j, lv, score, judged = i[maybe], j[maybe], lv[maybe], score[maybe], judged[maybe]
    tf = tf[maybe] if tf.size else tf
    decision = decide(spec, score, lv)
    keep = (decision != "non_match") | (score >= KEEP_SCORE) | judged
    i, j, lv, score, decision = i[keep], j[keep], lv[keep], score[keep], decision[keep]
    tf = tf[keep] if tf.size else tf
    pairs = pd.DataFrame({"left": keys[i], "right": keys[j], "score": score, "decision": decision, "i": i, "j": j,
                          "tf": tf if tf.size else np.nan})
    for k, f in enumerate(spec.fields):
        pairs[f"lv_{f.name}"] = lv[:, k]
    return _apply_decisions(pairs, decisions)


def scores(scorer: Scorer, lv: np.ndarray, tf: np.ndarray | None) -> np.ndarray:
    """The match probability of each pair from its levels ``lv`` and term frequencies ``tf`` (NaN
    throughout, or None, without a ``tf`` field)."""
    return scorer.probability(lv, tf if tf is not None and tf.size and not np.isnan(tf).all() else None)


def decide(spec: Spec, score: np.ndarray, lv: np.ndarray) -> np.ndarray:
    """Each pair's decision — match, review, non_match — by the spec's thresholds on its score, then
    lowered by the spec's guards on its levels (the stewards' verdicts come after: ``classify``)."""
    th = spec.thresholds
    decision = np.where(score >= th.match, "match", np.where(score >= th.review, "review", "non_match"))
    return guards.apply(spec, lv, decision)


def valid_ids(P: pd.DataFrame, spec: Spec) -> np.ndarray | None:
    """Per record, its valid ID number (None without one): what the chaining guard compares. A
    legacy number's check character is computed, not typed: it cannot tell a typing error from
    another person, so it does not take part."""
    idf = next((f.name for f in spec.fields if f.kind == "id_number_cn"), None)
    return P[idf].where(P[f"{idf}__valid"] & ~P[f"{idf}__legacy"]).to_numpy(dtype=object) if idf else None


def record_order(df: pd.DataFrame, spec: Spec) -> np.ndarray:
    """The same records give the same result whatever order a database returned them in: by
    archive number, rows that share one (a defect of their own) by their content."""
    key = df[spec.key].astype(str).to_numpy()
    shared = pd.Series(key).duplicated(keep=False).to_numpy()
    tie = np.zeros(len(df), dtype=np.uint64)
    if shared.any():
        tie[shared] = pd.util.hash_pandas_object(df[shared].astype(str), index=False).to_numpy()
    return np.lexsort((tie, key))


def compare_candidates(P: pd.DataFrame, spec: Spec, *, only: np.ndarray | None = None,
                       part: tuple[int, int] | None = None, stats: blocking.BlockingStats | None = None
                       ) -> Candidates:
    """Candidate pairs of the normalised records ``P`` and their comparison levels. ``part`` (k, n):
    only partition k of n of the blocking keys (``blocking.candidate_pairs``) — a plain function a
    cluster can run per partition; the partitions' pairs together are the whole run's."""
    left, right, levels, tfs = [], [], [], []
    for i, j in blocking.candidate_pairs(P, spec, only=only, stats=stats, part=part):
        left.append(i.astype(np.int32))
        right.append(j.astype(np.int32))
        levels.append(compare.levels(P, spec, i, j))
        tf = pair_tf(P, spec, i, j)
        tfs.append(tf if tf is not None else np.full(len(i), np.nan))
    i = np.concatenate(left) if left else np.array([], dtype=np.int32)
    j = np.concatenate(right) if right else np.array([], dtype=np.int32)
    lv = np.concatenate(levels) if levels else np.zeros((0, len(spec.fields)), dtype=np.int8)
    tf = np.concatenate(tfs) if tfs else np.array([])
    return Candidates(i, j, lv, tf)


def compare_part(P: pd.DataFrame, spec: Spec, part: tuple[int, int], only: np.ndarray | None = None) -> tuple:
    """``compare_candidates`` of one blocking-key partition, with its blocking statistics: a task."""
    stats = blocking.BlockingStats()
    return (*compare_candidates(P, spec, only=only, part=part, stats=stats), stats.passes)


def compare_parts(parts: list[tuple], stats: blocking.BlockingStats | None = None) -> Candidates:
    """The partitions' ``compare_part`` results as one run's: the pairs in (i, j) order, the
    blocking statistics summed pass by pass."""
    i, j, lv, tf = (np.concatenate([p[k] for p in parts]) for k in range(4))
    order = np.lexsort((j, i))
    if stats is not None:
        for passes in zip(*(p[4] for p in parts)):
            stats.passes.append({"pass": passes[0]["pass"], "pairs": sum(d["pairs"] for d in passes)})
    return Candidates(i[order], j[order], lv[order], tf[order] if tf.size else tf)


def ordered(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs of archive numbers as the audit store keeps them: the smaller number left."""
    a, b = pairs["left"].to_numpy(dtype=object), pairs["right"].to_numpy(dtype=object)
    swap = b < a
    return pairs.assign(left=np.where(swap, b, a), right=np.where(swap, a, b))


def positions(keys: np.ndarray, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Record positions of pairs of archive numbers. Where the MPI holds several rows under one
    number (a defect the validation rules report), the pair joins every row of each: the chaining
    guard then cuts the joins of two different valid ID numbers, so a run whose matches come from
    the audit store (which names archives by number) clusters as the run that found them did."""
    pos = pd.DataFrame({"key": keys, "p": np.arange(len(keys))})
    e = pairs[pairs["left"] != pairs["right"]]
    e = e.merge(pos, left_on="left", right_on="key").merge(pos, left_on="right", right_on="key", suffixes=("_l", "_r"))
    return e["p_l"].to_numpy(dtype=np.int64), e["p_r"].to_numpy(dtype=np.int64)


def key_edges(pairs: pd.DataFrame, earlier: pd.DataFrame | None, redone: Iterable[str] | None,
              decisions: pd.DataFrame | None) -> pd.DataFrame:
    """This run's match pairs, the ``earlier`` run's matches between archives this run did not
    compare again (``redone``: the archive numbers it did; None: all of them), and the stewards'
    merges — never a pair a steward marked as two people. Columns left, right: archive numbers,
    the smaller left."""
    parts = [pairs.loc[pairs["decision"] == "match", ["left", "right"]]]
    if earlier is not None and len(earlier):
        e = earlier[["left", "right"]]
        if redone is not None:  # this run's verdict on the records it compared again replaces the old one
            again = pd.Index(list(redone))
            e = e[~(e["left"].isin(again) | e["right"].isin(again))]
        parts.append(e)
    d = ordered(decisions) if decisions is not None and not decisions.empty else \
        pd.DataFrame(columns=["left", "right", "decision"])
    parts.append(d.loc[d["decision"] == "merge", ["left", "right"]])
    edges = ordered(pd.concat(parts, ignore_index=True)).drop_duplicates()
    apart = d.loc[d["decision"] == "not_same", ["left", "right"]]
    if len(apart):
        edges = edges.merge(apart, how="left", indicator=True)
        edges = edges.loc[edges["_merge"] == "left_only", ["left", "right"]]
    return edges


def cannot_link(keys: np.ndarray, decisions: pd.DataFrame | None) -> list[tuple[int, int]]:
    if decisions is None or decisions.empty:
        return []
    i, j = positions(keys, decisions.loc[decisions["decision"] == "not_same", ["left", "right"]])
    return list(zip(i.tolist(), j.tolist()))


def _apply_decisions(pairs: pd.DataFrame, decisions: pd.DataFrame | None) -> pd.DataFrame:
    """Steward decisions override the model: not_same → non_match (never suggested again), merge →
    match. ``decisions``: columns left, right, decision (active decisions only)."""
    if decisions is None or decisions.empty:
        return pairs
    d = decisions.copy()
    lo = d[["left", "right"]].min(axis=1)
    hi = d[["left", "right"]].max(axis=1)
    verdict = dict(zip(zip(lo, hi), d["decision"]))
    key = list(zip(pairs[["left", "right"]].min(axis=1), pairs[["left", "right"]].max(axis=1)))
    v = pd.Series([verdict.get(k) for k in key], index=pairs.index)
    pairs.loc[v == "not_same", "decision"] = "non_match"
    pairs.loc[v == "merge", "decision"] = "match"
    pairs["steward"] = v
    return pairs


def cluster_keys(result: DedupResult) -> list[list[str]]:
    return [c["members"] for c in result.cluster_docs() if c["status"] == "proposed"]
