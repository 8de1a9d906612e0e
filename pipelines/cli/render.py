"""What the commands print, built from their results: Rich tables and one-line summaries. Nothing here
prints or decides an exit code; the commands do."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from healthqa import clock
from healthqa.errors import SourceError

STATUS = {"pass": ("通过 pass", "green"), "fail": ("不通过 fail", "red"), "not_applicable": ("不适用 n/a", "dim"),
          "error": ("错误 error", "magenta")}


def format_pct(pct: float | None) -> str:
    """Percentages with significant digits: 0.0004 % stays visible instead of rounding to 0.00 %."""
    if pct is None:
        return "—"
    if pct == 0:
        return "0%"
    if pct >= 1:
        return f"{pct:.2f}%"
    return f"{pct:.2g}%"


def source_checks(results) -> tuple[list[Table | Text], list[str]]:
    """The check of every source (a table of its mapped tables, or the line saying it is unreachable)
    and every problem found, one line each naming the configuration key to fix."""
    shown: list[Table | Text] = []
    problems: list[str] = []
    for name, res in results.items():
        if isinstance(res, SourceError):
            shown.append(Text.assemble((f"数据源 {name}", "bold"), ": ", ("无法连接 unreachable", "red"), f" — {res.reason}"))
            problems.append(f"sources.{name}: unreachable: {res.reason}")
            continue
        t = Table(title=f"数据源 source {name}", title_justify="left", show_lines=False)
        for col in ("标准表 canonical", "物理表 physical", "行数 rows", "缺失列 missing", "未映射 unmapped", "状态 status"):
            t.add_column(col, overflow="fold")
        for tc in res:
            if not tc.exists:
                status = Text("表不存在 table missing", "red")
                problems.append(f"sources.{name}.tables.{tc.canonical}.table: table {tc.physical} not found")
            elif tc.error:
                status = Text(tc.error, "red")
                problems.append(f"sources.{name}.tables.{tc.canonical}: {tc.error}")
            elif tc.missing_columns:
                status = Text("映射错误 mis-mapped", "red")
                problems += [f"sources.{name}.tables.{tc.canonical}.columns.{c}: column {p} not found in table {tc.physical}"
                             for c, p in tc.missing_columns.items()]
            else:
                status = Text("正常 ok", "green")
            t.add_row(tc.canonical, tc.physical, "" if tc.rows is None else f"{tc.rows:,}",
                      ", ".join(f"{c}→{p}" for c, p in tc.missing_columns.items()),
                      ", ".join(tc.unmapped_columns), status)
        shown.append(t)
    return shown, problems


def nightly_table(res) -> Table:
    """A night's tables: rows read, rules passed and failed, the worst rule; and what could not run."""
    from healthqa.reports.labels import table_text  # loaded with the command, not the CLI
    t = Table(title=f"夜间稽核 nightly audit (run {res.run_id}, {res.status})", title_justify="left")
    for col in ("数据源 source", "标准表 table", "抽样 sampling", "行数 rows", "通过 pass", "不通过 fail",
                "错误 error", "最差规则 worst rule"):
        t.add_column(col, overflow="fold")
    for name, v in res.validations.items():
        for tv in v.tables:
            status = [r.status for r in tv.results]
            worst = worst_rule(tv.results)
            t.add_row(name, table_text(tv.table), tv.sampling.get("method", ""), f"{tv.rows:,}", str(status.count("pass")),
                      str(status.count("fail")), str(status.count("error")),
                      f"{worst.rule.id} {format_pct(worst.violation_pct)}" if worst else "")
    for name, reason in res.failures.items():
        t.add_row(name, "", "", "", "", "", "", Text(reason, style="red"))
    return t


def worst_rule(results):
    """A table's worst failing rule, ranked as the run report ranks them (rows beyond tolerance)."""
    from healthqa.reports.scores import worst_first
    return min((r for r in results if r.status == "fail"), default=None,
               key=lambda r: worst_first(r.violations, r.denominator, r.rule.threshold, r.violation_pct))


