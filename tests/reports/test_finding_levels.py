"""A finding's level follows its rate night by night, and its deadlines are those it was given when
it escalated: a de-escalation does not extend them, a re-escalation does not start them again
(issue 22). Four nights of one rule on one institution, written straight into a small audit store."""

from __future__ import annotations

from datetime import datetime, timedelta

from healthqa import clock, config
from healthqa.reports.assess import assess_run
from healthqa.store import AuditStore
from healthqa.store.results import StoredResult

from ..conftest import write_config

T0 = datetime(2026, 11, 20, 2, 0)


def test_the_level_follows_the_rate_and_the_deadline_stays(tmp_path):
    path = write_config(tmp_path / "healthqa.yml", {"store": {"url": f"sqlite:///{tmp_path / 'audit.db'}"},
                                                    "sources": {}, "reports": {"out_dir": str(tmp_path / "reports")}})
    cfg = config.load(path)
    seen = []
    with AuditStore(cfg.store.url) as store, clock.frozen(T0) as c:
        for night, bad in enumerate((1, 100, 1, 100)):  # of 1,000 rows: 提示, 二级, 提示, 二级 again
            with store.runs.start("nightly", {"sources": ["mpi"]}) as run:
                store.results.record(run.id, [StoredResult(
                    "mpi", "person", "MPI-ID-VALID", "fail", bad, 1000, bad / 10, 0.0, severity="二级", system="10",
                    sampling={"method": "full"}, by_org={"ORG1": {"violations": bad, "denominator": 1000}})])
            assess_run(cfg, store, run.id)
            (f,) = [f for f in store.findings.list() if f.org_code == "ORG1"]
            seen.append((f.level, f.response_due_at))
            if night < 3:
                c.advance(days=1)
    escalated = T0 + timedelta(days=1, hours=2)  # the first 二级 night's 2-hour response deadline
    assert seen == [("提示", None), ("二级", escalated), ("提示", escalated), ("二级", escalated)]
