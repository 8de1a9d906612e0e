"""The after-sales service report (售后服务报告) of one finding: the document the maintenance contract
asks for after every service, signed by the engineer and the customer.

One page per fault: what the audit found (rule, system, institution, table, counts, masked examples),
its contract level and deadlines, who acknowledged it and when, who it was assigned to, the cause and
the fix as the notes tell them, the validation runs before and after the repair with their counts —
the evidence that the repair worked —, the response and fix times measured against the contract, and
the signature lines. A finding not resolved yet says so (未修复) rather than reading as a service
done; one closed by hand says that no run verified it.

The quarterly inspection report lists the service reports of its quarter (``quarter_lines``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from healthqa import __version__, clock
from healthqa.config import Config
from healthqa.connectors.sampling import NEW_ROWS, WHOLE, read_extent
from healthqa.masking import mask_pairs
from healthqa.store import AuditStore
from healthqa.store.findings import FindingRow

from . import render
from .findings import location, responded_at, system_label
from .institutions import registry
from .labels import KIND_ZH, STATUS_ZH, scope_text
from .severity import LEVEL_EN, Policy

AFTER = 3  # the latest re-validations shown (the newest decides; the page stays one A4 page)
EXTENT_ZH = {WHOLE: "全量读取 whole read", NEW_ROWS: "仅新增数据 new rows only", "part": "部分读取 part (window or sample)"}
EVENT_ZH = {"new": "发现 filed", "persisting": "仍存在 still failing", "resolved": "验证已修复 verified fixed",
            "reopened": "复发 reopened"}
STATE_ZH = {"new": "新发现", "open": "未处理", "acknowledged": "已确认", "reopened": "复发", "resolved": "已关闭"}


def duration(delta: timedelta) -> str:
    """A span as the report says it: ``1 天 2 小时 5 分 (1 d 2 h 5 min)``, to the minute."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    zh = "".join(f"{n} {u}" + " " for n, u in ((d, "天"), (h, "小时"), (m, "分")) if n).strip() or "0 分"
    en = " ".join(f"{n} {u}" for n, u in ((d, "d"), (h, "h"), (m, "min")) if n) or "0 min"
    return f"{zh} ({en})"


def against(due: datetime | None, done: datetime | None, at: datetime) -> dict:
    """A deadline measured: ``met`` (done by it), ``late`` (done after it), ``overdue`` (not done and
    past it), ``pending`` (not done, not yet due) or ``none`` (no deadline at this level)."""
    if due is None:
        return {"state": "none", "text": "本级别无此时限 no deadline at this level"}
    if done is not None and done <= due:
        return {"state": "met", "text": f"按时 met — 提前 {duration(due - done)} ahead"}
    if done is not None:
        return {"state": "late", "text": f"超时 late by {duration(done - due)}"}
    if at > due:
        return {"state": "overdue", "text": f"已逾期 overdue by {duration(at - due)}（尚未完成 not done yet）"}
    return {"state": "pending", "text": f"未到期 not due yet — 剩余 {duration(due - at)} left"}


def _counts(violations: int, rows: int, threshold: float | None) -> dict:
    pct = 100.0 * violations / rows if rows else None
    return {"violations": violations, "rows": rows, "pct": pct,
            "over": pct is not None and pct > (threshold or 0.0)}


def evidence(store: AuditStore, f: FindingRow, events: list[dict]) -> list[dict]:
    """The runs that looked at the finding, oldest first: for a rule finding every run since the one
    that filed it that checked the rule on the table (an institution's finding: with that
    institution's rows — a run that read none of them tells nothing of it), how much it read and what
    it did to the finding; for a fault, the runs that filed, saw again or verified it."""
    by_run = {e["run_id"]: e for e in events if e["run_id"] is not None}
    rows = []
    if f.kind == "rule" and f.table_name:
        for run_id, r in store.results.of_rule(f.source, f.table_name, f.subject, f.first_run_id):
            c = (r.by_org or {}).get(f.org_code) if f.org_code else {"violations": r.violations, "denominator": r.denominator}
            if not c or not int(c.get("denominator", 0)):
                continue
            rows.append({"run_id": run_id, "extent": EXTENT_ZH.get(read_extent(r.sampling), read_extent(r.sampling)),
                         **_counts(int(c.get("violations", 0)), int(c["denominator"]), f.threshold_pct)})
    else:
        for run_id, e in by_run.items():
            d = e["detail"]
            rows.append({"run_id": run_id, "extent": "—",
                         **_counts(int(d.get("violations", 0)), int(d.get("rows_checked", 0)), f.threshold_pct)})
    seen = {r["run_id"] for r in rows}
    # a run whose verdict is stored but whose result is not (an older run, a fault) still counts
    rows += [{"run_id": rid, "extent": "—", **_counts(int(e["detail"].get("violations", 0)),
                                                      int(e["detail"].get("rows_checked", 0)), f.threshold_pct)}
             for rid, e in by_run.items() if rid not in seen]
    out = []
    for r in sorted(rows, key=lambda r: r["run_id"]):
        run = store.runs.get(r["run_id"])
        verdict = by_run.get(r["run_id"], {}).get("event")
        out.append({**r, "kind": f"{KIND_ZH.get(run.kind, run.kind)} {run.kind}" if run else "—",
                    "status": STATUS_ZH.get(run.status, run.status) if run else "—",
                    "at": clock.shown(run.started_at) if run else "—", "scope": scope_text(run.scope) if run else "—",
                    "verdict": EVENT_ZH.get(verdict, "未改变问题单 left it as it was") if verdict else
                    "未改变问题单 left it as it was",
                    "role": "发现 filed it" if r["run_id"] == f.first_run_id else "复核 re-validation"})
    return out


