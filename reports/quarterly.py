"""The quarterly inspection report (巡检报告) the maintenance contract asks for four times a year:
the fourteen systems and their status, score trends through the quarter, findings opened and closed
with deadline compliance by level, duplicate archives found and merged, the problems and
requirements collected, recommendations, and the signature block both sides sign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from healthqa import __version__, clock, codelists
from healthqa.config import Config
from healthqa.errors import HealthqaError
from healthqa.store import AuditStore
from healthqa.store.findings import FindingRow, urgency

from . import charts, render, series, service
from .assess import describe, rule_results
from .coverage import coverage
from .findings import location, responded_at
from .institutions import registry
from .labels import KIND_ZH, STATUS_ZH
from .rules_run import rules_run

RULE_LEVELS = ("一级", "二级")


@dataclass(frozen=True)
class Quarter:
    year: int
    q: int

    @property
    def start(self) -> datetime:
        return datetime(self.year, 3 * self.q - 2, 1)

    @property
    def last_day(self) -> datetime:
        """The quarter's last day (``end`` is the first moment after it)."""
        return self.end - timedelta(days=1)

    @property
    def end(self) -> datetime:
        return datetime(self.year + 1, 1, 1) if self.q == 4 else datetime(self.year, 3 * self.q + 1, 1)

    def __str__(self) -> str:
        return f"{self.year}Q{self.q}"


QUARTER_YEARS = (1900, 9998)


def parse_quarter(text: str) -> Quarter:
    m = re.fullmatch(r"\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*", text)
    if not m:
        raise HealthqaError(f"--quarter: 应为季度，如 2026Q4 / expected a quarter like 2026Q4, got {text!r}")
    year = int(m.group(1))
    if not QUARTER_YEARS[0] <= year <= QUARTER_YEARS[1]:  # a typo, and beyond 9998 no date ends the quarter
        raise HealthqaError(f"--quarter: 年份应在 {QUARTER_YEARS[0]}–{QUARTER_YEARS[1]} 之间 / the year must be "
                            f"from {QUARTER_YEARS[0]} to {QUARTER_YEARS[1]}, got {text.strip()!r}")
    return Quarter(year, int(m.group(2)))


def compliance(findings: list[FindingRow], at: datetime) -> list[dict]:
    """Deadline compliance by level for findings opened in the period: responses in time (a person
    acknowledged or resolved it by the response deadline) and fixes in time (resolved by the fix
    deadline). A finding a later read found fixed within its response time before anybody acknowledged
    it recovered by itself: nobody responded to it, so it is counted apart, not as a response in time. A
    deadline not yet reached by ``at`` and not yet met is pending, not missed."""
    out = []
    for level in RULE_LEVELS:
        rows = [f for f in findings if f.level == level]
        recovered = [f for f in rows if _recovered(f)]
        responded = _met([f for f in rows if not _recovered(f)], "response_due_at", responded_at, at)
        fixed = _met(rows, "fix_due_at", lambda f: f.resolved_at, at)
        out.append({"level": level, "opened": len(rows), "recovered": len(recovered),
                    **{f"response_{k}": v for k, v in responded.items()}, **{f"fix_{k}": v for k, v in fixed.items()}})
    return out


def _met(rows: list[FindingRow], due_field: str, done_at, at: datetime) -> dict:
    met = missed = pending = 0
    for f in rows:
        due = getattr(f, due_field)
        if due is None:
            continue
        done = done_at(f)
        if done is not None and done <= due:
            met += 1
        elif done is not None or at > due:
            missed += 1
        else:
            pending += 1
    judged = met + missed
    return {"met": met, "missed": missed, "pending": pending, "rate": 100.0 * met / judged if judged else None}


def _recovered(f: FindingRow) -> bool:
    """Resolved by a run's read (``resolved_by`` "run N") within the response time, with no
    acknowledgement by a person (one that outlived its response time unanswered was answered late)."""
    return (f.resolved_at is not None and f.acknowledged_at is None and (f.resolved_by or "").startswith("run ")
            and (f.response_due_at is None or f.resolved_at <= f.response_due_at))


