"""The maintenance engineer's page: start an ad-hoc validation of a source, tables, institutions and
a time window (what ``healthqa validate`` runs), watch it, see its result and the findings it resolved.
The jobs are rows of the audit store (console/jobs.py): any console worker answers for any job."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from healthqa.connectors.sampling import TIME_EXAMPLES, window_bound

from .auth import Who, check_csrf, role

router = APIRouter(prefix="/validate")
engineer = role("engineer")


@router.get("", response_class=HTMLResponse)
def page(request: Request, who: Who = Depends(engineer)):
    cfg = request.app.state.cfg
    sources = {name: list(s.tables) for name, s in cfg.sources.items()}
    return request.app.state.render(request, "validate.html.j2", who=who, sources=sources,
                                    jobs=request.app.state.jobs.all(),
                                    runs=request.app.state.store.runs.recent(10, kind="validate"))


def _when(text: str | None, field: str, upper: bool = False) -> datetime | None:
    """The form's date (``upper``: to the end of that day, as ``healthqa validate --until``)."""
    if not text:
        return None
    try:
        return window_bound(text, upper=upper)
    except ValueError:
        raise HTTPException(400, f"{field}: 应为日期时间 / a date or time: {TIME_EXAMPLES}") from None


@router.post("", dependencies=[Depends(check_csrf)])
def start(request: Request, who: Who = Depends(engineer), source: str = Form(...), tables: list[str] | None = Form(None),
          orgs: str = Form(""), since: str = Form(""), until: str = Form("")):
    cfg = request.app.state.cfg
    if source not in cfg.sources:
        raise HTTPException(400, f"数据源 {source} 不存在 / no such source")
    bad = [t for t in tables or [] if t not in cfg.sources[source].tables]
    if bad:
        raise HTTPException(400, f"表 {', '.join(bad)} 不属于数据源 {source} / not mapped by the source")
    lo, hi = _when(since, "since"), _when(until, "until", upper=True)
    if lo and hi and lo >= hi:
        raise HTTPException(400, "开始时间须早于结束时间 / since must be before until")
    job = request.app.state.jobs.start(cfg, who.name, source, list(tables or []),
                                       tuple(o for o in orgs.replace(",", " ").split() if o), lo, hi)
    request.app.state.store.review.log(who.name, "validate_start", source, {"job": job.id, "tables": job.tables,
                                                                            "orgs": job.scope["orgs"]})
    return RedirectResponse(f"/validate/jobs/{job.id}", status_code=303)


def _job(request: Request, job_id: int):
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"校验任务 {job_id} 不存在 / no such validation")
    return job


def _shown(request: Request, template: str, who: Who, job_id: int):
    job = _job(request, job_id)
    # the findings its run resolved, from the store (read once: a finished job's page polls no more)
    resolved = request.app.state.store.findings.events_of_run(job.run_id).get("resolved", []) \
        if job.state == "done" and job.run_id is not None else []
    return request.app.state.render(request, template, who=who, job=job, resolved=resolved)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: int, who: Who = Depends(engineer)):
    return _shown(request, "job.html.j2", who, job_id)


@router.get("/jobs/{job_id}/status", response_class=HTMLResponse)
def job_status(request: Request, job_id: int, who: Who = Depends(engineer)):
    return _shown(request, "job_status.html.j2", who, job_id)
