"""How findings print: a table on the terminal, one tab-separated line per finding in a pipe or a file."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table
from rich.text import Text

from healthqa import clock


def findings_table(rows, location, now: datetime) -> Table:
    """Findings with where they are (``location(finding)``), their deadlines (the missed ones red),
    who works on them and their notes."""
    t = Table(title=f"维护问题 findings ({len(rows)})", title_justify="left")
    for col, kw in (("# id", {"justify": "right"}), ("级别 level", {}), ("状态 state", {}), ("问题 finding", {}),
                    ("位置 where", {}), ("违规/检查 rows", {"justify": "right"}), ("响应期限 response", {}),
                    ("修复期限 fix", {}), ("负责人 assignee", {}), ("备注 notes", {})):
        t.add_column(col, overflow="fold", **kw)
    for f in rows:
        due = f.overdue(now)
        # the contract's severe damage asks for a 7×24 response
        level = Text(f.level) + (Text("\n7×24 应急", style="bold red") if f.emergency else Text(""))
        t.add_row(str(f.id), level, f.state, Text(f.title_zh) + Text(f"\n{f.subject} · {f.title_en}", style="dim"),
                  location(f), f"{f.violations:,}/{f.rows_checked:,}" if f.rows_checked else "—",
                  _deadline(f.response_due_at, due["response"]), _deadline(f.fix_due_at, due["fix"]),
                  Text(f.assignee or "—"), Text("\n".join(_note(n) for n in f.notes or []) or "—"))
    return t


FINDING_LINE_FIELDS = ("id", "level", "state", "rule", "finding", "where", "violations", "rows_checked",
                       "response_due_at", "fix_due_at", "overdue", "assignee", "notes")


def findings_lines(rows, location, now: datetime) -> str:
    """Findings for a pipe or a file: a header, then one tab-separated line per finding with the rule
    id as a column of its own (times as everywhere a person reads them; tabs and line breaks inside a
    value become spaces)."""
    lines = ["\t".join(FINDING_LINE_FIELDS)]
    for f in rows:
        due = f.overdue(now)
        cells = (f.id, f.level + (" 7×24" if f.emergency else ""), f.state, f.subject, f.title_zh, location(f),
                 f.violations, f.rows_checked,
                 clock.shown(f.response_due_at, missing=""), clock.shown(f.fix_due_at, missing=""),
                 ",".join(k for k in ("response", "fix") if due[k]), f.assignee or "",
                 " | ".join(_note(n) for n in f.notes or []))
        lines.append("\t".join(" ".join(str(c).split()) for c in cells))
    return "\n".join(lines) + "\n"


def _note(n: dict) -> str:
    return f"{n.get('by', '')}: {n.get('text', '')}"


def _deadline(when: datetime | None, missed: bool) -> Text:
    return Text(clock.shown(when) + (" 逾期 overdue" if missed else ""), style="red" if missed else "")
