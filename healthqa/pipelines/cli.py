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
from ..connectors import config as config_mod
from ..connectors.errors import HealthqaError, SourceError
from ..connectors.store import AuditStore

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="healthqa：区域卫生信息平台数据质量与完整性稽核 / data-quality auditing for regional health platforms")
sources_app = typer.Typer(no_args_is_help=True, help="数据源 / sources")
run_app = typer.Typer(no_args_is_help=True, help="运行稽核 / run an audit")
users_app = typer.Typer(no_args_is_help=True, help="用户 / users")
app.add_typer(sources_app, name="sources")
app.add_typer(run_app, name="run")
app.add_typer(users_app, name="users")

out = Console()
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
    """Run one nightly audit with progress, print what it did; 2 if any source failed."""
    from .nightly import run_nightly

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("抽样 sampling", total=sum(len(s.tables) for s in cfg.sources.values()))
        res = run_nightly(cfg, on_table=lambda tr: progress.advance(task))
    code = _render_checks(res.checks)
    t = Table(title=f"抽样结果 sampled (run {res.run_id})", title_justify="left")
    for col in ("数据源 source", "标准表 table", "方式 method", "行数 rows", "机构数 orgs", "状态 status"):
        t.add_column(col)
    for r in res.reads:
        t.add_row(r.source, r.table, r.method, f"{r.rows:,}", str(len(r.by_org)) if r.by_org else "",
                  f"[red]{r.error}[/]" if r.error else "[green]正常 ok[/]")
    out.print(t)
    return max(code, 2 if res.failed else 0)


@run_app.command("nightly")
@user_errors
def run_nightly(config: ConfigOpt):
    """立即执行一次夜间稽核 / run one nightly audit now."""
    raise typer.Exit(nightly(_load(config)))


@app.command()
@user_errors
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="where to build the synthetic platform")] = Path("healthqa-demo"),
    persons: Annotated[int, typer.Option("--persons", min=100, help="resident archives to generate")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed, same platform)")] = 20251125,
    as_of: Annotated[Optional[datetime], typer.Option("--as-of", help="the platform's 'now' (default: today 00:00)")] = None,
):
    """生成模拟镇海区平台并运行一次稽核 / build the synthetic Zhenhai platform and audit it once."""
    from ..connectors.demo import DemoOptions, generate

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
    raise typer.Exit(code)


@users_app.command("add")
@user_errors
def users_add(
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Option("--role", help="steward | qc_manager | engineer | admin")],
    config: ConfigOpt,
):
    """添加用户 / add a user of the console."""
    from ..connectors.store.users import add_user

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