def context(cfg: Config, store: AuditStore, quarter: Quarter, at: datetime | None = None) -> dict:
    at = at or clock.now()
    until = min(quarter.end, at)
    runs = store.runs.between(quarter.start, quarter.end)
    # the audits are the nightly audits; a duplicate scan or an engineer's validation is listed apart
    nightly = [r for r in runs if r.kind == "nightly"]
    others = {f"{KIND_ZH.get(k, k)} {k}": sum(r.kind == k for r in runs) for k in sorted({r.kind for r in runs} - {"nightly"})}
    # the district's figures: nightly audits only (an engineer's run over one table, institution or
    # window scores a part of it: its 87.5 % over 8 rows is no system's lowest of the quarter)
    scored = [(r, store.scores.of_run(r.id)) for r in nightly]
    scored = [(r, s) for r, s in scored if s]
    results = {r.id: rule_results(store, r.id) for r in nightly}
    bases = {}
    for r, _ in scored:
        describe(results[r.id], cfg)
        bases[r.id] = series.bases(results[r.id])
    systems = codelists.load("systems")["codes"]
    covered = {c.code: c for c in coverage(cfg)}
    orgs = registry(cfg, store)
    opened = store.findings.opened_between(quarter.start, quarter.end)
    closed = store.findings.resolved_between(quarter.start, quarter.end)
    still_open = store.findings.open_at(until)
    notes = store.findings.notes_between(quarter.start, quarter.end)

    points: dict[tuple[str, str], list[dict]] = {}
    for r, run_scores in scored:
        for s in run_scores:
            if s["conformance"] is not None and s["level"] in ("system", "overall"):
                points.setdefault((s["level"], s["subject"]), []).append(
                    {"run_id": r.id, "at": r.started_at, "conformance": s["conformance"]})
    few = cfg.reports.few_rows
    open_by_system: dict[str, list[FindingRow]] = {}
    for f in still_open:
        open_by_system.setdefault(f.system or "", []).append(f)

    system_rows = []
    for code, name in systems.items():
        figures = _figures(points.get(("system", code), []), bases, ("system", code), few)
        problems = open_by_system.get(code, [])
        urgent = [f for f in problems if f.level in RULE_LEVELS]
        cov = covered[code]
        if not cov.audited and not problems:
            status = cov.note()
        elif figures["last"] is None and not problems:
            status = "本季无评分 no score this quarter"
        elif any(f.level == "一级" for f in problems):
            status = "一级故障未关闭 level-1 fault open"
        elif urgent:
            status = "二级问题未关闭 level-2 findings open"
        else:
            status = "正常 normal"
        system_rows.append({"code": code, "name": name, "status": status, **figures,
                            "note": cov.note() if cov.audited else None,
                            "open": len(problems), "urgent": len(urgent)})
    overall = _figures(points.get(("overall", "overall"), []), bases, ("overall", "overall"), few)
    not_run = []
    for r in nightly:
        ran = rules_run(cfg, store, r.id, results[r.id])
        if ran is not None and ran.could_not:
            not_run.append({"id": r.id, "at": f"{r.started_at:%Y-%m-%d}", "line": ran.line()})

    merged = store.dedup.decisions_between(quarter.start, quarter.end)
    dedup_now = [{"source": s, **store.dedup.summary(s)} for s in cfg.sources]
    dedup_now = [d for d in dedup_now if any(d[k] for k in ("suggested", "review", "merged", "rejected"))]

    return {
        "title": f"{quarter} 巡检报告 quarterly inspection report",
        "district": cfg.district.name,
        "quarter": str(quarter),
        "period": f"{quarter.start:%Y-%m-%d} – {quarter.last_day:%Y-%m-%d}",
        "as_of": clock.shown(until),
        "runs": {"total": len(runs), "audits": len(nightly), "scored": len(scored), "others": others,
                 "by_status": {f"{STATUS_ZH.get(k, k)} {k}": sum(r.status == k for r in nightly)
                               for k in sorted({r.status for r in nightly})},
                 "not_run": not_run},
        "systems": system_rows,
        "overall": overall,
        "few_rows": few,
        "trend": charts.trend([(f"#{p['run_id']} {p['at']:%m-%d}", p["conformance"]) for p in overall["series"]]),
        "findings": {"opened": len(opened), "closed": len(closed), "open_at_end": len(still_open),
                     "compliance": compliance(opened, until),
                     "open_list": [_row(f, orgs, until) for f in sorted(still_open, key=urgency)[:25]]},
        "service_reports": service.quarter_lines(store, quarter.start, quarter.end, until),
        "dedup": {"decided": merged, "now": dedup_now},
        "notes": notes,
        "recommendations": _recommend(system_rows, still_open, opened, orgs),
        "footer": f"healthqa {__version__} · 生成于 generated {clock.shown(at)} · 仅含得分、计数、记录编号与脱敏值",
    }


