"""The ``healthqa`` command line (the contract in the README and docs/design.md).

Exit codes: 0 all good; 1 the audit ran and found failures; 2 bad usage, bad configuration or an
unreachable source, always with a one-line reason on stderr and never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup, TyperOption

try:  # typer >= 0.24 carries its own copy of click and does not re-export its usage errors
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - typer on top of click
    from click import exceptions as _click_errors

from healthqa import __version__
from healthqa import config as config_mod
from healthqa.errors import HealthqaError, SourceError
from healthqa.store import AuditStore

# `healthqa` with no arguments prints help; click >= 8.2 signals that with a usage error subclass
_HELP_REQUESTS = tuple(filter(None, [getattr(_click_errors, "NoArgsIsHelpError", None)]))
_TRUE, _FALSE = ("yes", "y", "true", "t", "on", "1"), ("no", "n", "false", "f", "off", "0")


@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except _HELP_REQUESTS:
        raise
    except _click_errors.UsageError as e:
        where = e.ctx.command_path if e.ctx else "healthqa"
        fail(f"{e.format_message()} (see `{where} -h`)", e.exit_code)


class _Group(TyperGroup):
    """Usage errors (a missing option, a mistyped command or value) are one line on stderr like every
    other error, instead of click's framed usage block."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with _one_line_usage_errors():
            return super().invoke(ctx)


class _Command(TyperCommand):
    """A boolean flag pair also takes a value, for scripts and schedulers that pass one:
    ``--incremental=yes`` is ``--incremental``, ``--incremental=no`` is ``--full`` (and the reverse
    for ``--full=…``); yes/no, true/false, on/off, 1/0."""

    def parse_args(self, ctx, args):
        pairs: dict[str, tuple[str, str]] = {}
        for p in self.params:
            if getattr(p, "is_flag", False) and p.secondary_opts:
                pairs |= dict.fromkeys(p.opts, (p.opts[0], p.secondary_opts[0]))
                pairs |= dict.fromkeys(p.secondary_opts, (p.secondary_opts[0], p.opts[0]))
        out = []
        for a in args:
            name, eq, value = a.partition("=")
            if eq and name in pairs:
                v = value.strip().lower()
                if v not in _TRUE + _FALSE:
                    raise _click_errors.UsageError(f"{name}: expected yes or no, got {value!r}", ctx)
                a = pairs[name][0] if v in _TRUE else pairs[name][1]
            out.append(a)
        return super().parse_args(ctx, out)


_option_type = TyperOption.display_type_rich


def _flag_type(self, ctx):
    """A plain flag (--overdue, --pdf, -h) takes no value, but typer's help shows it as ``<bool>`` as
    if it wanted one; only options that take a value show what they take."""
    return None if self.is_flag and self.metavar is None else _option_type(self, ctx)


TyperOption.display_type_rich = _flag_type  # typer offers no hook for it: every command's help goes through here

_HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(name="healthqa", cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings=_HELP,
                  help="healthqa：区域卫生信息平台数据质量与完整性稽核 / data-quality auditing for regional health platforms")
sources_app = typer.Typer(no_args_is_help=True, context_settings=_HELP, help="数据源 / sources")
run_app = typer.Typer(no_args_is_help=True, context_settings=_HELP, help="运行稽核 / run an audit")
users_app = typer.Typer(no_args_is_help=True, context_settings=_HELP, help="用户 / users")
findings_app = typer.Typer(context_settings=_HELP,
                           help="维护问题 / maintenance findings: list, acknowledge, assign, note, resolve")
app.add_typer(sources_app, name="sources")
app.add_typer(run_app, name="run")
app.add_typer(users_app, name="users")
app.add_typer(findings_app, name="findings")


