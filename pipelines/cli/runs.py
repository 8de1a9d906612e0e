"""``healthqa runs`` and ``report``: the run history and the reports written from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from healthqa.config import load
from healthqa.store import AuditStore

from . import app, fail, render, user_errors
from .options import ConfigOpt

PENDING = ("评估未完成 assessment pending: 得分与问题未能保存，下次夜间稽核或 `healthqa report --run {id}` 补做 "
           "scores and findings could not be stored; the next nightly run or `healthqa report --run {id}` assesses it")


@app.command()
@user_errors
def runs(config: ConfigOpt,
         last: Annotated[int, typer.Option("--last", min=1, max=1000, help="how many runs, newest first")] = 20):
    """运行历史 / the run history: when, what, state, duration, rows read, rules failed, what could not run."""
    from dataclasses import asdict

    from healthqa.reports.rules_run import rules_run

    cfg = load(config)
    with AuditStore(cfg.store.url) as store:
        history = []
        for r in store.runs.recent(last):
            results = store.results.of_run(r.id)
            ran = rules_run(cfg, store, r.id, [asdict(x) for x in results])
            # how many rules ran and which could not and why (when some could not), then the run's message
            could_not = [ran.line()] if ran and ran.could_not else []
            if r.assessment_pending:
                could_not.insert(0, PENDING.format(id=r.id))
            history.append((r, results, "\n".join(could_not + [r.message] if r.message else could_not)))
    app.out.print(render.runs_table(history))


@app.command()
@user_errors
def report(
    config: ConfigOpt,
    run: Annotated[int | None, typer.Option("--run", help="run id (default: the newest scored nightly audit)")] = None,
    quarter: Annotated[str | None, typer.Option("--quarter", help="the quarterly inspection report, e.g. 2026Q4")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="also write the same report as PDF")] = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", file_okay=False, help="folder to write to (default: the configuration's reports.out_dir)")] = None,
):
    """稽核报告 / write the run report, or the quarterly inspection report (HTML, optionally PDF)."""
    from healthqa.reports import run_report  # the quarterly report (pandas) loads for --quarter only

    if run is not None and quarter is not None:
        fail("--run and --quarter: choose one")
    cfg = load(config)
    folder = out_dir or Path(cfg.reports.out_dir)
    with AuditStore(cfg.store.url) as store:
        if quarter is not None:
            from healthqa.reports import quarterly

            written = quarterly.write(cfg, store, quarterly.parse_quarter(quarter), folder, pdf=pdf)
        else:
            if run is not None and (r := store.runs.get(run)) is not None and r.assessment_pending:
                _assess_pending(cfg, store, run)
            default = run is None
            run = run if run is not None else run_report.default_run(store)
            if run is None:
                fail("稽核库中还没有评分的运行 no scored run in the audit store yet: run `healthqa run nightly` first")
            if default:  # the newest scored night is not last night: say which nights scored nothing
                for line in run_report.unscored_since(cfg, store, run):
                    app.out.print(line, highlight=False)
            written = run_report.write(cfg, store, run, folder, pdf=pdf)
    app.out.print(f"HTML: {written.html}", highlight=False)
    if written.pdf:
        app.out.print(f"PDF: {written.pdf}", highlight=False)


def _assess_pending(cfg, store: AuditStore, run: int) -> None:
    """Run ``run``'s assessment could not be stored: it is assessed now (the earlier pending nights
    first), under the nightly lock — a night catching up at the same moment would file them twice."""
    from healthqa.pipelines.nightly_lock import nightly_lock
    from healthqa.reports.assess import assess_pending

    with nightly_lock(store):
        done = assess_pending(cfg, store, by="healthqa report", upto=run)
    app.out.print(f"评估已补做 assessed now: run {', '.join(str(a.run_id) for a in done)}", highlight=False)
