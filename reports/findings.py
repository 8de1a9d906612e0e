"""Maintenance findings: what a run saw wrong, with an identity that lasts across runs.

A finding is keyed by (rule, table, institution) — an institution is judged on its own rows — or by
(source, fault). Its life: ``new`` (first seen) → ``open`` (seen again) → ``acknowledged`` (a person
took it) → ``resolved`` → ``reopened`` if it comes back. Resolution is verified, never assumed: only a
run that read every row the finding is about and saw the rule pass (or reached the source or table
again) resolves a finding — a read of the whole table, or of the whole of that institution's rows
(``connectors.sampling.read_extent``). A time window, a night's incremental rows or a sample saw only
part of them: such a read can open a finding or add to it, never resolve it. A run that did not look
leaves a finding as it was.

This module is plain functions over plain data: ``candidates`` turns one run's rule results and
faults into what is wrong (``Candidate``) and what was checked and found fine (``covered``);
``reconcile`` compares them with the findings already open and says what is new, persisting,
resolved and reopened. The audit store keeps the result (``healthqa.store`` ``findings``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from healthqa import codelists
from healthqa.connectors.sampling import NEW_ROWS, WHOLE, read_extent
from healthqa.store.findings import OPEN
from healthqa.store.results import rule_of, split_rules

from .labels import table_text
from .scores import excess
from .severity import Policy


@dataclass
class Candidate:
    """Something one run saw wrong."""

    fingerprint: str
    kind: str  # rule | fault
    source: str
    subject: str  # the rule id, or the fault kind
    level: str
    title_zh: str
    title_en: str
    table: str | None = None
    org: str | None = None
    system: str | None = None
    violations: int = 0
    rows: int = 0
    threshold_pct: float | None = None
    examples: list[str] = field(default_factory=list)  # record keys, never personal values
    extent: str = WHOLE  # how much of the finding's rows the run read (connectors.sampling.read_extent)

    @property
    def violation_pct(self) -> float | None:
        return 100.0 * self.violations / self.rows if self.rows else None

    @property
    def impact(self) -> float:
        """Rows beyond the tolerated rate; a fault outranks every rule of a lower level."""
        return excess(self.violations, self.rows, self.threshold_pct or 0.0) if self.kind == "rule" else float("inf")


@dataclass
class Known:
    """A finding already in the store, as reconciliation needs it."""

    id: int
    fingerprint: str
    state: str
    level: str
    violations: int = 0
    rows: int = 0


@dataclass
class Reconciliation:
    new: list[Candidate] = field(default_factory=list)
    persisting: list[tuple[Known, Candidate]] = field(default_factory=list)
    reopened: list[tuple[Known, Candidate]] = field(default_factory=list)
    resolved: list[Known] = field(default_factory=list)
    # why a finding was resolved or carried over, when it is not the usual "seen to pass" (finding id -> text)
    reasons: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """A rule now split per system (a suite's ``system_by``), at one institution a run read whole:
    the systems' finding fingerprints there and whether its rows fell in each. A finding opened on
    the whole rule before the split (``rule_fingerprint`` of the rule's own id, judged on every
    kind of row) is judged by its parts (``reconcile``)."""

    rule: str
    org: str
    parts: dict[str, str]  # fingerprint -> system
    had_rows: frozenset[str]  # the fingerprints whose system had rows of the institution


def rule_fingerprint(source: str, table: str, rule_id: str, org: str | None) -> str:
    return f"rule:{source}.{table}:{rule_id}:{org or '*'}"


def fault_fingerprint(source: str, kind: str, subject: str | None = None) -> str:
    return f"fault:{source}:{kind}" + (f":{subject}" if subject else "")


def candidates(results: Iterable[Mapping], faults: Iterable[Mapping], policy: Policy,
               org_column_tables: set[tuple[str, str]] | None = None) -> tuple[list[Candidate], set[str]]:
    """What a run saw wrong, and the fingerprints it checked and found fine.

    ``results``: stored rule results (``store.results`` as dicts: source, table, rule_id, severity, system,
    status, violations, denominator, threshold_pct, by_org — every institution with rows —,
    sample_keys, zh, en). ``faults``: mappings with source, kind, subject (optional), reason.
    ``org_column_tables``: (source, table) pairs whose rows belong to institutions; a rule on such a
    table is judged per institution, any other on the whole table.
    """
    found: list[Candidate] = []
    covered: set[str] = set()
    for r in results:
        if r["status"] not in ("pass", "fail"):
            continue  # not applicable or could not run: nothing seen either way
        source, table, rule_id = r["source"], r["table"], r["rule_id"]
        threshold = float(r.get("threshold_pct") or 0.0)
        zh, en = r.get("zh") or rule_id, r.get("en") or rule_id
        feed = rule_id in policy.feed_rules
        per_org = r.get("by_org") or {}
        # a pass verifies only rows the run read: every row of each institution it read (``whole``,
        # filtered to institutions or not), and the table's own finding only from an unfiltered read
        extent = read_extent(r.get("sampling"))
        whole_orgs = extent == WHOLE
        whole_table = whole_orgs and not (r.get("sampling") or {}).get("orgs")
        if feed:
            found_feed, covered_feed = _feed(r, per_org, policy, zh, en, extent)
            found += found_feed
            covered |= covered_feed if whole_table else set()
            continue
        if org_column_tables is None or (source, table) in org_column_tables:
            for org, c in per_org.items():
                v, n = int(c.get("violations", 0)), int(c.get("denominator", 0))
                fp = rule_fingerprint(source, table, rule_id, str(org))
                if n == 0:
                    continue
                pct = 100.0 * v / n
                if pct > threshold:
                    found.append(Candidate(fp, "rule", source, rule_id, policy.rule_level(r["severity"], v, n, threshold),
                                           zh, en, table, str(org), r.get("system"), v, n, threshold,
                                           example_lines(r, str(org)), extent))
                elif whole_orgs:
                    covered.add(fp)
            if per_org:
                continue
        fp = rule_fingerprint(source, table, rule_id, None)
        if r["status"] == "fail":
            n, v = int(r["denominator"] or 0), int(r["violations"] or 0)
            found.append(Candidate(fp, "rule", source, rule_id,
                                   policy.rule_level(r["severity"], v, n, threshold),
                                   zh, en, table, None, r.get("system"), v, n, threshold, example_lines(r, None),
                                   extent))
        elif whole_table:
            covered.add(fp)
    faulted: set[str] = set()
    for f in faults:  # ``subject`` tells faults of one kind apart; ``org`` is an institution's, if any
        fp = fault_fingerprint(f["source"], f["kind"], f.get("subject"))
        if fp in faulted:  # e.g. a source that went down under two of its tables: one finding
            continue
        faulted.add(fp)
        found.append(Candidate(fp, "fault", f["source"], f["kind"], policy.fault_level(f["kind"]),
                               f.get("zh") or f["kind"], f.get("reason") or f["kind"], f.get("table"), f.get("org"),
                               f.get("system")))
    return found, covered


def splits(results: Iterable[Mapping]) -> dict[str, Split]:
    """The institutions each split rule of a run judged over all their rows (a whole read), keyed by
    the fingerprint the whole rule's finding had there before the split (the default part's now)."""
    results = [r for r in results if r["status"] in ("pass", "fail", "not_applicable")]
    split = split_rules(results)
    out: dict[str, Split] = {}
    parts: dict[tuple[str, str, str], list[Mapping]] = {}
    for r in results:
        key = (r["source"], r["table"], rule_of(r["rule_id"]))
        if key in split:
            parts.setdefault(key, []).append(r)
    for (source, table, rule), rs in parts.items():
        if any(read_extent(r.get("sampling")) != WHOLE for r in rs):
            continue  # a part of an institution's rows can open or add, never carry a finding over
        orgs = {str(o) for r in rs for o, c in (r.get("by_org") or {}).items() if int(c.get("denominator", 0))}
        for org in orgs:
            fps = {rule_fingerprint(source, table, r["rule_id"], org): r.get("system") or "" for r in rs}
            rows = frozenset(rule_fingerprint(source, table, r["rule_id"], org) for r in rs
                             if int(((r.get("by_org") or {}).get(org) or {}).get("denominator", 0)))
            out[rule_fingerprint(source, table, rule, org)] = Split(rule, org, fps, rows)
    return out


def seen_again(c: Candidate, k: Known) -> Candidate:
    """The candidate with the finding's counts after a run saw it again. A whole read measured the
    finding afresh; a night's new rows were never counted before, so they add to what was known;
    a window or a sample may count rows already known, so the larger count stands."""
    if c.kind != "rule" or c.extent == WHOLE:
        return c
    if c.extent == NEW_ROWS:
        return replace(c, violations=k.violations + c.violations, rows=k.rows + c.rows)
    return c if c.violations >= k.violations else replace(c, violations=k.violations, rows=k.rows)


def example_lines(result: Mapping, org: str | None, limit: int = 3) -> list[str]:
    """A rule's violating rows as lines a person reads: record key, then the rule's columns with
    personal values masked (``330211********123X``, ``王*明``, ``138****5678``)."""
    rows = [e for e in (result.get("examples") or []) if org is None or e.get("org") == org][:limit]
    if not rows:
        return [str(k) for k in (result.get("sample_keys") or [])[:limit]]
    return [" · ".join([str(e.get("key")), ", ".join(f"{c}={'∅' if v is None else v}" for c, v in e["values"].items())])
            for e in rows]


def _feed(r: Mapping, per_org: Mapping, policy: Policy, zh: str, en: str,
          extent: str = WHOLE) -> tuple[list[Candidate], set[str]]:
    """Upload feeds: one silent institution is an institution's fault (二级); every active
    institution silent is the exchange platform's (一级)."""
    source, system = r["source"], r.get("system")
    n, v = int(r["denominator"] or 0), int(r["violations"] or 0)
    system_fp = fault_fingerprint(source, "system_feed_silent", system)
    if n and v == n:
        return [Candidate(system_fp, "fault", source, "system_feed_silent", policy.fault_level("system_feed_silent"),
                          f"全部机构数据上传中断：{zh}", f"every institution's feed is silent: {en}", r["table"],
                          None, system, v, n, extent=extent)], set()
    found, covered = [], {system_fp}
    for org, c in per_org.items():
        fp = fault_fingerprint(source, "org_feed_silent", str(org))
        if int(c.get("violations", 0)):
            found.append(Candidate(fp, "fault", source, "org_feed_silent", policy.fault_level("org_feed_silent"),
                                   f"机构数据上传中断：{zh}", f"institution feed silent: {en}", r["table"], str(org),
                                   system, int(c["violations"]), int(c.get("denominator", 0)), extent=extent))
        elif int(c.get("denominator", 0)):
            covered.add(fp)
    return found, covered


