"""The spec's guards applied to scored pairs: decisions lowered by the fields' levels, named by label
(``spec.Guard``). Precision first: two different valid ID numbers are two people; a household sharing
a phone and an address is not a person."""

from __future__ import annotations

import numpy as np

from . import kinds
from .spec import LevelTest, Spec


def holds(spec: Spec, t: LevelTest, lv: np.ndarray) -> np.ndarray:
    """Per pair: whether ``t`` holds of its levels (``lv``: pairs by the spec's fields)."""
    k = spec.field_index(t.field)
    level = kinds.get(spec.fields[k].kind).level(t.label)
    return lv[:, k] == level if t.is_ is not None else lv[:, k] >= level


def _all(spec: Spec, tests: list[LevelTest], lv: np.ndarray) -> np.ndarray:
    out = np.ones(len(lv), dtype=bool)
    for t in tests:
        out &= holds(spec, t, lv)
    return out


def apply(spec: Spec, lv: np.ndarray, decision: np.ndarray) -> np.ndarray:
    """The decisions after every guard of the spec, in its order."""
    for g in spec.guards:
        on = np.isin(decision, g.lowers) & _all(spec, g.when, lv)
        for alt in g.unless:
            on &= ~_all(spec, alt, lv)
        to = np.where(_all(spec, g.review_if, lv), "review", "non_match") if g.review_if is not None else "non_match"
        decision = np.where(on, to, decision)
    return decision
