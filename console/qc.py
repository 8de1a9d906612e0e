"""The QC manager's pages: scores (overall, by system, dimension and institution, with intervals and
the trend), the findings with filters and drill-down to rule results and masked examples, acknowledge
/ assign / note / resolve (one finding, or several ticked in the list: all of them or none), a
finding's after-sales service report, and the run and quarterly reports to open and download (HTML, PDF).

Reports are rendered on demand only for what exists (a run in the store, a quarter with runs in
it; anything else is a 404 page, no file written) and once for the data they show: a report asked
again is served from the file already rendered until a run or a finding changes (or, for a quarter
not yet over, the hour turns: deadlines pass)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from healthqa import clock
from healthqa.errors import HealthqaError
from healthqa.reports import charts, quarterly, run_report, service
from healthqa.reports.assess import describe, rule_results
from healthqa.reports.findings import example_lines
from healthqa.reports.institutions import registry
from healthqa.store.findings import FindingNotFound

from .auth import Who, check_csrf, role

router = APIRouter()
qc = role("qc_manager")
LEVELS = ("一级", "二级", "提示")
STATES = ("open", "new", "acknowledged", "reopened", "resolved")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, who: Who = Depends(qc)):
    cfg, store = request.app.state.cfg, request.app.state.store
    # the newest nightly audit (the whole platform); an engineer's scoped run only when there is none
    run_id = run_report.default_run(store)
    ctx = run_report.context(cfg, store, run_id) if run_id is not None else None
    if ctx is not None:  # a small trend beside each system's and dimension's score, of the runs like this one
        for level, rows, key in (("system", ctx["systems"], "code"), ("dimension", ctx["dimensions"], "subject")):
            for row in rows:
                history = ctx["earlier"].trend(level, row[key])
                row["trend"] = charts.trend([(f"#{h['run_id']}", h["conformance"]) for h in history], width=220, height=70)
    open_findings = store.findings.list(state="open")
    overdue = store.findings.list(overdue=True)
    return request.app.state.render(request, "dashboard.html.j2", who=who, r=ctx, run_id=run_id,
                                    unscored=run_report.unscored_since(cfg, store, run_id),
                                    open_count=len(open_findings), overdue_count=len(overdue),
                                    by_level={lv: sum(f.level == lv for f in open_findings) for lv in LEVELS})


def _finding_filters(request: Request) -> dict:
    q = request.query_params
    state = q.get("state") or "open"
    if state not in STATES + ("all",):
        raise HTTPException(400, f"state: 应为 {', '.join(STATES)}")
    level = q.get("level") or None
    if level and level not in LEVELS:
        raise HTTPException(400, f"level: 应为 {', '.join(LEVELS)}")
    return {"state": None if state == "all" else state, "level": level, "system": q.get("system") or None,
            "org": q.get("org") or None, "overdue": q.get("overdue") in ("1", "on", "yes", "true")}


@router.get("/findings", response_class=HTMLResponse)
def findings(request: Request, who: Who = Depends(qc)):
    store, cfg = request.app.state.store, request.app.state.cfg
    f = _finding_filters(request)
    rows = store.findings.list(**f)
    page = "findings_table.html.j2" if "HX-Request" in request.headers else "findings.html.j2"
    return request.app.state.render(request, page, who=who, rows=rows, f=request.query_params, levels=LEVELS,
                                    states=STATES, orgs=registry(cfg, store), now=clock.now())


@router.get("/findings/{finding_id}", response_class=HTMLResponse)
def finding(request: Request, finding_id: int, who: Who = Depends(qc)):
    store, cfg = request.app.state.store, request.app.state.cfg
    try:
        f = store.findings.get(finding_id)
    except FindingNotFound as e:
        raise HTTPException(404, str(e)) from None
    results = [r for r in rule_results(store, f.last_run_id)
               if r["rule_id"] == f.subject and r["table"] == f.table_name and r["source"] == f.source]
    describe(results, cfg)
    for r in results:
        r["lines"] = example_lines(r, f.org_code, limit=10)  # masked
    return request.app.state.render(request, "finding.html.j2", who=who, f=f, results=results,
                                    orgs=registry(cfg, store), now=clock.now())


def _change(request: Request, finding_id: int, fn) -> RedirectResponse:
    try:
        fn(request.app.state.store.findings)
    except FindingNotFound as e:
        raise HTTPException(404, str(e)) from None
    except HealthqaError as e:
        raise HTTPException(409, str(e)) from None
    return RedirectResponse(f"/findings/{finding_id}", status_code=303)


@router.post("/findings/{finding_id}/ack", dependencies=[Depends(check_csrf)])
def acknowledge(request: Request, finding_id: int, who: Who = Depends(qc)):
    return _change(request, finding_id, lambda fs: fs.acknowledge(finding_id, who.name))


@router.post("/findings/{finding_id}/assign", dependencies=[Depends(check_csrf)])
def assign(request: Request, finding_id: int, assignee: str = Form(...), who: Who = Depends(qc)):
    assignee = " ".join(assignee.split())
    if not assignee:
        raise HTTPException(400, "请填写负责人 / name who works on it")
    return _change(request, finding_id, lambda fs: fs.assign(finding_id, assignee, who.name))


@router.post("/findings/{finding_id}/note", dependencies=[Depends(check_csrf)])
def note(request: Request, finding_id: int, text: str = Form(...), who: Who = Depends(qc)):
    return _change(request, finding_id, lambda fs: fs.note(finding_id, text, who.name))


@router.post("/findings/{finding_id}/resolve", dependencies=[Depends(check_csrf)])
def resolve(request: Request, finding_id: int, note: str = Form(""), who: Who = Depends(qc)):
    return _change(request, finding_id, lambda fs: fs.resolve(finding_id, who.name, note.strip() or None))


BULK = ("ack", "assign", "resolve")


@router.post("/findings/bulk", dependencies=[Depends(check_csrf)])
def bulk(request: Request, who: Who = Depends(qc), ids: list[int] | None = Form(None), action: str = Form(...),
         assignee: str = Form(""), note: str = Form("")):
    """The findings ticked in the list, acknowledged, assigned or resolved together: all of them or
    none (an id that is gone, or one already resolved, refuses the whole request and names it)."""
    if action not in BULK:
        raise HTTPException(400, f"action: 应为 {', '.join(BULK)}")
    if not ids:
        raise HTTPException(400, "请勾选问题 / tick at least one finding")
    fs, name = request.app.state.store.findings, who.name
    assignee = " ".join(assignee.split())
    if action == "assign" and not assignee:
        raise HTTPException(400, "请填写负责人 / name who works on them")
    do = {"ack": lambda: fs.acknowledge_many(ids, name), "assign": lambda: fs.assign_many(ids, assignee, name),
          "resolve": lambda: fs.resolve_many(ids, name, note.strip() or None)}[action]
    try:
        do()
    except FindingNotFound as e:
        raise HTTPException(404, str(e)) from None
    except HealthqaError as e:
        raise HTTPException(409, str(e)) from None
    back = request.headers.get("referer") or ""
    # back to the list as it was filtered (only a page of this site: the referer is the client's word)
    target = back[back.index("/findings"):] if "/findings" in back and back.startswith(str(request.base_url)) else "/findings"
    return RedirectResponse(target, status_code=303)


@router.get("/findings/{finding_id}/report.{ext}")
async def service_report(request: Request, finding_id: int, ext: str, who: Who = Depends(qc)):
    """The finding's after-sales service report (售后服务报告), to print and sign."""
    _report_format(ext)
    cfg, store = request.app.state.cfg, request.app.state.store
    try:
        written = await run_in_threadpool(service.write, cfg, store, finding_id,
                                          _out_dir(request) / f"service-{finding_id}.html", ext == "pdf")
    except FindingNotFound as e:
        raise HTTPException(404, str(e)) from None
    except HealthqaError as e:
        raise HTTPException(409, str(e)) from None
    return _file(written, ext, f"service-{finding_id}")


