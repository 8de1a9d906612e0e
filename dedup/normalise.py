"""Normalisation of person records for matching (docs/domain.md, "How duplicate archives arise").

ID numbers: full-width → half-width, x/× → X, 15 → 18 digits, validity as a feature. Names:
whitespace and interpuncts removed, traditional → simplified (OpenCC), pinyin with heteronyms
(pypinyin), newborn placeholders (某某之子/之女) treated as no name. Phones: digits only, placeholders
dropped. Birth dates: parsed from the formats vendors use. Addresses: the district prefix removed,
a flat written one way (3栋502, 3-502 → 3幢502室), the street or town kept as a blocking token. Each
field is derived once per distinct raw value (``per_distinct``), and names' pinyin once per distinct
name: work follows the distinct values, not the rows.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from functools import cache, lru_cache
from itertools import islice, product

import numpy as np
import pandas as pd

from healthqa import codelists
from healthqa import standards as st

from .spec import FieldSpec, Spec

_NAME_NOISE = re.compile(r"[\s·・.．\-]")
_STREET = re.compile(r"([\u4e00-\u9fff]{2,8}?(?:街道|镇|乡))")
_COMMUNITY = re.compile(r"([\u4e00-\u9fff]{1,8}?(?:社区|村|小区))")
_ADDRESS_PREFIX = re.compile(r"^(?:[\u4e00-\u9fff]{2,3}省)?(?:[\u4e00-\u9fff]{2,4}市)?(?:[\u4e00-\u9fff]{2,3}[区县])?")
MAX_READINGS = 16  # pinyin combinations kept per name (heteronyms multiply)


@cache
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def _per_distinct(s: pd.Series, fn) -> pd.Series:
    """Apply ``fn`` to each distinct non-null value once and map the results back."""
    codes, distinct = pd.factorize(s, use_na_sentinel=True)
    derived = np.empty(len(distinct) + 1, dtype=object)  # the last entry, at code -1: a missing value
    derived[:-1] = [fn(v) for v in distinct]
    derived[-1] = np.nan
    return pd.Series(derived[codes], index=s.index, name=s.name)


def name_zh(s: pd.Series) -> pd.Series:
    """Normalised Chinese name, or None for a missing or placeholder name (``name_problem``'s
    placeholder, without its other checks)."""
    t = st.text(s)
    t = t.where([v is None or not st.name_placeholder_one(v) for v in t.to_numpy()])
    return _per_distinct(t, _name_zh_one)


def _name_zh_one(v: str) -> str | None:
    return _t2s().convert(_NAME_NOISE.sub("", v)) or None


@cache
def _pypinyin():
    """pypinyin, imported without its phrase dictionary when this process has not imported it yet:
    names are read a character at a time (``_char_readings``), which its 47,000 phrases (none of a
    single character) never answer, and loading them and training its segmenter on them was a
    third of a second of every dedup's start, a night's included. pypinyin reads the switch once,
    at its import: in this process it then converts phrases character by character (the
    environment itself is left as it was)."""
    if "pypinyin" not in sys.modules:
        before = os.environ.get("PYPINYIN_NO_PHRASES")
        os.environ["PYPINYIN_NO_PHRASES"] = "1"
        try:
            import pypinyin
        finally:
            if before is None:
                del os.environ["PYPINYIN_NO_PHRASES"]
            else:
                os.environ["PYPINYIN_NO_PHRASES"] = before
    import pypinyin

    return pypinyin


@cache
def _char_readings(ch: str) -> tuple[str, ...]:
    """A character's pinyin readings, heteronyms included (单: dan, shan, chan); characters that
    have none (letters, digits) read as themselves."""
    pypinyin = _pypinyin()
    # pypinyin takes an ``errors`` callable returning a list (its documentation); its annotation says str
    return tuple(pypinyin.pinyin(ch, style=pypinyin.Style.NORMAL, heteronym=True, errors=lambda x: [x])[0])  # type: ignore[arg-type,return-value]


COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "司徒", "夏侯")


@cache
def readings(name: str) -> frozenset[str]:
    """The pinyin readings of a name: every reading of the surname (heteronym surnames such as 单
    shàn/dān, 曾 zēng/céng, 仇 qiú/chóu defeat a single reading), the usual reading of the given
    name (its characters' rare readings would make unrelated names sound alike). Built per
    character: names are many, the characters they use are few."""
    k = 2 if name[:2] in COMPOUND_SURNAMES else 1
    surname = [_char_readings(ch) for ch in name[:k]]
    given = [(_char_readings(ch)[0],) for ch in name[k:]]
    return frozenset(" ".join(c) for c in islice(product(*surname, *given), MAX_READINGS))


@cache
def first_reading(name: str) -> str:
    return "".join(_char_readings(ch)[0] for ch in name)


def name_key(name: str) -> str:
    """The blocking key of a name: the usual pinyin of the surname, then of the given-name
    characters in sorted order — homophones (王伟/王玮) and given names typed the wrong way round
    (刘艳华/刘华艳) share it."""
    k = 2 if name[:2] in COMPOUND_SURNAMES else 1
    return first_reading(name[:k]) + "".join(sorted(_char_readings(ch)[0] for ch in name[k:]))


_NOT_DIGIT = re.compile(r"\D")


def phone(s: pd.Series) -> pd.Series:
    """Digits only (7 or more), placeholders (``phone_problem``'s) dropped: one pass per value."""
    placeholders = frozenset(codelists.load("placeholders")["phones"])
    digits = [None if v is None or v in placeholders else _NOT_DIGIT.sub("", v) for v in st.text(s).to_numpy()]
    return pd.Series([v if v is not None and len(v) >= 7 else np.nan for v in digits], index=s.index, dtype=object)


def address(s: pd.Series) -> pd.Series:
    t = st.text(s)
    return _per_distinct(t, _address_one)


def street(addr: pd.Series) -> pd.Series:
    return _per_distinct(addr, _street_one)


def community(addr: pd.Series, streets: pd.Series) -> pd.Series:
    """The street and the community or village within it (骆驼街道/盛家村), for blocking."""
    comm = _per_distinct(addr, _community_one)
    return (streets.fillna("").astype(str) + "/" + comm.astype(str)).where(comm.notna())


_SPACE = re.compile(r"\s")


# a flat written the long way (3幢502室, 3幢2单元502室), the short way (3栋502, 3-502, 3-2-502) or
# with 座/号楼: one way, so that the ways of writing one flat compare equal
_FLAT = re.compile(r"(\d+)(?:幢|栋|座|号楼|-)(?:(\d+)(?:单元|-))?(\d+)室?$")


def _flat(m: re.Match) -> str:
    return f"{m[1]}幢{m[2] + '单元' if m[2] else ''}{m[3]}室"


def _address_one(v: str) -> str | None:
    return _FLAT.sub(_flat, _ADDRESS_PREFIX.sub("", _SPACE.sub("", v))) or None


def _street_one(v: str) -> str | None:
    return m.group(1) if (m := _STREET.search(v)) else None


def _community_one(v: str) -> str | None:
    return m.group(1) if (m := _COMMUNITY.search(_STREET.sub("", v, count=1))) else None


def per_distinct(derive, raw: pd.Series, f: FieldSpec) -> dict[str, pd.Series]:
    """A kind's derived columns, computed once per distinct raw value and spread back to the rows:
    a district has far fewer distinct names, addresses and birth dates than archives."""
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    if len(uniques) >= 0.8 * len(raw):  # mostly distinct (ID numbers, phones), or none: no gain
        return derive(raw, f)
    seen, first = np.unique(codes, return_index=True)  # one row per distinct value (missing: code -1)
    derived = derive(raw.iloc[first].reset_index(drop=True), f)
    take = codes - seen[0]  # positions in ``first``: codes are 0.., after -1 when a value is missing
    return {col: pd.Series(v.to_numpy()[take], index=raw.index, name=col) for col, v in derived.items()}


def prepare(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """Derived columns for comparison and blocking, one row per record, positionally indexed."""
    from . import kinds  # imported here: the built-in kinds (compare.py) use this module

    df = df.reset_index(drop=True)
    out = pd.DataFrame({"key": st.text(df[spec.key])}, index=df.index)
    for f in spec.fields:
        raw = df[f.column] if f.column in df else pd.Series(None, index=df.index, dtype=object)
        for col, values in per_distinct(kinds.get(f.kind).derive, raw, f).items():
            out[col] = values
        if f.tf:
            freq = out[f.name].value_counts(normalize=True)
            out[f"{f.name}__tf"] = out[f.name].map(freq).astype(float)
    for p, fields in enumerate(spec.blocking):  # kept in the incremental index: not derived again
        out[block_column(p)] = block_hash(blocking_key(out, fields))
    return out


def prepare_one(record: dict, spec: Spec) -> dict:
    """``prepare`` of one record, row-wise in plain Python: its derived columns as a dict, the values
    ``prepare(pd.DataFrame([record]), spec)`` gives (tests/dedup/test_prepare_one.py holds them
    equal on varied and odd records). For the registration check ($match), which normalises one
    record per call: pandas' column-wise code costs a fixed ~0.1–1 ms an operation whatever the
    rows, 30–40 ms a record. A kind without ``derive_one`` (a plugin's) is derived column-wise on
    the one value."""
    from . import kinds

    out: dict = {"key": st.text_one(record.get(spec.key))}
    for f in spec.fields:
        kind = kinds.get(f.kind)
        raw = record.get(f.column)
        if kind.derive_one is not None:
            out.update(kind.derive_one(raw, f))
        else:
            out.update({col: v.iloc[0] for col, v in kind.derive(pd.Series([raw]), f).items()})
        if f.tf:  # a value's frequency among the records prepared: one record, 1
            out[f"{f.name}__tf"] = np.nan if _null(out[f.name]) else 1.0
    for p, fields in enumerate(spec.blocking):
        key = blocking_key_one(out, fields)
        out[block_column(p)] = 0 if key is None else int(_hash_one(key))
    return out


def _hash_one(key) -> np.int64:
    """``block_hash`` of one key (pandas' hash of one value: uncategorised, the same hash)."""
    return pd.util.hash_array(np.array([key], dtype=object), categorize=False).view(np.int64)[0]


def _null(v) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and v != v)


def blocking_key_one(row: dict, fields: list[str]):
    """``blocking_key`` of one record's derived values (``prepare_one``)."""
    vals = [row[f"{name}__text" if f"{name}__text" in row else name] for name in fields]
    if any(_null(v) for v in vals):
        return None
    return vals[0] if len(vals) == 1 else "|".join(map(str, vals))


# -- the built-in kinds' derived columns (registered in compare.py) ---------------------------------
# ``derive_X`` derives a column of raw values (the nightly scan), ``derive_X_one`` one raw value
# (``prepare_one``), each from the same per-value functions or ``standards``' one-value twins.
def derive_id_number(raw: pd.Series, f: FieldSpec) -> dict[str, pd.Series]:
    """The 18-digit form, its validity, whether it was a 15-digit legacy number (whose check
    character is computed here, so its validity says nothing about typing errors), the
    area + birth-date prefix, and the birth date a number valid as typed carries (``__birth``: NaT for
    an invalid, missing or legacy one — a legacy number's check character is computed, so nothing
    vouches for its date digits), which a date field with ``carried_by`` compares too."""
    t = st.text(raw)
    norm = st.normalise_id(t)
    n = [v if v is not None and len(v) == 18 else np.nan for v in norm.to_numpy()]
    legacy = [v is not None and len(v.replace(" ", "")) == 15 for v in t.to_numpy()]
    # ``\d{14}``: 14 decimal digits, what str.isdecimal says of 14 characters
    prefix = [v[:14] if isinstance(v, str) and v[:14].isdecimal() else np.nan for v in n]
    idx = raw.index
    valid = st.id_valid(norm)
    ids = pd.Series(n, index=idx, dtype=object)
    legacy_ = pd.Series(legacy, index=idx, dtype=bool) & pd.notna(n)
    return {f.name: ids, f"{f.name}__valid": valid, f"{f.name}__legacy": legacy_,
            f"{f.name}_prefix14": pd.Series(prefix, index=idx, dtype=object),
            f"{f.name}__birth": st.id_birth_date(ids.where(valid & ~legacy_)).astype("datetime64[ns]")}


def derive_id_number_one(raw, f: FieldSpec) -> dict:
    norm = st.normalise_id_one(raw)
    n = norm if norm is not None and len(norm) == 18 else None
    prefix = n[:14] if n is not None and re.fullmatch(r"\d{14}", n[:14]) else None
    legacy = n is not None and len(st.text_one(raw).replace(" ", "")) == 15
    valid = st.id_valid_one(raw)
    birth = pd.Timestamp(int(n[6:10]), int(n[10:12]), int(n[12:14])) if valid and n is not None and not legacy \
        else pd.NaT
    return {f.name: n, f"{f.name}__valid": valid, f"{f.name}__legacy": legacy,
            f"{f.name}_prefix14": prefix, f"{f.name}__birth": birth}


def derive_name_zh(raw: pd.Series, f: FieldSpec) -> dict[str, pd.Series]:
    n = name_zh(raw)
    return {f.name: n, "name_key": _per_distinct(n, name_key)}


def derive_name_zh_one(raw, f: FieldSpec) -> dict:
    t = st.text_one(raw)
    n = None if t is None or st.name_placeholder_one(t) else _name_zh_one(t)
    return {f.name: n, "name_key": name_key(n) if n is not None else None}


def derive_date(raw: pd.Series, f: FieldSpec) -> dict[str, pd.Series]:
    d = st.datetimes(raw).dt.normalize()
    return {f.name: d, f"{f.name.split('_')[0]}_year": d.dt.year.astype("Int64").astype(str).where(d.notna()),
            f"{f.name}__text": d.dt.strftime("%Y-%m-%d").where(d.notna())}


def derive_date_one(raw, f: FieldSpec) -> dict:
    d = _datetime_one(raw)
    if d is pd.NaT:
        return {f.name: pd.NaT, f"{f.name.split('_')[0]}_year": None, f"{f.name}__text": None}
    d = d.normalize()
    return {f.name: d, f"{f.name.split('_')[0]}_year": str(d.year), f"{f.name}__text": d.strftime("%Y-%m-%d")}


_PLAIN_DATES = (  # the shapes of _DATE_FORMATS read directly: year, month, day[, hour, minute, second]
    re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T]([0-9]{2}):([0-9]{2}):([0-9]{2}))?"),
    re.compile(r"([0-9]{4})/([0-9]{2})/([0-9]{2})(?: ([0-9]{2}):([0-9]{2}):([0-9]{2}))?"),
    re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})"))


