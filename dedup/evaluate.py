"""Precision, recall and F1 against a truth list of duplicate pairs, on pairs and on clusters."""

from __future__ import annotations

from itertools import combinations

import pandas as pd


def _norm(pairs) -> set[tuple[str, str]]:
    return {(a, b) if a < b else (b, a) for a, b in pairs if a != b}


def prf(found: set, true: set) -> dict:
    tp = len(found & true)
    p = tp / len(found) if found else 1.0
    r = tp / len(true) if true else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "true_positives": tp, "found": len(found), "true": len(true)}


def evaluate(match_pairs, clusters: list[list[str]], truth: pd.DataFrame) -> dict:
    """``match_pairs``: (left, right) keys decided as matches; ``clusters``: lists of keys;
    ``truth``: a frame with columns left, right."""
    true = _norm(zip(truth["left"].astype(str), truth["right"].astype(str)))
    by_cluster = _norm(p for c in clusters for p in combinations(sorted(c), 2))
    return {"pairs": prf(_norm(match_pairs), true), "clusters": prf(by_cluster, true)}


def read_truth(path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str)
    missing = {"left", "right"} - set(df.columns)
    if missing:
        from healthqa.errors import ConfigError

        raise ConfigError(f"{path}: a truth file needs columns left,right (missing: {', '.join(sorted(missing))})")
    return df