def _consoles() -> tuple[Console, Console]:
    """A terminal gets its own width, COLUMNS when set wins, and a pipe or a log file gets wide
    tables instead of 80 columns — and lines that are never broken: a summary line stays one line
    for grep and for whoever reads the log (tables keep their columns)."""
    columns = os.environ.get("COLUMNS", "").isdigit()
    pipe = not sys.stdout.isatty() and not columns
    return (Console(width=160 if pipe else None, soft_wrap=pipe),
            Console(stderr=True, soft_wrap=not sys.stderr.isatty() and not columns))


out, err = _consoles()

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="configuration file (YAML)")]


def fail(message: str, code: int = 2) -> NoReturn:
    for line in str(message).splitlines() or [""]:
        # the message is plain text: brackets in it (a path, "[yes|no]") are not markup
        err.print(Text("错误 error: ", style="bold red") + Text(line), highlight=False, soft_wrap=True)
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


def time_option(value: str | None, option: str, *, whole_day: bool = False) -> datetime | None:
    """A time given on the command line, in the platform's local time. ``whole_day``: a date alone is
    the end of that day (an upper bound: ``--until 2026-11-20`` takes the 20th's rows too)."""
    from healthqa.connectors.sampling import TIME_EXAMPLES, window_bound

    if value is None:
        return None
    try:
        return window_bound(value, upper=whole_day)
    except ValueError:
        fail(f"{option}: 无法识别的时间 not a date or time: {value!r}; 格式 expected {TIME_EXAMPLES}")


def _load(path: Path) -> config_mod.Config:
    return config_mod.load(path)


@contextmanager
def progress(label: str, total: int) -> Iterator[Callable[..., None]]:
    """The progress bar of every long command: on stderr, gone when done, and none when stderr is a
    log file or a pipe (there it would only leave blank lines). Yields ``step(what, done=None)``: one
    more unit done (or ``done`` units in all), now working on ``what``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=total)

        def step(what: str | None = None, done: int | None = None) -> None:
            bar.update(task, advance=None if done is not None else 1, completed=done,
                       description=f"{label}: {what}" if what else label)
        yield step


def writable_file(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written, before any work is done."""
    if path is None:
        return
    folder = path.parent
    if path.is_dir():
        fail(f"无法写入 cannot write {option} {path}: 这是一个目录 it is a folder, expected a file")
    if not folder.is_dir():
        fail(f"无法写入 cannot write {option} {path}: 目录不存在 folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"无法写入 cannot write {option} {path}: 没有写权限 permission denied")


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="print the version")] = False):
    global out, err
    out, err = _consoles()  # per invocation: COLUMNS may differ between invocations in one process
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
    """Run one nightly audit (the Prefect flow, on a local Prefect API unless PREFECT_API_URL
    names a server) and print what it found. The audit's exit code: 0 it ran in full, whatever the
    data looked like (failing rules are findings, not a failed audit); 1 part of it could not run
    (a source, a table or a stage)."""
    from .nightly_lock import held_for_run
    from .prefect_api import warm

    with held_for_run(cfg):  # a second night is refused in a second, before Prefect starts or a flow runs
        warm()  # Prefect's local API boots while the audit's modules load
        from .flows import run_nightly_flow

        with err.status("夜间稽核 nightly audit …", spinner="dots") if err.is_terminal else contextlib.nullcontext():
            res = run_nightly_flow(str(cfg.path)).result
    from healthqa.expectations.runner import format_pct

    code = _render_checks(res.checks)
    t = Table(title=f"夜间稽核 nightly audit (run {res.run_id}, {res.status})", title_justify="left")
    for col in ("数据源 source", "标准表 table", "抽样 sampling", "行数 rows", "通过 pass", "不通过 fail",
                "错误 error", "最差规则 worst rule"):
        t.add_column(col, overflow="fold")
    for name, v in res.validations.items():
        for tv in v.tables:
            status = [r.status for r in tv.results]
            worst = max((r for r in tv.results if r.status == "fail"), key=lambda r: r.violation_pct or 0, default=None)
            t.add_row(name, tv.table, tv.sampling.get("method", ""), f"{tv.rows:,}", str(status.count("pass")),
                      str(status.count("fail")), str(status.count("error")),
                      f"{worst.rule.id} {format_pct(worst.violation_pct)}" if worst else "")
    for name, reason in res.failures.items():
        t.add_row(name, "", "", "", "", "", "", Text(reason, style="red"))
    out.print(t)
    if res.dedup:
        out.print(_dedup_line(res.dedup.stats, res.dedup.incremental), highlight=False)
    if res.assessment:
        _print_assessment(res.assessment)
    for d in res.deliveries:
        style = "green" if d.ok else "red"
        out.print(Text(f"发布 published via {d.channel}: {'成功 ok' if d.ok else '失败 failed'} ({d.detail}, "
                       f"{d.attempts} attempt(s))", style=style))
    if res.report:
        out.print(f"[bold]稽核报告 report:[/] {res.report}", highlight=False)
    return 1 if res.failures or code else 0