def context(cfg: Config, store: AuditStore, finding_id: int, at: datetime | None = None) -> dict:
    at = at or clock.now()
    f = store.findings.get(finding_id)
    events = store.findings.events(finding_id)
    policy = Policy.from_config(cfg.reports)
    response_h, fix_h = policy.deadlines.get(f.level, (None, None))
    orgs = registry(cfg, store) if f.org_code else None
    runs = evidence(store, f, events)
    filed = next((r for r in runs if r["run_id"] == f.first_run_id), None)
    after = [r for r in runs if r["run_id"] != f.first_run_id][-AFTER:]
    resolved = f.state == "resolved"
    by_run = resolved and (f.resolved_by or "").startswith("run ")
    if not resolved:
        status = {"resolved": False, "text": "未修复 not resolved",
                  "detail": "该问题尚未修复：本报告记录处理进展，不是服务完成的证明。"
                            " The finding is not resolved yet: this report records the work so far, not a service done."}
    elif by_run:
        status = {"resolved": True, "text": f"已修复 resolved — 经运行 #{f.resolved_by.removeprefix('run ')} 验证 verified",
                  "detail": f"{clock.shown(f.resolved_at)}：一次完整读取的稽核运行确认规则通过。"
                            " A run that read every row concerned saw the rule pass."}
    else:
        status = {"resolved": True, "text": f"已关闭 closed by hand — {f.resolved_by}",
                  "detail": f"{clock.shown(f.resolved_at)} 由 {f.resolved_by} 手工关闭，未经稽核运行验证；再次发现时将重新打开。"
                            " Closed by hand, not verified by a run; a run that sees it again reopens it."}
    responded = responded_at(f)
    people = [e for e in events if e["run_id"] is None]
    return {
        "title": f"售后服务报告 #{f.id} service report",
        "district": cfg.district.name,
        "f": f,
        "state_zh": STATE_ZH.get(f.state, f.state),
        "level_en": LEVEL_EN.get(f.level, f.level),
        "system": system_label(f.system) if f.system else "—",
        "institution": _institution(f.org_code, orgs),
        "where": location(f, orgs),
        "counts": _counts(f.violations, f.rows_checked, f.threshold_pct),
        "examples": [mask_pairs(str(e)) for e in (f.examples or [])],
        "contract": {"response_hours": response_h, "fix_hours": fix_h},
        "times": {"opened": clock.shown(f.opened_at), "response_due": clock.shown(f.response_due_at),
                  "fix_due": clock.shown(f.fix_due_at),
                  "acknowledged": clock.shown(f.acknowledged_at, missing="未确认 not acknowledged"),
                  "responded": clock.shown(responded, missing="—"),
                  "resolved": clock.shown(f.resolved_at, missing="未修复 not resolved")},
        "response": against(f.response_due_at, responded, at),
        "fix": against(f.fix_due_at, f.resolved_at if resolved else None, at),
        "notes": [{"at": clock.shown(n.get("at")), "by": n.get("by", ""), "text": n.get("text", "")} for n in f.notes or []],
        "actions": [{"at": clock.shown(e["at"]), "event": e["event"], "actor": e["actor"] or "",
                     "detail": _action_detail(e)} for e in people],
        "filed": filed,
        "after": after,
        "status": status,
        "as_of": clock.shown(at),
        "footer": f"healthqa {__version__} · 生成于 generated {clock.shown(at)} · 仅含计数、记录编号与脱敏值 "
                  "counts, record keys and masked values only",
    }


def _institution(code: str | None, orgs) -> str:
    if code is None:
        return "— (全表 the whole table)"
    name = orgs.name(code)
    return code if name == code else f"{name} ({code})"


def _action_detail(e: dict) -> str:
    d = e["detail"]
    if e["event"] == "assigned":
        return f"→ {d.get('to')}"
    return d.get("text") or d.get("note") or ""


def write(cfg: Config, store: AuditStore, finding_id: int, out: str | Path | None = None,
          pdf: bool = False) -> render.Written:
    """``out``: the file to write (its name without the suffix names the HTML and the PDF); default
    ``reports.out_dir/service-<id>.html``."""
    path = Path(out) if out is not None else Path(cfg.reports.out_dir) / f"service-{finding_id}.html"
    return render.write("service.html.j2", context(cfg, store, finding_id), path.parent, path.stem, pdf)


JUDGED_ZH = {"met": "按时 met", "late": "超时 late", "overdue": "逾期 overdue", "pending": "未到期 pending", "none": "—"}


def quarter_lines(store: AuditStore, start: datetime, end: datetime, at: datetime) -> list[dict]:
    """One line per service report of a quarter: every finding a person worked on in [start, end)
    and every 一级/二级 finding resolved in it — with its level, times and status."""
    rows = {f.id: f for f in store.findings.worked_between(start, end)}
    rows |= {f.id: f for f in store.findings.resolved_between(start, end) if f.level in ("一级", "二级")}
    out = []
    for f in sorted(rows.values(), key=lambda f: f.id):
        resolved = f.state == "resolved"
        out.append({"id": f.id, "level": f.level, "title_zh": f.title_zh, "where": location(f),
                    "acknowledged": clock.shown(f.acknowledged_at), "resolved": clock.shown(f.resolved_at if resolved else None),
                    "response": JUDGED_ZH[against(f.response_due_at, responded_at(f), at)["state"]],
                    "fix": JUDGED_ZH[against(f.fix_due_at, f.resolved_at if resolved else None, at)["state"]],
                    "status": "已修复 resolved" if resolved else "未修复 not resolved"})
    return out
