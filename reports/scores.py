"""Quality scores: rule results rolled up per dimension, table, system, institution and overall.

Two rates on a 0–100 scale, side by side, because they answer different questions:

- **pass rate** (OHDSI DQD's "% of checks passed"): of the rules that reached a verdict, the share
  that passed. A rule that could not run counts as not passed (its data were not shown to be fine);
  a rule that applied to no row (``not_applicable``) is left out, as DQD leaves it out.
- **conformance** (the conformance rate of GB/T 36344-2018 信息技术 数据质量评价指标, row-weighted as
  in the data-quality part of 区域全民健康信息互联互通标准化成熟度测评): the share of checked rows that
  conform, ``Σ w·(rows − violations) / Σ w·rows`` over the rules, with ``w`` the weight of the rule's
  dimension (configuration ``reports.weights``). A rule that could not run adds nothing: its rows
  were not checked.

A score computed from a sample carries a 95 % Wilson interval. Rules over the same rows are not
independent observations, so the interval uses Kish's effective sample size of the row weights,
capped at the rows read from the sampled tables (the most rows any of a table's rules applied to):
never narrower than the sample allows.
A score from a full read is exact (its interval is the point).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from healthqa.connectors.sampling import NEW_ROWS, read_extent
from healthqa.store.results import measured, rule_of, split_rules

DIMENSIONS = ("完整性", "规范性", "一致性", "唯一性", "及时性", "关联性")
LEVELS = ("overall", "system", "dimension", "table", "org")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Observation:
    """One rule's result on one table, or on one institution's rows of it (``org`` set)."""

    rule_id: str
    source: str
    table: str
    dimension: str
    system: str | None
    status: str  # pass | fail | not_applicable | error
    violations: int
    rows: int  # the rule's denominator: rows it applied to
    sampled: bool = False  # rows came from a sample, not a full read
    org: str | None = None


@dataclass(frozen=True)
class Score:
    level: str
    subject: str
    checks: int  # rules with a verdict (pass, fail or error)
    passed: int
    errors: int
    not_applicable: int
    rows: int  # checked rows, summed over rules
    violations: int
    pass_rate: float | None
    conformance: float | None
    low: float | None
    high: float | None
    sampled: bool

    @classmethod
    def of(cls, row: Mapping) -> Score:
        """A score as the audit store keeps it (``store.scores``)."""
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def uncertainty(self) -> float:
        """Half-width of the interval, in points (0 for an exact score)."""
        if self.low is None or self.high is None:
            return 0.0
        return (self.high - self.low) / 2


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion, in percent. ``n`` may be fractional (an effective n)."""
    if n <= 0:
        return (0.0, 100.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


@dataclass
class _Acc:
    checks: int = 0
    passed: int = 0
    errors: int = 0
    not_applicable: int = 0
    rows: int = 0
    violations: int = 0
    w_rows: float = 0.0
    w_ok: float = 0.0
    w2_rows: float = 0.0
    sampled: bool = False
    table_rows: dict = field(default_factory=dict)

    def add(self, o: Observation, w: float) -> None:
        if o.status == "not_applicable":
            self.not_applicable += 1
            return
        self.checks += 1
        self.passed += o.status == "pass"
        if o.status == "error":
            self.errors += 1
            return
        self.rows += o.rows
        self.violations += o.violations
        self.w_rows += w * o.rows
        self.w_ok += w * (o.rows - o.violations)
        self.w2_rows += w * w * o.rows
        if o.sampled:
            self.sampled = True
            key = (o.source, o.table, o.org)
            self.table_rows[key] = max(self.table_rows.get(key, 0), o.rows)  # the most rows any rule saw

    def score(self, level: str, subject: str) -> Score:
        pass_rate = 100.0 * self.passed / self.checks if self.checks else None
        conformance = 100.0 * self.w_ok / self.w_rows if self.w_rows else None
        low = high = conformance
        if conformance is not None and self.sampled:
            n_eff = self.w_rows ** 2 / self.w2_rows  # Kish: rules over the same rows are not independent
            n_eff = min(n_eff, sum(self.table_rows.values()) or n_eff)
            low, high = wilson(conformance / 100 * n_eff, n_eff)
        return Score(level, subject, self.checks, self.passed, self.errors, self.not_applicable, self.rows,
                     self.violations, pass_rate, conformance, low, high, self.sampled)


def score(observations: Iterable[Observation], weights: Mapping[str, float] | None = None) -> list[Score]:
    """Scores at every level. Table-level observations make the overall, system, dimension and table
    scores; institution-level observations (``org`` set) make the institution scores."""
    weights = weights or {}
    accs: dict[tuple[str, str], _Acc] = {}

    def acc(level: str, subject: str) -> _Acc:
        return accs.setdefault((level, subject), _Acc())

    for o in observations:
        w = float(weights.get(o.dimension, 1.0))
        if o.org is not None:
            acc("org", o.org).add(o, w)
            continue
        acc("overall", "overall").add(o, w)
        acc("dimension", o.dimension).add(o, w)
        acc("table", f"{o.source}.{o.table}").add(o, w)
        if o.system:
            acc("system", o.system).add(o, w)
    order = {lv: i for i, lv in enumerate(LEVELS)}
    dim_order = {d: i for i, d in enumerate(DIMENSIONS)}
    keys = sorted(accs, key=lambda k: (order[k[0]], dim_order.get(k[1], 99), _natural(k[1])))
    return [accs[k].score(*k) for k in keys]


def _natural(s: str) -> tuple:
    """System codes "2" before "10"."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def change(now: Score, before: Score | None, metric: str = "conformance") -> str:
    """``rise`` / ``fall`` / ``no change`` / ``new``: a difference within the scores' combined
    uncertainty is no change — a sample's noise is never reported as a trend."""
    if before is None or getattr(before, metric) is None:
        return "new"
    a, b = getattr(now, metric), getattr(before, metric)
    if a is None:
        return "new"
    margin = math.hypot(now.uncertainty, before.uncertainty) if metric == "conformance" else 0.0
    if abs(a - b) <= margin or math.isclose(a, b, abs_tol=1e-9):
        return "no change"
    return "rise" if a > b else "fall"


CHANGE_ZH = {"rise": "上升", "fall": "下降", "no change": "无变化", "new": "首次", "not comparable": "不可比",
             "no data": "无数据"}


def observations(results: Iterable[Mapping], systems: Mapping[str, str] | None = None) -> list[Observation]:
    """Observations from stored rule results (``store.results`` as dicts: source, table, rule_id,
    dimension, system, status, violations, denominator, threshold_pct, by_org, sampling, error).

    An institution's status on a rule is judged against the rule's own threshold on that
    institution's rows, so an institution is never blamed for another's violations."""
    out = []
    for r in results:
        system = r.get("system") or (systems or {}).get(r["rule_id"])
        sampled = is_sampled(r.get("sampling"))
        base = {"rule_id": r["rule_id"], "source": r["source"], "table": r["table"], "dimension": r["dimension"] or "",
                    "system": system, "sampled": sampled}
        out.append(Observation(**base, status=r["status"], violations=int(r["violations"] or 0),
                               rows=int(r["denominator"] or 0)))
        if r["status"] not in ("pass", "fail"):
            continue
        threshold = float(r.get("threshold_pct") or 0.0)
        for org, c in (r.get("by_org") or {}).items():
            v, n = int(c.get("violations", 0)), int(c.get("denominator", 0))
            status = "not_applicable" if n == 0 else ("fail" if 100.0 * v / n > threshold else "pass")
            out.append(Observation(**base, status=status, violations=v, rows=n, org=str(org)))
    return out


def is_sampled(sampling: Mapping | None) -> bool:
    """A read is a sample when it is a random or stratified draw, or a capped full read."""
    if not sampling:
        return False
    return sampling.get("method") in ("random", "stratified") or bool(sampling.get("rows") and
                                                                      sampling.get("method") == "full")


def excess(violations: int, rows: int, threshold_pct: float) -> float:
    """Violating rows beyond what the rule tolerates: the impact by which rules and findings are
    ranked. 1,313 shared ID numbers outrank 33 of 99 deceased archives, whatever the percentages."""
    return max(0.0, violations - threshold_pct / 100.0 * rows)


def worst_first(violations: int, rows: int, threshold_pct: float | None, violation_pct: float | None) -> tuple:
    """The sort key that puts the worst failing rule first, wherever rules are ranked (the run report's
    worst rules, the terminal's worst rule of a table): rows beyond tolerance, then the rate."""
    return -excess(violations, rows, threshold_pct or 0.0), -(violation_pct or 0.0)


MIN_SHARED = 0.5  # a score on fewer than half the rules the earlier one stood on is another score


def comparable(now: list[dict], before: list[dict], weights: Mapping[str, float] | None = None,
               levels: Iterable[str] = LEVELS) -> tuple[dict, dict]:
    """Two runs' scores at ``levels``, each over only what both runs judged alike: the
    same rule on the same table, with a verdict over at least one row in each run, read the same way
    (``connectors.sampling.read_extent``: a whole read is compared with a whole read, a night's new
    rows with a night's new rows). A table a quiet night read no row of (its incremental rules not
    applicable) drops out of both sides instead of leaving a system scored on one remaining rule;
    a subject whose shared rules are fewer than half of those it was scored on before is not
    compared at all. A night's new rows are a sample of the feed: their scores carry its interval,
    so a handful of rows is no evidence of a fall. Returns {(level, subject): Score} for each run."""
    levels = set(levels)

    def basis(results):
        out = {}
        split = split_rules(results)  # a split rule's default part measures other rows than the whole rule
        for r in results:
            extent = read_extent(r.get("sampling"))
            if r["status"] in ("pass", "fail") and int(r["denominator"] or 0) > 0:
                out[(r["source"], r["table"], measured(r["source"], r["table"], r["rule_id"], split))] = (r, extent)
        return out

    a, b = basis(now), basis(before)
    shared = {k for k in a.keys() & b.keys() if a[k][1] == b[k][1]}

    def scores(side):
        extent = {(r["source"], r["table"], r["rule_id"]): e for r, e in side.values()}
        obs = [replace(o, sampled=o.sampled or extent[(o.source, o.table, o.rule_id)] == NEW_ROWS)
               for o in observations([side[k][0] for k in sorted(shared)]) if o.org is None]
        return {(s.level, s.subject): s for s in score(obs, weights) if s.level in levels}

    now_s, before_s = scores(a), scores(b)
    # rules, not results: a rule charged per system (REF-X, REF-X@8, REF-X@9) is one rule here, or a
    # quiet night that read no inpatient referral would stand on "fewer rules" than it does
    judged = _rules([o for o in observations(before) if o.org is None])
    shared_rules = _rules([o for o in observations([b[k][0] for k in sorted(shared)]) if o.org is None])
    keep = {k for k in now_s.keys() & before_s.keys()
            if len(shared_rules.get(k, ())) >= MIN_SHARED * len(judged.get(k, ()))}
    return {k: now_s[k] for k in keep}, {k: before_s[k] for k in keep}


def _rules(obs: Iterable[Observation]) -> dict[tuple[str, str], set[tuple[str, str, str]]]:
    """Per (level, subject) as ``score`` makes them, the rules judged (a verdict, as a check counts):
    a rule's results in several systems (store.results.part_id) are the one rule."""
    out: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
    for o in obs:
        if o.status == "not_applicable":
            continue
        rule = (o.source, o.table, rule_of(o.rule_id))
        for key in (("overall", "overall"), ("dimension", o.dimension), ("table", f"{o.source}.{o.table}"),
                    *((("system", o.system),) if o.system else ())):
            out.setdefault(key, set()).add(rule)
    return out