def _dedup_line(st: dict, incremental: bool) -> str:
    """A duplicate scan in one line. A night's matches are those of the archives it compared (new,
    changed); its clusters are all the open ones, the night's and the earlier runs'."""
    if incremental and "compared" in st:
        removed = f", 删除 {st['removed']:,} removed" if st.get("removed") else ""
        return (f"重复档案 duplicates (incremental): 比对新增或变更档案 {st['compared']:,} new or changed archives "
                f"compared{removed}; 新匹配 {st['matches']:,} new matches, 待审核 {st['review']:,} to review; "
                f"现有聚类 {st['clusters']:,} open clusters among {st['records']:,} archives")
    return (f"重复档案 duplicates ({'incremental' if incremental else 'full'}): {st['matches']:,} matches, "
            f"{st['review']:,} to review, {st['clusters']:,} clusters among {st['records']:,} archives")


def _print_assessment(a) -> None:
    s = a.summary()
    conf, rate = s["overall_conformance"], s["overall_pass_rate"]
    out.print(f"得分 scores: 数据符合率 conformance {'—' if conf is None else f'{conf:.2f}%'} · "
              f"规则通过率 checks passed {'—' if rate is None else f'{rate:.1f}%'}; "
              f"问题 findings: 新增 new {s['new']} · 持续 persisting {s['persisting']} · "
              f"重新出现 reopened {s['reopened']} · 已解决 resolved {s['resolved']}", highlight=False)


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
    from healthqa.expectations.runner import format_pct

    return ("↑ +" if d > 0 else "↓ −") + format_pct(abs(d))


