"""``healthqa run nightly``: one nightly audit now (``demo`` runs one too)."""

from __future__ import annotations

import contextlib

import typer
from rich.text import Text

from healthqa.config import Config, load

from . import HELP, app, render, user_errors
from .options import ConfigOpt
from .sources import show_checks

run_app = typer.Typer(no_args_is_help=True, context_settings=HELP, help="运行稽核 / run an audit")
app.add_typer(run_app, name="run")


def nightly(cfg: Config) -> int:
    """Run one nightly audit (the Prefect flow, on a local Prefect API unless PREFECT_API_URL
    names a server), print what it found and return its exit code (``NightlyResult.exit_code``)."""
    from healthqa.pipelines.dedup import notes as dedup_notes
    from healthqa.pipelines.nightly_lock import held_for_run
    from healthqa.pipelines.prefect_api import warm

    with held_for_run(cfg):  # a second night is refused in a second, before Prefect starts or a flow runs
        warm()  # Prefect's local API boots while the audit's modules load
        from healthqa.pipelines.flows import run_nightly_flow

        with app.err.status("夜间稽核 nightly audit …", spinner="dots") if app.err.is_terminal else contextlib.nullcontext():
            res = run_nightly_flow(str(cfg.path)).result
    show_checks(res.checks)
    if res.runner:  # the task runner the night chose (orchestration.task_runner: auto) and why
        app.out.print(Text(res.runner, style="dim"), highlight=False, soft_wrap=True)
    app.out.print(render.nightly_table(res))
    if res.dedup:
        app.out.print(render.dedup_line(res.dedup.stats, res.dedup.incremental), highlight=False)
        if res.dedup.stats.get("institution_levels"):  # the register's store was down: what the scan did without it
            app.out.print(f"重复档案 duplicates: {res.dedup.stats['institution_levels']}", highlight=False)
        for note in dedup_notes(res.dedup.stats):  # a whole MPI read and why, an index not written, odd times
            app.out.print(Text(f"重复档案 duplicates: {note}", style="yellow"))
    for a in res.caught_up:  # an earlier night whose scores and findings could not be stored, assessed first
        app.out.print(f"评估已补做 run {a.run_id} assessed now — {render.assessment_line(a)}", highlight=False)
    if res.assessment:
        app.out.print(render.assessment_line(res.assessment), highlight=False)
    for d in res.deliveries:
        app.out.print(render.delivery_line(d))
    for p in res.retried:  # an earlier night's undelivered publishing, sent again
        for d in p.deliveries:
            app.out.print(render.delivery_line(d).append(f" — 补发 run {p.run_id} again"))
        if p.report:
            app.out.print(f"补写报告 report of run {p.run_id} written: {p.report}", highlight=False)
        if p.undelivered:
            app.out.print(Text(f"run {p.run_id}: {p.reason()}", style="red"))
    if res.report:
        app.out.print(Text("稽核报告 report:", "bold") + Text(f" {res.report}"), highlight=False)
    return res.exit_code


@run_app.command("nightly")
@user_errors
def run_nightly(config: ConfigOpt):
    """立即执行一次夜间稽核 / run one nightly audit now."""
    raise typer.Exit(nightly(load(config)))