def _figures(points: list[dict], bases: dict, key: tuple[str, str], few: int) -> dict:
    """A subject's first, lowest and last score of the quarter, over only the runs whose score of it
    stands on the basis of the newest one on enough rows (``series.reference``): a quiet night that
    scored a system on one rule over 14 rows is not its "last" beside a whole read of 136,356.
    ``few``: the caveat when even that rests on few rows; ``left_out``: the scores not comparable."""
    ref = series.reference(points, bases, key, few)
    like = series.like(points, bases, key, ref, few)
    values = [p["conformance"] for p in like]
    return {"first": values[0] if values else None, "last": values[-1] if values else None,
            "low": min(values) if values else None, "last_run": f"#{like[-1]['run_id']} {like[-1]['at']:%m-%d}" if like else None,
            "few": series.few_rows(ref, few), "left_out": len(points) - len(like), "series": like}


def write(cfg: Config, store: AuditStore, quarter: Quarter, out_dir: str | Path, pdf: bool = False) -> render.Written:
    return render.write("quarterly.html.j2", context(cfg, store, quarter), out_dir, f"inspection-{quarter}", pdf)


def _row(f: FindingRow, orgs, at: datetime) -> dict:
    return {"id": f.id, "level": f.level, "emergency": f.emergency, "title_zh": f.title_zh, "title_en": f.title_en,
            "where": location(f, orgs),
            "opened": f"{f.opened_at:%Y-%m-%d}", "overdue": f.overdue(at)}


def _recommend(systems: list[dict], still_open: list[FindingRow], opened: list[FindingRow], orgs) -> list[str]:
    """Recommendations that follow from the quarter's figures (each names what it rests on)."""
    out = []
    worst = [s for s in systems if s["last"] is not None and s["last"] < 99]
    for s in sorted(worst, key=lambda s: s["last"])[:3]:
        out.append(f"系统 {s['code']} {s['name']} 期末数据符合率 {s['last']:.2f}%，建议优先整改其未关闭问题（{s['open']} 项）。")
    by_org: dict[str, int] = {}
    for f in still_open:
        if f.org_code:
            by_org[f.org_code] = by_org.get(f.org_code, 0) + f.violations
    for code, v in sorted(by_org.items(), key=lambda kv: -kv[1])[:3]:
        out.append(f"{orgs.name(code)} 未关闭问题涉及 {v:,} 行数据，建议安排上门核查与培训。")
    late = [f for f in opened if f.level in RULE_LEVELS and f.acknowledged_at is None and f.resolved_at is None]
    if late:
        out.append(f"本季度 {len(late)} 项一级/二级问题尚未确认，建议按合同时限（2 小时内响应）落实值守。")
    unmapped = [s for s in systems if s["status"].startswith("未纳入稽核")]
    if unmapped:
        out.append(f"系统 {'、'.join(s['code'] for s in unmapped)} 未纳入稽核（其数据表未在配置中映射），"
                   "建议与厂商确认表结构后补充映射，使巡检覆盖合同全部十四个系统。")
    if not out:
        out.append("本季度未发现需要专项整改的问题，建议保持现有巡检频次。")
    return out
