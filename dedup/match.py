"""One archive about to be created, matched against the archives the last duplicate scan indexed
(the MPI's $match): the scan's own spec, model, normalisation, blocking, comparison levels,
Fellegi–Sunter scores, thresholds and guards, on the candidate and the index's records of the blocks
it falls in — a night of one archive that is never stored.

    m = Matcher.open(cfg, store, spec, source)   # None and why when there is no usable index
    found = m.match({"name": "张三", "id_number": "…", "birth_date": "1980-01-02", ...})

Only the index's rows sharing a block with the candidate are read (memory-mapped); nothing is
written, neither to the MPI nor to the index or the audit store. The stewards' supervised model (a
run trains it afresh from their decisions) is not used: the candidate is scored by the
Fellegi–Sunter model the scan stored, as the scan scores a pair before the stewards' verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from healthqa.config import Config

from . import compare, guards, index
from .engine import compare_candidates, decide, scores
from .model import FSModel
from .night import _nonzero, _term_frequencies
from .normalise import block_column, prepare
from .spec import Spec

CANDIDATE = "\x00candidate"  # the candidate's archive number: never an MPI's


@dataclass
class Found:
    """An indexed archive the candidate may be: its number, score, decision (match, review,
    non_match), the guard that held it back ("" for none), per field the level and its weight, and
    its normalised values (to be masked before anyone sees them)."""

    key: str
    score: float
    decision: str
    guard: str
    explanation: dict
    values: dict


class Matcher:
    """The index of the last successful dedup run of ``source`` with the model it learned."""

    def __init__(self, spec: Spec, model: FSModel, idx: index.Index, run_id: int, as_of: datetime | None):
        self.spec, self.model, self.idx, self.run_id, self.as_of = spec, model, idx, run_id, as_of
        self.token = idx.manifest.get("token")

    @classmethod
    def open(cls, cfg: Config, store, spec: Spec, source: str) -> tuple[Matcher | None, str]:
        """The matcher of the last dedup run, or None and why (no run yet, another configuration's
        model, an index missing or stale: the scan must run first)."""
        stored = store.dedup.last_model(source)
        if not stored:
            return None, "no dedup run yet"
        ident = index.identity(cfg, source, spec)
        if stored.get("inputs") != ident:
            return None, "another source"
        idx, why = index.load(index.path(index.data_dir(cfg), source, ident), ident, stored.get("index"))
        if idx is None:
            return None, why
        run_id = int(idx.manifest.get("run_id") or 0)
        run = store.runs.get(run_id) if run_id else None
        as_of = (run.finished_at or run.started_at) if run is not None else None
        return cls(spec, FSModel.from_dict(spec, stored), idx, run_id, as_of), "used"

    def match(self, record: dict) -> list[Found]:
        """The indexed archives sharing a block with ``record`` (canonical columns of the spec's
        table), scored and decided as the scan does, best first; one entry per archive number."""
        return self.match_many([record])[0]

    def match_many(self, records: list[dict]) -> list[list[Found]]:
        """``match`` of each record: normalised together (``prepare`` works column-wise, so many
        records cost about what one does), then each matched on its own, as if it were alone."""
        spec = self.spec
        df = pd.DataFrame([{**dict.fromkeys(spec.columns), **r, spec.key: CANDIDATE} for r in records])
        P = prepare(df, spec)
        return [self._one(P.iloc[[k]].reset_index(drop=True)) for k in range(len(records))]

    def _one(self, PN: pd.DataFrame) -> list[Found]:
        spec, idx = self.spec, self.idx
        want = [idx.having(block_column(p), _nonzero(PN[block_column(p)])) for p in range(len(spec.blocking))]
        pos = np.unique(np.concatenate(want)) if want else np.array([], dtype=np.int64)
        if not len(pos):
            return []
        cols = [c for c in idx.normalised if not c.endswith("__tf")]
        PC = idx.take(pos, cols)
        C = pd.concat([PC, PN[[c for c in PN.columns if not c.endswith("__tf")]]], ignore_index=True)
        only = np.r_[np.zeros(len(PC), dtype=bool), np.ones(len(PN), dtype=bool)]
        _term_frequencies(C, spec, idx, PN, set())  # the MPI's frequencies, the candidate counted in
        i, j, lv, tf = compare_candidates(C, spec, only=only)
        if not len(i):
            return []
        score = scores(self.model, lv, tf)
        decision = decide(spec, score, lv)
        th = spec.thresholds
        alone = np.where(score >= th.match, "match", np.where(score >= th.review, "review", "non_match"))
        _, by = guards.lowered(spec, lv, alone.astype(object))
        W = self.model.weights(lv, tf if tf.size and not np.isnan(tf).all() else None)
        other = np.where(only[i], j, i)
        keys = C["key"].to_numpy(dtype=object)
        out: dict[str, Found] = {}
        for n in np.argsort(-score, kind="stable"):
            k = keys[other[n]]
            if k in out:  # two rows under one number: the better-scored one speaks for it
                continue
            expl = {f.name: {"level": compare.level_name(f, int(lv[n, m])), "weight": round(float(W[n, m]), 3)}
                    for m, f in enumerate(spec.fields)}
            row = C.iloc[other[n]]
            values = {f.name: (None if pd.isna(row[f.name]) else row[f.name]) for f in spec.fields if f.name in row}
            out[k] = Found(str(k), float(score[n]), str(decision[n]), str(by[n]), expl, values)
        return list(out.values())