def reconcile(known: Iterable[Known], found: Iterable[Candidate], covered: set[str],
              split: Mapping[str, Split] | None = None, before_split: set[int] | None = None) -> Reconciliation:
    """Compare a run's candidates and coverage with the findings already in the store.

    ``split`` (``splits``) and ``before_split`` (the ids of findings last judged before their rule
    was split per system): such a finding was about every kind of row at its institution; now its
    rule's parts judge them. Where no part fails there, it is resolved with the reason; where a part
    fails that has no finding of its own, the finding carries over to that part (the most violating),
    keeping its id, deadlines and history — the problem is still true, only its system changed; where
    the default part still fails, the finding simply persists."""
    by_fp = {k.fingerprint: k for k in known}
    out = Reconciliation()
    seen = set()
    found = list(found)
    carried = _carry_over(by_fp, found, split or {}, before_split or set(), out)
    for c in found:
        seen.add(c.fingerprint)
        if c.fingerprint in carried:
            continue
        k = by_fp.get(c.fingerprint)
        if k is None:
            out.new.append(c)
        elif k.state == "resolved":
            out.reopened.append((k, c))
        else:
            out.persisting.append((k, c))
    for fp, k in by_fp.items():
        if fp in covered and fp not in seen and k.state in OPEN and k.id not in out.reasons:
            out.resolved.append(k)
    return out