def _datetime_one(raw) -> pd.Timestamp:
    """``standards.datetimes`` of one value: a plain ISO date or date and time (what registration
    systems and FHIR send) read directly, anything else as the column-wise code reads it."""
    if _null(raw):
        return pd.NaT
    if not isinstance(raw, str):  # a date or time object: as a column of it is read
        return st.datetimes(pd.Series([raw])).iloc[0]
    t = st.text_one(raw)
    if t is None:
        return pd.NaT
    m = next((m for p in _PLAIN_DATES if (m := p.fullmatch(t))), None)
    if m and 1678 <= int(m.group(1)) <= 2261:  # within pandas' range
        try:
            return pd.Timestamp(*(int(g) for g in m.groups() if g is not None))
        except ValueError:  # no such day or time: as the column-wise code judges it
            pass
    return _datetime_slow(t)


@lru_cache(maxsize=16384)
def _datetime_slow(t: str) -> pd.Timestamp:
    return st.datetimes(pd.Series([t], dtype=object)).iloc[0]


def derive_phone(raw: pd.Series, f: FieldSpec) -> dict[str, pd.Series]:
    return {f.name: phone(raw)}


def derive_phone_one(raw, f: FieldSpec) -> dict:
    t = st.text_one(raw)
    digits = None if t is None or st.phone_placeholder_one(t) else re.sub(r"\D", "", t)
    return {f.name: digits if digits is not None and len(digits) >= 7 else None}


