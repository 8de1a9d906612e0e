"""What an ad-hoc validation is compared with: the last run that read the same rows.

The engineer validates one table, institution or window after a repair and asks "better than
before?". Before is, rule by rule, the newest of:

- the last ad-hoc validation of exactly this scope;
- the last nightly audit that read the whole table (full sampling, no row cap, or an incremental
  table's first read, before it had a watermark) — it read every row the scoped run reads. For a
  run scoped to institutions its counts are those institutions' own (``by_org``), so the rates
  compare like with like. A nightly keeps no counts by time, so a run with
  a time window is compared with the same window only.

A nightly that sampled or read only the rows after its watermark saw other rows: it is no baseline.
"""

from __future__ import annotations

from healthqa.connectors.sampling import WHOLE, read_extent
from healthqa.store import AuditStore, StoredResult

NIGHTLIES = 30  # how far back to look for a nightly that read the table whole


def _whole_table(r: StoredResult) -> bool:
    return r.status != "error" and read_extent(r.sampling) == WHOLE and not (r.sampling or {}).get("orgs")


def _pct_of(r: StoredResult, orgs: list[str]) -> float | None:
    if not orgs:
        return r.violation_pct
    counts = [(r.by_org or {}).get(o) for o in orgs]
    den = sum(c["denominator"] for c in counts if c)
    return 100.0 * sum(c["violations"] for c in counts if c) / den if den else None


def before(store: AuditStore, scope: dict) -> dict[tuple[str, str, str], float | None]:
    """(source, table, rule id) -> the violation % the last run covering ``scope``'s rows found
    (``scope`` as ``ValidationRequest.scope_doc`` records it: source, tables, orgs, since, until)."""
    found: dict[tuple[str, str, str], tuple[int, float | None]] = {}
    same = store.runs.last_success("validate", scope=scope)
    if same is not None:
        found = {r.key: (same.id, r.violation_pct) for r in store.results.of_run(same.id)}
    if scope.get("since") or scope.get("until"):
        return {k: pct for k, (_, pct) in found.items()}
    tables, orgs = set(scope["tables"]), list(scope.get("orgs") or ())
    from_nightly: set[tuple[str, str, str]] = set()
    for run in store.runs.recent(NIGHTLIES, kind="nightly"):
        if run.status not in ("success", "partial"):
            continue
        for r in store.results.of_run(run.id):
            if r.source != scope["source"] or r.table not in tables or r.key in from_nightly or not _whole_table(r):
                continue
            from_nightly.add(r.key)  # the newest nightly's count of this rule, whichever is newer
            if r.key not in found or found[r.key][0] < run.id:
                found[r.key] = (run.id, _pct_of(r, orgs))
    return {k: pct for k, (_, pct) in found.items()}
