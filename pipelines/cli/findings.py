"""``healthqa findings``: list maintenance findings; acknowledge, assign, note or resolve one from a
terminal (written to the audit log with the operating-system user)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from healthqa import clock, codelists
from healthqa.config import load
from healthqa.errors import NothingMatched
from healthqa.store import AuditStore

from . import HELP, actor, app, fail, render, user_errors
from .options import ConfigOpt, writable_file

findings_app = typer.Typer(context_settings=HELP,
                           help="维护问题 / maintenance findings: list, acknowledge, assign, note, resolve")
app.add_typer(findings_app, name="findings")

FINDING_STATES = ("open", "new", "acknowledged", "reopened", "resolved")
FindingId = Annotated[int, typer.Argument(help="finding id (see `healthqa findings`)")]


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
    cfg = load(config)
    systems = codelists.load("systems")["codes"]
    if system and system not in systems:  # refused like validate's filters that match nothing
        raise NothingMatched(f"--system {system}", f"不是合同的十四个系统之一 not one of the contract's systems "
                                                   f"({', '.join(systems)})")
    names = registry(cfg)
    with AuditStore(cfg.store.url) as store:
        rows = store.findings.list(state=state, level=level, system=system, org=org, overdue=overdue)
        # an institution neither registered nor named by any finding is a typo, not "no findings"
        if org and not rows and not names.known(org) and not store.findings.list(state=None, org=org):
            raise NothingMatched(f"--org {org}", "机构登记和审计库中都没有此机构 no such institution in the register "
                                                 "or in any finding")
    app.out.print(render.findings_table(rows, lambda f: location(f, names), clock.now()))
    if json_out:
        export(rows, json_out)
        app.out.print(f"{json_out.suffix.lstrip('.').upper() or 'JSON'}: {json_out}", highlight=False)


@findings_app.command("ack")
@user_errors
def findings_ack(finding_id: FindingId, config: ConfigOpt):
    """确认问题 / acknowledge a finding (stops its response clock)."""
    with AuditStore(load(config).store.url) as store:
        f = store.findings.acknowledge(finding_id, actor())
    app.out.print(f"#{f.id} 已确认 acknowledged by {f.acknowledged_by}", highlight=False)


@findings_app.command("assign")
@user_errors
def findings_assign(finding_id: FindingId, assignee: Annotated[str, typer.Argument(help="who works on it")],
                    config: ConfigOpt):
    """分派问题 / assign a finding to someone."""
    with AuditStore(load(config).store.url) as store:
        f = store.findings.assign(finding_id, assignee, actor())
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
def findings_resolve(finding_id: FindingId, config: ConfigOpt,
                     note: Annotated[str | None, typer.Option("--note", help="why (e.g. not a defect)")] = None):
    """手工关闭 / resolve a finding by hand; the next run that sees it again reopens it."""
    with AuditStore(load(config).store.url) as store:
        f = store.findings.resolve(finding_id, actor(), note)
    app.out.print(f"#{f.id} 已关闭 resolved by {f.resolved_by}", highlight=False)
