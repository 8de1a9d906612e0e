"""Deduplicate one table of person-like records: the whole pipeline as plain functions.

    result = deduplicate(frame, spec)            # normalise, block, compare, EM, classify, cluster

Steward decisions (``decisions``) are respected: a pair marked "not the same person" is never a
match; a pair marked "merge" is. With enough decisions a supervised model replaces the EM weights.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import blocking, compare
from .cluster import Cluster, choose_survivors, clusters, survivor_fields, traits
from .model import FSModel, SupervisedModel, pair_tf
from .normalise import prepare
from .spec import Spec

TRAIN_PAIRS = 1_000_000  # pairs EM learns from (a sample beyond this)
KEEP_SCORE = 0.01  # non-match pairs scoring below this are counted, not kept


@dataclass
class DedupResult:
    spec: Spec
    keys: np.ndarray  # record keys by position
    pairs: pd.DataFrame  # left, right, score, decision, i, j, and one level column per field
    clusters: list[Cluster]
    model: FSModel | SupervisedModel
    stats: dict = field(default_factory=dict)
    fs_model: FSModel | None = None  # the unsupervised model (kept for incremental runs)
    prepared: pd.DataFrame | None = None  # the normalised records: the next incremental run's index
    order: np.ndarray | None = None  # record k (of keys, prepared) is row order[k] of the frame given
    traits: pd.DataFrame | None = None  # cluster.traits of the records in ``prepared``
    # a night's: the stored clusters it leaves as they are (status, survivor, members by archive
    # number) and the ids of those it replaces; None for a run that makes every cluster
    kept_clusters: list[dict] | None = None
    replaced_clusters: list[int] | None = None
    rescored: pd.DataFrame | None = None  # a night's: decided pairs scored again (their decision changed)

    def cluster_docs(self) -> list[dict]:
        """Every cluster after this run, by archive number: status, survivor, members (a night's
        unchanged stored clusters included)."""
        made = [{"status": c.status, "survivor": self.keys[c.survivor] if c.survivor is not None else None,
                 "members": self.members(c)} for c in self.clusters]
        return (self.kept_clusters or []) + made

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


def deduplicate(df: pd.DataFrame, spec: Spec, *, decisions: pd.DataFrame | None = None,
                only: np.ndarray | None = None, seed: int = 1, org_levels: dict[str, str] | None = None,
                progress: Callable[[str], None] | None = None, model: FSModel | None = None,
                earlier: pd.DataFrame | None = None, candidates: Callable | None = None) -> DedupResult:
    """``only``: the records to compare (an incremental run without a usable index: its new and
    changed archives), with the ``model`` of the run before; ``earlier``: that run's match pairs
    (columns left, right), which make the clusters together with this run's; ``candidates``: makes and
    compares the candidate pairs (``compare_candidates`` by default; a caller may spread its
    blocking-key partitions over workers, ``compare_parts`` joining them)."""
    t0 = time.perf_counter()
    say = progress or (lambda _: None)
    fields = survivor_fields(df)
    order = _order(df, spec)
    df = df.iloc[order].reset_index(drop=True)
    if only is not None:
        only = np.asarray(only)[order]
    say("normalising")
    P = prepare(df, spec)
    rng = np.random.default_rng(seed)
    stats: dict = {"records": len(P)}
    if model is None:
        model = FSModel(spec)
        say("estimating u from random pairs")
        model.estimate_u(P, rng)

    say("blocking and comparing")
    bstats = blocking.BlockingStats()
    i, j, lv, tf = (candidates or compare_candidates)(P, spec, only=only, stats=bstats)
    stats["candidate_pairs"] = len(i)
    stats["blocking"] = bstats.passes
    n = len(P)
    stats["reduction_ratio"] = 1 - len(i) / max(n * (n - 1) / 2, 1)

    if not model.m:
        say("training (EM)")
        names = [f.name for f in spec.fields]
        sessions = []
        for t in spec.training:
            ti, tj = blocking.training_pairs(P, t.block, TRAIN_PAIRS // max(len(spec.training), 1), rng)
            sessions.append((compare.levels(P, spec, ti, tj), [names.index(f) for f in t.fields],
                             pair_tf(P, spec, ti, tj)))
        model.train(sessions)
        _set_prior(model, spec, lv, tf, len(P), rng)
    say("classifying")
    pairs, supervised = classify(P, spec, model, decisions, i, j, lv, tf)
    if supervised is not None:
        stats["supervised_on"] = supervised.labels
    keys = P["key"].to_numpy(dtype=object)

    say("clustering")
    valid_id = valid_ids(P, spec)
    cannot = _cannot_link(keys, decisions)
    ei, ej = match_edges(keys, pairs, earlier, only, decisions)
    found = clusters(n, ei, ej, valid_id, cannot)
    T = traits(df, fields)
    choose_survivors(found, T, fields, valid_id, org_levels)
    stats["seconds"] = time.perf_counter() - t0
    stats.update({"matches": int((pairs["decision"] == "match").sum()),
                  "review": int((pairs["decision"] == "review").sum()),
                  "clusters": len(found), "clusters_to_review": sum(c.status == "review" for c in found)})
    return DedupResult(spec, keys, pairs, found, supervised or model, stats, model, P, order, T)


def classify(P: pd.DataFrame, spec: Spec, model: FSModel, decisions: pd.DataFrame | None, i: np.ndarray,
             j: np.ndarray, lv: np.ndarray, tf: np.ndarray) -> tuple[pd.DataFrame, SupervisedModel | None]:
    """The candidate pairs (i, j) of the records ``P`` scored and decided — the stewards' model once
    they decided enough pairs, precision guards, the stewards' own verdicts — and the pairs worth
    keeping: columns left, right, score, decision, i, j, tf, a level column per field, steward."""
    scorer: FSModel | SupervisedModel = model
    supervised = _supervised(P, spec, decisions, model)
    if supervised is not None:
        scorer = supervised  # the stewards' decisions outrank what EM could learn alone
    score = scorer.probability(lv, tf if tf.size and not np.isnan(tf).all() else None) if len(i) else np.array([])
    th = spec.thresholds
    decision = np.where(score >= th.match, "match", np.where(score >= th.review, "review", "non_match"))
    if spec.distinct_ids_guard and len(i):
        decision = _distinct_ids(spec, lv, decision)
    if spec.identity_evidence and len(i):
        decision = _require_identity(spec, lv, decision)
    keys = P["key"].to_numpy(dtype=object)
    keep = (decision != "non_match") | (score >= KEEP_SCORE)
    if decisions is not None and not decisions.empty:  # pairs a steward judged are always kept
        judged = set(decisions["left"]) | set(decisions["right"])
        keep |= np.isin(keys[i], list(judged)) & np.isin(keys[j], list(judged))
    i, j, lv, score, decision = i[keep], j[keep], lv[keep], score[keep], decision[keep]
    tf = tf[keep] if tf.size else tf
    pairs = pd.DataFrame({"left": keys[i], "right": keys[j], "score": score, "decision": decision, "i": i, "j": j,
                          "tf": tf if tf.size else np.nan})
    for k, f in enumerate(spec.fields):
        pairs[f"lv_{f.name}"] = lv[:, k]
    return _apply_decisions(pairs, decisions), supervised


def valid_ids(P: pd.DataFrame, spec: Spec) -> np.ndarray | None:
    """Per record, its valid ID number (None without one): what the chaining guard compares. A
    legacy number's check character is computed, not typed: it cannot tell a typing error from
    another person, so it does not take part."""
    idf = next((f.name for f in spec.fields if f.kind == "id_number_cn"), None)
    return P[idf].where(P[f"{idf}__valid"] & ~P[f"{idf}__legacy"]).to_numpy(dtype=object) if idf else None


def _order(df: pd.DataFrame, spec: Spec) -> np.ndarray:
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
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs of the normalised records ``P`` and their comparison levels: record
    positions i < j, the (pairs, fields) level matrix, and the term frequency of each pair (NaN
    without a ``tf`` field). ``part`` (k, n): only partition k of n of the blocking keys
    (``blocking.candidate_pairs``) — a plain function a cluster can run per partition; the
    partitions' pairs together are the whole run's."""
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
    return i, j, lv, tf