def derive_address(raw: pd.Series, f: FieldSpec) -> dict[str, pd.Series]:
    a = address(raw)
    s = street(a)
    return {f.name: a, f"{f.name}_street": s, f"{f.name}_community": community(a, s)}


def derive_address_one(raw, f: FieldSpec) -> dict:
    t = st.text_one(raw)
    a = _address_one(t) if t is not None else None
    s = _street_one(a) if a is not None else None
    comm = _community_one(a) if a is not None else None
    return {f.name: a, f"{f.name}_street": s, f"{f.name}_community": f"{s or ''}/{comm}" if comm is not None else None}


def derive_text(raw: pd.Series, f: FieldSpec) -> dict[str, pd.Series]:
    """name, string (lower case, spaces collapsed) and exact (as is); ``missing`` values dropped."""
    t = st.text(raw)
    if f.kind in ("name", "string"):
        t = t.str.lower().str.replace(r"\s+", " ", regex=True)
    return {f.name: t.where(~t.isin(f.missing))}


def derive_text_one(raw, f: FieldSpec) -> dict:
    t = st.text_one(raw)
    if t is not None and f.kind in ("name", "string"):
        t = re.sub(r"\s+", " ", t.lower())
    return {f.name: None if t is None or t in f.missing else t}


def blocking_key(prepared: pd.DataFrame, fields: list[str]) -> pd.Series:
    """The key of one blocking pass: the fields joined, None when any is missing."""
    cols = [prepared[_block_col(prepared, f)] for f in fields]
    key = cols[0].astype(object)
    ok = cols[0].notna()
    for c in cols[1:]:
        ok &= c.notna()
        key = key.astype(str) + "|" + c.astype(str)
    return key.where(ok)


