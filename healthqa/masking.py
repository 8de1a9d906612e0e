"""Masking of personal data: names, ID numbers, phones and addresses shown to someone who did not
ask to see them (reports, findings, logs, JSON exports, the console's default view).

The canonical model marks such columns with ``pii`` (``name``, ``id_number``, ``phone``, ``address``);
:func:`mask_frame` masks a canonical table's columns by that mark, so a column added to the model
with a ``pii`` kind is masked everywhere without touching the readers. The masks keep what a
steward or engineer needs to recognise a record and hide what identifies the person:

- ID number: the first 6 (the issuing area) and the last 4 characters, ``330211********123X``;
  15-digit legacy numbers the same way (``330211*****1234``); a shorter document number (passport,
  permit) keeps only its last 2 characters.
- Name: the first and last character, ``王*明``, ``欧**倩``; a two-character name keeps its first,
  ``王*``; the interpunct of a minority name stays (``阿***·**提``).
- Phone: a mobile keeps its first 3 and last 4 digits, ``138****5678``; a landline keeps its area
  code and the last 4 digits of the local number, ``0574-****3456``; anything else keeps only its
  last 2 characters.
- Address: the administrative prefix down to the street or town (省 市 区/县 街道/镇/乡) stays and
  the rest becomes ``****`` whatever its length, ``浙江省宁波市镇海区骆驼街道****``; an address whose
  prefix cannot be read is masked whole.

Values are read the way the standards read them (trimmed, full-width characters folded to
half-width), so a full-width ID number is masked like a half-width one. Missing values stay missing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import pandas as pd

from . import canonical

STAR = "*"
HIDDEN = "****"  # the masked rest of an address: fixed, so its length reveals nothing

_MOBILE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$")
_LANDLINE = re.compile(r"^(0(?:[12]\d|[3-9]\d{2}))([1-9]\d{6,7})$")  # 010, 02x: two-digit areas
# The levels in order, each at most once. A level's name is 2-8 CJK characters that do not contain a
# higher level's suffix, so "镇海区庄市街道" reads as 镇海区 + 庄市街道, not as a city "镇海区庄市".
_ADMIN_LEVELS = (
    r"(?:[\u4e00-\u9fff]{2,8}?(?:省|自治区))?",
    r"(?:[^\W\d_省市区县]{2,8}?(?:市|自治州|地区|盟))?",
    r"(?:[^\W\d_省市区县]{2,8}?(?<![小社园校])(?:区|县|旗|市))?",  # a 小区 or 社区 is not a district
    r"(?:[^\W\d_区县]{2,8}?(?:街道|镇|乡))?",
)
_ADDRESS_PREFIX = re.compile("^" + "".join(_ADMIN_LEVELS))


def _text(value) -> str | None:
    """A present value as trimmed half-width text (NFKC folds ３ to 3 and Ｘ to X); None if missing."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a phone stored as a number
    t = unicodedata.normalize("NFKC", str(value)).strip()
    return t or None


def _keep_ends(t: str, head: int, tail: int) -> str:
    return t[:head] + STAR * (len(t) - head - tail) + (t[len(t) - tail:] if tail else "")


def mask_id_number(value) -> str | None:
    t = _text(value)
    if t is None:
        return None
    t = re.sub(r"\s", "", t).replace("×", "X").upper()
    return _keep_ends(t, 6, 4) if len(t) >= 15 else _keep_ends(t, 0, min(2, len(t) - 1))


def mask_name(value) -> str | None:
    t = _text(value)
    if t is None:
        return None
    chars = [c for c in t if not c.isspace()]
    if len(chars) <= 1:
        return STAR
    if len(chars) == 2:
        return chars[0] + STAR
    middle = "".join(c if c in "·•・" else STAR for c in chars[1:-1])
    return chars[0] + middle + chars[-1]


def mask_phone(value) -> str | None:
    t = _text(value)
    if t is None:
        return None
    digits = re.sub(r"[\s\-()]", "", t)
    if m := _MOBILE.match(digits):
        return _keep_ends(m.group(1), 3, 4)
    if m := _LANDLINE.match(digits):
        area, local = m.groups()
        return f"{area}-{_keep_ends(local, 0, 4)}"
    return _keep_ends(t, 0, min(2, len(t) - 1))


def mask_address(value) -> str | None:
    t = _text(value)
    if t is None:
        return None
    t = re.sub(r"\s", "", t)
    m = _ADDRESS_PREFIX.match(t)  # every level is optional: it matches, if only the empty string
    prefix = m.group(0) if m else ""
    return prefix + HIDDEN if prefix != t else prefix


MASKS: dict[str, Callable[[object], str | None]] = {
    "id_number": mask_id_number, "name": mask_name, "phone": mask_phone, "address": mask_address,
}


def mask_series(s: pd.Series, kind: str) -> pd.Series:
    """A column masked as personal data of ``kind`` (a ``pii`` value of the canonical model)."""
    try:
        fn = MASKS[kind]
    except KeyError:
        raise KeyError(f"no mask for personal data of kind {kind!r} (known: {', '.join(MASKS)})") from None
    distinct = s.dropna().unique()  # a million rows of a few thousand phones: mask each value once
    return s.map(dict(zip(distinct, map(fn, distinct)))).astype(object).where(s.notna(), None)


def mask_frame(df: pd.DataFrame, table: str | canonical.Table) -> pd.DataFrame:
    """A copy of a canonical table's rows with every column marked ``pii`` in the model masked;
    other columns, and columns the model does not know, are left as they are."""
    t = table if isinstance(table, canonical.Table) else canonical.table(table)
    out = df.copy()
    for col in t.columns.values():
        if col.pii and col.name in out.columns:
            out[col.name] = mask_series(out[col.name], col.pii)
    return out


def _pii_columns() -> dict[str, str]:
    """Every column the canonical model marks personal, by name, with its kind."""
    return {c.name: c.pii for t in canonical.tables().values() for c in t.columns.values() if c.pii}


def mask_pairs(line: str) -> str:
    """A line of ``column=value`` pairs (a finding's example: ``key · id_number=…, name=…``) with the
    value of every personal column masked. Examples are masked when a run stores them; a document
    that hands them to a customer masks again, so that a line stored by an older version (or typed by
    hand) cannot carry a raw ID number onto paper. A value masked already stays as it is."""
    kinds = _pii_columns()

    def one(m: re.Match) -> str:
        col, value = m.group(1), m.group(2)
        if col not in kinds or STAR in value or value in ("", "∅"):
            return m.group(0)
        return f"{col}={MASKS[kinds[col]](value) or value}"
    return re.sub(r"(\w+)=(.*?)(?=, \w+=|$)", one, line)