def compare_part(P: pd.DataFrame, spec: Spec, part: tuple[int, int], only: np.ndarray | None = None) -> tuple:
    """``compare_candidates`` of one blocking-key partition, with its blocking statistics: a task."""
    stats = blocking.BlockingStats()
    return (*compare_candidates(P, spec, only=only, part=part, stats=stats), stats.passes)


def compare_parts(parts: list[tuple], stats: blocking.BlockingStats | None = None) -> tuple:
    """The partitions' ``compare_part`` results as one run's: the pairs in (i, j) order, the
    blocking statistics summed pass by pass."""
    i, j, lv, tf = (np.concatenate([p[k] for p in parts]) for k in range(4))
    order = np.lexsort((j, i))
    if stats is not None:
        for passes in zip(*(p[4] for p in parts)):
            stats.passes.append({"pass": passes[0]["pass"], "pairs": sum(d["pairs"] for d in passes)})
    return i[order], j[order], lv[order], tf[order] if tf.size else tf


def _set_prior(model: FSModel, spec: Spec, lv: np.ndarray, tf: np.ndarray, n: int, rng) -> None:
    """The probability that two random records match — the prior the m/u Bayes factors update
    (u comes from random pairs, so the prior must too). Counted Splink's way from a deterministic
    rule and its recall: pairs with equal ID numbers, divided by the share of matches that keep
    their ID intact (m of 'equal', learned by EM). Without an ID field, EM on the candidates."""
    kinds = [f.kind for f in spec.fields]
    names = [f.name for f in spec.fields]
    k = names.index(spec.prior_from.field) if spec.prior_from else \
        kinds.index("id_number_cn") if "id_number_cn" in kinds else None
    if k is not None and len(lv):
        top = model.n_levels(k) - 1
        recall = spec.prior_from.recall if spec.prior_from else max(float(model.m[k][top]), 0.05)
        expected = (lv[:, k] == top).sum() / recall
        model.prior = float(np.clip(expected / max(n * (n - 1) / 2, 1), 1e-12, 0.5))
    elif len(lv):
        sample = rng.choice(len(lv), TRAIN_PAIRS, replace=False) if len(lv) > TRAIN_PAIRS else slice(None)
        model.estimate_prior(lv[sample], tf[sample] if tf.size else None)


