"""The ``healthqa`` command line (the contract in the README and docs/design.md).

This module holds the app, the policy that turns errors into exit codes and the progress bar. Each
command group is a module of its own that registers its commands on the app when imported (at the
end of this file); the Rich tables they print are built in ``render``, the options they share are in
``options``.

Exit codes: 0 all good; 1 what the command's result says (``NightlyResult.exit_code``: part of the
audit could not run; ``ValidationRun.exit_code``: a rule failed or could not run); 2 bad usage, bad
configuration or an unreachable source, always with a one-line reason on stderr and never a
traceback. Only typer, Rich, the configuration and the audit store load with the command line, so
that a usage mistake is refused in a moment: each command imports the rest (Prefect, Great
Expectations, pandas) inside its body, when its arguments have been checked.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from typer.core import TyperGroup

try:  # typer >= 0.24 carries its own copy of click and does not re-export its usage errors
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - typer on top of click
    from click import exceptions as click_errors

from healthqa import __version__
from healthqa.errors import HealthqaError

# `healthqa` with no arguments prints help; click >= 8.2 signals that with a usage error subclass
_HELP_REQUESTS = tuple(filter(None, [getattr(click_errors, "NoArgsIsHelpError", None)]))
HELP = {"help_option_names": ["-h", "--help"]}


@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except _HELP_REQUESTS:
        raise
    except click_errors.UsageError as e:
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


def _consoles() -> tuple[Console, Console]:
    """A terminal gets its own width, COLUMNS when set wins, and a pipe or a log file gets wide
    tables instead of 80 columns — and lines that are never broken: a summary line stays one line
    for grep and for whoever reads the log (tables keep their columns)."""
    columns = os.environ.get("COLUMNS", "").isdigit()
    pipe = not sys.stdout.isatty() and not columns
    # no console markup: a string printed is shown as it is, whatever brackets a table name, a path or
    # a message holds (`T_GRDA[/]`); styles are given as Rich Text, never as markup in a string
    return (Console(width=160 if pipe else None, soft_wrap=pipe, markup=False),
            Console(stderr=True, soft_wrap=not sys.stderr.isatty() and not columns, markup=False))


class HealthqaApp(typer.Typer):
    """The app, and where its commands write (as Prefect's app holds its console): ``out`` and
    ``err``, Rich consoles on standard output and standard error, made again for each invocation."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.out, self.err = _consoles()

    def open_consoles(self) -> None:
        self.out, self.err = _consoles()  # COLUMNS may differ between invocations in one process


app = HealthqaApp(name="healthqa", cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings=HELP,
                  help="healthqa：区域卫生信息平台数据质量与完整性稽核 / data-quality auditing for regional health platforms")


def fail(message: str, code: int = 2) -> NoReturn:
    for line in str(message).splitlines() or [""]:
        # the message is plain text: brackets in it (a path, "[yes|no]") are not markup
        app.err.print(Text("错误 error: ", style="bold red") + Text(line), highlight=False, soft_wrap=True)
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


def actor() -> str:
    """Who changes a finding or an account from a terminal: the operating-system user (written to the
    audit log)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextmanager
def progress(label: str, total: int) -> Iterator[Callable[..., None]]:
    """The progress bar of every long command: on stderr, gone when done, and none when stderr is a
    log file or a pipe (there it would only leave blank lines). Yields ``step(what, done=None)``: one
    more unit done (or ``done`` units in all), now working on ``what``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=app.err, transient=True, disable=not app.err.is_terminal) as bar:
        task = bar.add_task(label, total=total)

        def step(what: str | None = None, done: int | None = None) -> None:
            bar.update(task, advance=None if done is not None else 1, completed=done,
                       description=f"{label}: {what}" if what else label)
        yield step


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="print the version")] = False):
    app.open_consoles()
    if version:
        app.out.print(f"healthqa {__version__}")
        raise typer.Exit(0)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        app.err.print("已中断 interrupted")
        sys.exit(130)
    finally:
        # the command's work is done (stores committed, files written, exit handlers still to run):
        # the interpreter's last garbage collections over a night's heap of objects cost a second
        # or more of nothing at exit
        gc.freeze()


# Each module registers its commands on the app. `healthqa -h` lists the commands in the order they
# were registered, then the command groups in theirs: these lines keep the order of the help.
# isort: off
from . import sources, run, users, tokens, findings  # noqa: E402, F401 - the command groups
from . import validate, dedup, demo, schedule, runs  # noqa: E402, F401 - the commands
# isort: on