def block_column(p: int) -> str:
    """The column of blocking pass ``p``'s key hash in the normalised records."""
    return f"__block{p}"


def block_hash(key: pd.Series) -> np.ndarray:
    """A blocking key as a 64-bit hash (int64; 0 where the key is missing): the index keeps eight
    bytes per archive and pass instead of the key's text, and blocks are formed on integers. Two
    keys sharing a hash (about one chance in 10^7 among a million keys) only add candidate pairs,
    which their comparison levels then judge."""
    # uncategorised: the same hashes as the default (which factorises first, then hashes the distinct
    # keys: a pass that costs six times the hashing on a million keys, most of them distinct)
    h = pd.util.hash_array(key.to_numpy(dtype=object), categorize=False).view(np.int64)
    h[key.isna().to_numpy()] = 0
    return h


def _block_col(prepared: pd.DataFrame, name: str) -> str:
    # a date field blocks on its text form; everything else on the derived column of that name
    return f"{name}__text" if f"{name}__text" in prepared else name


def update_times(s: pd.Series, tz: str | None = None) -> pd.Series:
    """Update times as naive local times: a time with an offset is converted to ``tz`` (without one,
    its own wall-clock time is kept), a naive time is taken as local; what cannot be read
    (``0000-00-00 00:00:00``, text) is NaT. Offset-aware and naive values may be mixed in a column."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert(tz).dt.tz_localize(None) if tz else s.dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns (later: raises) on mixed offsets; handled below
        try:
            t = pd.to_datetime(s, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError):
            t = pd.Series(s, dtype=object)
    if isinstance(t.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(t.dtype):
        return update_times(t, tz)

    def one(v):
        try:
            v = pd.Timestamp(v)
        except (ValueError, TypeError, OverflowError):
            return pd.NaT
        if v is pd.NaT or v.tzinfo is None:
            return v
        return (v.tz_convert(tz) if tz else v).tz_localize(None)

    return pd.to_datetime(t.map(one), errors="coerce").astype("datetime64[ns]")


def unreadable_times(raw: pd.Series, parsed: pd.Series) -> int:
    """How many values hold something (not NULL, not blank) that is no time: malformed, counted."""
    return int((parsed.isna().to_numpy() & ~st.missing(raw).to_numpy()).sum())