def _distinct_ids(spec: Spec, lv: np.ndarray, decision: np.ndarray) -> np.ndarray:
    """Precision first: two different valid ID numbers are two people."""
    kinds = [f.kind for f in spec.fields]
    if "id_number_cn" not in kinds:
        return decision
    distinct = lv[:, kinds.index("id_number_cn")] == 0  # level 0: both valid, different
    plausible = np.ones(len(lv), dtype=bool)
    for k, f in enumerate(spec.fields):
        if f.kind in ("name_zh", "name"):
            plausible &= lv[:, k] >= 2  # close: given names swapped, same pinyin, or equal
        if f.kind == "date":
            plausible &= lv[:, k] == 4  # the same birth date
    capped = np.where(plausible & (decision != "non_match"), "review", "non_match")
    return np.where(distinct, capped, decision)


def _require_identity(spec: Spec, lv: np.ndarray, decision: np.ndarray) -> np.ndarray:
    """A household is not a person: a match needs evidence about the person — the ID number (equal
    or one typing error apart), or the name (same pinyin or equal) with the birth date — not phone
    and address alone. A newborn's temporary name counts as no name: an agreeing birth date and sex
    then stand in for it. Without such evidence a match goes to review when the names are alike, and is
    a non-match when they differ (twins, parents and children)."""
    col = {f.kind: k for k, f in enumerate(spec.fields)}
    id_ok = lv[:, col["id_number_cn"]] >= 2 if "id_number_cn" in col else np.zeros(len(lv), dtype=bool)
    name = lv[:, col["name_zh"]] if "name_zh" in col else lv[:, col["name"]] if "name" in col else None
    date = lv[:, col["date"]] if "date" in col else None
    if name is None or date is None:
        return decision
    sex = lv[:, col["exact"]] if "exact" in col else np.ones(len(lv), dtype=np.int8)
    person = id_ok | ((name >= 2) & (date >= 1)) | ((name == -1) & (date >= 1) & (sex == 1))
    weak = (decision == "match") & ~person
    return np.where(weak, np.where(name == 1, "review", "non_match"), decision)


