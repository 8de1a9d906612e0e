"""The contract's severe damage read from the data: volume collapse and serious data errors.

The maintenance contract defines 系统严重损坏 (severe system damage) as "系统运行效率低于正常效率的30%
或出现严重数据错误" — a system working at under 30 % of its normal efficiency, or serious data errors —
and asks for a 7×24 emergency response to it (docs/domain.md "Severe damage"). healthqa reads it from
what the nightly audits stored, with the parameters in ``reports.severe``:

- **Volume collapse.** A day's volume of a table is the rows the nightly audit read from it
  incrementally (the rows that arrived since the night before: ``day_volumes``, the one
  implementation), per institution from the same counts. A system's day (its table's) below
  ``volume_ratio`` of its normal — the median of the same weekday over the last ``volume_weeks``
  weeks, once ``volume_min_days`` of those days are known and when the normal is at least
  ``volume_min_rows`` — is ``system_volume_collapse`` (一级); an institution's is
  ``org_volume_collapse`` (二级).
- **Serious data error.** A failing rule's violation rate (and a table's, over its rules) above
  ``error_factor`` times the median of its last ``error_runs`` comparable runs (reports/series.py:
  the same rules read the same way; at least ``error_min_runs`` of them) and above
  ``error_floor_pct`` is ``serious_data_error`` (一级).

A volume judged normal on a later night resolves a collapse; a serious data error is resolved by
its rate falling back under ``error_floor_pct`` (or the rule passing), never by its own high nights
becoming the median. Both are judged on nightly runs only (an engineer's scoped check is not a day nor a like-for-like
rate) and carry the 7×24 flag (``severity.EMERGENCY``) where they are 系统严重损坏. A day is known
only when a night's incremental read covered it alone: nights 20 to 28 hours apart whose later one
read the table (not a first whole read, a capped read, or a table that could not be read). A day
without such a night — the audit not run, a failed run, a re-run the same day, a source down that
night — is unknown, never zero; a night that read part of a day is therefore no collapse by itself.
An institution absent from a known day's counts uploaded nothing that day: that is zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from statistics import median

from healthqa import canonical
from healthqa.config import Config, Severe
from healthqa.connectors.sampling import NEW_ROWS, read_extent
from healthqa.expectations import suite as suites
from healthqa.store import AuditStore

from . import series
from .findings import fault_fingerprint, system_label

DAY_SPAN = (timedelta(hours=20), timedelta(hours=28))  # nights this far apart: the later one read one day
COUNTED = ("success", "partial")  # runs whose reads advanced their watermarks (failed and crashed ones did not)
NOT_JUDGED, NORMAL, COLLAPSE, JUMP = "not_judged", "normal", "collapse", "jump"


@dataclass(frozen=True)
class TableRead:
    """A nightly run's read of one table: how it was read and how many rows, in all and per institution."""

    run_id: int
    started_at: datetime
    extent: str
    rows: int
    by_org: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement:
    """One unit judged (or not) on one run: a system's table, an institution's rows of it, a rule's or a
    table's violation rate. ``verdict``: not_judged (``why`` says why), normal, collapse or jump."""

    kind: str  # system_volume_collapse | org_volume_collapse | serious_data_error
    source: str
    table: str
    verdict: str
    why: str = ""
    org: str | None = None
    rule_id: str | None = None
    day: date | None = None
    value: float | None = None  # the day's rows, or the violation rate (%)
    normal: float | None = None  # the same-weekday median rows, or the comparable runs' median rate
    known: int = 0  # same-weekday days, or comparable runs, the normal rests on

    @property
    def subject(self) -> str:
        """What tells this unit's findings apart from others of its kind: the table, and the
        institution or rule."""
        return ":".join(x for x in (self.table, self.org or self.rule_id) if x)

    @property
    def fingerprint(self) -> str:
        return fault_fingerprint(self.source, self.kind, self.subject)


