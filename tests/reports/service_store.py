"""A small audit store for the service-report, findings-command and console tests: no source, two
runs and three findings written through the store's API at fixed times.

- run 1 (a nightly audit, 2026-11-20 02:00) checks MPI-ID-VALID on mpi.person and files three
  findings: ``repaired`` (一级, institution ORG1: 30 of 1,000 rows; one example still holding a raw ID
  number, as an older version stored it), ``open`` (二级, institution ORG2: 12 of 400 rows) and
  ``notice`` (提示, the whole table);
- the engineer acknowledges ``repaired`` at 03:00 (wang.gong), it is assigned to li.si and noted;
- run 2 (the engineer's validation of ORG1, 20:00) reads ORG1's rows whole: 0 of 1,000, and
  verifies ``repaired`` fixed. Nobody touches ``open``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from healthqa import clock, config
from healthqa.reports.severity import Policy
from healthqa.store import AuditStore
from healthqa.store.results import StoredResult

from ..conftest import write_config

T0 = datetime(2026, 11, 20, 2, 0)
RAW_ID = "330211199001011234"
RULE = "MPI-ID-VALID"
WHOLE = {"method": "full"}


def _finding(level: str, org: str | None, violations: int, rows: int, examples: list[str]) -> dict:
    response, fix = Policy.default().due(level, T0)
    return {"fingerprint": f"rule:mpi.person:{RULE}:{org or '*'}", "kind": "rule", "source": "mpi", "subject": RULE,
            "table_name": "person", "org_code": org, "system": "10", "level": level,
            "title_zh": "身份证号码不符合 GB 11643", "title_en": "ID number not valid per GB 11643",
            "violations": violations, "rows_checked": rows, "threshold_pct": 0.0, "examples": examples,
            "response_due_at": response, "fix_due_at": fix}


def build(folder: Path, **extra) -> tuple[Path, dict[str, int]]:
    """The configuration file (with ``extra`` sections, e.g. ``console``), and the findings' ids by name."""
    path = write_config(folder / "healthqa.yml", {"store": {"url": f"sqlite:///{folder / 'audit.db'}"}, "sources": {},
                                                   "reports": {"out_dir": str(folder / "reports")}, **extra})
    cfg = config.load(path)
    with AuditStore(cfg.store.url) as store, clock.frozen(T0) as c:
        with store.runs.start("nightly", {"sources": ["mpi"]}) as run1:
            store.results.record(run1.id, [StoredResult(
                "mpi", "person", RULE, "fail", 42, 1500, 2.8, 0.0, severity="二级", system="10", sampling=WHOLE,
                by_org={"ORG1": {"violations": 30, "denominator": 1000}, "ORG2": {"violations": 12, "denominator": 400},
                        "ORG3": {"violations": 0, "denominator": 100}})])
        store.findings.record_run(run1.id, new=[
            _finding("一级", "ORG1", 30, 1000, [f"33021100100100417 · id_number={RAW_ID}"]),
            _finding("二级", "ORG2", 12, 400, ["33021100100100533 · id_number=330211********567X"]),
            _finding("提示", None, 42, 1500, [])], seen=[], reopened=[], resolved=[], at=T0)
        ids = {f.org_code or "notice": f.id for f in store.findings.list()}
        ids = {"repaired": ids["ORG1"], "open": ids["ORG2"], "notice": ids["notice"]}
        c.advance(hours=1)
        store.findings.acknowledge(ids["repaired"], "wang.gong")
        c.advance(hours=1)
        store.findings.assign(ids["repaired"], "li.si", "wang.gong")
        store.findings.note(ids["repaired"], "原因：前置机接口截断身份证末位；处理：修正接口映射并补传", "li.si")
        c.advance(hours=16)
        with store.runs.start("validate", {"source": "mpi", "tables": ["person"], "orgs": ["ORG1"]}) as run2:
            store.results.record(run2.id, [StoredResult(
                "mpi", "person", RULE, "pass", 0, 1000, 0.0, 0.0, severity="二级", system="10",
                sampling={**WHOLE, "orgs": ["ORG1"]}, by_org={"ORG1": {"violations": 0, "denominator": 1000}})])
        store.findings.record_run(run2.id, new=[], seen=[], reopened=[], resolved=[ids["repaired"]], at=clock.now())
    return path, ids
