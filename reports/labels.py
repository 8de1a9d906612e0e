"""What a user reads for a run's kind, state and scope, and for a canonical table: Chinese first, the
code after it. One implementation for the CLI, the console and the reports (a scope must never show
as a Python dict: ``sources=['drc', …]``)."""

from __future__ import annotations

import re
from datetime import datetime

from healthqa import canonical

# a run's states (store/runs.py), and a console job's "done" and "interrupted" (store/jobs.py)
STATUS_ZH = {"success": "完成", "partial": "部分完成", "failed": "失败", "running": "运行中", "crashed": "中断",
             "done": "完成", "interrupted": "中断"}
KIND_ZH = {"nightly": "夜间稽核", "validate": "专项校验", "dedup": "重复档案筛查"}
EVERYTHING = "全部 everything"


def status_text(status: str, sep: str = " ") -> str:
    """``完成 success``: a run's state, Chinese first (``sep="\n"``: over each other, in a narrow column)."""
    return f"{STATUS_ZH[status]}{sep}{status}" if status in STATUS_ZH else status


def kind_text(kind: str, sep: str = " ") -> str:
    return f"{KIND_ZH[kind]}{sep}{kind}" if kind in KIND_ZH else kind


def table_text(name: str) -> str:
    """``门诊就诊记录 outpatient_visit``: the canonical model's Chinese title, then the table's name."""
    try:
        title = canonical.table(name).title
    except KeyError:
        return name  # a table the model does not know is shown as it was given
    zh = re.split(r"\s+(?=[A-Za-z])", title, maxsplit=1)[0]  # the title's Chinese part ("… resident archive")
    return f"{zh} {name}" if zh else name


def scope_text(scope: dict | None) -> str:
    """A run's scope in one short line: its source(s) and tables, then the engineer's institutions and
    time window when it had them (a scoped run must not look like a whole-table one)."""
    scope = scope or {}
    sources = [scope["source"]] if scope.get("source") else list(scope.get("sources") or [])
    parts = []
    if sources:
        parts.append("数据源 " + ", ".join(sources))
    if scope.get("tables"):
        parts.append("表 " + ", ".join(table_text(t) for t in scope["tables"]))
    if scope.get("orgs"):
        parts.append("机构 " + ", ".join(scope["orgs"]))
    since, until = scope.get("since"), scope.get("until")
    if since or until:
        parts.append(f"{_short_time(since, '…', datetime.min.time())}→{_short_time(until, '…', datetime.max.time())}")
    return " · ".join(parts) or EVERYTHING


def _short_time(iso: str | datetime | None, missing: str, whole_day) -> str:
    """A window bound as a user types it: the date alone when the bound is ``whole_day`` (the start of
    the day for --since, its end for --until: ``pipelines.cli.options.time_option``)."""
    if not iso:
        return missing
    when = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso)  # the console's job keeps datetimes
    if when.time() == whole_day:
        return f"{when:%Y-%m-%d}"
    return f"{when:%Y-%m-%d %H:%M}" if when.second == 0 and not when.microsecond else f"{when:%Y-%m-%d %H:%M:%S}"