@router.get("/reports", response_class=HTMLResponse)
def reports(request: Request, who: Who = Depends(qc)):
    store = request.app.state.store
    runs = [r for r in store.runs.recent(50) if r.status != "running"]
    scored = {r.id for r in runs if store.scores.of_run(r.id)}
    today = clock.now()
    q = (today.month - 1) // 3 + 1
    quarters = []
    y, k = today.year, q
    for _ in range(4):
        quarters.append(f"{y}Q{k}")
        y, k = (y, k - 1) if k > 1 else (y - 1, 4)
    # a nightly audit that scored nothing (every store down) keeps its report: it says which rules could not run and why
    listed = [r for r in runs if r.id in scored or r.kind == "nightly"]
    return request.app.state.render(request, "reports.html.j2", who=who, runs=listed,
                                    quarters=quarters)


def _out_dir(request: Request):
    from pathlib import Path

    return Path(request.app.state.cfg.reports.out_dir)


@router.get("/reports/run/{run_id}.{ext}")
async def run_file(request: Request, run_id: int, ext: str, who: Who = Depends(role("qc_manager", "engineer"))):
    _report_format(ext)
    cfg, store = request.app.state.cfg, request.app.state.store
    run = store.runs.get(run_id)
    if run is None:
        raise HTTPException(404, f"运行 {run_id} 不存在 / no such run")
    if who.role == "engineer" and run.kind != "validate":  # the engineer reads the reports of scoped validations
        raise HTTPException(403, "无权访问此页面 / the engineer opens the reports of validations only")
    key = (run.status, run.finished_at, store.findings.last_change())
    written = await _rendered(request, ("run", run_id, ext), key, run_report.write, cfg, store, run_id,
                              _out_dir(request), ext == "pdf")
    return _file(written, ext, f"run-{run_id}")


