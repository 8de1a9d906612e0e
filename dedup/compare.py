"""Comparison levels per field kind, vectorised over arrays of record pairs.

A level is a small integer (higher = closer agreement), -1 when either side is missing. The levels
are what Fellegi–Sunter weighs: a pair's evidence is the sum of its fields' level weights. String
similarities come from rapidfuzz's element-wise ``cpdist`` (C++, no per-pair Python): the levels of a
million pairs are a few array operations per field. The built-in
kinds are listed at the end of this module; plugins add their own (``kinds.py``).
"""

from __future__ import annotations

from itertools import repeat
from types import SimpleNamespace

import numpy as np
import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, Hamming, Indel, JaroWinkler

from . import kinds, normalise
from .kinds import NULL, ComparisonKind
from .normalise import _char_readings, readings
from .spec import FieldSpec, Spec


def field_columns(f: FieldSpec) -> list[str]:
    """The derived columns a field's comparison reads: its kind's, its swap partner's value, and the
    date its ``carried_by`` ID number carries."""
    return [f.name + suffix for suffix in kinds.get(f.kind).columns] + ([f.swap_with] if f.swap_with else []) \
        + ([f"{f.carried_by}__birth"] if f.carried_by else [])


def levels(prepared: pd.DataFrame, spec: Spec, i: np.ndarray, j: np.ndarray,
           fields: list[int] | None = None) -> np.ndarray:
    """An (n_pairs, n_fields) int8 matrix of comparison levels: per field, its kind's ``compare`` on
    the two sides' derived columns (``i``, ``j``: record positions), vectorised over all pairs.
    ``fields``: only these fields' columns are compared (an EM session learns a few; the others
    are left ``NULL``)."""
    out = np.zeros((len(i), len(spec.fields)), dtype=np.int8)
    if not len(i):
        return out
    for k, f in enumerate(spec.fields):
        if fields is not None and k not in fields:
            out[:, k] = NULL
            continue
        cols = {c: prepared[c].to_numpy() for c in field_columns(f)}
        kind_compare = kinds.get(f.kind).compare
        for s in range(0, len(i), LEVEL_PAIRS):  # a pair's levels are its own: slices give the same
            a, b = i[s:s + LEVEL_PAIRS], j[s:s + LEVEL_PAIRS]
            out[s:s + LEVEL_PAIRS, k] = kind_compare(f, {c: v[a] for c, v in cols.items()}, {c: v[b] for c, v in cols.items()})
    return out


# pairs compared at once: a comparison's temporaries (the sides' values, ID numbers as arrays of
# code points) grow with the pairs, and a blocking pass hands over up to a few million at a time
LEVEL_PAIRS = 262_144


PARALLEL_PAIRS = 20_000  # fewer pairs are compared in the calling thread: starting workers costs more


def _sim(a, b, present, scorer) -> np.ndarray:
    out = np.zeros(len(a))
    n = int(present.sum())
    if n:
        out[present] = process.cpdist(list(a[present]), list(b[present]), scorer=scorer,
                                      workers=-1 if n >= PARALLEL_PAIRS else 1)
    return out


def _sides(f: FieldSpec, left: dict, right: dict):
    """The two sides as object arrays, which pairs have both, which are equal, and the levels
    array to fill (``NULL`` where a side is missing)."""
    a, b = np.asarray(left[f.name], dtype=object), np.asarray(right[f.name], dtype=object)  # no copy
    present = pd.notna(a) & pd.notna(b)
    return a, b, present, present & (a == b), np.full(len(a), NULL, dtype=np.int8)