def dedup_line(st: dict, incremental: bool) -> str:
    """A duplicate scan in one line. A night's matches are those of the archives it compared (new,
    changed); its clusters are all the open ones, the night's and the earlier runs'."""
    if incremental and "compared" in st:
        removed = f", 删除 {st['removed']:,} removed" if st.get("removed") else ""
        return (f"重复档案 duplicates (incremental): 比对新增或变更档案 {st['compared']:,} new or changed archives "
                f"compared{removed}; 新匹配 {st['matches']:,} new matches, 待审核 {st['review']:,} to review; "
                f"现有聚类 {st['clusters']:,} open clusters among {st['records']:,} archives")
    return (f"重复档案 duplicates ({'incremental' if incremental else 'full'}): {st['matches']:,} matches, "
            f"{st['review']:,} to review, {st['clusters']:,} clusters among {st['records']:,} archives")


def assessment_line(a) -> str:
    s = a.summary()
    conf, rate = s["overall_conformance"], s["overall_pass_rate"]
    return (f"得分 scores: 数据符合率 conformance {'—' if conf is None else f'{conf:.2f}%'} · "
            f"规则通过率 checks passed {'—' if rate is None else f'{rate:.1f}%'}; "
            f"问题 findings: 新增 new {s['new']} · 持续 persisting {s['persisting']} · "
            f"重新出现 reopened {s['reopened']} · 已解决 resolved {s['resolved']}")


def delivery_line(d) -> Text:
    return Text(f"发布 published via {d.channel}: {'成功 ok' if d.ok else '失败 failed'} ({d.detail}, {d.attempts} attempt(s))",
                style="green" if d.ok else "red")


def change_text(now: float | None, before: float | None, had_before: bool) -> str:
    """较上次: a rule's violation rate against the last run of the same scope (``run.previous``), as
    the terminal and the console's validation page show it."""
    if not had_before:
        return "新 new"
    if now is None or before is None:
        return "—"
    d = now - before
    if abs(d) < 1e-12:
        return "="
    return ("↑ +" if d > 0 else "↓ −") + format_pct(abs(d))


def validation_table(run, source: str) -> Table:
    """Every rule with what it means and its threshold, so a pass at 0.9 % beside a fail at 0.13 %
    explains itself. Rule ids are never cut: at narrow widths they fold onto the next line."""
    from healthqa.reports.labels import table_text  # loaded with the command, not the CLI
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
        status = Text(*STATUS[r.status])
        if r.error:
            status.append(" " + r.error)
        before = run.previous.get((tv.source, tv.table, r.rule.id))
        t.add_row(rule, f"{table_text(tv.table)}\n{r.rule.dimension} {r.rule.severity}", f"{r.violations:,}",
                  f"{r.denominator:,}", format_pct(r.violation_pct), f"≤{format_pct(r.rule.threshold)}", status,
                  change_text(r.violation_pct, before, had_before))
    return t


def dedup_tables(run, truth) -> list[Table]:
    """A duplicate scan's counts, its blocking passes, and its precision and recall against the truth."""
    st = run.result.stats
    t = Table(title=f"重复档案筛查 dedup (run {run.run_id}, source {run.source}{', incremental' if run.incremental else ''})",
              title_justify="left")
    t.add_column("项目 item")
    t.add_column("数量 value", justify="right")
    night = [("本次比对的新增或变更档案 new or changed archives compared", st["compared"]),
             ("已删除档案 archives removed", st["removed"])] if "compared" in st else []
    if "rescored_matches" in st:  # a night: its new suggestions apart from the pairs stewards decided
        found = [("新匹配 new matches", st["matches"] - st["rescored_matches"]),
                 ("新待审核 new to review", st["review"] - st["rescored_review"]),
                 ("审核后重新评分（匹配）re-scored after steward decisions: matches", st["rescored_matches"]),
                 ("审核后重新评分（待审核）re-scored after steward decisions: review", st["rescored_review"])]
    else:
        found = [("匹配 matches", st["matches"]), ("待审核 review", st["review"])]
    if st.get("auto_accepted"):
        found.append(("系统自动合并 merged by the system above the threshold", st["auto_accepted"]))
    for label, value in (("档案 archives", st["records"]), *night, ("候选对 candidate pairs", st["candidate_pairs"]),
                         *found,
                         ("聚类 clusters", st["clusters"]), ("待审核聚类 clusters to review", st["clusters_to_review"])):
        t.add_row(label, f"{value:,}")
    t.add_row("缩减率 reduction ratio", f"{st['reduction_ratio']:.6f}")
    t.add_row("耗时 seconds", f"{st['seconds']:.1f}")
    b = Table(title="分块 blocking passes", title_justify="left")
    b.add_column("pass")
    b.add_column("pairs", justify="right")
    for p in st["blocking"]:
        b.add_row(p["pass"], f"{p['pairs']:,}")
    if not run.evaluation:
        return [t, b]
    e = Table(title=f"对照真值 against {truth}", title_justify="left")
    for col in ("level", "precision", "recall", "F1", "found", "true"):
        e.add_column(col, justify="right" if col != "level" else "left")
    for level in ("pairs", "clusters"):
        ev = run.evaluation[level]
        e.add_row(level, f"{ev['precision']:.4f}", f"{ev['recall']:.4f}", f"{ev['f1']:.4f}",
                  f"{ev['found']:,}", f"{ev['true']:,}")
    return [t, b, e]


