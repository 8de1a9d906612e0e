"""How many of a run's rules ran, and how many could not and why.

A night with a store down must not read as a clean night: the rules of the tables it could not read
and the rules whose reference data lives in the store that was down have no verdict, and a report
that lists only the rules that failed would call such a night "every rule within its threshold".
``rules_run`` counts, for one run, the rules that ran (a verdict, or not applicable to the rows
read) and those that could not, grouped by reason: a table not read (named by the run's fault
finding: the store that was down, the table that could not be read) or a rule stored as ``error``
(``参照数据不可用 reference unavailable: mpi unreachable: …``). The run report and ``healthqa runs``
show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from healthqa.config import Config
from healthqa.expectations import suite as suites
from healthqa.store import AuditStore

NOT_READ = "表未读取 table not read"
READ_FAULTS = ("store_unreachable", "table_unreadable", "run_incomplete")  # what keeps a table from being read


@dataclass(frozen=True)
class RulesRun:
    """A run's rules: how many ran, and the ids of those that could not, by reason (most first)."""

    ran: int
    not_run: dict[str, list[str]] = field(default_factory=dict)

    @property
    def could_not(self) -> int:
        return sum(len(ids) for ids in self.not_run.values())

    def line(self) -> str:
        """``规则 rules: 运行 ran 150 of 187 · 未能运行 could not run 37 — 24 表未读取 …; 13 参照数据不可用 …``."""
        head = f"规则 rules: 运行 ran {self.ran:,} of {self.ran + self.could_not:,}"
        if not self.not_run:
            return head
        return f"{head} · 未能运行 could not run {self.could_not:,} — {self.reasons()}"

    def reasons(self) -> str:
        return "; ".join(f"{len(ids):,} {reason}" for reason, ids in self.not_run.items())


def rules_run(cfg: Config, store: AuditStore, run_id: int, results: Iterable[Mapping] | None = None) -> RulesRun | None:
    """The rules of run ``run_id`` that ran and those that could not; ``None`` for a run that
    validates nothing (a duplicate scan). ``results``: the run's stored results as dicts, when the
    caller has them already."""
    run = store.runs.get(run_id)
    if run is None or run.kind not in ("nightly", "validate"):
        return None
    results = [asdict(r) for r in store.results.of_run(run_id)] if results is None else list(results)
    not_run: dict[str, list[str]] = {}
    ran = 0
    for r in results:
        if r["status"] == "error":
            not_run.setdefault(_why(r.get("error") or ""), []).append(r["rule_id"])
        else:
            ran += 1
    read = {(r["source"], r["table"]) for r in results}
    events = store.findings.events_of_run(run_id)  # one read of the run's findings, not one per kind of event
    faults = [f for event in ("new", "persisting", "reopened") for f in events[event] if f.kind == "fault"]
    for source, table in _planned(cfg, run.scope or {}):
        if (source, table) not in read:
            rules = [r.id for r in suites.listed(table, cfg.validation.suites)]
            not_run.setdefault(_not_read(source, table, faults), []).extend(rules)
    return RulesRun(ran, dict(sorted(((why, ids) for why, ids in not_run.items() if ids), key=lambda kv: -len(kv[1]))))


def _planned(cfg: Config, scope: Mapping) -> list[tuple[str, str]]:
    """The (source, table) pairs a run set out to validate: a nightly's every table with a suite of
    its sources, an engineer's validation its tables (as the configuration maps them now)."""
    if scope.get("tables"):
        return [(scope["source"], t) for t in scope["tables"]]
    sources = scope.get("sources") or ([scope["source"]] if scope.get("source") else [])
    return [(s, t) for s in sources if s in cfg.sources
            for t in suites.tables_with_suite(cfg.sources[s].tables, cfg.validation.suites)]


def _not_read(source: str, table: str, faults: list) -> str:
    """Why a table has no result: the run's fault on it or on its store."""
    mine = [f for f in faults if f.source == source and f.subject in READ_FAULTS and f.table_name in (table, None)]
    mine.sort(key=lambda f: f.table_name is None)  # the table's own fault first, then its store's
    if not mine:
        return NOT_READ
    return f"{NOT_READ} — {mine[0].title_zh} ({mine[0].title_en})"


def _why(error: str) -> str:
    """A rule's error as a reason shared by the rules it stopped: reference data unavailable for the
    same cause is one reason, whichever references each rule needed (the names in brackets)."""
    from healthqa.expectations import UNAVAILABLE

    if error.startswith(UNAVAILABLE) and error.endswith(")") and " (" in error:
        return error.rsplit(" (", 1)[0]
    return " ".join(error.split())[:200] or "错误 error"
