"""The spec's guards applied to scored pairs: decisions lowered by the fields' levels, named by label
(``spec.Guard``). Precision first: two different valid ID numbers are two people; a household sharing
a phone and an address is not a person."""

from __future__ import annotations

import numpy as np

from healthqa.errors import ConfigError

from . import kinds
from .spec import Guard, LevelTest, Spec


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
    return lowered(spec, lv, decision)[0]


def lowered(spec: Spec, lv: np.ndarray, decision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decisions after every guard of the spec, in its order, and per pair the name of the last
    guard that lowered its decision ("" for none)."""
    by = np.full(len(lv), "", dtype=object)
    for g in spec.guards:
        on = np.isin(decision, g.lowers) & _all(spec, g.when, lv)
        for alt in g.unless:
            on &= ~_all(spec, alt, lv)
        to = np.where(_all(spec, g.review_if, lv), "review", "non_match") if g.review_if is not None else "non_match"
        decision = np.where(on, to, decision)
        by = np.where(on, g.name, by)
    return decision, by


def held_back(spec: Spec, score: float, explanation: dict | None) -> Guard | None:
    """The guard that held a stored pair back from the decision its score alone would make (read from
    its explanation: each field's level by label), or None. A pair explained by another spec (a field
    or label this one lacks) is not judged: None."""
    row = levels_of(spec, explanation)
    if row is None:
        return None
    th = spec.thresholds
    alone = "match" if score >= th.match else "review" if score >= th.review else "non_match"
    _, by = lowered(spec, row, np.array([alone], dtype=object))
    return next((g for g in spec.guards if g.name == by[0]), None)


def levels_of(spec: Spec, explanation: dict | None) -> np.ndarray | None:
    """A stored pair's levels (one row of the spec's fields) from its explanation's labels; None when
    it has none, or is another spec's (a field or label this one lacks)."""
    if not explanation:
        return None
    row = np.zeros((1, len(spec.fields)), dtype=np.int8)
    for k, f in enumerate(spec.fields):
        label = (explanation.get(f.name) or {}).get("level")
        if label is None:
            return None
        try:
            row[0, k] = kinds.get(f.kind).level(label)
        except ConfigError:
            return None
    return row
