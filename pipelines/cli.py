"""The ``healthqa`` command line (DESIGN.md's contract).

Exit codes: 0 all good; 1 the audit ran and found failures; 2 bad usage, bad configuration or an
unreachable source, always with a one-line reason on stderr and never a traceback.
"""

from __future__ import annotations

import functools
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import __version__
from healthqa import config as config_mod
from healthqa.errors import HealthqaError, SourceError
from healthqa.store import AuditStore

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="healthqa：区域卫生信息平台数据质量与完整性稽核 / data-quality auditing for regional health platforms")
sources_app = typer.Typer(no_args_is_help=True, help="数据源 / sources")
run_app = typer.Typer(no_args_is_help=True, help="运行稽核 / run an audit")
users_app = typer.Typer(no_args_is_help=True, help="用户 / users")
app.add_typer(sources_app, name="sources")
app.add_typer(run_app, name="run")
app.add_typer(users_app, name="users")

# a pipe or a log file gets wide tables instead of 80 columns
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="configuration file (YAML)")]


def fail(message: str, code: int = 2) -> None:
    for line in str(message).splitlines() or [""]:
        err.print(f"[bold red]错误 error:[/] {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn healthqa's typed errors into a one-line message and exit code 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HealthqaError as e:
            fail(str(e), e.exit_code)
    return wrapper


def _load(path: Path) -> config_mod.Config:
    return config_mod.load(path)


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="print the version")] = False):
    if version:
        out.print(f"healthqa {__version__}")
        raise typer.Exit(0)


def _render_checks(results) -> int:
    """Print the check of every source; return 2 if any source is unreachable or mis-mapped."""
    code = 0
    problems: list[str] = []
    for name, res in results.items():
        if isinstance(res, SourceError):
            out.print(f"[bold]数据源 {name}[/]: [red]无法连接 unreachable[/] — {res.reason}", highlight=False)
            problems.append(f"sources.{name}: unreachable: {res.reason}")
            code = 2
            continue
        t = Table(title=f"数据源 source {name}", title_justify="left", show_lines=False)
        for col in ("标准表 canonical", "物理表 physical", "行数 rows", "缺失列 missing", "未映射 unmapped", "状态 status"):
            t.add_column(col, overflow="fold")
        for tc in res:
            if not tc.exists:
                status = "[red]表不存在 table missing[/]"
                problems.append(f"sources.{name}.tables.{tc.canonical}.table: table {tc.physical} not found")
            elif tc.error:
                status = f"[red]{tc.error}[/]"
                problems.append(f"sources.{name}.tables.{tc.canonical}: {tc.error}")
            elif tc.missing_columns:
                status = "[red]映射错误 mis-mapped[/]"
                problems += [f"sources.{name}.tables.{tc.canonical}.columns.{c}: column {p} not found in table {tc.physical}"
                             for c, p in tc.missing_columns.items()]
            else:
                status = "[green]正常 ok[/]"
            t.add_row(tc.canonical, tc.physical, "" if tc.rows is None else f"{tc.rows:,}",
                      ", ".join(f"{c}→{p}" for c, p in tc.missing_columns.items()),
                      ", ".join(tc.unmapped_columns), status)
            if not tc.ok:
                code = 2
        out.print(t)
    for p in problems:
        err.print(f"[red]错误 error:[/] {p}", highlight=False, soft_wrap=True)
    return code


@sources_app.command("check")
@user_errors
def sources_check(config: ConfigOpt):
    """连接数据源、检查映射、统计行数 / connect, check mappings, count rows."""
    from .extract import check_sources

    cfg = _load(config)
    raise typer.Exit(_render_checks(check_sources(cfg)))


def nightly(cfg: config_mod.Config) -> int:
    """Run one nightly audit with progress and print what it found: 2 if a source failed, 1 if a
    rule failed, else 0."""
    from ..expectations.runner import format_pct
    from .nightly import run_nightly

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("稽核 auditing", total=sum(len(s.tables) for s in cfg.sources.values()))
        res = run_nightly(cfg, on_table=lambda t: progress.update(task, advance=1, description=f"稽核 {t}"))
    code = _render_checks(res.checks)
    t = Table(title=f"夜间稽核 nightly audit (run {res.run_id})", title_justify="left")
    for col in ("数据源 source", "标准表 table", "抽样 sampling", "行数 rows", "通过 pass", "不通过 fail",
                "错误 error", "最差规则 worst rule"):
        t.add_column(col)
    for name, v in res.validations.items():
        for tv in v.tables:
            status = [r.status for r in tv.results]
            worst = max((r for r in tv.results if r.status == "fail"), key=lambda r: r.violation_pct or 0, default=None)
            t.add_row(name, tv.table, tv.sampling.get("method", ""), f"{tv.rows:,}", str(status.count("pass")),
                      str(status.count("fail")), str(status.count("error")),
                      f"{worst.rule.id} {format_pct(worst.violation_pct)}" if worst else "")
    for name, reason in res.failures.items():
        t.add_row(name, "", "", "", "", "", "", f"[red]{reason}[/]")
    out.print(t)
    if res.dedup:
        st = res.dedup.result.stats
        out.print(f"重复档案 duplicates ({'incremental' if res.dedup.incremental else 'full'}): "
                  f"{st['matches']:,} matches, {st['review']:,} to review, {st['clusters']:,} clusters "
                  f"among {st['records']:,} archives", highlight=False)
    return 2 if res.failures or code else (1 if res.rules_failed else 0)