def _carry_over(by_fp: Mapping[str, Known], found: list[Candidate], split: Mapping[str, Split],
                before_split: set[int], out: Reconciliation) -> set[str]:
    """The findings opened on a whole rule before it was split (``reconcile``): resolved or carried
    over to a part in ``out``; returns the candidates' fingerprints that carried one over."""
    carried: set[str] = set()
    failing = {c.fingerprint: c for c in found}
    for fp, sp in split.items():
        k = by_fp.get(fp)
        if k is None or k.state not in OPEN or k.id not in before_split or fp in failing:
            continue  # still failing on the default system's rows: it persists as it is
        systems = "、".join(sorted({s for f, s in sp.parts.items() if f in sp.had_rows}))
        fail = sorted((failing[f] for f in sp.parts if f in failing and f != fp), key=lambda c: -c.violations)
        free = [c for c in fail if c.fingerprint not in by_fp and c.fingerprint not in carried]
        head = (f"规则 {sp.rule} 已按所属系统拆分：本机构的记录现计入系统 {systems} — "
                f"rule {sp.rule} is now split per system; this institution's rows count in system {systems}")
        if free:
            c = free[0]
            out.persisting.append((k, c))
            carried.add(c.fingerprint)
            out.reasons[k.id] = (f"{head}；问题仍存在，转由 {c.subject}（系统 {c.system}）跟踪，期限不变 — "
                                 f"still failing: carried over to {c.subject} (system {c.system}), deadlines kept")
        elif fail:
            out.resolved.append(k)
            out.reasons[k.id] = (f"{head}；问题由 {fail[0].subject} 的问题单跟踪 — "
                                 f"the part still failing is tracked by {fail[0].subject}'s finding")
        else:
            out.resolved.append(k)
            out.reasons[k.id] = f"{head}；各部分均已通过 — every part passes"
    return carried


