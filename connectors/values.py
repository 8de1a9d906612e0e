"""Values as drivers hand them over, made into values the rest of the audit understands.

Drivers return more than text and numbers: aware and naive datetimes side by side, bytes from a BLOB or
a column in a legacy encoding, ``Decimal``, NaN and infinities. One odd value must never stop an
audit, so each chunk a reader yields passes through ``normalise``:

- an aware datetime becomes the naive local time of the configuration's ``timezone`` (naive ones are
  taken to be local time already), so aware and naive values compare and the watermark is local time;
- bytes are decoded as UTF-8, else GB18030 (the encodings of Chinese platforms); bytes neither decodes
  are *unreadable*: they are decoded with U+FFFD in place of the bad bytes, so no format rule passes
  them, and counted per column for the reader to report;
- a ``Decimal`` becomes an ``int`` when it is integral (an archive number stored as DECIMAL(18,0)
  keeps every digit) and a ``float`` otherwise; a NaN ``Decimal`` is missing.

Text (control characters and very long strings included), numbers, NaN and infinities pass unchanged:
the rules judge them. ``parse_times`` reads a time column for watermarks and time windows, text with
a UTC offset (``2025-11-24T10:00:00+08:00``) included.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from healthqa.clock import DEFAULT_ZONE
from healthqa.errors import ConfigError
from healthqa.standards import decode  # one decoding of bytes, shared with the rules

_PLAIN = {"string", "empty", "integer", "floating", "mixed-integer-float", "boolean"}
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)


def zone(name: str | None) -> ZoneInfo:
    """The configuration's ``timezone`` as a zone; an unknown name is a configuration error."""
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone: unknown time zone {name!r} (an IANA name such as Asia/Shanghai)") from None


def local(value: datetime, tz: ZoneInfo) -> datetime:
    """An aware datetime as naive local time in ``tz``; a naive one unchanged."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value
    if isinstance(value, pd.Timestamp):
        return value.tz_convert(tz).tz_localize(None)
    return value.astimezone(tz).replace(tzinfo=None)


def _one(v, tz: ZoneInfo):
    """One value made plain; the second item says whether it was unreadable."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        text, ok = decode(bytes(v))
        return text, not ok
    if isinstance(v, datetime):
        return local(v, tz), False
    if isinstance(v, Decimal):
        if v.is_nan():
            return None, False
        if v.is_finite() and v == v.to_integral_value():
            return int(v), False
        return float(v), False
    return v, False


def normalise(df: pd.DataFrame, tz: ZoneInfo) -> tuple[pd.DataFrame, dict[str, int]]:
    """A chunk with plain values, and the number of unreadable values per column (columns with none
    are left out). Columns of text or numbers are left as they are, without a pass over their values."""
    unreadable: dict[str, int] = {}
    out = {}
    for c in df.columns:
        s = df[c]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            out[c] = s.dt.tz_convert(tz).dt.tz_localize(None)
            continue
        if s.dtype != object or pd.api.types.infer_dtype(s, skipna=True) in _PLAIN:
            continue
        pairs = [_one(v, tz) for v in s.to_numpy()]
        bad = sum(1 for _, b in pairs if b)
        if bad:
            unreadable[c] = bad
        out[c] = pd.Series([v for v, _ in pairs], index=s.index, dtype=object)
    if out:
        df = df.assign(**out) if all(isinstance(c, str) for c in out) else _replace(df, out)
    return df, unreadable


def _replace(df: pd.DataFrame, cols: dict) -> pd.DataFrame:
    df = df.copy()
    for c, s in cols.items():
        df[c] = s
    return df


def parse_times(s: pd.Series, tz: ZoneInfo) -> pd.Series:
    """A time column as naive local datetimes (NaT where a value is not a time): datetime values,
    and text in the usual formats, with or without a UTC offset."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert(tz).dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(s):
        return s
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    if s.empty:
        return out
    vals = [_time_value(v, tz) for v in s.to_numpy()]
    texts = pd.Series([v if isinstance(v, str) else None for v in vals], index=s.index, dtype=object)
    stamps = pd.Series([v if isinstance(v, datetime) else None for v in vals], index=s.index, dtype=object)
    if stamps.notna().any():
        out[stamps.notna()] = pd.to_datetime(stamps[stamps.notna()], errors="coerce")
    has_text = texts.notna()
    if has_text.any():
        t = texts[has_text].str.strip()
        offset = t.str.contains(_OFFSET, na=False) & t.str.contains(r"\d[T ]\d|\d{8}T?\d", regex=True, na=False)
        if offset.any():
            aware = pd.to_datetime(t[offset], errors="coerce", utc=True, format="mixed")
            out[aware.index] = aware.dt.tz_convert(tz).dt.tz_localize(None)
        naive = t[~offset]
        if len(naive):
            out[naive.index] = pd.to_datetime(naive, errors="coerce", format="mixed")
    return out


def _time_value(v, tz: ZoneInfo):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, datetime):
        return local(v, tz)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return decode(bytes(v))[0]
    if isinstance(v, str):
        return v
    return str(v)
