"""``healthqa users``: the console's accounts, from a terminal (written to the audit log)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.text import Text

from healthqa.config import load
from healthqa.store import AuditStore

from . import HELP, actor, app, fail, user_errors
from .options import ConfigOpt

users_app = typer.Typer(no_args_is_help=True, context_settings=HELP, help="用户 / users")
app.add_typer(users_app, name="users")

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
    cfg = load(config)
    normalise_name(name)  # refuse a bad name before asking for a password
    with AuditStore(cfg.store.url) as store:
        u = store.users.add(name, role, _new_password(), actor=actor())
    app.out.print(Text(f"已添加用户 user added: {u.name} ({u.role})"))


@users_app.command("passwd")
@user_errors
def users_passwd(name: UserName, config: ConfigOpt):
    """修改密码 / set a user's password."""
    with AuditStore(load(config).store.url) as store:
        store.users.get(name)  # an unknown name is refused before a password is asked for
        store.users.passwd(name, _new_password(), actor=actor())
    app.out.print(Text(f"已修改密码 password changed: {name}"))


@users_app.command("disable")
@user_errors
def users_disable(name: UserName, config: ConfigOpt):
    """停用用户 / disable a user (kept, with their decisions, in the audit log)."""
    with AuditStore(load(config).store.url) as store:
        store.users.disable(name, actor=actor())
    app.out.print(Text(f"已停用 disabled: {name}"))


@users_app.command("enable")
@user_errors
def users_enable(name: UserName, config: ConfigOpt):
    """重新启用用户 / enable a disabled user again (with the password they had)."""
    with AuditStore(load(config).store.url) as store:
        store.users.enable(name, actor=actor())
    app.out.print(Text(f"已启用 enabled: {name}"))


@users_app.command("role")
@user_errors
def users_role(name: UserName, config: ConfigOpt,
               role: Annotated[str, typer.Option("--role", help="steward | qc_manager | engineer | admin")]):
    """更改角色 / give a user another role (their open console sessions end)."""
    with AuditStore(load(config).store.url) as store:
        store.users.set_role(name, role, actor=actor())
    app.out.print(Text(f"已更改角色 role changed: {name} ({role})"))
