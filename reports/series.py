"""Which of a subject's scores over several runs may stand beside each other, and which rest on few rows.

A system's score is an average over whatever its rules read that night. After the first night's
whole read (136,356 rows) a quiet incremental night may score the same system on one rule over 14
rows: 92.86 % beside 99.57 % is no fall, it is another measurement. A trend, a quarter's first,
lowest and last figure, and a dashboard's sparkline therefore take only the runs whose score of the
subject stands on the same basis as the one they are read against — mostly the same rules, each read
the same way (``connectors.sampling.read_extent``) — and a figure that rests on fewer rows than
``reports.few_rows`` says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from healthqa.connectors.sampling import read_extent
from healthqa.store.results import measured, split_rules

LIKE_SHARED = 0.8  # two scores stand on one basis when each shares at least this share of its rules with the other


@dataclass(frozen=True)
class Basis:
    """What a score of one run rests on: its rules with a verdict over rows, each with how its table
    was read, and the rows read (per table the most rows any rule applied to, summed over tables)."""

    rules: frozenset
    rows: int

    def like(self, other: Basis) -> bool:
        if not self.rules or not other.rules:
            return False
        shared = len(self.rules & other.rules)
        return shared >= LIKE_SHARED * len(self.rules) and shared >= LIKE_SHARED * len(other.rules)


def bases(results: Iterable[Mapping], systems: Mapping[str, str] | None = None) -> dict[tuple[str, str], Basis]:
    """The basis of each (level, subject) score of one run, from its stored rule results (dicts, with
    ``system`` filled as ``assess.describe`` does; ``systems`` maps a rule id to its system otherwise)."""
    rules: dict[tuple[str, str], set] = {}
    rows: dict[tuple[str, str], dict] = {}
    results = list(results)
    split = split_rules(results)  # the night of a split stands on another basis than the nights before
    for r in results:
        n = int(r.get("denominator") or 0)
        if r["status"] not in ("pass", "fail") or n <= 0:
            continue
        table = f"{r['source']}.{r['table']}"
        system = r.get("system") or (systems or {}).get(r["rule_id"])
        keys = [("overall", "overall"), ("dimension", r.get("dimension") or ""), ("table", table)]
        keys += [("system", system)] if system else []
        for key in keys:
            rules.setdefault(key, set()).add((r["source"], r["table"], measured(r["source"], r["table"], r["rule_id"], split),
                                               read_extent(r.get("sampling"))))
            per_table = rows.setdefault(key, {})
            per_table[table] = max(per_table.get(table, 0), n)
    return {k: Basis(frozenset(v), sum(rows[k].values())) for k, v in rules.items()}


def few_rows(basis: Basis | None, threshold: int) -> str | None:
    """``仅 14 行 only 14 rows`` for a score that rests on fewer rows than ``threshold``."""
    if basis is None or basis.rows >= threshold:
        return None
    return f"仅 {basis.rows:,} 行 only {basis.rows:,} rows"


def like(points: list[dict], of_run: Mapping[int, Mapping], key: tuple[str, str], ref: Basis | None,
         threshold: int) -> list[dict]:
    """The points (``store.scores.history`` rows, with ``run_id``) whose score of ``key`` stands on the
    basis ``ref`` stands on; of those, only the ones on enough rows unless ``ref`` itself rests on few
    (then the few-row figures are all there is, and are marked as such where they are shown)."""
    if ref is None:
        return []
    out = []
    for p in points:
        b = of_run.get(p["run_id"], {}).get(key)
        if b is not None and b.like(ref) and (b.rows >= threshold or ref.rows < threshold):
            out.append(p)
    return out


def reference(points: list[dict], of_run: Mapping[int, Mapping], key: tuple[str, str], threshold: int) -> Basis | None:
    """The basis a period's figures are read on: the newest point on enough rows, else the newest."""
    scored = [of_run[p["run_id"]][key] for p in points if key in of_run.get(p["run_id"], {})]
    enough = [b for b in scored if b.rows >= threshold]
    return (enough or scored or [None])[-1]
