"""The run report: one self-contained HTML page (and the same as PDF) that a QC manager opens in the
morning — scores with intervals and trends, institutions worst first, the worst rules with their
meaning and threshold, findings new / persisting / resolved with deadlines, duplicate archives.

The page works offline: styles inline, charts as inline SVG, fonts from the system (Noto CJK), no
script and no external URL. Every value on it is a score, a count, a record key or a masked value.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from healthqa import __version__, clock, codelists
from healthqa.config import Config
from healthqa.store import AuditStore
from healthqa.store.findings import FindingRow, urgency
from healthqa.store.results import split_rules

from . import charts, render
from . import scores as sc
from . import series as se
from .assess import describe, rule_results
from .coverage import coverage
from .findings import example_lines, location
from .institutions import registry
from .labels import KIND_ZH, STATUS_ZH, scope_text
from .referral_loop import loop_rows
from .rules_run import RulesRun, rules_run
from .severe import read_severe

TREND_RUNS = 30
WORST_RULES = 15
FINDINGS_SHOWN = 50  # per list, most urgent first; the rest are one `healthqa findings` away
DIMENSION_EN = {"完整性": "completeness", "规范性": "conformity", "一致性": "consistency", "唯一性": "uniqueness",
                "及时性": "timeliness", "关联性": "referential integrity"}
NO_ROWS = "本次未读到数据 no rows read this run"
STATE_ZH = {"new": "新增", "open": "未关闭", "acknowledged": "已确认", "resolved": "已解决", "reopened": "重新出现"}


def context(cfg: Config, store: AuditStore, run_id: int, at: datetime | None = None) -> dict:
    at = at or clock.now()
    run = store.runs.get(run_id)
    if run is None:
        from healthqa.errors import HealthqaError

        raise HealthqaError(f"运行 {run_id} 不存在 / run {run_id}: no such run in the audit store")
    scored = {(s["level"], s["subject"]): s for s in store.scores.of_run(run_id)}
    systems = codelists.load("systems")["codes"]
    orgs = registry(cfg, store)
    events = store.findings.events_of_run(run_id)
    open_by_org: dict[str, int] = {}
    for f in store.findings.list(state="open"):
        if f.org_code:
            open_by_org[f.org_code] = open_by_org.get(f.org_code, 0) + 1

    results = rule_results(store, run_id)
    describe(results, cfg)
    earlier = Earlier(cfg, store, run, results)

    def view(level: str, subject: str) -> dict | None:
        s = scored.get((level, subject))
        if s is None:
            return None
        return {**s, "change": earlier.change(level, subject, s), "few": earlier.few(level, subject)}

    ran = rules_run(cfg, store, run_id, results)
    notes = _notes(run, results, scored, orgs, ran) + _split_note(earlier.newly_split()) + \
        read_severe(cfg, store, run_id, results).notes()
    # nothing scored is no data, never a "first" figure
    overall = view("overall", "overall") or {"conformance": None, "pass_rate": None, "checks": 0, "passed": 0,
                                             "sampled": False, "low": None, "high": None, "change": "no data",
                                             "few": None}
    sys_rows = _system_rows(cfg, run, scored, view, systems)
    dim_rows = [{**view("dimension", d), "en": DIMENSION_EN.get(d, "")} for lv, d in scored if lv == "dimension"]
    table_rows = [view("table", t) for lv, t in scored if lv == "table"]
    org_rows = sorted(({"code": code, "name": orgs.name(code), "registered": orgs.known(code), **scored[("org", code)],
                        "failed": scored[("org", code)]["checks"] - scored[("org", code)]["passed"],
                        "open_findings": open_by_org.get(code, 0)}
                       for lv, code in scored if lv == "org"),
                      key=lambda o: (o["conformance"] if o["conformance"] is not None else 101, o["code"]))
    history = earlier.trend("overall", "overall")
    return {
        "title": f"数据质量稽核报告 run #{run_id}",
        "district": cfg.district.name,
        "run": {"id": run.id, "kind": run.kind, "kind_zh": KIND_ZH.get(run.kind, run.kind), "status": run.status,
                "status_zh": STATUS_ZH.get(run.status, run.status), "started_at": _t(run.started_at),
                "finished_at": _t(run.finished_at), "scope_text": scope_text(run.scope)},
        "notes": notes,
        "rules_run": ran,
        "overall": overall,
        "systems": sys_rows,
        "dimensions": dim_rows,
        "tables": table_rows,
        "orgs": org_rows,
        "worst_rules": _worst(results),
        "referral_loop": loop_rows(cfg, results, orgs),
        "findings": {k: [_finding(f, orgs, at) for f in _most_urgent(events.get(k, []))]
                     for k in ("new", "persisting", "reopened", "resolved")},
        "findings_total": {k: len(events.get(k, [])) for k in ("new", "persisting", "reopened", "resolved")},
        "dedup": _dedup(cfg, store),
        "trend_runs": TREND_RUNS,
        "few_rows": cfg.reports.few_rows,
        "charts": {
            "systems": charts.bars([(f"{r['code']} {r['name']}", r["conformance"], r["low"], r["high"])
                                    for r in sys_rows if r["checks"]],
                                   lo=_axis(sys_rows)),
            "dimensions": charts.bars([(r["subject"], r["conformance"], r["low"], r["high"]) for r in dim_rows],
                                      lo=_axis(dim_rows)),
            "trend": charts.trend([(f"#{h['run_id']} {h['at']:%m-%d}", h["conformance"]) for h in history]),
        },
        "earlier": earlier,  # the console's sparklines read the same runs like with like
        "footer": f"healthqa {__version__} · 生成于 generated {_t(at)} · 仅含得分、计数、记录编号与脱敏值 — "
                  f"scores, counts, record keys and masked values only",
    }


class Earlier:
    """A run's scores read against the earlier runs of its series (``series_of``), like with like.

    A subject's change is read against the newest earlier run that scored it (a night with its store
    down is skipped, not taken for the subject's first figure), over only the rules both runs judged
    alike (``scores.comparable``); its trend holds only the runs whose score of it stands on the same
    basis (``series.like``); a score on fewer rows than ``reports.few_rows`` says so."""

    def __init__(self, cfg: Config, store: AuditStore, run, results: list[dict]):
        self.cfg, self.store, self.run, self.results = cfg, store, run, results
        self.series = series_of(run)
        self.bases = {run.id: se.bases(results)}
        self._results: dict[int, list[dict]] = {run.id: results}
        self._compared: dict[int, tuple[dict, dict]] = {}

    def results_of(self, run_id: int) -> list[dict]:
        if run_id not in self._results:
            self._results[run_id] = rule_results(self.store, run_id)
            describe(self._results[run_id], self.cfg)
            self.bases[run_id] = se.bases(self._results[run_id])
        return self._results[run_id]

    def change(self, level: str, subject: str, s: dict) -> str:
        if s["conformance"] is None:
            return "no data"  # no rule of it read a row this run
        history = self.store.scores.history(level, subject, TREND_RUNS, before_run=self.run.id - 1, **self.series)
        prior = [h["run_id"] for h in history if h["conformance"] is not None]
        if not prior:  # scored before, but never on a row: nothing to compare with either
            return "not comparable" if history else "new"
        if prior[-1] not in self._compared:
            self._compared[prior[-1]] = sc.comparable(self.results, self.results_of(prior[-1]), self.cfg.reports.weights)
        like_now, like_before = self._compared[prior[-1]]
        key = (level, subject)
        return sc.change(like_now[key], like_before[key]) if key in like_now else "not comparable"

    def newly_split(self) -> list[tuple[str, str, str]]:
        """The rules this run split per system (a suite's ``system_by``) that the series' previous
        scored run judged whole: their scores are not compared across the split."""
        history = self.store.scores.history("overall", "overall", 1, before_run=self.run.id - 1, **self.series)
        if not history:
            return []
        before = self.results_of(history[-1]["run_id"])
        whole = {(r["source"], r["table"], r["rule_id"]) for r in before} - split_rules(before)
        return sorted(split_rules(self.results) & whole)

    def few(self, level: str, subject: str) -> str | None:
        return se.few_rows(self.bases[self.run.id].get((level, subject)), self.cfg.reports.few_rows)

    def trend(self, level: str, subject: str) -> list[dict]:
        """The subject's scores over the last runs that stand on the basis this run's does."""
        history = self.store.scores.history(level, subject, TREND_RUNS, before_run=self.run.id, **self.series)
        for h in history:
            self.results_of(h["run_id"])
        key = (level, subject)
        return se.like(history, self.bases, key, self.bases[self.run.id].get(key), self.cfg.reports.few_rows)


def default_run(store: AuditStore) -> int | None:
    """The run a report shows unless told otherwise: the newest scored nightly audit (the district's
    figures); an engineer's scoped run only while no night has been scored (its report is one
    ``--run ID`` away otherwise)."""
    return store.scores.latest_run(kind="nightly") or store.scores.latest_run()


def unscored_since(cfg: Config, store: AuditStore, run_id: int | None) -> list[str]:
    """A line for each nightly audit newer than ``run_id`` that scored nothing (every store down, the
    run failed): the newest scored night is then not last night, and whoever reads it is told why."""
    out = []
    for r in reversed(store.runs.recent(TREND_RUNS, kind="nightly")):
        if (run_id is None or r.id > run_id) and r.status != "running" and not store.scores.of_run(r.id):
            ran = rules_run(cfg, store, r.id)
            why = ran.line() if ran is not None and ran.could_not else (r.message or STATUS_ZH.get(r.status, r.status))
            out.append(f"夜间稽核 #{r.id}（{_t(r.started_at)}，{STATUS_ZH.get(r.status, r.status)} {r.status}）没有得分，"
                       f"以下为此前最近一次有得分的运行 — nightly audit #{r.id} scored nothing; shown is the newest "
                       f"scored run before it: {why}")
    return out


def series_of(run) -> dict:
    """Which runs a run's trend and its change are read against (``store.scores.history``'s filter):
    nightly audits for a nightly audit — the district-wide figures; for an engineer's scoped run, the
    earlier runs of exactly its scope (one table, institution or window is never a point on the
    district's trend)."""
    return {"kind": "nightly"} if run.kind == "nightly" else {"kind": run.kind, "scope": run.scope}


def write(cfg: Config, store: AuditStore, run_id: int, out_dir: str | Path, pdf: bool = False) -> render.Written:
    return render.write("run.html.j2", context(cfg, store, run_id), out_dir, f"run-{run_id}", pdf)


def _axis(rows: list[dict]) -> float:
    """Bars start below the lowest score so that 97 and 99 do not look alike."""
    vals = [r["conformance"] for r in rows if r["conformance"] is not None]
    return max(0.0, (min(vals) // 10) * 10 - 10) if vals else 0.0


def _worst(results: list[dict]) -> list[dict]:
    failing = [r for r in results if r["status"] == "fail"]
    for r in failing:
        r["excess"] = sc.excess(r["violations"], r["denominator"], r["threshold_pct"] or 0.0)
        r["examples"] = example_lines(r, None)
    return sorted(failing, key=lambda r: sc.worst_first(r["violations"], r["denominator"], r["threshold_pct"],
                                                      r["violation_pct"]))[:WORST_RULES]


def _most_urgent(rows: list[FindingRow]) -> list[FindingRow]:
    return sorted(rows, key=urgency)[:FINDINGS_SHOWN]


def _finding(f: FindingRow, orgs, at: datetime) -> dict:
    return {"id": f.id, "level": f.level, "emergency": f.emergency, "title_zh": f.title_zh, "title_en": f.title_en,
            "where": location(f, orgs),
            "violations": f.violations, "rows_checked": f.rows_checked, "response_due": _t(f.response_due_at),
            "fix_due": _t(f.fix_due_at), "overdue": f.overdue(at), "state_zh": f"{STATE_ZH.get(f.state, f.state)} {f.state}"}


def _dedup(cfg: Config, store: AuditStore) -> list[dict]:
    out = []
    for source in cfg.sources:
        s = store.dedup.summary(source)
        if s["suggested"] or s["review"] or s["merged"] or s["rejected"]:
            out.append({"source": source, **s})
    return out


def _system_rows(cfg: Config, run, scored: dict, view, systems: dict) -> list[dict]:
    """The systems the run scored, in the contract's order; a nightly audit (the whole platform) lists
    all fourteen, each it did not score with why: its tables not mapped (``coverage``) or no rows read."""
    covered = {c.code: c for c in coverage(cfg)}
    rows = {}
    for lv, code in scored:
        if lv == "system":
            row = rows[code] = {**view("system", code), "code": code, "name": systems.get(code, "")}
            # the configuration now: a table mapped no more does not unsay the score of this run
            partly = covered[code].note() if code in covered and covered[code].audited else None
            row["note"] = partly or (NO_ROWS if row["conformance"] is None else None)
    if run.kind == "nightly":
        for code, c in covered.items():
            rows.setdefault(code, {"code": code, "name": c.name, "conformance": None, "pass_rate": None, "checks": 0,
                                   "passed": 0, "low": None, "high": None, "change": "no data", "few": None,
                                   "note": c.note() or NO_ROWS})
    return sorted(rows.values(), key=lambda r: int(r["code"]) if r["code"].isdigit() else 99)


def _notes(run, results: list[dict], scored: dict, orgs, ran: RulesRun | None = None) -> list[str]:
    """Plain statements for what would otherwise look like an error or an empty page."""
    notes = []
    if run.status in ("failed", "partial") and run.message:
        notes.append(f"本次运行未完整完成 — the run did not complete in full: {run.message}")
    if ran is not None and ran.could_not:
        notes.append(f"{ran.could_not:,} 条规则未能运行，{ran.ran:,} 条已运行 — {ran.could_not:,} of "
                     f"{ran.ran + ran.could_not:,} rules could not run: "
                     + ran.reasons() + "（规则见下 the rules: below）")
    if not results:
        notes.append("本次运行没有产生任何规则结果（数据源不可用或范围内无数据）— this run produced no rule result "
                     "(sources down, or nothing in its scope).")
    elif all(r["denominator"] == 0 for r in results):
        notes.append("范围内的表没有数据行 — the tables in scope had no rows.")
    unknown = sorted(code for lv, code in scored if lv == "org" and not orgs.known(code))
    if unknown and orgs.available:
        notes.append(f"{len(unknown)} 个机构代码未在机构注册表中登记：{', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}"
                     " — institution codes not in the registry.")
    if not orgs.available:
        notes.append("机构注册表不可读，机构以代码显示 — the institution registry could not be read; codes shown.")
    return notes


def _split_note(rules: list[tuple[str, str, str]]) -> list[str]:
    """Said the night a rule is first split per system: the default system's part is another measure
    than the whole rule the night before (store.results.measured), left out of the changes and trends."""
    if not rules:
        return []
    names = "、".join(r for _, _, r in rules[:5]) + (" …" if len(rules) > 5 else "")
    return [f"{len(rules)} 条规则自本次运行起按所属系统拆分计分（{names}）：拆分前后口径不同，"
            f"得分变化与趋势未把拆分本身算作升降，这些规则不参与与此前运行的比较 — "
            f"{len(rules)} rule(s) are split per system from this run on; their "
            f"scores before and after the split measure different rows and are left out of the changes and trends."]


def _t(v: datetime | None) -> str | None:
    return clock.shown(v) if v else None  # in the platform's zone, labelled
