"""From what the audit saw to the maintenance contract's fault levels.

Rule severities in the suites describe data defects; the contract's levels describe service faults
and carry deadlines (一级: on site within 2 hours, fixed within 24 hours; 二级: response within 2
hours). Reading one as the other would send an engineer on site every night, so the mapping is a
policy in configuration (``reports.severity``), with this default:

- 一级 only for faults that stop a system or lose data: a store unreachable, a system's whole feed
  silent, a run that could not complete;
- 二级 for one institution's feed failing, for a score that dropped beyond its threshold, and for a
  failing rule whose violation rate exceeds its threshold by more than ``rule_margin_pp`` points
  (default 2) with at least ``rule_min_rows`` rows beyond what it tolerates (default 10: one bad
  record of a village clinic's eight is not a 2-hour call), when its suite severity allows it
  (``rule_cap``);
- 提示 for every other failing rule: listed, no deadline.

The contract's 系统严重损坏 (a system working at under 30 % of its normal efficiency, or serious data
errors; 7×24 emergency response) is read from the data by reports/severe.py: a system's day volume
collapsed (一级), an institution's (二级), a violation rate jumping far above its recent history (一级).
Findings of the kinds in ``EMERGENCY`` carry the 7×24 flag wherever their level shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from healthqa.store.findings import EMERGENCY, emergency

__all__ = ["EMERGENCY", "EMERGENCY_LABEL", "LEVELS", "LEVEL_EN", "Policy", "emergency"]

LEVELS = ("一级", "二级", "提示")
LEVEL_EN = {"一级": "level 1", "二级": "level 2", "提示": "notice"}

DEFAULT_FAULTS = {
    "store_unreachable": "一级",  # a whole store (MPI, data centre, QC store) could not be read
    "run_incomplete": "一级",  # the audit itself could not complete
    "system_feed_silent": "一级",  # no active institution uploaded: the exchange platform is down
    "org_feed_silent": "二级",  # one institution's interface stopped
    "table_unreadable": "二级",  # a mapped table could not be read (mapping, permissions)
    "score_drop": "二级",  # a score fell beyond the configured drop and its uncertainty
    # 系统严重损坏 (reports/severe.py): a day's volume under 30 % of its same-weekday normal …
    "system_volume_collapse": "一级",  # … of a system (its table): the system runs below 30 % of normal
    "org_volume_collapse": "二级",  # … of one institution's uploads to a system
    "serious_data_error": "一级",  # a violation rate jumped far above its comparable history
}
EMERGENCY_LABEL = "7×24 应急 emergency"
DEFAULT_RULE_CAP = {"一级": "二级", "二级": "二级", "提示": "提示"}
DEFAULT_DEADLINES = {"一级": (2.0, 24.0), "二级": (2.0, None), "提示": (None, None)}  # hours: response, fix


@dataclass(frozen=True)
class Policy:
    faults: Mapping[str, str]
    rule_cap: Mapping[str, str]
    rule_margin_pp: float
    rule_min_rows: int
    deadlines: Mapping[str, tuple[float | None, float | None]]
    feed_rules: frozenset[str]

    @classmethod
    def default(cls) -> Policy:
        return cls(DEFAULT_FAULTS, DEFAULT_RULE_CAP, 2.0, 10, DEFAULT_DEADLINES, frozenset({"ORG-FEED-ACTIVE"}))

    @classmethod
    def from_config(cls, reports) -> Policy:
        """``reports``: the configuration's ``reports`` section (healthqa.config.Reports) or None."""
        if reports is None:
            return cls.default()
        s = reports.severity
        return cls({**DEFAULT_FAULTS, **s.faults}, {**DEFAULT_RULE_CAP, **s.rule_cap}, s.rule_margin_pp, s.rule_min_rows,
                   {**DEFAULT_DEADLINES, **{k: (d.response_hours, d.fix_hours) for k, d in reports.deadlines.items()}},
                   frozenset(s.feed_rules))

    def rule_level(self, suite_severity: str, violations: int, rows: int, threshold_pct: float) -> str:
        """The contract level of a failing rule (on a table or on one institution's rows)."""
        cap = self.rule_cap.get(suite_severity, "提示")
        over = (100.0 * violations / rows if rows else 0.0) - threshold_pct
        beyond = violations - threshold_pct / 100.0 * rows
        level = "二级" if over > self.rule_margin_pp and beyond >= self.rule_min_rows else "提示"
        return max(level, cap, key=LEVELS.index)  # the less urgent of the two

    def fault_level(self, kind: str) -> str:
        return self.faults.get(kind, "二级")

    def due(self, level: str, opened_at: datetime) -> tuple[datetime | None, datetime | None]:
        """Response and fix deadlines of a finding opened at ``opened_at``."""
        response, fix = self.deadlines.get(level, (None, None))
        return (opened_at + timedelta(hours=response) if response is not None else None,
                opened_at + timedelta(hours=fix) if fix is not None else None)
