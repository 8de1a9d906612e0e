"""The Deduplicator: the one object a caller holds, its verbs grouped by purpose as Splink's linker
groups its own.

    dd = Deduplicator(spec, decisions=decided)         # what the run knows: spec, model, decisions
    result = dd.deduplicate(archives)                  # the whole run, the verbs below in order

    dd.training.estimate_u(P)                          # u from random record pairs
    dd.training.estimate_m(P)                          # m by EM, one session per spec ``training`` entry
    dd.training.estimate_prior(candidates, len(P))     # P(match) of two random records
    dd.training.supervised(P)                          # the stewards' model, once they decided enough
    dd.inference.candidates(P)                         # blocking and comparison levels
    dd.inference.predict(P, candidates)                # scored, guarded, the stewards' verdicts applied
    dd.clustering.edges(keys, pairs)                   # the match edges (and the stewards' merges)
    dd.clustering.cluster(keys, i, j, valid)           # components, guarded against chaining
    dd.clustering.choose_survivors(found, ...)         # the surviving archive of each cluster
    dd.night.screen(tonight, index, stored)            # a night against the incremental index

Steward decisions (``decisions``: columns left, right, decision) are respected throughout: a pair
marked "not the same person" is never a match, a pair marked "merge" is, and with enough of them a
supervised model replaces the EM weights. A model given (``model``: the last run's) is used as it is;
without one, ``deduplicate`` learns one and keeps it (``dd.model``) for the caller to store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import numpy as np
import pandas as pd

from . import blocking, compare
from .cluster import Cluster, choose_survivors, clusters, survivor_fields, traits
from .engine import (
    Candidates,
    DedupResult,
    cannot_link,
    classify,
    compare_candidates,
    key_edges,
    positions,
    record_order,
    valid_ids,
)
from .model import FSModel, Scorer, SupervisedModel, pair_tf
from .night import Night
from .normalise import prepare
from .spec import Spec

TRAIN_PAIRS = 1_000_000  # pairs EM learns from (a sample beyond this)


def in_order(frame: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """``frame``'s rows in ``order``, positionally indexed, its dtypes kept; a column at a time, each
    taken out of ``frame`` (emptied: a temporary) so that the two are never held whole together."""
    out = pd.DataFrame(index=pd.RangeIndex(len(order)))
    for c in list(frame.columns):
        out[c] = frame.pop(c).take(order).reset_index(drop=True)
    return out


class CandidateMaker(Protocol):
    """Makes and compares the candidate pairs (``engine.compare_candidates`` by default; a caller may
    spread its blocking-key partitions over workers, ``engine.compare_parts`` joining them)."""

    def __call__(self, P: pd.DataFrame, spec: Spec, *, only: np.ndarray | None = None,
                 stats: blocking.BlockingStats | None = None) -> Candidates: ...


class Deduplicator:
    """``spec``: the comparison spec; ``model``: a learned model to use as it is (None: learn one);
    ``decisions``: the stewards' decisions in force; ``org_levels``: institution -> level (ranks
    survivors); ``seed``: the random pairs u and EM learn from; ``progress``: told each step's name;
    ``candidates``: how candidate pairs are made (``CandidateMaker``)."""

    def __init__(self, spec: Spec, *, model: FSModel | None = None, decisions: pd.DataFrame | None = None,
                 org_levels: Mapping[str, str] | None = None, seed: int = 1,
                 progress: Callable[[str], None] | None = None, candidates: CandidateMaker | None = None):
        self.spec = spec
        self.model = model
        self.decisions = decisions
        self.org_levels = dict(org_levels or {})
        self.seed = seed
        self.progress = progress
        self.make_candidates: CandidateMaker = candidates or compare_candidates
        self.training = Training(self)
        self.inference = Inference(self)
        self.clustering = Clustering(self)
        self.night = Night(self)

    def say(self, step: str) -> None:
        if self.progress is not None:
            self.progress(step)

    def deduplicate(self, df: pd.DataFrame, *, only: np.ndarray | None = None,
                    earlier: pd.DataFrame | None = None) -> DedupResult:
        """Normalise, block, compare, learn (without a model), classify, cluster. ``only``: the
        records to compare (an incremental run without a usable index: its new and changed
        archives, with every row of their archive numbers), with the model of the run before;
        ``earlier``: that run's match pairs (columns left, right), which make the clusters together
        with this run's."""
        t0 = time.perf_counter()
        spec = self.spec
        fields = survivor_fields(df)
        order = record_order(df, spec)
        df = df.reset_index(drop=True)
        if only is not None:
            only = np.asarray(only, dtype=bool)[order]
        self.say("normalising")
        # derived in the order read, then put in the records' order: each row's values are its own, and
        # the strings read lie in memory in the order read (ten times faster to walk than shuffled)
        P = in_order(prepare(df, spec), order)
        if only is not None:  # a number's stored pairs are replaced whole: every row of it is compared
            key = P["key"]  # (as a night does), not only the changed one of two rows sharing a number
            only = only | (key.isin(key[only].dropna().unique()) & key.notna()).to_numpy()
        rng = np.random.default_rng(self.seed)  # one stream, in this order: the same run gives the same result
        stats: dict = {"records": len(P)}
        if self.model is None:
            self.say("estimating u from random pairs")
            self.training.estimate_u(P, rng)

        self.say("blocking and comparing")
        bstats = blocking.BlockingStats()
        cand = self.inference.candidates(P, only=only, stats=bstats)
        n = len(P)
        stats.update(candidate_pairs=len(cand.i), blocking=bstats.passes,
                     reduction_ratio=1 - len(cand.i) / max(n * (n - 1) / 2, 1))
        if not self.fs_model.m:
            self.say("training (EM)")
            self.training.estimate_m(P, rng)
            self.training.estimate_prior(cand, n, rng)
        self.say("classifying")
        pairs, scorer = self.inference.predict(P, cand)
        compare.forget_names()  # the run compares no more names
        if isinstance(scorer, SupervisedModel):
            stats["supervised_on"] = scorer.labels
        keys = P["key"].to_numpy(dtype=object)

        self.say("clustering")
        valid = valid_ids(P, spec)
        redone = None if only is None else keys[np.asarray(only, dtype=bool)]
        ei, ej = positions(keys, self.clustering.edges(pairs, earlier, redone))
        found = self.clustering.cluster(keys, ei, ej, valid)
        T = in_order(traits(df, fields), order)
        self.clustering.choose_survivors(found, T, fields, valid)
        stats["seconds"] = time.perf_counter() - t0
        stats.update({"matches": int((pairs["decision"] == "match").sum()),
                      "review": int((pairs["decision"] == "review").sum()),
                      "clusters": len(found), "clusters_to_review": sum(c.status == "review" for c in found)})
        return DedupResult(spec, keys, pairs, found, scorer, stats, P, order, T)

    @property
    def fs_model(self) -> FSModel:
        """The unsupervised model (what a run stores for the next night)."""
        if self.model is None:
            raise ValueError("no model yet: deduplicate, or estimate u first (dd.training.estimate_u)")
        return self.model