def _validation_table(run, source: str) -> Table:
    """Every rule with what it means and its threshold, so a pass at 0.9 % beside a fail at 0.13 %
    explains itself. Rule ids are never cut: at narrow widths they fold onto the next line."""
    from healthqa.expectations.runner import format_pct

    t = Table(title=f"校验结果 validation (run {run.run_id}, source {source})", title_justify="left")
    # headers in two lines (Chinese over English) so that short numbers get narrow columns
    t.add_column("规则 rule\n含义 meaning", overflow="fold")
    t.add_column("表 table\n维度 dimension", overflow="fold")
    for col in ("违规\nviolations", "适用\nrows", "比例\n%", "阈值\nthreshold"):
        t.add_column(col, justify="right", overflow="fold")
    t.add_column("状态\nstatus", overflow="fold")
    t.add_column("较上次\nchange", justify="right", overflow="fold")
    had_before = bool(run.previous)
    for tv, r in run.results:
        rule = Text.assemble((r.rule.id, "bold"), "\n", (r.rule.zh, "dim"))
        status = Text.from_markup(STATUS[r.status])
        if r.error:
            status.append(" " + r.error)
        before = run.previous.get((tv.source, tv.table, r.rule.id))
        t.add_row(rule, f"{tv.table}\n{r.rule.dimension} {r.rule.severity}", f"{r.violations:,}", f"{r.denominator:,}",
                  format_pct(r.violation_pct), f"≤{format_pct(r.rule.threshold)}", status,
                  _change(r.violation_pct, before, had_before))
    return t


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

    from .prefect_api import warm

    since, until = time_option(since_text, "--since"), time_option(until_text, "--until", whole_day=True)
    writable_file(json_out, "--json")
    cfg = _load(config)
    if since and until and since >= until:
        fail("--since 须早于 must be before --until")
    cfg.require_source(source, table or ())  # a mistyped name is refused before anything starts
    from .scope import require_matches, suite_tables

    tables = table or suite_tables(cfg, source)
    # filters that match nothing are refused before Prefect, the rule engine or a flow run starts
    # (counted at the source: a second)
    require_matches(cfg, source, tables, tuple(org or ()), since, until)
    warm()  # Prefect's local API boots while the audit's modules load
    from .flows import run_validate_flow
    from .validate import ValidationRequest

    with progress("校验 validating", len(tables)) as step:
        run = run_validate_flow(str(cfg.path), ValidationRequest(source, table or (), org or (), since, until),
                                on_table=step, filters_checked=True)
    out.print(_validation_table(run, source))
    counts = {s: sum(1 for _, r in run.results if r.status == s) for s in STATUS}
    out.print(f"通过 {counts['pass']}，不通过 {counts['fail']}，不适用 {counts['not_applicable']}，错误 {counts['error']} "
              f"(rows read: {', '.join(f'{tv.table} {tv.rows:,}' for tv in run.tables)})", highlight=False)
    if run.assessment:
        _print_assessment(run.assessment)
    if json_out:
        doc = {"run_id": run.run_id, "scope": run.scope,
               "results": [r.as_json() for _, r in run.results]}
        json_out.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        out.print(f"JSON: {json_out}", highlight=False)
    raise typer.Exit(1 if run.failed else 0)


DEDUP_STEPS = ["normalising", "estimating u from random pairs", "blocking and comparing", "training (EM)",
               "classifying", "clustering"]


