"""Excel cells as the sheet shows them: a cell's value rendered with its number format.

A workbook stores numbers as numbers and keeps how to show them in the cell's number format; Python's
rendering of the number is not what the clerk typed or sees (an archive number becomes
``3.3021100100100416e+16``, a code ``1.0``). The extract is audited as the sheet shows it, so each cell
is rendered with the number formats openpyxl reads (``cell.number_format``):

- ``General`` and ``@`` (text): numbers with Excel's 15 significant digits, integral ones in full
  digits (never ``3.30211001001e+16``); integers a file holds exactly (written by a tool other than
  Excel) in all their digits;
- fixed decimals (``0``, ``0.00``, ``#,##0.0`` …), with thousands separators where the format has them;
- percentages (``0%``, ``0.00%``), and scientific formats (``0.00E+00``);
- dates and times (cells openpyxl reads as ``datetime``/``date``/``time``) as ISO text, which every
  date rule reads: ``2025-11-24``, or ``2025-11-24 08:30:00`` when the format shows a time.

Only the first section of a format (the one for positive numbers) is applied; colours, quoted
literals and other decorations are not shown. Text cells are returned as they are.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta

_DECOR = re.compile(r'\[[^\]]*\]|"[^"]*"|\\.|_.|\*.')


def _section(fmt: str) -> str:
    return _DECOR.sub("", (fmt or "General").split(";")[0]).strip()


def _general(v: float) -> str:
    """Excel shows (and keeps) 15 significant digits; an integral number in full digits, never in
    scientific notation (an 18-digit archive number typed into Excel is kept as its first 15 digits
    followed by zeros, and is shown so)."""
    shown15 = float(f"{v:.15g}")
    if shown15 == int(shown15):
        return str(int(shown15))
    return f"{v:.15g}"


def _fixed(v: float, fmt: str) -> str:
    digits = fmt.split(".", 1)[1] if "." in fmt else ""
    decimals = sum(1 for ch in digits if ch in "0#?")
    grouped = "," in fmt.split(".", 1)[0]
    if decimals == 0 and abs(v) >= 1e15:
        n = int(float(f"{v:.15g}"))  # 15 significant digits, as Excel shows them
        text = f"{n:,}" if grouped else str(n)
    else:
        text = format(v, f"{',' if grouped else ''}.{decimals}f")
    return text


def shown(value, number_format: str | None):
    """The cell's value as the sheet shows it (text), or None for an empty cell."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        fmt = (number_format or "").lower()
        with_time = "h" in fmt or "s" in fmt or value.time() != time(0)
        return value.strftime("%Y-%m-%d %H:%M:%S" if with_time else "%Y-%m-%d")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, timedelta):
        return str(value)
    if not isinstance(value, (int, float)):
        return str(value)
    fmt = _section(number_format or "General")
    if isinstance(value, int) and fmt.lower() in ("general", "@", "0", ""):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return repr(v)
    if fmt.lower() in ("general", "@", ""):
        return _general(v)
    if re.search(r"E[+-]", fmt, re.IGNORECASE):
        mantissa = fmt.upper().split("E", 1)[0]
        decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
        return format(v, f".{decimals}E")
    if "%" in fmt:
        return _fixed(v * 100, fmt.replace("%", "")) + "%"
    if re.fullmatch(r"[#0?,]*(\.[#0?]*)?", fmt):
        return _fixed(v, fmt)
    return _general(v)