@dataclass
class Reading:
    """What one run's severe-damage reading found: faults to file (as ``assess`` takes them), the
    fingerprints judged and found fine (they resolve an open finding), and every judgement."""

    faults: list[dict] = field(default_factory=list)
    covered: set[str] = field(default_factory=set)
    judgements: list[Judgement] = field(default_factory=list)

    def add(self, j: Judgement, fault: dict | None = None, covers: bool = True) -> None:
        """``covers``: a normal verdict verifies the unit fine (resolves its open finding)."""
        self.judgements.append(j)
        if fault is not None:
            self.faults.append(fault)
        elif j.verdict == NORMAL and covers:
            self.covered.add(j.fingerprint)

    @property
    def not_judged(self) -> list[Judgement]:
        return [j for j in self.judgements if j.verdict == NOT_JUDGED]

    def notes(self) -> list[str]:
        """What the run report says about the tables whose day volume could not be judged (the
        institutions' reasons are the same or a small normal: counted, not listed)."""
        out = [f"严重损坏（上传量）未判断 severe damage (volume) not judged: {j.source}.{j.table}"
               f"{f' {j.day}' if j.day else ''} — {j.why}"
               for j in self.not_judged if j.kind == "system_volume_collapse"]
        orgs = sum(j.kind == "org_volume_collapse" for j in self.not_judged)
        if orgs:
            out.append(f"{orgs} 个机构的上传量未判断（历史不足或正常量过小）— {orgs} institutions' volumes not judged "
                       f"(too little history, or a normal below volume_min_rows)")
        return out


def table_read(run_id: int, started_at: datetime, results: Iterable) -> TableRead | None:
    """A run's read of a table from its stored results (StoredResult or dicts): the rows are the most
    any rule applied to, as for a score's basis (reports/series.py); None when no rule judged a row
    of it (the table could not be read, or held nothing to judge)."""
    rows, by_org, extent, read = 0, {}, None, False
    for r in results:
        d = r if isinstance(r, Mapping) else asdict(r)
        if d["status"] not in ("pass", "fail", "not_applicable"):
            continue
        read = True
        extent = extent or read_extent(d.get("sampling"))
        rows = max(rows, int(d.get("denominator") or 0))
        for org, c in (d.get("by_org") or {}).items():
            by_org[str(org)] = max(by_org.get(str(org), 0), int(c.get("denominator") or 0))
    return TableRead(run_id, started_at, extent, rows, by_org) if read else None


def day_volumes(reads: Iterable[TableRead]) -> dict[date, TableRead]:
    """What a day's volume is: the read of the night that followed it, when that night's read was
    incremental and the night before read the table 20 to 28 hours earlier. The day is the date of
    the middle of the two nights (02:00 to 02:00: the day between). Days are the configured zone's:
    run times are stored in it (healthqa.clock). A day without such a pair of nights is unknown."""
    ordered = sorted(reads, key=lambda r: r.started_at)
    out: dict[date, TableRead] = {}
    for before, read in zip(ordered, ordered[1:]):
        gap = read.started_at - before.started_at
        if read.extent == NEW_ROWS and DAY_SPAN[0] <= gap <= DAY_SPAN[1]:
            out[(before.started_at + gap / 2).date()] = read
    return out


def normal_volume(day: date, known: Mapping[date, int], p: Severe) -> tuple[float | None, int, str]:
    """The normal volume of ``day``: the median of the same weekday's known volumes over the last
    ``volume_weeks`` weeks — (median, days known, why not judged or '')."""
    same = [known[d] for d in (day - timedelta(weeks=k) for k in range(1, p.volume_weeks + 1)) if d in known]
    if len(same) < p.volume_min_days:
        return None, len(same), (f"同星期历史不足：近 {p.volume_weeks} 周仅 {len(same)} 天已知，需 {p.volume_min_days} 天 "
                                 f"(too little history: {len(same)} of the last {p.volume_weeks} same weekdays known, "
                                 f"{p.volume_min_days} needed)")
    normal = float(median(same))
    if normal < p.volume_min_rows:
        return normal, len(same), (f"正常量 {normal:g} 条低于 {p.volume_min_rows} 条，不判断 (a normal of {normal:g} "
                                   f"rows is below volume_min_rows {p.volume_min_rows}: not judged)")
    return normal, len(same), ""


def read_severe(cfg: Config, store: AuditStore, run_id: int, results: list[dict]) -> Reading:
    """Run ``run_id``'s severe-damage reading (nightly runs only): volume collapse of each table it
    read incrementally and of each institution in it, and violation rates that jumped. ``results``:
    the run's rule results as ``assess`` holds them (described: rule texts and systems)."""
    out = Reading()
    run = store.runs.get(run_id)
    if run is None or run.kind != "nightly":
        return out
    tables = sorted({(r["source"], r["table"]) for r in results})
    silent = _silent(results, set(cfg.reports.severity.feed_rules))
    for source, table in tables:
        _volumes(cfg.reports.severe, store, run, source, table, out, silent)
        _jumps(cfg, store, run, source, table, [r for r in results if (r["source"], r["table"]) == (source, table)], out)
    return out