@router.get("/reports/quarter/{quarter}.{ext}")
async def quarter_file(request: Request, quarter: str, ext: str, who: Who = Depends(qc)):
    _report_format(ext)
    cfg, store = request.app.state.cfg, request.app.state.store
    try:
        q = quarterly.parse_quarter(quarter)
        q.start, q.end  # noqa: B018 - a year the calendar has (0000Q1 and 9999Q4 have no bounds)
    except HealthqaError as e:  # its own words: the form, or the years a quarter can have
        raise HTTPException(404, f"无此季度报告 no such quarterly report: {str(e).removeprefix('--quarter: ')}") from None
    except (ValueError, OverflowError):
        raise HTTPException(404, f"季度应写作 2026Q4 / a quarter like 2026Q4, not {quarter!r}") from None
    # the quarter's runs (nightly audits, and the validations and scans its report lists apart)
    runs = store.runs.between(q.start, q.end)
    if not runs:  # no report of an empty quarter (nor a file for each of 0001Q1 … 9998Q4)
        raise HTTPException(404, f"{q.year} 年第 {q.q} 季度没有稽核记录，无季度报告 / no audits in {q}")
    at = clock.now()
    key = (tuple((r.id, r.status, r.finished_at) for r in runs), store.findings.last_change(),
           None if at >= q.end else f"{at:%Y%m%d%H}")
    written = await _rendered(request, ("quarter", str(q), ext), key, quarterly.write, cfg, store, q,
                              _out_dir(request), ext == "pdf")
    return _file(written, ext, f"quarter-{q}")


def _report_format(ext: str) -> None:
    """A report is served as HTML or PDF; any other ending names nothing."""
    if ext not in ("html", "pdf"):
        raise HTTPException(404, "html 或 pdf / html or pdf")


async def _rendered(request: Request, what: tuple, key: tuple, write, *args):
    """The report ``what`` rendered by ``write(*args)``, or its file already rendered for ``key``."""
    cache = request.app.state.rendered
    hit = cache.get(what)
    if hit is not None and hit[0] == key and hit[1].html.exists() and (hit[1].pdf is None or hit[1].pdf.exists()):
        return hit[1]
    try:
        written = await run_in_threadpool(write, *args)
    except HealthqaError as e:
        raise HTTPException(409, str(e)) from None
    cache[what] = (key, written)
    return written


def _file(written, ext: str, stem: str):
    if ext == "pdf":
        return FileResponse(written.pdf, media_type="application/pdf", filename=f"{stem}.pdf")
    return HTMLResponse(written.html.read_text(encoding="utf-8"))
