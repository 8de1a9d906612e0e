"""One run's assessment: score what it saw, turn what is wrong into findings, keep both.

Called by the pipelines after a run has stored its rule results (the nightly audit, and the
engineer's scoped validation — whose passing rules resolve the findings they verify). A run's scores
and findings are written in one transaction — with the night's end and watermarks when the caller
passes them (``then``) — so a store that fails half-way keeps neither; ``assess_pending`` assesses
later the nights whose assessment could not be stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

from healthqa import canonical
from healthqa.clock import now
from healthqa.config import Config
from healthqa.expectations import suite as suites
from healthqa.store import AuditStore
from healthqa.store.findings import OPEN
from healthqa.store.results import rule_of

from . import findings as fd
from . import scores as sc
from .severe import read_severe
from .severity import Policy

SCORE_DROP_LEVELS = ("overall", "system")  # a drop there is a finding; finer levels are read in the report


@dataclass
class Assessment:
    run_id: int
    scores: list[sc.Score]
    new: list[fd.Candidate] = field(default_factory=list)
    persisting: int = 0
    reopened: int = 0
    resolved: int = 0
    new_ids: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        overall = next((s for s in self.scores if s.level == "overall"), None)
        return {"run_id": self.run_id, "overall_conformance": overall.conformance if overall else None,
                "overall_pass_rate": overall.pass_rate if overall else None, "new": len(self.new) or len(self.new_ids),
                "persisting": self.persisting, "reopened": self.reopened, "resolved": self.resolved}


def assess_run(cfg: Config, store: AuditStore, run_id: int, faults: Iterable[Mapping] = (),
               then: Callable[[object], None] | None = None) -> Assessment:
    """Score run ``run_id`` and reconcile its findings. ``faults``: what could not run, as mappings
    (source, kind, reason, optional subject/table/system) — a source down, a table unreadable.
    Scores and findings are written in one transaction, and ``then(session)`` inside it (the night's
    end and its watermarks): all of it is stored, or none."""
    policy = Policy.from_config(cfg.reports)
    results = rule_results(store, run_id)
    describe(results, cfg)

    scored = sc.score(sc.observations(results), cfg.reports.weights)
    done = store.findings.events_of_run(run_id)
    if any(done.values()):  # assessed before (a re-run of the same stage): findings are not counted twice
        with store.session() as s:
            store.scores.replace_in(s, run_id, (asdict(x) for x in scored))
            if then is not None:
                then(s)
        return Assessment(run_id, scored, [], len(done["persisting"]), len(done["reopened"]), len(done["resolved"]),
                          new_ids=[f.id for f in done["new"]])
    severe = read_severe(cfg, store, run_id, results)  # the contract's 系统严重损坏, read from the data
    faults = [*faults, *_score_drops(cfg, store, run_id, results), *severe.faults]
    found, covered = fd.candidates(results, faults, policy, _org_tables(results))
    covered |= _reached(results, faults) | severe.covered
    known = store.findings.known()
    by_id = {k.id: k for k in known}
    split = fd.splits(results)
    rec = fd.reconcile([fd.Known(k.id, k.fingerprint, k.state, k.level, k.violations, k.rows_checked) for k in known],
                       found, covered, split, _before_split(store, known, split))

    with store.session() as s:
        store.scores.replace_in(s, run_id, (asdict(x) for x in scored))
        store.findings.record_run_in(
            s, run_id,
            new=[_update(c, policy) for c in rec.new],
            seen=[(k.id, _update(fd.seen_again(c, k), policy, before=by_id[k.id])) for k, c in rec.persisting],
            reopened=[(k.id, _update(c, policy)) for k, c in rec.reopened],
            resolved=[k.id for k in rec.resolved], reasons=rec.reasons,
        )
        if then is not None:
            then(s)
    return Assessment(run_id, scored, rec.new, len(rec.persisting), len(rec.reopened), len(rec.resolved))


def assess_pending(cfg: Config, store: AuditStore, by: str, upto: int | None = None) -> list[Assessment]:
    """The nightly runs whose scores and findings could not be stored (``store.runs.pending``), up to
    run ``upto``, assessed now from their stored rule results, oldest first — findings reconciled in
    the order the nights ran. Each one's held watermarks advance in the transaction that stores its
    scores and findings. ``by``: who assessed them, for the run's message ("run 12")."""
    return [assess_run(cfg, store, p.run_id, p.faults,
                       then=lambda s, rid=p.run_id: store.runs.assessed_in(s, rid, by))
            for p in store.runs.pending("nightly", upto)]


def rule_results(store: AuditStore, run_id: int) -> list[dict]:
    """A run's stored results as plain dicts (reports add the rule's text to them)."""
    return [asdict(r) for r in store.results.of_run(run_id)]