def _supervised(P: pd.DataFrame, spec: Spec, decisions: pd.DataFrame | None, base: FSModel) -> SupervisedModel | None:
    """A model trained on the stewards' merge / not-same decisions, once there are enough."""
    if decisions is None or decisions.empty:
        return None
    d = decisions[decisions["decision"].isin(["merge", "not_same"])]
    pos = {k: n for n, k in enumerate(P["key"])}
    d = d[d["left"].isin(pos) & d["right"].isin(pos)]
    if len(d) < SupervisedModel.MIN_LABELS:
        return None
    i = d["left"].map(pos).to_numpy()
    j = d["right"].map(pos).to_numpy()
    sup = SupervisedModel(spec, base)
    y = (d["decision"] == "merge").to_numpy().astype(int)
    return sup if sup.fit(compare.levels(P, spec, i, j), y, pair_tf(P, spec, i, j)) else None


def _ordered(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs of archive numbers as the audit store keeps them: the smaller number left."""
    a, b = pairs["left"].to_numpy(dtype=object), pairs["right"].to_numpy(dtype=object)
    swap = b < a
    return pairs.assign(left=np.where(swap, b, a), right=np.where(swap, a, b))


def _positions(keys: np.ndarray, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Record positions of pairs of archive numbers. Where the MPI holds several rows under one
    number (a defect the validation rules report), the pair joins every row of each: the chaining
    guard then cuts the joins of two different valid ID numbers, so a run whose matches come from
    the audit store (which names archives by number) clusters as the run that found them did."""
    pos = pd.DataFrame({"key": keys, "p": np.arange(len(keys))})
    e = pairs[pairs["left"] != pairs["right"]]
    e = e.merge(pos, left_on="left", right_on="key").merge(pos, left_on="right", right_on="key", suffixes=("_l", "_r"))
    return e["p_l"].to_numpy(dtype=np.int64), e["p_r"].to_numpy(dtype=np.int64)


def match_edges(keys: np.ndarray, pairs: pd.DataFrame, earlier: pd.DataFrame | None, only: np.ndarray | None,
                decisions: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """What the clusters are made of, the same way in full and incremental runs (``key_edges``),
    as record positions."""
    redone = None if only is None else keys[np.asarray(only, dtype=bool)]
    return _positions(keys, key_edges(pairs, earlier, redone, decisions))


def key_edges(pairs: pd.DataFrame, earlier: pd.DataFrame | None, redone, decisions: pd.DataFrame | None) -> pd.DataFrame:
    """This run's match pairs, the ``earlier`` run's matches between archives this run did not
    compare again (``redone``: the archive numbers it did; None: all of them), and the stewards'
    merges — never a pair a steward marked as two people. Columns left, right: archive numbers,
    the smaller left."""
    parts = [pairs.loc[pairs["decision"] == "match", ["left", "right"]]]
    if earlier is not None and len(earlier):
        e = earlier[["left", "right"]]
        if redone is not None:  # this run's verdict on the records it compared again replaces the old one
            redone = pd.Index(redone)
            e = e[~(e["left"].isin(redone) | e["right"].isin(redone))]
        parts.append(e)
    d = _ordered(decisions) if decisions is not None and not decisions.empty else \
        pd.DataFrame(columns=["left", "right", "decision"])
    parts.append(d.loc[d["decision"] == "merge", ["left", "right"]])
    edges = _ordered(pd.concat(parts, ignore_index=True)).drop_duplicates()
    apart = d.loc[d["decision"] == "not_same", ["left", "right"]]
    if len(apart):
        edges = edges.merge(apart, how="left", indicator=True)
        edges = edges.loc[edges["_merge"] == "left_only", ["left", "right"]]
    return edges


def _cannot_link(keys: np.ndarray, decisions: pd.DataFrame | None) -> list[tuple[int, int]]:
    if decisions is None or decisions.empty:
        return []
    i, j = _positions(keys, decisions.loc[decisions["decision"] == "not_same", ["left", "right"]])
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
