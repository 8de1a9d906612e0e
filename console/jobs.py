"""Ad-hoc validations the engineer starts from the console, each in a thread of its own: the plain
function ``validate_adhoc`` that ``healthqa validate`` runs. Its state, progress and result are rows
of the audit store (``store.jobs``), so the job's page may poll any console worker; a job whose
process ended before it did (a restart, a crash) reads as interrupted, and a restart keeps every
finished job's result."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from datetime import datetime

from healthqa.errors import HealthqaError, one_line
from healthqa.store.jobs import RECENT, JobRecord

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, store):
        self.store = store

    def start(self, cfg, user: str, source: str, tables: list[str], orgs: tuple[str, ...],
              since: datetime | None, until: datetime | None) -> JobRecord:
        """The job, once its row is stored and its thread holds it (a store that cannot take the row
        raises here, for the request to answer)."""
        scope = {"source": source, "tables": tables, "orgs": list(orgs), "since": since, "until": until}
        created: Future[int] = Future()
        threading.Thread(target=self._work, args=(cfg, user, scope, created), name="healthqa-validate",
                         daemon=True).start()
        job = self.store.jobs.get(created.result())
        assert job is not None
        return job

    def _work(self, cfg, user: str, scope: dict, created: Future) -> None:
        jobs = self.store.jobs
        try:
            with jobs.running(user, scope, cfg.console.job_keep_days) as job_id:
                created.set_result(job_id)  # the page answers now; the validation's imports take seconds
                try:
                    from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

                    run = validate_adhoc(cfg, ValidationRequest(scope["source"], scope["tables"], tuple(scope["orgs"]),
                                                                scope["since"], scope["until"]), self.store,
                                         on_table=lambda t: _progress(jobs, job_id, str(t)))
                    jobs.finish(job_id, "done", run_id=run.run_id, result=_result(run))
                except HealthqaError as e:
                    jobs.finish(job_id, "failed", error=one_line(e))
                except Exception as e:  # noqa: BLE001 - the engineer reads the reason on the page, the console goes on
                    jobs.finish(job_id, "failed", error=f"{type(e).__name__}: {one_line(e)}")
        except BaseException as e:  # noqa: BLE001 - the row could not be made (the request says so), or its end not written
            if not created.done():
                created.set_exception(e)
            else:  # the job reads as interrupted once this thread lets its lock go
                log.warning("validation job's end not stored: %s", one_line(e))

    def get(self, job_id: int) -> JobRecord | None:
        return self.store.jobs.get(job_id)

    def all(self) -> list[JobRecord]:
        """The newest jobs, newest first."""
        return self.store.jobs.recent(RECENT)


def _progress(jobs, job_id: int, table: str) -> None:
    try:
        jobs.progress(job_id, table)
    except HealthqaError as e:  # progress is for the eye: a store busy for a moment does not stop the run
        log.warning("validation job %s: progress not stored: %s", job_id, one_line(e))


def _result(run) -> dict:
    """What the job's page shows of its run: counts, each rule with its change against the last run
    of the same scope (the CLI's 较上次), the findings' summary."""
    from healthqa.pipelines.cli.render import change_text

    statuses = [r.status for _, r in run.results]
    had_before = bool(run.previous)
    rows = [{"rule_id": r.rule.id, "table": t.table, "status": r.status, "zh": r.rule.zh,
             "violations": r.violations, "denominator": r.denominator,
             "change": change_text(r.violation_pct, run.previous.get((t.source, t.table, r.rule.id)), had_before)}
            for t, r in run.results]
    return {"counts": {s: statuses.count(s) for s in ("pass", "fail", "not_applicable", "error")},
            "failed_rules": [x for x in rows if x["status"] in ("fail", "error")],
            "passed_rules": [x for x in rows if x["status"] == "pass"],
            "summary": run.assessment.summary() if run.assessment else None}
