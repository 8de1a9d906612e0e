"""Ground truth of the synthetic platform, collected while generating and written to DIR/truth/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from healthqa import csvfile

FULL_TO_HALF = str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789XX")


def normalise_id(value) -> str | None:
    """The normalised form of an ID number (docs/domain.md): trimmed, half-width, upper-case X,
    15-digit legacy numbers expanded to 18 digits. Anything else is returned trimmed, upper-cased."""
    if value is None or value != value:
        return None
    s = str(value).strip().translate(FULL_TO_HALF).replace("×", "X").replace("x", "X")
    if len(s) == 15 and s.isdigit():
        from stdnum.cn import ric

        first17 = s[:6] + "19" + s[6:]
        s = first17 + ric.calc_check_digit(first17 + "0")
    return s or None


class Truth:
    """Appends ground truth chunk by chunk, so a million persons never sit in memory together."""

    FILES = {
        "defects": ["table", "key", "column", "defect", "detail"],
        "duplicate_pairs": ["left", "right"],
        "duplicates": ["archive_id", "original_id", "changes"],
        "hard_negatives": ["left", "right", "kind"],
        # valid records of the kinds careless rules flag (rare characters, passports, travel permits,
        # national clinical edition codes): no rule may flag them
        "valid_kinds": ["table", "key", "kind"],
    }

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._fh = {}
        self._w = {}
        for name, cols in self.FILES.items():
            fh = (folder / f"{name}.csv").open("w", newline="", encoding="utf-8")
            self._fh[name] = fh
            self._w[name] = csvfile.Writer(fh)
            self._w[name].writerow(cols)
        self.counts: dict[str, int] = dict.fromkeys(self.FILES, 0)
        self.defect_counts: dict[tuple[str, str], int] = {}
        self._pending: list[tuple] = []

    def defect(self, table: str, keys, column: str, defect: str, detail="") -> None:
        keys = list(keys)
        details = detail if isinstance(detail, (list, tuple, pd.Series)) else [detail] * len(keys)
        for k, d in zip(keys, details):
            self._pending.append((table, k, column, defect, d))

    @property
    def pending(self) -> list[tuple]:
        """The defects logged since the last flush: (table, key, column, defect, detail)."""
        return self._pending

    def flush_defects(self) -> None:
        for table, k, column, defect, d in self._pending:
            self._w["defects"].writerow((table, k, column, defect, d))
            self.defect_counts[(table, defect)] = self.defect_counts.get((table, defect), 0) + 1
            self.counts["defects"] += 1
        self._pending.clear()

    def rows(self, name: str, rows) -> None:
        for r in rows:
            self._w[name].writerow(r)
            self.counts[name] += 1

    def close(self) -> None:
        for fh in self._fh.values():
            fh.close()
