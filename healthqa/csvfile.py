"""Every CSV file healthqa writes goes through here: cells a spreadsheet would run as a formula are
neutralised, as OWASP recommends (CSV injection): a text value beginning with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading single quote, so ``=HYPERLINK(…)``, ``=cmd|…``,
``@SUM(…)`` or ``-2+3`` from a source record opens in Excel or WPS as the text it is. Numbers are
written as numbers (a negative count stays ``-2``); only text is changed, and only those cells.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """``value`` as it is safe to write in a CSV cell."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class Writer:
    """``csv.writer`` whose rows are neutralised (``cell``)."""

    def __init__(self, fh, **kwargs):
        self._w = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> None:
        self._w.writerow([cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class DictWriter:
    """``csv.DictWriter`` whose rows are neutralised (``cell``); the header is the field names."""

    def __init__(self, fh, fieldnames, **kwargs):
        self._w = csv.DictWriter(fh, fieldnames=fieldnames, **kwargs)

    def writeheader(self) -> None:
        self._w.writeheader()

    def writerow(self, row: Mapping[str, Any]) -> None:
        self._w.writerow({k: cell(v) for k, v in row.items()})

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)