def _silent(results: list[dict], feed_rules: set[str]) -> set[str | None]:
    """The institutions tonight's feed rules found silent (None: every institution): a day of zero
    rows from them is already filed as a silent feed, and is not filed again as a collapse."""
    out: set[str | None] = set()
    for r in results:
        if r["rule_id"] in feed_rules and r["status"] == "fail":
            n, v = int(r.get("denominator") or 0), int(r.get("violations") or 0)
            out |= {None} if n and v == n else set()
            out |= {str(o) for o, c in (r.get("by_org") or {}).items() if int(c.get("violations") or 0)}
    return out


def _system(table: str) -> str | None:
    """The contract system that owns a table's data: its suite's ``system``."""
    return suites.shipped_system(table)


def _volumes(p: Severe, store: AuditStore, run, source: str, table: str, out: Reading,
             silent: set[str | None] = frozenset()) -> None:
    history = store.results.of_table(source, table, "nightly", upto=run.id,
                                     since=run.started_at - timedelta(weeks=p.volume_weeks, days=2))
    reads = [t for rid, started, status, rs in history if status in COUNTED or rid == run.id
             if (t := table_read(rid, started, rs)) is not None]
    if not any(r.run_id == run.id and r.extent == NEW_ROWS for r in reads):
        return  # a whole or capped read, or a table not read tonight: no day's volume to judge
    days = day_volumes(reads)
    day = next((d for d, r in days.items() if r.run_id == run.id), None)
    system = _system(table)
    where = " / ".join(x for x in (system_label(system) if system else None, f"{source}.{table}") if x)
    if day is None:
        out.add(Judgement("system_volume_collapse", source, table, NOT_JUDGED,
                          "本次读取不是一天的上传量（前一晚未运行或同日重跑） (tonight's read is not one day's uploads: "
                          "no audit the night before, or a second run the same day)"))
        return
    known = {d: r.rows for d, r in days.items() if d < day}
    _judge(p, Judgement("system_volume_collapse", source, table, NOT_JUDGED, day=day, value=days[day].rows),
           known, where, system, out, silent)
    if not canonical.table(table).org:
        return
    orgs = sorted({o for r in days.values() for o in r.by_org})
    for org in orgs:
        known = {d: r.by_org.get(org, 0) for d, r in days.items() if d < day}
        _judge(p, Judgement("org_volume_collapse", source, table, NOT_JUDGED, org=org, day=day,
                            value=days[day].by_org.get(org, 0)), known, f"{where} / {org}", system, out, silent)


def _judge(p: Severe, j: Judgement, known: Mapping[date, int], where: str, system: str | None, out: Reading,
           silent: set[str | None] = frozenset()) -> None:
    normal, n, why = normal_volume(j.day, known, p)
    if not why and not j.value and j.org in silent:
        why = "已报数据上传中断 filed as a silent feed (system_feed_silent / org_feed_silent)"
    j = Judgement(**{**asdict(j), "normal": normal, "known": n, "why": why})
    if why:
        out.add(j)
        return
    rows, share = int(j.value or 0), 100.0 * (j.value or 0) / normal
    if rows >= p.volume_ratio * normal:
        out.add(Judgement(**{**asdict(j), "verdict": NORMAL}))
        return
    who, who_en = ("机构", "institution") if j.org else ("系统", "system")
    out.add(Judgement(**{**asdict(j), "verdict": COLLAPSE}), {
        "source": j.source, "kind": j.kind, "subject": j.subject, "table": j.table,
        "org": j.org, "system": system,
        "zh": f"{'系统严重损坏' if not j.org else '机构上传量骤降'}：{who} {j.day} 上传 {rows:,} 条，为近 {n} 个同星期日中位数 "
              f"{normal:,.0f} 条的 {share:.0f}%（低于 {100 * p.volume_ratio:.0f}%）",
        "reason": f"{who_en} volume collapse at {where}: {rows:,} rows on {j.day}, {share:.0f}% of the median "
                  f"{normal:,.0f} of the last {n} same weekdays (below {100 * p.volume_ratio:.0f}%)"})


