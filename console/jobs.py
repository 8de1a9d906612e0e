"""Ad-hoc validations the engineer starts from the console, each in a thread of its own: the plain
function ``validate_adhoc`` that ``healthqa validate`` runs, with its progress and result kept here
for the page to poll (in memory: a restart forgets the job, never the run, which is in the store)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from healthqa import clock
from healthqa.errors import HealthqaError, one_line


@dataclass
class Job:
    id: int
    user: str
    scope: dict
    tables: list[str]
    started_at: datetime = field(default_factory=clock.now)
    done_tables: list[str] = field(default_factory=list)
    state: str = "running"  # running | done | failed
    run_id: int | None = None
    counts: dict = field(default_factory=dict)
    failed_rules: list[dict] = field(default_factory=list)
    passed_rules: list[dict] = field(default_factory=list)  # the rules that pass now (a repair shows here)
    resolved: list = field(default_factory=list)  # FindingRow: the findings this run resolved
    summary: dict | None = None
    error: str | None = None
    finished_at: datetime | None = None


class Jobs:
    def __init__(self):
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()

    def start(self, cfg, store, user: str, source: str, tables: list[str], orgs: tuple[str, ...],
              since: datetime | None, until: datetime | None) -> Job:
        from healthqa.pipelines.cli.render import change_text
        from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

        with self._lock:
            job = Job(len(self._jobs) + 1, user, {"source": source, "tables": tables, "orgs": list(orgs),
                                                  "since": since, "until": until}, tables)
            self._jobs[job.id] = job

        def work():
            try:
                run = validate_adhoc(cfg, ValidationRequest(source, tables, orgs, since, until), store,
                                     on_table=lambda t: job.done_tables.append(str(t)))
                job.run_id = run.run_id
                statuses = [r.status for _, r in run.results]
                job.counts = {s: statuses.count(s) for s in ("pass", "fail", "not_applicable", "error")}
                # each rule with its change against the last run of the same scope (the CLI's 较上次)
                had_before = bool(run.previous)
                rows = [{"rule_id": r.rule.id, "table": t.table, "status": r.status, "zh": r.rule.zh,
                         "violations": r.violations, "denominator": r.denominator,
                         "change": change_text(r.violation_pct, run.previous.get((t.source, t.table, r.rule.id)),
                                               had_before)} for t, r in run.results]
                job.failed_rules = [x for x in rows if x["status"] in ("fail", "error")]
                job.passed_rules = [x for x in rows if x["status"] == "pass"]
                if run.run_id is not None:
                    job.resolved = store.findings.events_of_run(run.run_id).get("resolved", [])
                job.summary = run.assessment.summary() if run.assessment else None
                job.state = "done"
            except HealthqaError as e:
                job.error, job.state = one_line(e), "failed"
            except Exception as e:  # noqa: BLE001 - the engineer reads the reason on the page, the console goes on
                job.error, job.state = f"{type(e).__name__}: {one_line(e)}", "failed"
            finally:
                job.finished_at = clock.now()

        threading.Thread(target=work, name=f"healthqa-validate-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: -j.id)
