"""``healthqa runs`` and ``report``: the run history and the reports written from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from healthqa.config import load
from healthqa.store import AuditStore

from . import app, fail, render, user_errors
from .options import ConfigOpt


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
    from healthqa.reports import quarterly, run_report

    if run is not None and quarter is not None:
        fail("--run and --quarter: choose one")
    cfg = load(config)
    folder = out_dir or Path(cfg.reports.out_dir)
    with AuditStore(cfg.store.url) as store:
        if quarter is not None:
            written = quarterly.write(cfg, store, quarterly.parse_quarter(quarter), folder, pdf=pdf)
        else:
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
