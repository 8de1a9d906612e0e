"""Which of the contract's fourteen systems the configuration lets the audit read.

A system is audited through the canonical tables that hold its rules (each rule names its system;
``suites/*.yml``). A site that maps none of a system's tables cannot audit it: the reports say so,
and say which tables would have to be mapped ("未纳入稽核 not audited — 未映射 not mapped: referral"),
rather than showing the system as empty or as clean. A system whose tables are mapped but that a run
read no rows of is a different thing (no rows read), said apart by the reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from healthqa import canonical, codelists
from healthqa.config import Config
from healthqa.expectations import suite as suites


@dataclass(frozen=True)
class SystemCoverage:
    code: str
    name: str
    tables: tuple[str, ...]  # the canonical tables holding rules of the system
    unmapped: tuple[str, ...]  # of those, the ones no source maps

    @property
    def audited(self) -> bool:
        return len(self.unmapped) < len(self.tables)

    def note(self) -> str | None:
        """Why the system is not (wholly) audited; ``None`` when every table of it is mapped."""
        if not self.tables:
            return "未纳入稽核 not audited — 无规则 no rules"
        if not self.unmapped:
            return None
        names = ", ".join(self.unmapped)
        if not self.audited:
            return f"未纳入稽核 not audited — 未映射表 table not mapped: {names}"
        return f"部分未映射 partly mapped — 未映射表 not mapped: {names}"


def coverage(cfg: Config) -> list[SystemCoverage]:
    """The fourteen systems in the contract's order, each with its tables and those not mapped."""
    mapped = {t for s in cfg.sources.values() for t in s.tables}
    site = cfg.validation.suites
    by_system: dict[str, list[str]] = {}
    for table in suites.tables_with_suite(canonical.tables(), site):
        for r in suites.listed(table, site):
            for system in r.parts or (r.system or "",):  # a rule split per system holds rules of each
                tables = by_system.setdefault(system, [])
                if table not in tables:
                    tables.append(table)
    return [SystemCoverage(code, name, tuple(by_system.get(code, ())),
                           tuple(t for t in by_system.get(code, ()) if t not in mapped))
            for code, name in codelists.load("systems")["codes"].items()]

