"""``healthqa findings``: list maintenance findings; acknowledge, assign or resolve several at once,
note one, from a terminal (written to the audit log with the operating-system user); write a
finding's after-sales service report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from healthqa import clock, codelists
from healthqa.config import load
from healthqa.errors import NothingMatched
from healthqa.store import AuditStore

from . import HELP, actor, app, fail, findings_view, user_errors
from .options import ConfigOpt, writable_file

findings_app = typer.Typer(context_settings=HELP,
                           help="维护问题 / maintenance findings: list, acknowledge, assign, note, resolve, service report")
app.add_typer(findings_app, name="findings")

FINDING_STATES = ("open", "new", "acknowledged", "reopened", "resolved")
FindingId = Annotated[int, typer.Argument(help="finding id (see `healthqa findings`)")]
FindingIds = Annotated[list[int], typer.Argument(help="finding ids (see `healthqa findings`): all of them or none")]


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

    if config is None:
        fail("--config is required (see `healthqa findings -h`)")
    if state and state not in FINDING_STATES:
        fail(f"--state: expected one of {', '.join(FINDING_STATES)}, got {state!r}")
    if level and level not in ("一级", "二级", "提示"):
        fail(f"--level: expected 一级, 二级 or 提示, got {level!r}")
    writable_file(json_out, "--json")
    cfg = load(config)
    systems = codelists.load("systems")["codes"]
    if system and system not in systems:  # refused like validate's filters that match nothing
        raise NothingMatched(f"--system {system}", f"不是合同的十四个系统之一 not one of the contract's systems "
                                                   f"({', '.join(systems)})")
    with AuditStore(cfg.store.url) as store:
        names = registry(cfg, store)
        rows = store.findings.list(state=state, level=level, system=system, org=org, overdue=overdue)
        # an institution neither registered nor named by any finding is a typo, not "no findings"
        if org and not rows and not names.known(org) and not store.findings.list(state=None, org=org):
            raise NothingMatched(f"--org {org}", "机构登记和审计库中都没有此机构 no such institution in the register "
                                                 "or in any finding")
    where = lambda f: location(f, names)  # noqa: E731
    if app.out.is_terminal:
        app.out.print(findings_view.findings_table(rows, where, clock.now()))
    else:  # a pipe or a file: one line per finding, for grep, cut and spreadsheets
        typer.echo(findings_view.findings_lines(rows, where, clock.now()), nl=False)
    if json_out:
        from healthqa.reports.publish import export

        export(rows, json_out)
        app.out.print(f"{json_out.suffix.lstrip('.').upper() or 'JSON'}: {json_out}", highlight=False)


@findings_app.command("ack")
@user_errors
def findings_ack(finding_ids: FindingIds, config: ConfigOpt):
    """确认问题 / acknowledge findings (stops their response clock)."""
    with AuditStore(load(config).store.url) as store:
        done = store.findings.acknowledge_many(finding_ids, actor())
    for f in done:
        app.out.print(f"#{f.id} 已确认 acknowledged by {f.acknowledged_by}", highlight=False)


@findings_app.command("assign")
@user_errors
def findings_assign(finding_ids: FindingIds, assignee: Annotated[str, typer.Argument(help="who works on them")],
                    config: ConfigOpt):
    """分派问题 / assign findings to someone."""
    assignee = " ".join(assignee.split())
    if not assignee:
        fail("assign: 负责人为空 the assignee is empty")
    with AuditStore(load(config).store.url) as store:
        done = store.findings.assign_many(finding_ids, assignee, actor())
    for f in done:
        app.out.print(f"#{f.id} 已分派 assigned to {f.assignee}", highlight=False)


@findings_app.command("note")
@user_errors
def findings_note(finding_id: FindingId, text: Annotated[str, typer.Argument(help="the note")], config: ConfigOpt):
    """备注 / add a note to a finding."""
    with AuditStore(load(config).store.url) as store:
        f = store.findings.note(finding_id, text, actor())
    app.out.print(f"#{f.id} 已备注 noted ({len(f.notes or [])} note(s))", highlight=False)


@findings_app.command("resolve")
@user_errors
def findings_resolve(finding_ids: FindingIds, config: ConfigOpt,
                     note: Annotated[str | None, typer.Option("--note", help="why (e.g. not a defect)")] = None):
    """手工关闭 / resolve findings by hand; the next run that sees one again reopens it."""
    with AuditStore(load(config).store.url) as store:
        done = store.findings.resolve_many(finding_ids, actor(), note)
    for f in done:
        app.out.print(f"#{f.id} 已关闭 resolved by {f.resolved_by}", highlight=False)


@findings_app.command("report")
@user_errors
def findings_report(finding_id: FindingId, config: ConfigOpt,
                    pdf: Annotated[bool, typer.Option("--pdf", help="also write the same report as PDF")] = False,
                    out: Annotated[Path | None, typer.Option(
                        "--out", dir_okay=False,
                        help="the file to write (default: reports.out_dir/service-ID.html)")] = None):
    """售后服务报告 / write a finding's after-sales service report (HTML, optionally PDF) for signing."""
    from healthqa.reports import service

    writable_file(out, "--out")
    pdf = pdf or (out is not None and out.suffix.lower() == ".pdf")  # --out x.pdf asks for the PDF
    cfg = load(config)
    with AuditStore(cfg.store.url) as store:
        written = service.write(cfg, store, finding_id, out, pdf=pdf)
    app.out.print(f"HTML: {written.html}", highlight=False)
    if written.pdf:
        app.out.print(f"PDF: {written.pdf}", highlight=False)
