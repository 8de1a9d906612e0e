"""``healthqa dedup``: find duplicate resident archives and suggest merges."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from healthqa.config import load
from healthqa.store import AuditStore

from . import app, progress, render, user_errors
from .options import ConfigOpt, FlagValues, writable_file

DEDUP_STEPS = ["normalising", "estimating u from random pairs", "blocking and comparing", "training (EM)",
               "classifying", "clustering"]


@app.command(cls=FlagValues)
@user_errors
def dedup(
    config: ConfigOpt,
    source: Annotated[str | None, typer.Option(
        "--source", "-s", help="source holding the archives (default: the one mapping person)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write pairs, clusters and the model to this file")] = None,
    truth: Annotated[Path | None, typer.Option(
        "--truth", exists=True, dir_okay=False,
        help="CSV left,right of true duplicate pairs: print precision, recall, F1")] = None,
    spec: Annotated[Path | None, typer.Option(
        "--spec", exists=True, dir_okay=False, help="comparison spec (default: the shipped person spec)")] = None,
    incremental: Annotated[bool, typer.Option(
        "--incremental/--full",
        help="match only new and changed archives against the index (also --incremental=yes|no)")] = False,
    merge_instructions: Annotated[Path | None, typer.Option(
        "--merge-instructions", file_okay=False,
        help="write accepted merges (CSV, JSON, HL7 ADT^A40, FHIR) to this folder")] = None,
):
    """重复档案筛查 / find duplicate resident archives and suggest merges."""
    from healthqa.dedup.merge import accepted_merges, read_kinds
    from healthqa.pipelines.dedup import notes, run_dedup

    writable_file(json_out, "--json")
    cfg = load(config)
    with AuditStore(cfg.store.url) as store:
        with progress("查重 dedup", len(DEDUP_STEPS)) as step:
            run = run_dedup(cfg, store, source=source, spec_path=str(spec) if spec else None, truth=truth,
                            incremental=incremental,
                            progress=lambda what: step(what, done=DEDUP_STEPS.index(what) if what in DEDUP_STEPS else 0))
        merges = read_kinds(cfg, run.source, accepted_merges(store, run.source)) if merge_instructions else None
    for t in render.dedup_tables(run, truth):
        app.out.print(t)
    for note in notes(run.result.stats):  # a whole MPI read and why, an index not written, odd times
        app.out.print(Text(f"注意 note: {note}", style="yellow"))
    if json_out:
        run.write_json(json_out)
        app.out.print(f"JSON: {json_out}", highlight=False)
    if merges is not None:
        from healthqa.dedup.merge import write_all

        written = write_all(merges, merge_instructions)
        app.out.print(f"合并指令 merge instructions ({written.merges} accepted merges): "
                      + ", ".join(str(f) for f in written.files.values()), highlight=False)
        if written.skipped:
            app.err.print(Text(f"注意 note: {written.line()}", style="yellow"))
