"""``healthqa validate``: the engineer's check after a repair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from healthqa.config import load
from healthqa.store import AuditStore

from . import app, fail, progress, render, user_errors
from .options import ConfigOpt, time_option, writable_file


@app.command()
@user_errors
def validate(
    config: ConfigOpt,
    source: Annotated[str, typer.Option("--source", "-s", help="source name in the configuration")],
    table: Annotated[list[str] | None, typer.Option(
        "--table", "-t", help="canonical table (repeatable); default: all mapped")] = None,
    org: Annotated[list[str] | None, typer.Option("--org", help="institution code (repeatable)")] = None,
    since_text: Annotated[str | None, typer.Option(
        "--since", metavar="<time>", help="only rows after this time (the table's time column): "
                                        "2026-11-18, 2026-11-18 08:00 or 2026-11-18T08:00:00")] = None,
    until_text: Annotated[str | None, typer.Option(
        "--until", metavar="<time>", help="only rows up to this time; a date alone means to the end of that "
                                        "day (2026-11-20: up to 2026-11-20 23:59:59)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write machine-readable results to this file")] = None,
):
    """校验一个数据源（可限定表、机构、时间窗）/ validate a source's tables against the standards.

    Exit 0 every rule passed, 1 a rule failed or could not run, 2 bad usage or filters that match nothing.
    """
    import json

    since, until = time_option(since_text, "--since"), time_option(until_text, "--until", whole_day=True)
    writable_file(json_out, "--json")
    cfg = load(config)
    if since and until and since >= until:
        fail("--since 须早于 must be before --until")
    cfg.require_source(source, table or ())  # a mistyped name is refused before anything starts
    from healthqa.pipelines.prefect_api import named_server, warm
    from healthqa.pipelines.scope import require_matches, suite_tables

    tables = table or suite_tables(cfg, source)
    # filters that match nothing are refused before Prefect, the rule engine or a flow run starts
    # (counted at the source: a second)
    require_matches(cfg, source, tables, tuple(org or ()), since, until)
    # A Prefect server named by the settings runs it as the flow `adhoc-validate` (its UI shows the
    # run); without one, the same function runs here: a Prefect API started for one flow run would
    # cost seconds and keep nothing the audit store does not (`healthqa runs`)
    server = named_server()
    if server:
        warm()  # checks that the server answers
    from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

    request = ValidationRequest(source, table or (), org or (), since, until)
    with progress("校验 validating", len(tables)) as step:
        if server:
            from healthqa.pipelines.flows import run_validate_flow

            run = run_validate_flow(str(cfg.path), request, on_table=step, filters_checked=True)
        else:
            with AuditStore(cfg.store.url) as store:
                run = validate_adhoc(cfg, request, store, on_table=step, filters_checked=True)
    app.out.print(render.validation_table(run, source))
    counts = {s: sum(1 for _, r in run.results if r.status == s) for s in render.STATUS}
    app.out.print(f"通过 {counts['pass']}，不通过 {counts['fail']}，不适用 {counts['not_applicable']}，错误 {counts['error']} "
                  f"(rows read: {', '.join(f'{tv.table} {tv.rows:,}' for tv in run.tables)})", highlight=False)
    if run.assessment:
        app.out.print(render.assessment_line(run.assessment), highlight=False)
    if json_out:
        doc = {"run_id": run.run_id, "scope": run.scope,
               "results": [r.as_json() for _, r in run.results]}
        json_out.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        app.out.print(f"JSON: {json_out}", highlight=False)
    raise typer.Exit(run.exit_code)
