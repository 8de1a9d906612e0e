"""``healthqa demo``: build the synthetic Zhenhai platform and audit it once."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from healthqa.config import load
from healthqa.errors import StoreError
from healthqa.store import AuditStore, delete_sqlite_store

from . import app, fail, progress, render, user_errors
from .options import time_option
from .run import nightly

DEMO_FILES = ("healthqa.yml", "audit.db", "mpi.db", "drc.db", "qc.db")
# what rebuilding a demo folder deletes with its audit store, in the order a user cares about it
AT_STAKE = (("steward_decisions", "审核决定 steward decisions"), ("runs", "运行 runs"),
            ("users", "用户 users"), ("findings", "问题单 findings"), ("rule_results", "规则结果 rule results"),
            ("dedup_pairs", "重复对 duplicate pairs"), ("audit_log", "审计日志 audit-log entries"))


def _refuse_rebuild(folder: Path) -> None:
    """A folder that already holds a platform is rebuilt only with --force: its audit store (runs,
    steward decisions, users …) would be deleted."""
    present = [f for f in DEMO_FILES if (folder / f).exists()]
    if not present:
        return
    lost = ""
    if (folder / "audit.db").exists():
        try:
            with AuditStore(f"sqlite:///{(folder / 'audit.db').resolve()}", upgrade=False) as old:
                counts = old.counts()
            lost = "; 将丢失 would lose " + ", ".join(f"{label} {counts.get(t, 0):,}" for t, label in AT_STAKE)
        except StoreError as e:  # a file of another kind named audit.db: said, and kept unless --force
            lost = f"; {e}"
    fail(f"目录已有模拟平台 {folder} already holds a platform ({', '.join(present)}){lost}; "
         f"加 --force 重建 rebuild with --force, or choose another --dir")


def _print_truth_check(cfg, truth: Path) -> None:
    """The night's results against the truth: recall per defect family, false flags per valid kind."""
    from healthqa.demo.families import summary

    with AuditStore(cfg.store.url) as store:
        run = next(iter(store.runs.recent(1, kind="nightly")), None)
        if run is None:
            return
        families, kinds = summary(truth, store.results.of_run(run.id))
    app.out.print(render.truth_check_table(families, kinds))


@app.command()
@user_errors
def demo(
    dir: Annotated[Path, typer.Option(
        "--dir", file_okay=False, help="where to build the synthetic platform")] = Path("healthqa-demo"),
    persons: Annotated[int, typer.Option("--persons", min=100, help="resident archives to generate")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="random seed (same seed, same platform)")] = 20251125,
    as_of_text: Annotated[str | None, typer.Option(
        "--as-of", metavar="<time>", help="the platform's 'now', e.g. 2026-11-25 or 2026-11-25 08:00 "
                                        "(default: today 00:00)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="rebuild a folder that already holds a platform, deleting its audit store")] = False,
):
    """生成模拟镇海区平台并运行一次稽核 / build the synthetic Zhenhai platform and audit it once."""
    as_of = time_option(as_of_text, "--as-of")
    if not force:
        _refuse_rebuild(dir)
    if os.environ.get("PREFECT_API_URL"):  # a server that does not answer is said before the platform is built
        from healthqa.pipelines.prefect_api import check_server

        check_server()
    from healthqa.demo import DemoOptions, generate

    opts = DemoOptions(persons=persons, seed=seed, as_of=as_of)
    # a new platform gets a new audit store: old watermarks would hide the new data
    delete_sqlite_store(dir / "audit.db")
    t0 = time.perf_counter()
    with progress("生成档案 generating archives", persons) as step:
        result = generate(dir, opts, progress=lambda done, total: step(done=done))
    app.out.print(Text("模拟平台已生成 synthetic platform built", "bold")
                  + Text(f" in {time.perf_counter() - t0:.1f}s: {dir.resolve()}"))
    app.out.print(render.counts_table(result.counts))
    truth = result.folder / "truth"
    app.out.print(f"真值 truth: {truth}/defects.csv ({result.truth['defects']:,} defects), "
                  f"duplicate_pairs.csv ({result.truth['duplicate_pairs']:,} pairs), "
                  f"hard_negatives.csv ({result.truth['hard_negatives']:,} pairs)", highlight=False)
    app.out.print(f"配置 configuration: {result.config}", highlight=False)
    cfg = load(result.config)
    code = nightly(cfg)
    _print_truth_check(cfg, truth)
    app.out.print(f"稽核库 audit store: {result.folder / 'audit.db'}", highlight=False)
    reports = sorted(Path(load(result.config).reports.out_dir).glob("run-*.html"), key=lambda p: p.stat().st_mtime)
    if reports:
        app.out.print(Text("先打开稽核报告 open the report first:", "bold") + Text(f" {reports[-1]}"), highlight=False)
    # then the console: it needs an account first (a steward reviews the duplicates the night found)
    app.out.print(Text("打开控制台 open the console:", "bold"), highlight=False)
    app.out.print(f"  healthqa users add NAME --role steward --config {result.config}", highlight=False, soft_wrap=True)
    app.out.print(f"  healthqa serve --config {result.config}", highlight=False, soft_wrap=True)
    # the demo's data carries defects on purpose: failing rules are its point, not an error
    raise typer.Exit(code)