def counts_table(counts: dict[str, int]) -> Table:
    """The rows of each table of a platform just built."""
    t = Table(show_header=True, title_justify="left")
    t.add_column("标准表 table")
    t.add_column("行数 rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    return t


def truth_check_table(families, kinds) -> Table:
    """A demo night against the generator's truth: per family the rows injected and the most rows
    one of its rules flagged; per kind of valid record the records any rule flagged, exactly when the
    night watched the valid records (a demo's does), else ≥ (only the kept sample keys compared)."""
    t = Table(title="真值核对 truth check", title_justify="left")
    for col, kw in (("表 table", {}), ("缺陷族 family / 有效记录 valid kind", {}), ("注入 injected", {"justify": "right"}),
                    ("检出 flagged", {"justify": "right"}), ("检出率 recall", {"justify": "right"})):
        t.add_column(col, **kw)
    for f in families:
        t.add_row(f.table, f.family, f"{f.injected:,}", f"{f.flagged:,}", f"{f.recall:.0%}")
    for k in kinds:
        t.add_row("", f"{k.kind} (误报 false flags)", f"{k.records:,}", ("" if k.complete else "≥") + f"{k.flagged:,}", "")
    return t


def deployment_line(d) -> str:
    when = f"{d.schedules[0].schedule.cron}  ({d.schedules[0].schedule.timezone})" if d.schedules else "按需 on demand"
    return f"部署 deployment: {d.flow_name}/{d.name}  {when}"


def runs_table(runs) -> Table:
    """``runs``: (run, its rule results, what could not run), newest first. A table's rows read are the
    most any of its rules applied to."""
    from healthqa.reports.labels import kind_text, scope_text, status_text  # loaded with the command, not the CLI
    t = Table(title="运行历史 runs", title_justify="left")
    for col, kw in (("# id", {"justify": "right"}), ("类型 kind", {}), ("开始 started", {}), ("耗时 took", {"justify": "right"}),
                    ("状态 state", {}), ("范围 scope", {}), ("读取行 rows", {"justify": "right"}),
                    ("未通过 failed", {"justify": "right"}), ("未能运行 could not run", {})):
        t.add_column(col, overflow="fold", **kw)
    style = {"success": "green", "partial": "yellow", "failed": "red", "running": "cyan"}
    for r, results, could_not in runs:
        rows: dict[tuple[str, str], int] = {}
        for x in results:
            rows[(x.source, x.table)] = max(rows.get((x.source, x.table), 0), x.denominator)
        took = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        # kind and state Chinese over English: narrow columns leave the width to what could not run
        t.add_row(str(r.id), kind_text(r.kind, "\n"), clock.shown(r.started_at, seconds=True),
                  "—" if took is None else f"{took:,.0f}s",
                  Text(status_text(r.status, "\n"), style=style.get(r.status, "")), scope_text(r.scope),
                  f"{sum(rows.values()):,}" if results else "—",
                  str(sum(x.status == "fail" for x in results)) if results else "—", Text(could_not))
    return t
