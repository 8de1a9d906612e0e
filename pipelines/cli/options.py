"""What the commands' options share: ``--config``, times, output files, yes/no values for a flag
pair, and help that shows a plain flag without a type."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperOption

from . import click_errors, fail

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="configuration file (YAML)")]

_TRUE, _FALSE = ("yes", "y", "true", "t", "on", "1"), ("no", "n", "false", "f", "off", "0")


class FlagValues(TyperCommand):
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
                    raise click_errors.UsageError(f"{name}: expected yes or no, got {value!r}", ctx)
                a = pairs[name][0] if v in _TRUE else pairs[name][1]
            out.append(a)
        return super().parse_args(ctx, out)


_option_type = TyperOption.display_type_rich


def _flag_type(self, ctx):
    """A plain flag (--overdue, --pdf, -h) takes no value, but typer's help shows it as ``<bool>`` as
    if it wanted one; only options that take a value show what they take."""
    return None if self.is_flag and self.metavar is None else _option_type(self, ctx)


TyperOption.display_type_rich = _flag_type  # typer offers no hook for it: every command's help goes through here


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