def compare_id_number(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    """One edit apart: one typing error in the 18 characters, or two adjacent digits of the first 17
    swapped where a check character cannot tell (a 15-digit legacy number's is computed, not typed;
    an invalid number's is wrong anyway). Two numbers valid as typed are never one swap apart."""
    a, b, present, eq, lv = _sides(f, left, right)
    both_valid = left[f"{f.name}__valid"].astype(bool) & right[f"{f.name}__valid"].astype(bool)
    legacy = left[f"{f.name}__legacy"].astype(bool) | right[f"{f.name}__legacy"].astype(bool)
    near = np.zeros(len(a), dtype=bool)
    todo = present & ~eq & _maybe_near(a, b, present & ~eq)
    if todo.any():
        x, y = list(a[todo]), list(b[todo])
        dist = process.cpdist(x, y, scorer=DamerauLevenshtein.distance, workers=-1)
        x17, y17 = [v[:17] for v in x], [v[:17] for v in y]
        swap = (process.cpdist(x17, y17, scorer=DamerauLevenshtein.distance, workers=-1) == 1) \
            & (process.cpdist(x17, y17, scorer=Hamming.distance, workers=-1) == 2)
        near[todo] = (dist <= 1) | (swap & (~both_valid[todo] | legacy[todo]))
    lv[present] = np.where(eq[present], 4, np.where(near[present], 2, np.where(both_valid[present], 0, 1)))
    lv[near & _only_in_prefix(a, b, near)] = 3
    return lv


def _only_in_prefix(a: np.ndarray, b: np.ndarray, near: np.ndarray, prefix: int = 14) -> np.ndarray:
    """Which of the ``near`` pairs (18 characters each) differ only within the first ``prefix``: the
    area code and the birth date. People the register numbers one after another (twins, two born the
    same day in one area) share those and differ in the order code and the check character; a
    difference in the area or the birth date, the rest equal, is a typing error."""
    out = np.zeros(len(a), dtype=bool)
    idx = np.flatnonzero(near)
    if len(idx):
        cx = a[idx].astype("<U18").view(np.uint32).reshape(len(idx), 18)
        cy = b[idx].astype("<U18").view(np.uint32).reshape(len(idx), 18)
        out[idx] = ~(cx[:, prefix:] != cy[:, prefix:]).any(axis=1)
    return out


def _maybe_near(a: np.ndarray, b: np.ndarray, todo: np.ndarray, width: int = 32) -> np.ndarray:
    """Which pairs can be one edit apart or two of the first 17 characters swapped: lengths at most
    one apart, and equal lengths differing in at most two places, or the first 17 characters in
    exactly two. Positions compared as arrays (most pairs, random ones above all, differ in many), so
    the edit distances run on the few left; values longer than ``width`` are all kept."""
    keep = todo.copy()
    idx = np.flatnonzero(todo)
    if not len(idx):
        return keep
    x, y = a[idx].astype(str), b[idx].astype(str)
    if max(x.dtype.itemsize, y.dtype.itemsize) // 4 > width:
        return keep
    w = max(x.dtype.itemsize, y.dtype.itemsize) // 4
    cx = x.astype(f"<U{w}", copy=False).view(np.uint32).reshape(len(idx), w)  # padded with 0: no character
    cy = y.astype(f"<U{w}", copy=False).view(np.uint32).reshape(len(idx), w)
    lx, ly = np.char.str_len(x), np.char.str_len(y)
    differ = cx != cy
    hamming = differ.sum(axis=1)
    keep[idx] = (np.abs(lx - ly) == 1) | ((lx == ly) & (hamming <= 2)) | (differ[:, :17].sum(axis=1) == 2)
    return keep


def compare_name_zh(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    a, b, present, eq, lv = _sides(f, left, right)
    sim = _sim(a, b, present, JaroWinkler.normalized_similarity)
    same_pinyin = np.zeros(len(a), dtype=bool)
    swapped = np.zeros(len(a), dtype=bool)
    dropped = np.zeros(len(a), dtype=bool)
    sounds_swapped = np.zeros(len(a), dtype=bool)
    differ = np.flatnonzero(present & ~eq)
    if len(differ):
        # per distinct name, not per pair: a million pairs hold a few thousand names
        codes, names = pd.factorize(np.concatenate([a[differ], b[differ]]))
        x, y = codes[: len(differ)], codes[len(differ):]
        rows = _NAMES.rows(names)
        same_pinyin[differ] = _share_reading(rows, x, y)
        swapped[differ] = _given_swapped(rows, x, y)
        dropped[differ] = _given_char_dropped(names, x, y)
        sounds_swapped[differ] = _same_key(rows, x, y)
    lv[present] = np.where(eq[present], 6, np.where(same_pinyin[present], 5, np.where(swapped[present], 4, np.where(
        sounds_swapped[present], 3, np.where(dropped[present], 2,
                                             np.where(sim[present] >= f.thresholds["similar characters"], 1, 0))))))
    return lv


def _same_key(rows: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same pinyin with the given name's characters in another order (高慧英 / 高瑛慧: a homophone
    and the order both written otherwise — two slips, each a level of its own): the names' blocking
    key (``normalise.name_key``) agrees."""
    pkey = _NAMES.arrays().pkey[rows]
    return pkey[x] == pkey[y]


def _given_char_dropped(names: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same surname, and one name's one-character given name is one of the other's two given-name
    characters (王晓明 registered as 王明 or 王晓: a character left out at the counter). Siblings
    share a character too, but each has two (王晓明 / 王晓东: not this level). Per distinct name, then
    per pair as integer comparisons (``names[x]``, ``names[y]``: the pairs' names)."""
    distinct = pd.Series(names, dtype=object)
    length = distinct.str.len().to_numpy()
    first, _ = pd.factorize(distinct.str[:1])
    maybe = np.flatnonzero((np.abs(length[x] - length[y]) == 1) & (first[x] == first[y]))
    out = np.zeros(len(x), dtype=bool)
    if not len(maybe):
        return out
    used, inv = np.unique(np.concatenate([x[maybe], y[maybe]]), return_inverse=True)
    s = pd.Series(names[used], dtype=object)
    k = np.where(s.str[:2].isin(normalise.COMPOUND_SURNAMES), 2, 1)
    surname = np.where(k == 2, s.str[:2], s.str[:1])
    given = pd.Series(np.where(k == 2, s.str[2:], s.str[1:]), dtype=object)
    n = given.str.len().to_numpy()
    codes, _ = pd.factorize(np.concatenate([surname, given.str[:1].fillna(""), given.str[1:2].fillna("")]))
    sur, g0, g1 = codes[: len(s)], codes[len(s): 2 * len(s)], codes[2 * len(s):]
    a, b = inv[: len(maybe)], inv[len(maybe):]
    short, long_ = np.where(n[a] < n[b], a, b), np.where(n[a] < n[b], b, a)
    out[maybe] = (sur[a] == sur[b]) & (n[short] == 1) & (n[long_] == 2) & ((g0[short] == g0[long_]) | (g0[short] == g1[long_]))
    return out


def _share_reading(rows: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``readings(names[x]) & readings(names[y])`` per pair (``rows``: the names' rows of the name
    table): equal ids where both names have one reading (most), and where either has several,
    whether some reading id of one is among the other's (pairs numbered, their (pair, reading id)
    keys matched as arrays)."""
    t = _NAMES.arrays()
    one = t.one[rows]
    out = (one[x] == one[y]) & (one[x] >= 0)
    several = np.flatnonzero((one[x] < 0) | (one[y] < 0))
    if len(several):
        width = np.int64(len(_NAMES.reading_ids) + 1)
        px, idx = _expand(t, rows[x[several]])
        py, idy = _expand(t, rows[y[several]])
        hit = np.isin(px * width + idx, py * width + idy)
        out[several[np.unique(px[hit])]] = True
    return out


def _expand(t, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``rows``' reading ids with the position of its row: (positions, ids)."""
    n = t.count[rows]
    end = np.cumsum(n)
    pos = np.repeat(np.arange(len(rows), dtype=np.int64), n)
    return pos, t.flat[np.arange(end[-1] if len(end) else 0) - np.repeat(end - n - t.start[rows], n)]


def _given_swapped(rows: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``given_swapped(names[x], names[y])`` per pair, from each name's key (length, surname, sorted
    given name) under either surname length: the surname's length is the first name's."""
    t = _NAMES.arrays()
    by = t.keys[rows].T  # by[k - 1, name]: its key under k
    kx = t.k[rows][x] - 1
    return t.long[rows][x] & (by[kx, x] == by[kx, y])


class _NameTable:
    """Per distinct name, what its comparisons need as integers: the ids of its readings (and of
    the one reading, -1 when several), its surname's length, the ids of its swap keys under a
    surname of one and of two characters, whether its given name has two characters or more, the id
    of its pinyin key (``normalise.name_key``: the given name's sounds in any order). Kept
    for the process: a run's comparisons (u's random pairs, each EM session, the candidates) meet
    the same names again, and a name is found by one look-up instead of being read anew each time.
    Equal ids are equal readings and keys: the levels are those of comparing the texts."""

    def __init__(self):
        self.row: dict[str, int] = {}
        self.reading_ids: dict[str, int] = {}
        self.key_ids: dict[str, int] = {}
        self._cols: list[list[int]] = [[] for _ in range(7)]  # one, k, key1, key2, long, start, pkey
        self._count: list[int] = []
        self._flat: list[int] = []
        self._arrays = None

    def rows(self, names) -> np.ndarray:
        rows = np.fromiter(map(self.row.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        new = np.flatnonzero(rows < 0)
        if len(new):
            rows[new] = self._add(list(dict.fromkeys(names[p] for p in new)), [names[p] for p in new])
        return rows

    def _add(self, new: list[str], wanted: list[str]) -> list[int]:
        """Add the distinct names ``new``; the rows of ``wanted`` (names among them). In bulk, a
        name's text work done by C string methods: its one reading is its characters' first readings
        joined by spaces — ``str.translate`` to each reading and a space, the last space cut (what
        ``" ".join`` gives) —; a name with a surname character of several readings (单, 曾) is read by
        ``readings``, as before."""
        chars = set().union(*new)
        first = {ord(ch): _char_readings(ch)[0] + " " for ch in chars}
        several = {ch for ch in chars if len(_char_readings(ch)) > 1}
        compound = normalise.COMPOUND_SURNAMES
        one, flat, count, start = self._cols[0], self._flat, self._count, self._cols[5]
        rid, kid = self.reading_ids, self.key_ids
        for n in new:
            k = 2 if n[:2] in compound else 1
            if several and not several.isdisjoint(n[:k]):
                rs = sorted(readings(n))
                ids = [rid.setdefault(r, len(rid)) for r in rs]
                one.append(ids[0] if len(ids) == 1 else -1)
            else:  # ``readings``' one product: each character's first
                ids = [rid.setdefault(n.translate(first)[:-1], len(rid))]
                one.append(ids[0])
            start.append(len(flat))
            count.append(len(ids))
            flat += ids
        length = [len(n) for n in new]
        ks = [2 if n[:2] in compound else 1 for n in new]
        self._cols[1] += ks
        for col, j in ((self._cols[2], 1), (self._cols[3], 2)):
            col += [kid.setdefault(f"{m}|{head}|{given}", len(kid))
                    for m, head, given in zip(length, *_split_sorted(new, j, "\0" in chars))]
        self._cols[4] += [int(m - k >= 2) for m, k in zip(length, ks)]
        self._cols[6] += [kid.setdefault("pinyin|" + normalise.name_key(n), len(kid)) for n in new]
        base = len(self.row)
        self.row.update(zip(new, range(base, base + len(new))))
        self._arrays = None
        return [self.row[n] for n in wanted]

    def arrays(self):
        if self._arrays is None:
            one, k, key1, key2, long, start, pkey = (np.array(c, dtype=np.int64) for c in self._cols)
            self._arrays = SimpleNamespace(one=one, k=k, keys=np.stack([key1, key2], axis=1), long=long.astype(bool),
                                           pkey=pkey,
                                           start=start, count=np.array(self._count, dtype=np.int64),
                                           flat=np.array(self._flat, dtype=np.int64))
        return self._arrays


def _split_sorted(names: list[str], j: int, slow: bool = False) -> tuple[list[str], list[str]]:
    """Each name's first ``j`` characters, and the rest in sorted order (code points), as arrays of
    code points sorted row by row; ``slow`` (a name holding NUL, which NumPy's text pads with): per name."""
    if slow or not names:
        return [n[:j] for n in names], ["".join(sorted(n[j:])) for n in names]
    a = np.array(names, dtype=str)
    w = a.dtype.itemsize // 4
    codes = a.view(np.uint32).reshape(len(names), w)
    head = np.ascontiguousarray(codes[:, :min(j, w)]).view(f"<U{min(j, w)}").ravel().tolist()
    if w <= j:
        return head, [""] * len(names)
    pad = np.uint32(0xFFFFFFFF)  # the padding sorted last, then back to NUL: NumPy's text ends there
    rest = np.where(codes[:, j:] == 0, pad, codes[:, j:])
    rest.sort(axis=1)
    rest[rest == pad] = 0
    return head, rest.view(f"<U{w - j}").ravel().tolist()


_NAMES = _NameTable()


def forget_names() -> None:
    """Let the name table go (a run's comparisons are done: its memory is the run's to use)."""
    global _NAMES
    _NAMES = _NameTable()


def given_swapped(x: str, y: str) -> bool:
    """The same surname and the given name's characters in another order (刘艳华 / 刘华艳)."""
    k = 2 if x[:2] in normalise.COMPOUND_SURNAMES else 1
    return len(x) == len(y) and len(x) - k >= 2 and x[:k] == y[:k] and sorted(x[k:]) == sorted(y[k:])


def compare_name(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    a, b, present, eq, lv = _sides(f, left, right)
    sim = _sim(a, b, present, JaroWinkler.normalized_similarity)
    close, similar = f.thresholds["close"], f.thresholds["similar"]
    lv[present] = np.where(eq[present], 4, np.where(sim[present] >= close, 2, np.where(sim[present] >= similar, 1, 0)))
    if f.swap_with:
        lv[crossed(f, left, right) & present & ~eq] = 3
    return lv


def crossed(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    """Pairs whose values of ``f`` and its ``swap_with`` partner are entered in each other's field
    (given name and surname swapped between the columns: ryan campbell / campbell ryan)."""
    a, b = left[f.name].astype(object), right[f.name].astype(object)
    pa, pb = left[f.swap_with].astype(object), right[f.swap_with].astype(object)
    both = pd.notna(a) & pd.notna(b) & pd.notna(pa) & pd.notna(pb)
    return both & (a == pb) & (pa == b) & (a != pa)


def compare_string(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    a, b, present, eq, lv = _sides(f, left, right)
    sim = _sim(a, b, present, JaroWinkler.normalized_similarity)
    lv[present] = np.where(eq[present], 2, np.where(sim[present] >= f.thresholds["similar"], 1, 0))
    return lv


def compare_address(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    """Equal; the same house, one side without its building and flat (…路12号 / …路12号3幢502室:
    the granularity a clerk happened to write); one character apart (a digit of the house or flat
    number typed wrong, or two typed the wrong way round: 东邵路174号 / 东邵路114号 — next-door
    numbers read so too, which the level's learned weight knows); similar (Indel); different."""
    a, b, present, eq, lv = _sides(f, left, right)
    sim = _sim(a, b, present, Indel.normalized_similarity)
    lv[present] = np.where(eq[present], 4, np.where(sim[present] >= f.thresholds["similar"], 1, 0))
    similar = np.flatnonzero(lv == 1)
    if len(similar):
        typo = process.cpdist(list(a[similar]), list(b[similar]), scorer=DamerauLevenshtein.distance,
                              workers=-1 if len(similar) >= PARALLEL_PAIRS else 1) == 1
        lv[similar[typo]] = 2
    # the shorter side ends at the house number and the longer begins with it: their Indel similarity
    # is 2 * len(short) / (len(short) + len(long)), so the same house is among the pairs at least half alike
    idx = np.flatnonzero(present & ~eq & (sim >= 0.5))
    if len(idx):
        x, y = a[idx].astype(str), b[idx].astype(str)
        house = (np.strings.endswith(x, "号") & np.strings.startswith(y, x)) \
            | (np.strings.endswith(y, "号") & np.strings.startswith(x, y))
        lv[idx[house]] = 3
    return lv


def compare_phone(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    """Equal; one digit apart (one digit typed wrong, or two adjacent digits the wrong way round: a
    number read out over the counter and typed again); or different. Compared as arrays of code
    points, as ``_maybe_near`` does: no per-pair Python."""
    a, b, present, eq, lv = _sides(f, left, right)
    lv[present] = np.where(eq[present], 2, 0)
    idx = np.flatnonzero(present & ~eq)
    if len(idx):
        workers = -1 if len(idx) >= PARALLEL_PAIRS else 1
        # Hamming pads the shorter side: one difference, or two with one transposition between them
        ham = process.cpdist(list(a[idx]), list(b[idx]), scorer=Hamming.distance, workers=workers)
        near = np.flatnonzero(ham <= 2)  # few: most numbers differ in many places
        if len(near):
            xs, ys = a[idx[near]].astype(str), b[idx[near]].astype(str)
            same_len = np.char.str_len(xs) == np.char.str_len(ys)
            swap = process.cpdist(list(xs), list(ys), scorer=DamerauLevenshtein.distance) == 1
            lv[idx[near[same_len & ((ham[near] == 1) | swap)]]] = 1
    return lv


def compare_exact(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    """exact: equal or not."""
    _, _, present, eq, lv = _sides(f, left, right)
    lv[present] = np.where(eq[present], 1, 0)
    return lv


def compare_date(f: FieldSpec, left: dict, right: dict) -> np.ndarray:
    """The dates' level; with ``carried_by``, the best of the recorded dates' level and each side's
    carried date against the other's recorded one (the two carried dates are the ID numbers' own
    comparison: not counted twice)."""
    a, b = left[f.name].astype("datetime64[D]"), right[f.name].astype("datetime64[D]")
    lv = _date_levels(a, b, np.full(len(a), NULL, dtype=np.int8))
    if f.carried_by:
        ca, cb = (s[f"{f.carried_by}__birth"].astype("datetime64[D]") for s in (left, right))
        for carried, own, other in ((ca, a, b), (cb, b, a)):
            # only where the carried date differs from the side's recorded one (or stands for a
            # missing one): few pairs
            idx = np.flatnonzero(~np.isnat(carried) & ~np.isnat(other) & (carried != own) & ~_guardian(carried, own))
            if len(idx):
                lv[idx] = np.maximum(lv[idx], _date_levels(carried[idx], other[idx],
                                                           np.full(len(idx), NULL, dtype=np.int8)))
    return lv


# A number whose date lies this long before the archive's own birth date is a guardian's (a parent's
# 身份证 entered on a newborn's archive): its date is not the archive's person's.
GUARDIAN_GAP = np.timedelta64(12 * 365, "D")


def _guardian(carried: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Which archives carry a number born at least ``GUARDIAN_GAP`` before their own recorded date."""
    return ~np.isnat(own) & ~np.isnat(carried) & (own - carried >= GUARDIAN_GAP)


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
    # the year and the month agree, the day does not (a day written wholly wrong): twins share the
    # day, siblings are born months apart; weak evidence, not a date that agrees
    lv[present & same_year & (ma == mb)] = 2
    lv[present & (gap >= 20) & (gap <= 50)] = 4  # a lunar-calendar birthday recorded instead
    # imputed: only the year known (YYYY-01-01) or the month (YYYY-MM-01), against the real date
    year_only = same_year & (((ma == 1) & (da == 1)) | ((mb == 1) & (db == 1)))
    month_only = same_year & (ma == mb) & ((da == 1) | (db == 1))
    lv[present & (year_only | month_only)] = 1
    lv[present & same_year & (ma == db) & (da == mb) & ~eq] = 3  # day and month swapped (more specific)
    # the day typed wrong: one off (a neighbouring key, 12 for 13) or its two digits the wrong way
    # round (21 for 12); the year and the month as recorded. Closer than an imputed month (YYYY-MM-01
    # against the 2nd is a slip of one), so it is set after it.
    reversed_digits = (da >= 10) & (db >= 10) & (da // 10 == db % 10) & (da % 10 == db // 10)
    lv[present & same_year & (ma == mb) & ~eq & ((np.abs(da - db) == 1) | reversed_digits)] = 5
    lv[eq] = 6
    return lv


def level_name(f: FieldSpec, level: int) -> str:
    return kinds.get(f.kind).level_name(level)


def n_levels(f: FieldSpec) -> int:
    return len(kinds.get(f.kind).levels)


# -- the built-in kinds (every registry starts with them) ---------------------------------------------
# A kind's ``thresholds`` are the least similarity (rapidfuzz's normalised Jaro–Winkler, Indel for
# addresses) of the levels a similarity reaches: defaults only — a spec field states its own.
BUILTIN = (
    ComparisonKind("id_number_cn", ("both valid, different", "different", "one edit apart",
                                    "one typing error in the area or birth date", "equal"),
                   normalise.derive_id_number, compare_id_number, columns=("", "__valid", "__legacy"),
                   derive_one=normalise.derive_id_number_one),
    ComparisonKind("name_zh", ("different", "similar characters", "a given-name character dropped",
                               "same pinyin in another order", "given-name characters swapped", "same pinyin",
                               "equal"),
                   normalise.derive_name_zh, compare_name_zh, thresholds={"similar characters": 0.8},
                   derive_one=normalise.derive_name_zh_one),
    ComparisonKind("name", ("different", "similar", "close", "fields swapped", "equal"), normalise.derive_text,
                   compare_name, thresholds={"close": 0.92, "similar": 0.8}, derive_one=normalise.derive_text_one),
    ComparisonKind("string", ("different", "similar", "equal"), normalise.derive_text, compare_string,
                   thresholds={"similar": 0.85}, derive_one=normalise.derive_text_one),
    ComparisonKind("date", ("different", "year or month only (imputed)", "same month, another day",
                            "day and month swapped", "lunar calendar shift", "day one off or its digits reversed",
                            "equal"),
                   normalise.derive_date, compare_date, derive_one=normalise.derive_date_one),
    ComparisonKind("phone", ("different", "one digit apart", "equal"), normalise.derive_phone, compare_phone,
                   derive_one=normalise.derive_phone_one),
    ComparisonKind("address", ("different", "similar", "one character apart", "same house, flat left out", "equal"),
                   normalise.derive_address,
                   compare_address, thresholds={"similar": 0.8}, derive_one=normalise.derive_address_one),
    ComparisonKind("exact", ("different", "equal"), normalise.derive_text, compare_exact,
                   derive_one=normalise.derive_text_one),
)
