"""What a review page says about a pair's evidence, Chinese first (words in review_words.yml): each
agreement level by its Chinese name, the guard that held a pair back and the conflicting evidence
in words ("性别不同、身份证号均有效且不同 — 可能为双胞胎"), a score near 1 with the digits that tell
it apart, and score bands of the queue."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from healthqa.dedup import guards
from healthqa.dedup.spec import Guard, LevelTest, Spec

WORDS = Path(__file__).with_name("review_words.yml")


@cache
def _words() -> dict:
    return yaml.safe_load(WORDS.read_text(encoding="utf-8"))


def level_zh(label: str | None) -> str:
    """``一致 equal``: a level's Chinese name first, then its label (a plugin's unknown label as it is)."""
    if label is None:
        return "—"
    zh = _words()["levels"].get(label)
    return f"{zh} {label}" if zh else label


@dataclass(frozen=True)
class Held:
    """A pair a guard held back: the guard, and the pair's conflicting evidence in words."""

    guard: Guard
    conflicts: list[str]
    pattern: str | None

    @property
    def words(self) -> str:
        said = "、".join(self.conflicts) or (self.guard.says or self.guard.name)
        return f"{said} — {self.pattern}" if self.pattern else said


def held(spec: Spec, score: float, explanation: dict | None) -> Held | None:
    """Why the scan held this pair back from the decision its score alone would make, or None."""
    g = guards.held_back(spec, score, explanation)
    if g is None:
        return None
    levels = {k: (v or {}).get("level") for k, v in (explanation or {}).items()}
    names = {f.name for f in spec.fields}
    conflicts = [c["says"] for c in _words()["conflicts"] if c["field"] in names and levels.get(c["field"]) == c["level"]]
    row = guards.levels_of(spec, explanation)
    pattern = None
    if row is not None:
        for p in _words()["patterns"]:
            tests = [LevelTest.model_validate(t) for t in p["when"]]
            if all(t.field in names for t in tests) and all(guards.holds(spec, t, row)[0] for t in tests):
                pattern = p["says"]
                break
    return Held(g, conflicts, pattern)


def score_text(score: float) -> str:
    """A match probability with the digits that tell scores near 1 apart (0.999996, not 1.000);
    never "1.0000" for a score short of 1."""
    if score < 0.999:
        return f"{score:.3f}"
    if score >= 1:
        return "1"
    digits = min(12, math.ceil(-math.log10(1 - score)) + 1)
    text = f"{score:.{digits}f}"
    return text if not text.startswith("1") else "> 0." + "9" * (digits)


def bands(edges: list[float]) -> list[tuple[float, float]]:
    """Score bands from their lower edges: [edge_k, edge_k+1), the last up to 1 inclusive."""
    e = sorted(set(edges))
    return list(zip(e, [*e[1:], 1.0], strict=True))
