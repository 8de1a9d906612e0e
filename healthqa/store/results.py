"""Validation results: what each rule found in a run, and the same scope's previous results."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from .models import RuleResult, Run

if TYPE_CHECKING:
    from .store import AuditStore


# a rule split per system (a suite's ``system_by``: the referral table's common rules, charged to the
# system of each row's kind) has one result per system: the default system's under the rule's own id,
# each other's under ``<rule id>@<system>`` — its own score, findings and history (docs/domain.md)
PART = "@"


def part_id(rule_id: str, system: str, default: str) -> str:
    """The id of a rule's result in ``system`` (``REF-STATUS-CODE@9``); the default system's is the rule's."""
    return rule_id if system == default else f"{rule_id}{PART}{system}"


def rule_of(result_id: str) -> str:
    """The rule a result is of: ``REF-STATUS-CODE@9`` is of REF-STATUS-CODE."""
    return result_id.partition(PART)[0]


def split_rules(results: Iterable) -> set[tuple[str, str, str]]:
    """The (source, table, rule) a run split per system: those with a result ``<rule>@<system>``
    (a split rule has every system's result each run, ``not_applicable`` where no row was of it).
    ``results``: dicts (``source``, ``table``, ``rule_id``) or ``StoredResult``s."""
    out = set()
    for r in results:
        source, table, rid = (r["source"], r["table"], r["rule_id"]) if isinstance(r, dict) else r.key
        if PART in rid:
            out.add((source, table, rule_of(rid)))
    return out


def measured(source: str, table: str, rule_id: str, split: set[tuple[str, str, str]]) -> str:
    """What a result measures, for comparing runs: its id, except that a split rule's default part
    (``REF-X``, only the default system's rows) is not the same measure as the whole rule before the
    split (``REF-X`` over every kind): it reads ``REF-X@`` — so the night of the split compares
    system 7's new score with nothing, never with the mixed one before (docs/domain.md)."""
    return f"{rule_id}{PART}" if PART not in rule_id and (source, table, rule_id) in split else rule_id


@dataclass(frozen=True)
class StoredResult:
    """One rule's result on one table in one run (DQD-style: numerator, denominator, status)."""

    source: str
    table: str
    rule_id: str
    status: str  # pass | fail | not_applicable | error
    violations: int = 0
    denominator: int = 0
    violation_pct: float | None = None
    threshold_pct: float | None = None
    columns: list[str] | None = None
    dimension: str | None = None
    kahn: str | None = None
    severity: str | None = None
    system: str | None = None  # the owning system among the contract's fourteen
    sample_keys: list[str] | None = None
    watched_keys: list[str] | None = None  # every violating key among those the run watched (the demo's)
    examples: list[dict] | None = None  # violating rows with masked values (expectations/runner.py)
    by_org: dict | None = None
    sampling: dict | None = None
    error: str | None = None

    @property
    def rule(self) -> str:
        """The rule's id (the result's without the system it is charged to: ``part_id``)."""
        return rule_of(self.rule_id)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.source, self.table, self.rule_id


def _stored(r: RuleResult) -> StoredResult:
    return StoredResult(source=r.source, table=r.table_name, rule_id=r.rule_id, status=r.status,
                        violations=r.violations, denominator=r.denominator, violation_pct=r.violation_pct,
                        threshold_pct=r.threshold_pct, columns=r.columns, dimension=r.dimension, kahn=r.kahn,
                        severity=r.severity, system=r.system, sample_keys=r.sample_keys, examples=r.examples,
                        watched_keys=r.watched_keys, by_org=r.by_org, sampling=r.sampling,
                        error=r.error)


class Results:
    """``store.results``: rule results of validation runs."""

    def __init__(self, store: AuditStore):
        self._store = store

    def record(self, run_id: int, results: Iterable[StoredResult]) -> int:
        """Keep a run's results; returns how many were written."""
        rows = []
        for r in results:
            d = asdict(r)
            d["table_name"] = d.pop("table")
            rows.append(RuleResult(run_id=run_id, **d))
        with self._store.session() as s:
            s.add_all(rows)
        return len(rows)

    def of_run(self, run_id: int) -> list[StoredResult]:
        with self._store.session() as s:
            rows = s.execute(select(RuleResult).where(RuleResult.run_id == run_id).order_by(RuleResult.id)).scalars()
            return [_stored(r) for r in rows]

    def split_in(self, run_ids: Iterable[int]) -> dict[int, set[tuple[str, str, str]]]:
        """Per run, the rules it split per system (``split_rules``), read from the result ids alone."""
        ids = sorted(set(run_ids))
        out: dict[int, set[tuple[str, str, str]]] = {rid: set() for rid in ids}
        with self._store.session() as s:
            for start in range(0, len(ids), 500):
                q = (select(RuleResult.run_id, RuleResult.source, RuleResult.table_name, RuleResult.rule_id)
                     .where(RuleResult.run_id.in_(ids[start:start + 500]), RuleResult.rule_id.contains(PART)))
                for rid, source, table, rule_id in s.execute(q):
                    out[rid].add((source, table, rule_of(rule_id)))
        return out

    def of_table(self, source: str, table: str, kind: str, *, upto: int, since: datetime | None = None,
                 runs: int | None = None) -> list[tuple[int, datetime, str, list[StoredResult]]]:
        """The runs of ``kind`` up to run ``upto`` (started at ``since`` or later; the newest ``runs``
        of them when given) that have results on ``source``'s ``table``: (run id, started at, run
        status, the table's results), oldest first. The history of a table's counts and rates
        (reports/severe.py)."""
        q = (select(Run.id, Run.started_at, Run.status)
             .where(Run.kind == kind, Run.id <= upto,
                    Run.id.in_(select(RuleResult.run_id).where(RuleResult.source == source,
                                                               RuleResult.table_name == table)))
             .order_by(Run.id.desc()))
        if since is not None:
            q = q.where(Run.started_at >= since)
        if runs is not None:
            q = q.limit(runs)
        with self._store.session() as s:
            picked = list(s.execute(q))[::-1]
            found: dict[int, list[StoredResult]] = {rid: [] for rid, _, _ in picked}
            if found:
                rows = s.execute(select(RuleResult).where(RuleResult.run_id.in_(list(found)),
                                                          RuleResult.source == source, RuleResult.table_name == table)
                                 .order_by(RuleResult.id)).scalars()
                for r in rows:
                    found[r.run_id].append(_stored(r))
        return [(rid, started, status, found[rid]) for rid, started, status in picked]

    def of_rule(self, source: str, table: str, rule_id: str, since_run: int = 0) -> list[tuple[int, StoredResult]]:
        """Every run from ``since_run`` on that checked ``rule_id`` on ``source.table``, oldest first, with
        its result: the evidence a service report shows before and after a repair."""
        q = (select(RuleResult).where(RuleResult.source == source, RuleResult.table_name == table,
                                      RuleResult.rule_id == rule_id, RuleResult.run_id >= since_run)
             .order_by(RuleResult.run_id, RuleResult.id))
        with self._store.session() as s:
            return [(r.run_id, _stored(r)) for r in s.execute(q).scalars()]

    def previous(self, scope: dict, kind: str = "validate") -> dict[tuple[str, str, str], StoredResult]:
        """The results of the last successful run of ``kind`` over exactly this scope, by
        (source, table, rule id); empty when the scope never ran before."""
        last = self._store.runs.last_success(kind, scope=scope)
        return {} if last is None else {r.key: r for r in self.of_run(last.id)}
