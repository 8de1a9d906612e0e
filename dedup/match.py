"""One archive about to be created, matched against the archives the last duplicate scan indexed
(the MPI's $match): the scan's own spec, model, normalisation, blocking, comparison levels,
Fellegi–Sunter scores, thresholds and guards, on the candidate and the index's records of the blocks
it falls in — a night of one archive that is never stored.

    m = Matcher.open(cfg, store, spec, source)   # None and why when there is no usable index
    found = m.match({"name": "张三", "id_number": "…", "birth_date": "1980-01-02", ...})

Only the index's rows sharing a block with the candidate are read (memory-mapped): opening the
matcher sorts each blocking pass's hashes once and counts the term-frequency field's values once, so
a call finds its blocks by binary search and never scans the index. Nothing is written, neither to
the MPI nor to the index or the audit store. The stewards' supervised model (a
run trains it afresh from their decisions) is not used: the candidate is scored by the
Fellegi–Sunter model the scan stored, as the scan scores a pair before the stewards' verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from healthqa.config import Config

from . import compare, guards, index
from .engine import compare_candidates, decide, scores
from .model import FSModel
from .normalise import block_column, prepare_one
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
        self._blocks = [_sorted_hashes(idx, block_column(p)) for p in range(len(spec.blocking))]
        self._counts = {f.name: _value_counts(idx, f.name) for f in spec.fields if f.tf}
        needed = ["key", *(block_column(p) for p in range(len(spec.blocking))),
                  *(c for f in spec.fields for c in compare.field_columns(f))]
        self._columns = [c for c in dict.fromkeys(needed) if c in idx.normalised]

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
        """``match`` of each record, each on its own, as if it were alone."""
        return [self._one(prepare_one({**r, self.spec.key: CANDIDATE}, self.spec)) for r in records]

    def rows(self, hashes: list[int]) -> np.ndarray:
        """Positions of the index's live rows that share a block with a record whose blocking
        hashes (one per pass, 0: no key) are ``hashes``: what ``Index.having`` finds, by binary search."""
        found = []
        for h, (values, positions) in zip(hashes, self._blocks):
            if h:
                found.append(positions[np.searchsorted(values, h, "left"):np.searchsorted(values, h, "right")])
        return np.unique(np.concatenate(found)) if found else np.array([], dtype=np.int64)

    def term_frequencies(self, values: dict[str, np.ndarray], row: dict) -> dict[str, np.ndarray]:
        """Each ``tf`` field's frequency among the MPI's archives with the candidate ``row`` counted
        in, for each of ``values`` (the field's values), as the scan counts a night's archive
        (``night._term_frequencies``), from counts made once."""
        out = {}
        for name, (counts, total) in self._counts.items():
            mine = row[name]
            here = mine is not None and not pd.isna(mine)
            n = total + here
            out[f"{name}__tf"] = np.array([np.nan if v is None or pd.isna(v) else
                                           (counts.get(v, 0) + (here and v == mine)) / n for v in values[name]],
                                          dtype=float)
        return out

    def _one(self, row: dict) -> list[Found]:
        spec, idx = self.spec, self.idx
        pos = self.rows([row[block_column(p)] for p in range(len(spec.blocking))])
        if not len(pos):
            return []
        arrays = idx.take_arrays(pos, self._columns)  # the candidate last, as one more row
        arrays = {c: _appended(a, row[c]) for c, a in arrays.items()}
        arrays.update(self.term_frequencies(arrays, row))
        C = pd.DataFrame(arrays)
        only = np.r_[np.zeros(len(pos), dtype=bool), True]
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
        keys = arrays["key"]
        shown = {f.name: C[f.name].to_numpy(dtype=object) for f in spec.fields if f.name in C}  # dates as Timestamps
        out: dict[str, Found] = {}
        for n in np.argsort(-score, kind="stable"):
            k = keys[other[n]]
            if k in out:  # two rows under one number: the better-scored one speaks for it
                continue
            expl = {f.name: {"level": compare.level_name(f, int(lv[n, m])), "weight": round(float(W[n, m]), 3)}
                    for m, f in enumerate(spec.fields)}
            values = {name: (None if pd.isna(v[other[n]]) else v[other[n]]) for name, v in shown.items()}
            out[k] = Found(str(k), float(score[n]), str(decision[n]), str(by[n]), expl, values)
        return list(out.values())


def _sorted_hashes(idx: index.Index, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A blocking pass's hashes of the index's live rows (0, no key, left out), sorted, with each
    one's row position."""
    values, positions = [], []
    for s, t in enumerate(idx.tables):
        h = pc.fill_null(t.column(column), 0).to_numpy()
        keep = idx.live[s] & (h != 0)
        values.append(h[keep])
        positions.append(np.flatnonzero(keep) + idx.offsets[s])
    v, p = np.concatenate(values), np.concatenate(positions)
    order = np.argsort(v, kind="stable")
    return v[order], p[order]


def _value_counts(idx: index.Index, column: str) -> tuple[dict, int]:
    """How many of the index's live rows hold each value of ``column``, and how many hold one."""
    live = [t.column(column).filter(pa.array(m)) for t, m in zip(idx.tables, idx.live)]
    col = pa.chunked_array([c for x in live for c in x.chunks], idx.tables[0].schema.field(column).type)
    vc = pc.value_counts(col.drop_null())
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())), len(col) - col.null_count


def _appended(a: np.ndarray, value) -> np.ndarray:
    """``a`` with ``value`` after its last element, in ``a``'s dtype (a missing date as NaT)."""
    if a.dtype.kind == "M":
        value = np.datetime64("NaT") if value is None or pd.isna(value) else np.datetime64(value, "ns")
    return np.append(a, np.array([value], dtype=a.dtype))
