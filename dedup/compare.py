"""Comparison levels per field kind, vectorised over arrays of record pairs.

A level is a small integer (higher = closer agreement), -1 when either side is missing. The levels
are what Fellegi–Sunter weighs: a pair's evidence is the sum of its fields' level weights. String
similarities come from rapidfuzz's element-wise ``cpdist`` (C++, no per-pair Python).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import recordlinkage
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, Indel, JaroWinkler
from recordlinkage.base import BaseCompareFeature

from .normalise import readings
from .spec import FieldSpec, Spec

NULL = -1
LEVELS = {  # kind -> level names, lowest to highest
    "id_number_cn": ["both valid, different", "different", "one edit apart", "equal"],
    "name_zh": ["different", "similar characters", "same pinyin", "equal"],
    "name": ["different", "similar", "close", "equal"],
    "string": ["different", "similar", "equal"],
    "date": ["different", "year only", "day and month swapped", "lunar calendar shift", "equal"],
    "phone": ["different", "equal"],
    "address": ["different", "similar", "equal"],
    "exact": ["different", "equal"],
}


class FieldLevels(BaseCompareFeature):
    """One spec field as a recordlinkage comparison feature: the records' derived columns in, the
    field's agreement levels out (vectorised over all pairs at once)."""

    def __init__(self, f: FieldSpec):
        cols = [f.name, f"{f.name}__valid"] if f.kind == "id_number_cn" else [f.name]
        super().__init__(cols, cols, label=f.name)
        self.field = f
        self.cols = cols

    def _compute_vectorized(self, *args):
        k = len(self.cols)
        left = {c: s.to_numpy() for c, s in zip(self.cols, args[:k])}
        right = {c: s.to_numpy() for c, s in zip(self.cols, args[k:])}
        return pd.Series(field_levels(self.field, left, right), index=args[0].index)


def levels(prepared: pd.DataFrame, spec: Spec, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """An (n_pairs, n_fields) int8 matrix of comparison levels, through recordlinkage's Compare."""
    if not len(i):
        return np.zeros((0, len(spec.fields)), dtype=np.int8)
    cmp = recordlinkage.Compare([FieldLevels(f) for f in spec.fields])
    pairs = pd.MultiIndex.from_arrays([i, j])
    return cmp.compute(pairs, prepared).to_numpy(dtype=np.int8)


def _sim(a, b, present, scorer) -> np.ndarray:
    out = np.zeros(len(a))
    if present.any():
        out[present] = process.cpdist(list(a[present]), list(b[present]), scorer=scorer, workers=-1)
    return out


def field_levels(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    """Levels of one field for aligned arrays of left and right records' derived values."""
    n = f.name
    a, b = left[n], right[n]
    lv = np.full(len(a), NULL, dtype=np.int8)
    if f.kind == "date":
        return _date_levels(a.astype("datetime64[D]"), b.astype("datetime64[D]"), lv)
    a, b = a.astype(object), b.astype(object)
    present = pd.notna(a) & pd.notna(b)
    eq = present & (a == b)
    if f.kind == "id_number_cn":
        both_valid = left[f"{n}__valid"].astype(bool) & right[f"{n}__valid"].astype(bool)
        dist = np.where(present, 99, 0)
        if present.any():
            dist[present] = process.cpdist(list(a[present]), list(b[present]), scorer=DamerauLevenshtein.distance,
                                           workers=-1)
        lv[present] = np.where(eq[present], 3, np.where(dist[present] <= 1, 2, np.where(both_valid[present], 0, 1)))
    elif f.kind == "name_zh":
        sim = _sim(a, b, present, JaroWinkler.normalized_similarity)
        same_pinyin = np.zeros(len(a), dtype=bool)
        differ = np.flatnonzero(present & ~eq)
        if len(differ):
            same_pinyin[differ] = [bool(readings(x) & readings(y)) for x, y in zip(a[differ], b[differ])]
        lv[present] = np.where(eq[present], 3, np.where(same_pinyin[present], 2, np.where(sim[present] >= 0.8, 1, 0)))
    elif f.kind in ("name", "string"):
        sim = _sim(a, b, present, JaroWinkler.normalized_similarity)
        if f.kind == "name":
            lv[present] = np.where(eq[present], 3, np.where(sim[present] >= 0.92, 2, np.where(sim[present] >= 0.8, 1, 0)))
        else:
            lv[present] = np.where(eq[present], 2, np.where(sim[present] >= 0.85, 1, 0))
    elif f.kind == "address":
        sim = _sim(a, b, present, Indel.normalized_similarity)
        lv[present] = np.where(eq[present], 2, np.where(sim[present] >= 0.8, 1, 0))
    else:  # phone, exact
        lv[present] = np.where(eq[present], 1, 0)
    return lv


def _date_levels(a: np.ndarray, b: np.ndarray, lv: np.ndarray) -> np.ndarray:
    present = ~(np.isnat(a) | np.isnat(b))
    gap = np.abs((a - b).astype("timedelta64[D]").astype(np.int64))
    ya, yb = a.astype("datetime64[Y]"), b.astype("datetime64[Y]")
    ma = (a.astype("datetime64[M]") - ya.astype("datetime64[M]")).astype(np.int64) + 1
    mb = (b.astype("datetime64[M]") - yb.astype("datetime64[M]")).astype(np.int64) + 1
    da = (a - a.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    db = (b - b.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    same_year = ya == yb
    eq = present & (gap == 0)
    lv[present] = 0
    lv[present & same_year & (((ma == 1) & (da == 1)) | ((mb == 1) & (db == 1)))] = 1  # year only known
    lv[present & (gap >= 20) & (gap <= 50)] = 3  # a lunar-calendar birthday recorded instead
    lv[present & same_year & (ma == db) & (da == mb) & ~eq] = 2  # day and month swapped (more specific)
    lv[eq] = 4
    return lv


def level_name(f: FieldSpec, level: int) -> str:
    return "missing" if level == NULL else LEVELS[f.kind][level]