@app.command(cls=_Command)
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
    from healthqa.dedup.merge import accepted_merges

    from .dedup import run_dedup

    writable_file(json_out, "--json")
    cfg = _load(config)
    with AuditStore(cfg.store.url) as store:
        with progress("查重 dedup", len(DEDUP_STEPS)) as step:
            run = run_dedup(cfg, store, source=source, spec_path=str(spec) if spec else None, truth=truth,
                            incremental=incremental,
                            progress=lambda what: step(what, done=DEDUP_STEPS.index(what) if what in DEDUP_STEPS else 0))
        merges = accepted_merges(store, run.source) if merge_instructions else None
    st = run.result.stats
    t = Table(title=f"重复档案筛查 dedup (run {run.run_id}, source {run.source}{', incremental' if run.incremental else ''})",
              title_justify="left")
    t.add_column("项目 item")
    t.add_column("数量 value", justify="right")
    night = [("本次比对的新增或变更档案 new or changed archives compared", st["compared"]),
             ("已删除档案 archives removed", st["removed"])] if "compared" in st else []
    for label, value in (("档案 archives", st["records"]), *night, ("候选对 candidate pairs", st["candidate_pairs"]),
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
        run.write_json(json_out)
        out.print(f"JSON: {json_out}", highlight=False)
    if merges is not None:
        from healthqa.dedup.merge import write_all

        files = write_all(merges, merge_instructions)
        out.print(f"合并指令 merge instructions ({len(merges)} accepted merges): "
                  + ", ".join(str(f) for f in files.values()), highlight=False)


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
        with AuditStore(f"sqlite:///{(folder / 'audit.db').resolve()}", upgrade=False) as old:
            counts = old.counts()
        lost = "; 将丢失 would lose " + ", ".join(f"{label} {counts.get(t, 0):,}" for t, label in AT_STAKE)
    fail(f"目录已有模拟平台 {folder} already holds a platform ({', '.join(present)}){lost}; "
         f"加 --force 重建 rebuild with --force, or choose another --dir")


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
        from .prefect_api import check_server

        check_server()
    from healthqa.demo import DemoOptions, generate

    opts = DemoOptions(persons=persons, seed=seed, as_of=as_of)
    # a new platform gets a new audit store: old watermarks would hide the new data
    (dir / "audit.db").unlink(missing_ok=True)
    t0 = time.perf_counter()
    with progress("生成档案 generating archives", persons) as step:
        result = generate(dir, opts, progress=lambda done, total: step(done=done))
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
    reports = sorted(Path(_load(result.config).reports.out_dir).glob("run-*.html"), key=lambda p: p.stat().st_mtime)
    if reports:
        out.print(f"[bold]先打开稽核报告 open the report first:[/] {reports[-1]}", highlight=False)
    # the demo's data carries defects on purpose: failing rules are its point, not an error
    raise typer.Exit(code)


@app.command()
@user_errors
def schedule(config: ConfigOpt):
    """按计划运行 / serve the nightly audit and the quarterly report on their schedules (keeps running).

    Like `prefect serve`: the deployments `nightly-audit/nightly` and `quarterly-report/quarterly` run
    on the cron strings of `orchestration` in its time zone (`dedup-scan/dedup-scan` and
    `adhoc-validate/adhoc-validate` on demand), against the Prefect server of PREFECT_API_URL, or
    without one on a local Prefect API started for the command (its run history in PREFECT_HOME) —
    stop with Ctrl-C."""
    from .nightly_lock import serving_lock
    from .prefect_api import check_server, local_api, server_url

    cfg = _load(config)
    with serving_lock(cfg):  # a second schedule is refused before anything starts
        api = local_api(ephemeral=False)  # a full server: its scheduler turns the cron strings into runs
        if api is None:  # before the flows load: a server that does not answer is said in a second or two
            check_server(hint=", or unset it: the command then starts a local Prefect server")
        from prefect import serve

        from .flows import deployments

        deps = deployments(cfg)
        if api is not None:
            api.wait()
        _print_deployments(deps)
        where = f"本地 Prefect API local Prefect API {api.url}" if api else \
            f"Prefect 服务器 server {server_url()}"  # the environment's or a Prefect profile's
        out.print(f"按计划运行中 serving on {where} — Ctrl-C 停止 stops", highlight=False)
        serve(*deps, print_starting_message=False)  # returns on Ctrl-C or SIGTERM, its runs stopped
    out.print("已停止 stopped", highlight=False)


def _print_deployments(deps) -> None:
    for d in deps:
        when = f"{d.schedules[0].schedule.cron}  ({d.schedules[0].schedule.timezone})" if d.schedules else "按需 on demand"
        out.print(f"部署 deployment: {d.flow_name}/{d.name}  {when}", highlight=False)


@app.command()
@user_errors
def deploy(config: ConfigOpt,
           pool: Annotated[str, typer.Option("--pool", help="process work pool (created if missing)")] = "healthqa"):
    """部署到 Prefect 服务器 / register the deployments on a Prefect server for a work pool's worker.

    The server is the one of PREFECT_API_URL (`prefect server start` prints it); then start a worker
    with `prefect worker start --pool POOL` on a machine where healthqa is installed. The nightly audit
    and the quarterly report keep their cron schedules; dedup-scan and adhoc-validate run on demand."""
    from .prefect_api import check_server

    if not os.environ.get("PREFECT_API_URL"):
        fail("PREFECT_API_URL is not set: point it at the Prefect server, e.g. "
             "PREFECT_API_URL=http://127.0.0.1:4200/api (printed by `prefect server start`)")
    cfg = _load(config)
    check_server()  # before the flows load (seconds): a server that does not answer is one line at once
    from .flows import deploy_to_pool, deployments

    try:
        deploy_to_pool(cfg, pool)
    except Exception as e:  # noqa: BLE001 - an unreachable or refusing server is the user's to fix, in one line
        fail(f"Prefect 服务器 server at {os.environ['PREFECT_API_URL']}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    _print_deployments(deployments(cfg))
    out.print(f"工作池 work pool: {pool} — start a worker: prefect worker start --pool {pool}", highlight=False)


@app.command()
@user_errors
def serve(config: ConfigOpt,
          host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port to listen on")] = 8000):
    """控制台 / the web console: the steward's review queue, the QC dashboard, the engineer's validation."""
    import uvicorn

    cfg = _load(config)  # a bad configuration or store is one line here, before the server starts
    AuditStore(cfg.store.url).close()
    os.environ["HEALTHQA_CONFIG"] = str(config.resolve())
    # the application loads for a few seconds (Great Expectations, pandas): say so, then say when it answers
    err.print(f"控制台启动中 starting the console: http://{host}:{port}/  (Ctrl-C 停止 to stop)", highlight=False)
    # started by name: the console sits above pipelines (import-linter layers), so the CLI never imports it
    config_ = uvicorn.Config("healthqa.console.app:create_app", factory=True, host=host, port=port, log_level="warning",
                             access_log=False)
    server = uvicorn.Server(config_)
    _startup = server.startup

    async def startup(sockets=None):
        await _startup(sockets)
        if server.started:
            err.print(f"控制台已就绪 the console is ready: http://{host}:{port}/", highlight=False)

    server.startup = startup
    server.run()


@app.command()
@user_errors
def runs(config: ConfigOpt,
         last: Annotated[int, typer.Option("--last", min=1, max=1000, help="how many runs, newest first")] = 20):
    """运行历史 / the run history: when, what, state, duration, rows read, rules failed, what could not run."""
    cfg = _load(config)
    t = Table(title="运行历史 runs", title_justify="left")
    for col, kw in (("# id", {"justify": "right"}), ("类型 kind", {}), ("开始 started", {}), ("耗时 took", {"justify": "right"}),
                    ("状态 state", {}), ("范围 scope", {}), ("读取行 rows", {"justify": "right"}),
                    ("未通过 failed", {"justify": "right"}), ("未能运行 could not run", {})):
        t.add_column(col, overflow="fold", **kw)
    style = {"success": "green", "partial": "yellow", "failed": "red", "running": "cyan"}
    with AuditStore(cfg.store.url) as store:
        for r in store.runs.recent(last):
            results = store.results.of_run(r.id)
            rows: dict[tuple[str, str], int] = {}
            for x in results:  # a table's rows read: the most any of its rules applied to
                rows[(x.source, x.table)] = max(rows.get((x.source, x.table), 0), x.denominator)
            took = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
            what = _scope_text(r.scope or {})
            t.add_row(str(r.id), r.kind, f"{r.started_at:%Y-%m-%d %H:%M:%S}", "—" if took is None else f"{took:,.0f}s",
                      Text(r.status, style=style.get(r.status, "")), what, f"{sum(rows.values()):,}" if results else "—",
                      str(sum(x.status == "fail" for x in results)) if results else "—", Text(r.message or ""))
    out.print(t)


def _scope_text(scope: dict) -> str:
    """A run's scope in one short cell: its source(s) and tables, then the engineer's institutions
    and time window when it had them (a scoped run must not look like a whole-table one)."""
    what = scope.get("source") or ",".join(scope.get("sources") or [])
    if scope.get("tables"):
        what += ": " + ",".join(scope["tables"])
    if scope.get("orgs"):
        what += " · 机构 org " + ",".join(scope["orgs"])
    since, until = scope.get("since"), scope.get("until")
    if since or until:
        what += f" · {_short_time(since, '…', datetime.min.time())}→{_short_time(until, '…', datetime.max.time())}"
    return what


def _short_time(iso: str | None, missing: str, whole_day) -> str:
    """A window bound as a user types it: the date alone when the bound is ``whole_day`` (the start of
    the day for --since, its end for --until: ``time_option``)."""
    if not iso:
        return missing
    when = datetime.fromisoformat(iso)
    if when.time() == whole_day:
        return f"{when:%Y-%m-%d}"
    return f"{when:%Y-%m-%d %H:%M}" if when.second == 0 and not when.microsecond else f"{when:%Y-%m-%d %H:%M:%S}"


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
    cfg = _load(config)
    folder = out_dir or Path(cfg.reports.out_dir)
    with AuditStore(cfg.store.url) as store:
        if quarter is not None:
            written = quarterly.write(cfg, store, quarterly.parse_quarter(quarter), folder, pdf=pdf)
        else:
            run = run if run is not None else run_report.default_run(store)
            if run is None:
                fail("稽核库中还没有评分的运行 no scored run in the audit store yet: run `healthqa run nightly` first")
            written = run_report.write(cfg, store, run, folder, pdf=pdf)
    out.print(f"HTML: {written.html}", highlight=False)
    if written.pdf:
        out.print(f"PDF: {written.pdf}", highlight=False)


FINDING_STATES = ("open", "new", "acknowledged", "reopened", "resolved")


@findings_app.callback(invoke_without_command=True)
@user_errors
def findings_list(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="configuration file (YAML)")] = None,
    state: Annotated[str | None, typer.Option("--state", help="open (every unresolved state) | new | acknowledged | "
                                                          "reopened | resolved")] = "open",
    level: Annotated[str | None, typer.Option("--level", help="一级 | 二级 | 提示")] = None,
    system: Annotated[str | None, typer.Option("--system", help="system code among the fourteen (1-14)")] = None,
    org: Annotated[str | None, typer.Option("--org", help="institution code")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="only findings past a response or fix deadline")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write them to this file (.json or .csv)")] = None,
):
    """维护问题清单 / list maintenance findings, most urgent first."""
    if ctx.invoked_subcommand is not None:
        return
    from healthqa.reports.findings import location
    from healthqa.reports.institutions import registry
    from healthqa.reports.publish import export

    if config is None:
        fail("--config is required (see `healthqa findings -h`)")
    if state and state not in FINDING_STATES:
        fail(f"--state: expected one of {', '.join(FINDING_STATES)}, got {state!r}")
    if level and level not in ("一级", "二级", "提示"):
        fail(f"--level: expected 一级, 二级 or 提示, got {level!r}")
    writable_file(json_out, "--json")
    cfg = _load(config)
    with AuditStore(cfg.store.url) as store:
        rows = store.findings.list(state=state, level=level, system=system, org=org, overdue=overdue)
    names = registry(cfg)
    now_ = datetime.now()
    t = Table(title=f"维护问题 findings ({len(rows)})", title_justify="left")
    for col, kw in (("# id", {"justify": "right"}), ("级别 level", {}), ("状态 state", {}), ("问题 finding", {}),
                    ("位置 where", {}), ("违规/检查 rows", {"justify": "right"}), ("响应期限 response", {}),
                    ("修复期限 fix", {})):
        t.add_column(col, overflow="fold", **kw)
    for f in rows:
        due = f.overdue(now_)
        t.add_row(str(f.id), f.level, f.state, f"{f.title_zh}\n[dim]{f.title_en}[/]", location(f, names),
                  f"{f.violations:,}/{f.rows_checked:,}" if f.rows_checked else "—",
                  Text(_when(f.response_due_at) + (" 逾期 overdue" if due["response"] else ""),
                       style="red" if due["response"] else ""),
                  Text(_when(f.fix_due_at) + (" 逾期 overdue" if due["fix"] else ""), style="red" if due["fix"] else ""))
    out.print(t)
    if json_out:
        export(rows, json_out)
        out.print(f"{json_out.suffix.lstrip('.').upper() or 'JSON'}: {json_out}", highlight=False)


def _when(v: datetime | None) -> str:
    return v.strftime("%m-%d %H:%M") if v else "—"


def _actor() -> str:
    """Who changes a finding from a terminal: the operating-system user (written to the audit log)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


FindingId = Annotated[int, typer.Argument(help="finding id (see `healthqa findings`)")]


@findings_app.command("ack")
@user_errors
def findings_ack(finding_id: FindingId, config: ConfigOpt):
    """确认问题 / acknowledge a finding (stops its response clock)."""
    with AuditStore(_load(config).store.url) as store:
        f = store.findings.acknowledge(finding_id, _actor())
    out.print(f"#{f.id} 已确认 acknowledged by {f.acknowledged_by}", highlight=False)


@findings_app.command("assign")
@user_errors
def findings_assign(finding_id: FindingId, assignee: Annotated[str, typer.Argument(help="who works on it")],
                    config: ConfigOpt):
    """分派问题 / assign a finding to someone."""
    with AuditStore(_load(config).store.url) as store:
        f = store.findings.assign(finding_id, assignee, _actor())
    out.print(f"#{f.id} 已分派 assigned to {f.assignee}", highlight=False)


@findings_app.command("note")
@user_errors
def findings_note(finding_id: FindingId, text: Annotated[str, typer.Argument(help="the note")], config: ConfigOpt):
    """备注 / add a note to a finding."""
    with AuditStore(_load(config).store.url) as store:
        f = store.findings.note(finding_id, text, _actor())
    out.print(f"#{f.id} 已备注 noted ({len(f.notes or [])} note(s))", highlight=False)


@findings_app.command("resolve")
@user_errors
def findings_resolve(finding_id: FindingId, config: ConfigOpt,
                     note: Annotated[str | None, typer.Option("--note", help="why (e.g. not a defect)")] = None):
    """手工关闭 / resolve a finding by hand; the next run that sees it again reopens it."""
    with AuditStore(_load(config).store.url) as store:
        f = store.findings.resolve(finding_id, _actor(), note)
    out.print(f"#{f.id} 已关闭 resolved by {f.resolved_by}", highlight=False)


UserName = Annotated[str, typer.Argument(help="user name (letters, digits, . _ -)")]


def _new_password() -> str:
    """Asked twice, never echoed and never on the command line (it would stay in the shell history
    and the process list); piped on standard input for scripts."""
    if not sys.stdin.isatty():
        lines = sys.stdin.read().splitlines()
        return lines[0] if lines else ""
    return typer.prompt("密码 password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
@user_errors
def users_add(name: UserName, config: ConfigOpt,
              role: Annotated[str, typer.Option("--role", help="steward | qc_manager | engineer | admin")]):
    """添加用户 / add a user of the console (the password is asked for, never given as an option)."""
    from healthqa.store.users import ROLES, normalise_name

    if role not in ROLES:
        fail(f"--role: expected {', '.join(ROLES)}, got {role!r}")
    cfg = _load(config)
    normalise_name(name)  # refuse a bad name before asking for a password
    with AuditStore(cfg.store.url) as store:
        u = store.users.add(name, role, _new_password(), actor=_actor())
    out.print(Text(f"已添加用户 user added: {u.name} ({u.role})"))


@users_app.command("passwd")
@user_errors
def users_passwd(name: UserName, config: ConfigOpt):
    """修改密码 / set a user's password."""
    with AuditStore(_load(config).store.url) as store:
        store.users.get(name)  # an unknown name is refused before a password is asked for
        store.users.passwd(name, _new_password(), actor=_actor())
    out.print(Text(f"已修改密码 password changed: {name}"))


@users_app.command("disable")
@user_errors
def users_disable(name: UserName, config: ConfigOpt):
    """停用用户 / disable a user (kept, with their decisions, in the audit log)."""
    with AuditStore(_load(config).store.url) as store:
        store.users.disable(name, actor=_actor())
    out.print(Text(f"已停用 disabled: {name}"))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("已中断 interrupted")
        sys.exit(130)
    finally:
        # the command's work is done (stores committed, files written, exit handlers still to run):
        # the interpreter's last garbage collections over a night's heap of objects cost a second
        # or more of nothing at exit
        gc.freeze()