@run_app.command("nightly")
@user_errors
def run_nightly(config: ConfigOpt):
    """立即执行一次夜间稽核 / run one nightly audit now."""
    raise typer.Exit(nightly(_load(config)))


STATUS = {"pass": "[green]通过 pass[/]", "fail": "[red]不通过 fail[/]", "not_applicable": "[dim]不适用 n/a[/]",
          "error": "[magenta]错误 error[/]"}


def _change(now: float | None, before: float | None, had_before: bool) -> str:
    if not had_before:
        return "新 new"
    if now is None or before is None:
        return "—"
    d = now - before
    if abs(d) < 1e-12:
        return "="
    from ..expectations.runner import format_pct

    return ("↑ +" if d > 0 else "↓ −") + format_pct(abs(d))


@app.command()
@user_errors
def validate(
    config: ConfigOpt,
    source: Annotated[str, typer.Option("--source", "-s", help="source name in the configuration")],
    table: Annotated[Optional[list[str]], typer.Option("--table", "-t", help="canonical table (repeatable); default: all mapped")] = None,
    org: Annotated[Optional[list[str]], typer.Option("--org", help="institution code (repeatable)")] = None,
    since: Annotated[Optional[datetime], typer.Option("--since", help="only rows after this time (the table's time column)")] = None,
    until: Annotated[Optional[datetime], typer.Option("--until", help="only rows up to this time")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write machine-readable results to this file")] = None,
):
    """校验一个数据源（可限定表、机构、时间窗）/ validate a source's tables against the standards."""
    import json

    from ..expectations.runner import format_pct
    from .validate import validate_source

    cfg = _load(config)
    if since and until and since >= until:
        fail("--since must be before --until")
    store = AuditStore(cfg.store.url)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        n = len(table) if table else len(cfg.sources[source].tables) if source in cfg.sources else 0
        task = progress.add_task("校验 validating", total=n)
        run = validate_source(cfg, source, tables=table or None, orgs=tuple(org or ()), since=since, until=until,
                              store=store, on_table=lambda t: progress.update(task, advance=1, description=f"校验 {t}"))
    store.close()
    t = Table(title=f"校验结果 validation (run {run.run_id}, source {source})", title_justify="left")
    for col, just in (("规则 rule", "left"), ("表 table", "left"), ("维度 dimension", "left"), ("等级", "left"),
                      ("违规 violations", "right"), ("适用 rows", "right"), ("比例 %", "right"),
                      ("状态 status", "left"), ("较上次 change", "right")):
        t.add_column(col, justify=just)
    had_before = bool(run.previous)
    for tv, r in run.results:
        before = run.previous.get((tv.source, tv.table, r.rule.id))
        t.add_row(r.rule.id, tv.table, r.rule.dimension, r.rule.severity, f"{r.violations:,}", f"{r.denominator:,}",
                  format_pct(r.violation_pct), STATUS[r.status] + (f" {r.error}" if r.error else ""),
                  _change(r.violation_pct, before, had_before))
    out.print(t)
    counts = {s: sum(1 for _, r in run.results if r.status == s) for s in STATUS}
    out.print(f"通过 {counts['pass']}，不通过 {counts['fail']}，不适用 {counts['not_applicable']}，错误 {counts['error']} "
              f"(rows read: {', '.join(f'{tv.table} {tv.rows:,}' for tv in run.tables)})", highlight=False)
    if json_out:
        doc = {"run_id": run.run_id, "scope": run.scope,
               "results": [r.as_json() for _, r in run.results]}
        json_out.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        out.print(f"JSON: {json_out}", highlight=False)
    raise typer.Exit(1 if run.failed else 0)


@app.command()
@user_errors
def dedup(
    config: ConfigOpt,
    source: Annotated[Optional[str], typer.Option("--source", "-s", help="source holding the archives (default: the one mapping person)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write pairs, clusters and the model to this file")] = None,
    truth: Annotated[Optional[Path], typer.Option("--truth", help="CSV left,right of true duplicate pairs: print precision, recall, F1")] = None,
    spec: Annotated[Optional[Path], typer.Option("--spec", help="comparison spec (default: the shipped person spec)")] = None,
    incremental: Annotated[bool, typer.Option("--incremental", help="match only new and changed archives against the index")] = False,
    merge_instructions: Annotated[Optional[Path], typer.Option("--merge-instructions", help="write accepted merges (CSV, JSON, HL7 ADT^A40, FHIR) to this folder")] = None,
):
    """重复档案筛查 / find duplicate resident archives and suggest merges."""
    import json

    from .dedup import accepted_merges, run_dedup

    cfg = _load(config)
    store = AuditStore(cfg.store.url)
    steps = ["normalising", "estimating u from random pairs", "blocking and comparing", "training (EM)",
             "classifying", "clustering"]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("查重 dedup", total=len(steps))
        run = run_dedup(cfg, store, source=source, spec_path=str(spec) if spec else None, truth=truth,
                        incremental=incremental,
                        progress=lambda step: progress.update(task, completed=steps.index(step) if step in steps else 0,
                                                              description=f"查重 {step}"))
    st = run.result.stats
    t = Table(title=f"重复档案筛查 dedup (run {run.run_id}, source {run.source}{', incremental' if run.incremental else ''})",
              title_justify="left")
    t.add_column("项目 item")
    t.add_column("数量 value", justify="right")
    for label, value in (("档案 archives", st["records"]), ("候选对 candidate pairs", st["candidate_pairs"]),
                         ("匹配 matches", st["matches"]), ("待审核 review", st["review"]),
                         ("聚类 clusters", st["clusters"]), ("待审核聚类 clusters to review", st["clusters_to_review"])):
        t.add_row(label, f"{value:,}")
    t.add_row("缩减率 reduction ratio", f"{st['reduction_ratio']:.6f}")
    t.add_row("耗时 seconds", f"{st['seconds']:.1f}")
    out.print(t)
    b = Table(title="分块 blocking passes", title_justify="left")
    b.add_column("pass")
    b.add_column("pairs", justify="right")
    for p in st["blocking"]:
        b.add_row(p["pass"], f"{p['pairs']:,}")
    out.print(b)
    if run.evaluation:
        e = Table(title=f"对照真值 against {truth}", title_justify="left")
        for col in ("level", "precision", "recall", "F1", "found", "true"):
            e.add_column(col, justify="right" if col != "level" else "left")
        for level in ("pairs", "clusters"):
            ev = run.evaluation[level]
            e.add_row(level, f"{ev['precision']:.4f}", f"{ev['recall']:.4f}", f"{ev['f1']:.4f}",
                      f"{ev['found']:,}", f"{ev['true']:,}")
        out.print(e)
    if json_out:
        json_out.write_text(json.dumps(run.as_json(), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        out.print(f"JSON: {json_out}", highlight=False)
    if merge_instructions:
        from ..dedup.merge import write_all

        merges = accepted_merges(store, run.source)
        files = write_all(merges, merge_instructions)
        out.print(f"合并指令 merge instructions ({len(merges)} accepted merges): "
                  + ", ".join(str(f) for f in files.values()), highlight=False)
    store.close()


@app.command()
@user_errors
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="where to build the synthetic platform")] = Path("healthqa-demo"),
    persons: Annotated[int, typer.Option("--persons", min=100, help="resident archives to generate")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed, same platform)")] = 20251125,
    as_of: Annotated[Optional[datetime], typer.Option("--as-of", help="the platform's 'now' (default: today 00:00)")] = None,
):
    """生成模拟镇海区平台并运行一次稽核 / build the synthetic Zhenhai platform and audit it once."""
    from healthqa.demo import DemoOptions, generate

    opts = DemoOptions(persons=persons, seed=seed, as_of=as_of)
    # a new platform gets a new audit store: old watermarks would hide the new data
    (dir / "audit.db").unlink(missing_ok=True)
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("生成档案 generating archives", total=persons)
        result = generate(dir, opts, progress=lambda done, total: progress.update(task, completed=done))
    out.print(f"[bold]模拟平台已生成 synthetic platform built[/] in {time.perf_counter() - t0:.1f}s: {dir.resolve()}")
    t = Table(show_header=True, title_justify="left")
    t.add_column("标准表 table")
    t.add_column("行数 rows", justify="right")
    for k, v in result.counts.items():
        t.add_row(k, f"{v:,}")
    out.print(t)
    truth = result.folder / "truth"
    out.print(f"真值 truth: {truth}/defects.csv ({result.truth['defects']:,} defects), "
              f"duplicate_pairs.csv ({result.truth['duplicate_pairs']:,} pairs), "
              f"hard_negatives.csv ({result.truth['hard_negatives']:,} pairs)", highlight=False)
    out.print(f"配置 configuration: {result.config}", highlight=False)
    code = nightly(_load(result.config))
    out.print(f"稽核库 audit store: {result.folder / 'audit.db'}", highlight=False)
    # the demo's data carries defects on purpose: failing rules are its point, not an error
    raise typer.Exit(2 if code == 2 else 0)


@users_app.command("add")
@user_errors
def users_add(
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Option("--role", help="steward | qc_manager | engineer | admin")],
    config: ConfigOpt,
):
    """添加用户 / add a user of the console."""
    from healthqa.store.users import add_user

    if role not in ("steward", "qc_manager", "engineer", "admin"):
        fail(f"--role: expected steward, qc_manager, engineer or admin, got {role!r}")
    store = AuditStore(_load(config).store.url)
    add_user(store, name, role)
    out.print(f"已添加用户 user added: {name} ({role})")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("已中断 interrupted")
        sys.exit(130)
