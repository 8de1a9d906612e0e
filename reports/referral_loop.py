"""The referrals' closed-loop rate (转诊闭环率), by referral type and receiving institution.

A referral closes its loop when the resident arrives and the receiving institution holds the visit,
examination or stay that proves it (the closed-loop rule of its type, ``referral_closed_loop``); a
booked referral whose day passed with no arrival and no cancellation is an open loop (the open-loop
rule, ``referral_open_loop``). Of the referrals that were due — arrived, or overdue — the rate is the
share that closed: (arrived − arrived without a record) ÷ (arrived + overdue). Read off the night's
results of those rules (their counts per institution), so it is the same reading as their scores; a
rule is matched to its type by its ``where: {referral_type: …}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from healthqa import codelists
from healthqa.config import Config
from healthqa.expectations import suite as suites

from .institutions import Registry

KINDS = {"referral_closed_loop": "closed", "referral_open_loop": "open"}


def loop_rows(cfg: Config, results: Iterable[Mapping], orgs: Registry) -> list[dict]:
    """One row per referral type (``org`` None: the type's total) then per receiving institution."""
    by_id = {r["rule_id"]: r for r in results if r.get("table") == "referral" and r.get("status") != "error"}
    if not by_id:
        return []
    types = codelists.load("referral_type")["codes"]
    rules: dict[str, dict[str, Mapping]] = {}  # type code -> closed/open -> result
    for rule in suites.listed("referral", cfg.validation.suites):
        kind = KINDS.get(rule.type)
        if kind and rule.id in by_id:
            for code in (rule.where or {}).get("referral_type", []):
                rules.setdefault(str(code), {})[kind] = by_id[rule.id]
    out = []
    for code, label in types.items():
        pair = rules.get(code)
        if not pair:
            continue
        closed, open_ = pair.get("closed"), pair.get("open")
        out.append(_row(label, None, closed, open_, orgs))
        for org in sorted(set((closed or {}).get("by_org") or {}) | set((open_ or {}).get("by_org") or {})):
            out.append(_row(label, org, _of(closed, org), _of(open_, org), orgs))
    return out


def _of(result: Mapping | None, org: str) -> Mapping | None:
    return None if result is None else ((result.get("by_org") or {}).get(org) or {"violations": 0, "denominator": 0})


def _row(label: str, org: str | None, closed: Mapping | None, open_: Mapping | None, orgs: Registry) -> dict:
    arrived = int((closed or {}).get("denominator") or 0)
    unproven = int((closed or {}).get("violations") or 0)
    overdue = int((open_ or {}).get("violations") or 0)
    due = arrived + overdue
    return {"type": label, "org": org, "org_name": orgs.name(org) if org else "全部 all", "arrived": arrived,
            "unproven": unproven, "overdue": overdue,
            "rate": 100.0 * (arrived - unproven) / due if due else None}
