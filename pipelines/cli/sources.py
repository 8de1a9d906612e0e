"""``healthqa sources check``: the first command on a new site."""

from __future__ import annotations

import typer
from rich.text import Text

from healthqa.config import load

from . import HELP, app, render, user_errors
from .options import ConfigOpt

sources_app = typer.Typer(no_args_is_help=True, context_settings=HELP, help="数据源 / sources")
app.add_typer(sources_app, name="sources")


def show_checks(results) -> bool:
    """Print every source's check, and each problem as an error line on stderr; True when there is
    none (every source answered and every mapped table and column exists)."""
    shown, problems = render.source_checks(results)
    for x in shown:
        app.out.print(x)
    for p in problems:
        app.err.print(Text("错误 error:", "red") + Text(f" {p}"), highlight=False, soft_wrap=True)
    return not problems


@sources_app.command("check")
@user_errors
def sources_check(config: ConfigOpt):
    """连接数据源、检查映射、统计行数 / connect, check mappings, count rows."""
    from healthqa.pipelines.extract import check_sources
    from healthqa.reports.coverage import coverage

    cfg = load(config)
    ok = show_checks(check_sources(cfg))
    # not an error: a site may not hold a system's data, but the reports will say it is not audited
    for c in coverage(cfg):
        if note := c.note():
            app.out.print(Text(f"系统 system {c.code} {c.name}: {note}", "yellow"), highlight=False, soft_wrap=True)
    raise typer.Exit(0 if ok else 2)