def location(f, names=None) -> str:
    """Where a finding is, as people read it: source / table / institution (by name when a registry
    is given: ``reports.institutions.Registry``); a finding about a whole system (a score drop, a
    silent feed) names the system, one about the district-wide score says so."""
    if f.subject == "score_drop":  # its subject is a score's, never an institution (older rows kept it there)
        return system_label(f.system) if f.system else "全区 district-wide"
    org = (names.name(f.org_code) if names is not None else f.org_code) if f.org_code else None
    table = table_text(f.table_name) if f.table_name else None  # 门诊就诊记录 outpatient_visit
    where = " / ".join(x for x in (f.source if f.source != "*" else None, table, org) if x)
    if f.system and not org and f.kind == "fault":
        where = " / ".join(x for x in (where, system_label(f.system)) if x)
    return where or "—"


def system_label(code: str) -> str:
    """``系统 11 区域信息交换共享平台``: one of the contract's fourteen systems, by its code."""
    name = codelists.load("systems")["codes"].get(str(code))
    return f"系统 {code} {name}" if name else f"系统 system {code}"


def overdue(level_due: tuple[datetime | None, datetime | None], acknowledged: bool, resolved: bool,
            now: datetime) -> dict[str, bool]:
    """Response is overdue when nobody acknowledged the finding in time; fix when it is not resolved
    by its fix deadline."""
    response_due, fix_due = level_due
    return {"response": bool(response_due and not acknowledged and not resolved and now > response_due),
            "fix": bool(fix_due and not resolved and now > fix_due)}


def responded_at(f) -> datetime | None:
    """When a person first answered a finding (a ``FindingRow``): acknowledged it, or resolved it by
    hand (a run's ``resolved_by`` is "run N": no person answered)."""
    by_hand = f.resolved_at if f.resolved_at is not None and not (f.resolved_by or "").startswith("run ") else None
    return min((x for x in (f.acknowledged_at, by_hand) if x), default=None)
