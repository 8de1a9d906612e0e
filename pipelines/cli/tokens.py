"""``healthqa tokens``: API tokens of the machines that call the match API (written to the audit log)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from healthqa.config import load
from healthqa.store import AuditStore

from . import HELP, actor, app, fail, user_errors
from .options import ConfigOpt

tokens_app = typer.Typer(no_args_is_help=True, context_settings=HELP, help="API 令牌 / API tokens (the match API)")
app.add_typer(tokens_app, name="tokens")

TokenName = Annotated[str, typer.Argument(help="the token's name: the machine or vendor (letters, digits, . _ -)")]


@tokens_app.command("add")
@user_errors
def tokens_add(name: TokenName, config: ConfigOpt,
               role: Annotated[str, typer.Option("--role", help="matcher")] = "matcher"):
    """添加令牌 / make a token (shown once: only its hash is kept)."""
    from healthqa.store.tokens import TOKEN_ROLES

    if role not in TOKEN_ROLES:
        fail(f"--role: expected {', '.join(TOKEN_ROLES)}, got {role!r}")
    with AuditStore(load(config).store.url) as store:
        token = store.tokens.add(name, role, actor=actor())
    app.out.print(Text(f"已添加令牌 token added: {name} ({role})。令牌只显示这一次 / shown this once only:"))
    app.out.print(Text(token), soft_wrap=True)


@tokens_app.command("revoke")
@user_errors
def tokens_revoke(name: TokenName, config: ConfigOpt):
    """吊销令牌 / revoke a token (refused from the next call on)."""
    with AuditStore(load(config).store.url) as store:
        store.tokens.revoke(name, actor=actor())
    app.out.print(Text(f"已吊销 revoked: {name}"))


@tokens_app.command("list")
@user_errors
def tokens_list(config: ConfigOpt):
    """列出令牌 / list tokens (names, roles, when made and revoked; never the tokens)."""
    from healthqa.clock import shown

    with AuditStore(load(config).store.url) as store:
        rows = store.tokens.list()
    t = Table("名称 name", "角色 role", "创建 created", "吊销 revoked")
    for r in rows:
        t.add_row(r.name, r.role, shown(r.created_at), shown(r.revoked_at))
    app.out.print(t)