class Training:
    """``dd.training``: learning the Fellegi–Sunter model (Splink's way) and the stewards' model."""

    def __init__(self, dd: Deduplicator):
        self._dd = dd

    def _rng(self, rng: np.random.Generator | None) -> np.random.Generator:
        return rng if rng is not None else np.random.default_rng(self._dd.seed)

    def estimate_u(self, P: pd.DataFrame, rng: np.random.Generator | None = None) -> FSModel:
        """A fresh model whose u (how often non-matches agree at each level) comes from random
        pairs of the normalised records ``P``; it becomes the Deduplicator's."""
        model = FSModel(self._dd.spec)
        model.estimate_u(P, self._rng(rng))
        self._dd.model = model
        return model

    def estimate_m(self, P: pd.DataFrame, rng: np.random.Generator | None = None) -> None:
        """m (how often matches agree at each level) by EM, one session per ``training`` entry of
        the spec: pairs blocked on its ``block`` teach the m of its ``fields``."""
        spec, model, rng = self._dd.spec, self._dd.fs_model, self._rng(rng)
        names = [f.name for f in spec.fields]
        sessions = []
        for t in spec.training:
            ti, tj = blocking.training_pairs(P, t.block, TRAIN_PAIRS // max(len(spec.training), 1), rng)
            learns = [names.index(f) for f in t.fields]  # the session's EM reads these fields' levels alone
            sessions.append((compare.levels(P, spec, ti, tj, fields=learns), learns, pair_tf(P, spec, ti, tj)))
        model.train(sessions)

    def estimate_prior(self, cand: Candidates, n: int, rng: np.random.Generator | None = None) -> None:
        """The probability that two random records match — the prior the m/u Bayes factors update
        (u comes from random pairs, so the prior must too). Counted Splink's way from a deterministic
        rule and its recall: pairs with equal ID numbers (``prior_from``: another field), divided by
        the share of matches that keep their ID intact (m of its top level, learned by EM, unless the
        spec gives the recall). Without an ID field, EM on the candidates ``cand`` of ``n`` records."""
        spec, model, lv, tf = self._dd.spec, self._dd.fs_model, cand.lv, cand.tf
        kinds = [f.kind for f in spec.fields]
        k = spec.field_index(spec.prior_from.field) if spec.prior_from else \
            kinds.index("id_number_cn") if "id_number_cn" in kinds else None
        if k is not None and len(lv):
            top = model.n_levels(k) - 1
            recall = spec.prior_from.recall if spec.prior_from else max(float(model.m[k][top]), 0.05)
            expected = (lv[:, k] == top).sum() / recall
            model.prior = float(np.clip(expected / max(n * (n - 1) / 2, 1), 1e-12, 0.5))
        elif len(lv):
            sample = self._rng(rng).choice(len(lv), TRAIN_PAIRS, replace=False) if len(lv) > TRAIN_PAIRS else slice(None)
            model.estimate_prior(lv[sample], tf[sample] if tf.size else None)

    def supervised(self, P: pd.DataFrame) -> SupervisedModel | None:
        """A model trained on the stewards' merge / not-same decisions between records of ``P``, on
        top of the Fellegi–Sunter one, once there are enough (None before)."""
        decisions, spec = self._dd.decisions, self._dd.spec
        if decisions is None or decisions.empty:
            return None
        d = decisions[decisions["decision"].isin(["merge", "not_same"])]
        pos = {k: n for n, k in enumerate(P["key"])}
        d = d[d["left"].isin(pos) & d["right"].isin(pos)]
        if len(d) < SupervisedModel.MIN_LABELS:
            return None
        i = d["left"].map(pos).to_numpy()
        j = d["right"].map(pos).to_numpy()
        sup = SupervisedModel(spec, self._dd.fs_model)
        y = (d["decision"] == "merge").to_numpy().astype(int)
        return sup if sup.fit(compare.levels(P, spec, i, j), y, pair_tf(P, spec, i, j)) else None


class Inference:
    """``dd.inference``: candidate pairs, and their scores and decisions."""

    def __init__(self, dd: Deduplicator):
        self._dd = dd

    def candidates(self, P: pd.DataFrame, *, only: np.ndarray | None = None,
                   stats: blocking.BlockingStats | None = None) -> Candidates:
        """The candidate pairs of the normalised records ``P`` (``only``: those involving these
        records) and their comparison levels."""
        return Candidates(*self._dd.make_candidates(P, self._dd.spec, only=only, stats=stats))

    def predict(self, P: pd.DataFrame, cand: Candidates) -> tuple[pd.DataFrame, Scorer]:
        """The candidates scored — by the stewards' model once they decided enough pairs, else by
        the Fellegi–Sunter one —, decided by the spec's thresholds and guards and the stewards' own
        verdicts, and the pairs worth keeping (``engine.classify``); with the scorer that scored them."""
        dd = self._dd
        scorer: Scorer = dd.training.supervised(P) or dd.fs_model  # the stewards outrank what EM learns alone
        return classify(P, dd.spec, scorer, dd.decisions, *cand), scorer


class Clustering:
    """``dd.clustering``: archives of one resident from the match pairs, with their survivors."""

    def __init__(self, dd: Deduplicator):
        self._dd = dd

    def edges(self, pairs: pd.DataFrame, earlier: pd.DataFrame | None = None,
              redone: Iterable[str] | None = None) -> pd.DataFrame:
        """What the clusters are made of, the same way in full and incremental runs: this run's
        matches, ``earlier`` runs' between archives not compared again (``redone``: those that were;
        None: all), the stewards' merges — never a pair they marked as two people (``engine.key_edges``)."""
        return key_edges(pairs, earlier, redone, self._dd.decisions)

    def cluster(self, keys: np.ndarray, i: np.ndarray, j: np.ndarray, valid_id: np.ndarray | None) -> list[Cluster]:
        """Clusters of the records ``keys`` from match edges (i, j: positions), guarded against
        chaining two valid ID numbers and pairs a steward marked as two people."""
        return clusters(len(keys), i, j, valid_id, cannot_link(keys, self._dd.decisions))

    def choose_survivors(self, found: list[Cluster], traits_: pd.DataFrame, fields: list[str],
                         valid_id: np.ndarray | None) -> None:
        """The surviving archive of each cluster and field-level proposals (``cluster.choose_survivors``)."""
        choose_survivors(found, traits_, fields, valid_id, self._dd.org_levels)