def describe(results: list[dict], cfg: Config) -> None:
    """Rule texts and systems from the suites (results of older runs may predate a rule's system); a
    rule's result in another system (``REF-STATUS-CODE@9``: store.results.part_id) has the rule's texts."""
    rules = {}
    for table in {r["table"] for r in results}:
        if table in canonical.tables():
            rules.update({r.id: r for r in suites.listed(table, cfg.validation.suites)})
    for r in results:
        rule = rules.get(rule_of(r["rule_id"]))
        if rule is not None:
            r.setdefault("zh", rule.zh)
            r.setdefault("en", rule.en)
            r["system"] = r.get("system") or rule.system


def _before_split(store: AuditStore, known, split: Mapping[str, fd.Split]) -> set[int]:
    """The open findings on a rule this run split per system whose last judging run had not split it
    yet: they were about every kind of row at their institution (``findings.reconcile``)."""
    mine = [k for k in known if k.fingerprint in split and k.state in OPEN]
    then = store.results.split_in(k.last_run_id for k in mine)
    return {k.id for k in mine if (k.source, k.table_name, split[k.fingerprint].rule) not in then[k.last_run_id]}


def _org_tables(results: list[dict]) -> set[tuple[str, str]]:
    return {(r["source"], r["table"]) for r in results if r["table"] in canonical.tables() and canonical.table(r["table"]).org}


def _reached(results: list[dict], faults: Iterable[Mapping]) -> set[str]:
    """A source this run read is no longer unreachable, and a table it validated is no longer
    unreadable nor breaking the audit: those faults are verified fixed (any read of the table shows
    that it can be read and validated)."""
    down = {f["source"] for f in faults if f["kind"] == "store_unreachable"}
    failed = {(f["source"], f.get("subject")) for f in faults}
    read = {(r["source"], r["table"]) for r in results if r["status"] != "error"}
    return ({fd.fault_fingerprint(src, "store_unreachable") for src, _ in read if src not in down}
            | {fd.fault_fingerprint(src, kind, table) for src, table in read if (src, table) not in failed
               for kind in ("table_unreadable", "run_incomplete")})


def _previous_comparable(store: AuditStore, run_id: int) -> int | None:
    """The latest earlier scored run of the same kind and source: a validation of one source scores
    a system on other rules than a validation of another, and the two are not a trend."""
    def kind(r):
        return None if r is None else (r.kind, (r.scope or {}).get("source"))

    this = kind(store.runs.get(run_id))
    prev = store.scores.previous_run(run_id)
    while prev is not None and this is not None and kind(store.runs.get(prev)) != this:
        prev = store.scores.previous_run(prev)
    return prev


def _score_drops(cfg: Config, store: AuditStore, run_id: int, results: list[dict]) -> list[dict]:
    """A score that fell more than ``reports.score_drop_points`` and beyond its uncertainty, like
    compared with like (``scores.comparable``). Such a finding is closed by a person (acknowledge,
    resolve): the rule findings behind the drop carry the verified part."""
    prev_run = _previous_comparable(store, run_id)
    if prev_run is None:
        return []
    earlier = rule_results(store, prev_run)
    describe(earlier, cfg)
    now_, before = sc.comparable(results, earlier, cfg.reports.weights, SCORE_DROP_LEVELS)
    out = []
    for key, s in now_.items():
        prev = before.get(key)
        if prev is None or s.conformance is None or prev.conformance is None:
            continue
        drop = prev.conformance - s.conformance
        if drop > cfg.reports.score_drop_points and sc.change(s, prev) == "fall":
            level, subject = key
            out.append({"source": "*", "kind": "score_drop", "subject": f"{level}:{subject}",
                        "system": subject if level == "system" else None,
                        "zh": f"质量得分下降 {drop:.1f} 分（{prev.conformance:.1f} → {s.conformance:.1f}，同口径 like for like）",
                        "reason": f"score fell {drop:.1f} points ({prev.conformance:.1f} -> {s.conformance:.1f}) "
                                  f"over the same {s.checks} rules"})
    return out


def _update(c: fd.Candidate, policy: Policy, before=None) -> dict:
    """Fields a run sets on a finding. The level is the night's (it follows the rate up and down);
    the deadlines are those of the level from now, but never later than the ones a finding still open
    (``before``) already has: an escalation brings them forward, a de-escalation does not extend
    them, a re-escalation does not start them again (docs/how-it-works.md)."""
    response_due, fix_due = policy.due(c.level, now())
    if before is not None:
        response_due, fix_due = _earlier(before.response_due_at, response_due), _earlier(before.fix_due_at, fix_due)
    # the fingerprint too: a finding carried over to a rule's part takes the part's (findings.reconcile)
    return {"fingerprint": c.fingerprint, "kind": c.kind, "source": c.source, "subject": c.subject,
            "table_name": c.table, "org_code": c.org,
            "system": c.system, "level": c.level, "title_zh": c.title_zh, "title_en": c.title_en,
            "violations": c.violations, "rows_checked": c.rows, "threshold_pct": c.threshold_pct,
            "examples": c.examples, "response_due_at": response_due, "fix_due_at": fix_due}


def _earlier(a, b):
    """The earlier of two deadlines; a missing one (no deadline) never wins over a running one."""
    return b if a is None else a if b is None else min(a, b)
