"""A comparison-kind plugin for the tests: Chinese postcodes (six digits; the first four name the
district's post office)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthqa.dedup.kinds import NULL, ComparisonKind, register


def derive(raw: pd.Series, f) -> dict[str, pd.Series]:
    t = raw.astype("string").str.replace(r"\D", "", regex=True)
    code = t.where(t.str.len() == 6).astype(object)
    return {f.name: code, f"{f.name}_district": code.str[:4]}


def compare(f, left: dict, right: dict) -> np.ndarray:
    a, b = left[f.name].astype(object), right[f.name].astype(object)
    present = pd.notna(a) & pd.notna(b)
    lv = np.full(len(a), NULL, dtype=np.int8)
    same_district = np.array([x[:4] == y[:4] for x, y in zip(a[present], b[present])], dtype=bool)
    lv[present] = np.where(a[present] == b[present], 2, np.where(same_district, 1, 0))
    return lv


POSTCODE = register(ComparisonKind("postcode", ("different", "same district", "equal"), derive, compare))
# published through a (fake) entry point in the tests, not registered on import
POSTCODE_EP = ComparisonKind("postcode_ep", ("different", "same district", "equal"), derive, compare)