def _jumps(cfg: Config, store: AuditStore, run, source: str, table: str, results: list[dict], out: Reading) -> None:
    """Serious data errors: rates far above the same rule's (table's) in comparable earlier runs."""
    p, key = cfg.reports.severe, ("table", f"{source}.{table}")
    ref = series.bases(results).get(key)
    if ref is None:
        return
    if ref.rows < cfg.reports.few_rows:
        out.add(Judgement("serious_data_error", source, table, NOT_JUDGED,
                          series.few_rows(ref, cfg.reports.few_rows) or ""))
        return
    earlier = [(rid, [asdict(r) for r in rs])
               for rid, _, _, rs in store.results.of_table(source, table, run.kind, upto=run.id - 1,
                                                           runs=4 * p.error_runs)]
    of_run = {rid: series.bases(rs) for rid, rs in earlier}
    like = {pt["run_id"] for pt in series.like([{"run_id": rid} for rid, _ in earlier], of_run, key, ref,
                                               cfg.reports.few_rows)}
    comparable = [rs for rid, rs in earlier if rid in like][-p.error_runs:]
    jumped = False
    for r in results:
        if r["status"] == "pass":  # within its threshold: no data error, whatever its history
            out.add(Judgement("serious_data_error", source, table, NORMAL, rule_id=r["rule_id"], value=_rate([r])))
            continue
        if r["status"] != "fail" or not r.get("denominator"):
            continue
        past = [_rate([x]) for rs in comparable for x in rs
                if x["rule_id"] == r["rule_id"] and x["status"] in ("pass", "fail") and x.get("denominator")
                and read_extent(x.get("sampling")) == read_extent(r.get("sampling"))]
        j = _jump(p, Judgement("serious_data_error", source, table, NOT_JUDGED, rule_id=r["rule_id"],
                               value=_rate([r])), past)
        jumped |= j.verdict == JUMP
        _file_jump(j, r.get("zh") or r["rule_id"], r.get("en") or r["rule_id"], r.get("system"), out, p.error_floor_pct)
    verdict = [r for r in results if r["status"] in ("pass", "fail")]
    j = _jump(p, Judgement("serious_data_error", source, table, NOT_JUDGED, value=_rate(verdict)),
              [_rate([x for x in rs if x["status"] in ("pass", "fail")]) for rs in comparable])
    if jumped and j.verdict == JUMP:  # the table's rate rose with its rules': one finding per cause
        j = Judgement(**{**asdict(j), "verdict": NOT_JUDGED, "why": "规则已报 reported by its rules"})
    _file_jump(j, f"{source}.{table} 全表违规率", f"{source}.{table} violation rate over its rules", _system(table), out,
               p.error_floor_pct)


def _rate(results: list[dict]) -> float:
    n = sum(int(r.get("denominator") or 0) for r in results)
    return 100.0 * sum(int(r.get("violations") or 0) for r in results) / n if n else 0.0


def _jump(p: Severe, j: Judgement, past: list[float]) -> Judgement:
    if len(past) < p.error_min_runs:
        return Judgement(**{**asdict(j), "known": len(past),
                            "why": f"可比运行不足：{len(past)} 次，需 {p.error_min_runs} 次 (too few comparable runs: "
                                   f"{len(past)}, {p.error_min_runs} needed)"})
    normal = float(median(past))
    rate = j.value or 0.0
    verdict = JUMP if rate > p.error_factor * normal and rate > p.error_floor_pct else NORMAL
    return Judgement(**{**asdict(j), "normal": normal, "known": len(past), "verdict": verdict})


def _file_jump(j: Judgement, zh: str, en: str, system: str | None, out: Reading, floor: float) -> None:
    """A jump is filed; a finding of one is resolved by a rate back under the floor (or a passing
    rule), not by its history catching up with it (a high rate for a week is the new median)."""
    if j.verdict != JUMP:
        out.add(j, covers=(j.value or 0.0) <= floor)
        return
    rate, normal = j.value or 0.0, j.normal or 0.0
    times = f"{rate / normal:.1f} 倍" if normal else "从 0 起"
    times_en = f"{rate / normal:.1f}×" if normal else "up from 0"
    out.add(j, {"source": j.source, "kind": "serious_data_error", "subject": j.subject,
                "table": j.table, "system": system,
                "zh": f"严重数据错误：{zh} 违规率 {rate:.1f}%，近 {j.known} 次可比运行中位数 {normal:.1f}%（{times}）",
                "reason": f"serious data error: {en}: violation rate {rate:.1f}% against a median of {normal:.1f}% over "
                          f"the last {j.known} comparable runs ({times_en})"})
