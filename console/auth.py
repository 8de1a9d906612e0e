"""Who is asking: log-in against ``store.users`` (Argon2id), the session, the CSRF token, roles.

The session is Starlette's signed cookie (itsdangerous), HttpOnly and SameSite=Lax, Secure when
``console.secure_cookies`` is set; it holds the user's name, a CSRF token and when it began, never a
password or a personal value. Every request re-reads the account, so a disabled user or a changed
role takes effect at once. Every state-changing request carries the session's CSRF token (a form
field or the ``X-CSRF-Token`` header htmx sends). Failed log-ins are written to the audit log; each
one waits longer than the last, and ``max_failed_logins`` in a row lock the account for
``lockout_minutes`` — counted in the audit log, so a restart forgets nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from healthqa.clock import now, shown
from healthqa.store.users import UserError, UserRecord, normalise_name

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
HOME = {"steward": "/review", "qc_manager": "/dashboard", "engineer": "/validate", "admin": "/admin/users"}
ROLE_ZH = {"steward": "数据管理员", "qc_manager": "质控负责人", "engineer": "运维工程师", "admin": "系统管理员"}


class LoginRequired(Exception):
    """No valid session: pages redirect to the log-in page, htmx and API calls get 401."""


@dataclass(frozen=True)
class Who:
    user: UserRecord
    csrf: str

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the log-in form has one before anyone logs in)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request whose token does not match the session's (403)."""
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        sent = form.get(CSRF_FIELD)
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(expected, sent):
        raise HTTPException(403, "CSRF 校验失败，请刷新页面后重试 / CSRF token missing or wrong: reload the page")


def current(request: Request) -> Who:
    """The logged-in user of a valid, unexpired session whose account is still active, with the role
    and the password it logged in with."""
    s = request.session
    name, began = s.get("user"), s.get("began")
    if not name or not began:
        raise LoginRequired
    cfg = request.app.state.cfg.console
    if datetime.fromisoformat(began) + timedelta(hours=cfg.session_hours) < now():
        s.clear()
        raise LoginRequired
    try:
        user = request.app.state.store.users.get(name)
    except UserError:
        user = None
    if user is None or not user.active or user.role != s.get("role") or user.credential != s.get("cred"):
        s.clear()
        raise LoginRequired
    return Who(user, csrf_token(request))


def role(*roles: str):
    """A dependency: the user, when their role is one of ``roles`` (else 403)."""
    def dep(who: Who = Depends(current)) -> Who:
        if who.role not in roles:
            raise HTTPException(403, f"无权访问此页面 / this page is for {', '.join(ROLE_ZH[r] for r in roles)}")
        return who
    return dep


class Throttle:
    """Failed log-ins slow down and lock the account (counted in the audit log)."""

    def __init__(self, store, max_failures: int, lockout: timedelta, delay_s: float):
        self.store, self.max_failures, self.lockout, self.delay_s = store, max_failures, lockout, delay_s
        # one Argon2id verification at a time (each takes 64 MiB and every core for a fraction of a
        # second): a morning's log-ins queue up instead of stalling every page for everyone
        self._verifying = asyncio.Semaphore(1)

    @staticmethod
    def subject(name: str) -> str:
        try:
            return normalise_name(name)
        except UserError:
            return " ".join(name.split())[:64] or "?"

    def locked_until(self, name: str) -> datetime | None:
        fails = self.store.review.failures_since(self.subject(name), now() - self.lockout)
        if len(fails) >= self.max_failures:
            until = fails[self.max_failures - 1] + self.lockout
            return until if until > now() else None
        return None

    async def attempt(self, name: str, password: str, client: str | None) -> tuple[UserRecord | None, str | None]:
        """(user, None) on success; (None, reason) otherwise, after the failure's delay."""
        subject = self.subject(name)
        until = await run_in_threadpool(self.locked_until, name)
        if until is not None:
            await run_in_threadpool(self.store.review.log, None, "login_refused_locked", subject, {"client": client})
            return None, (f"账户已锁定，请于 {shown(until)} 后再试 / account locked until {shown(until)} "
                          "after repeated failed log-ins")
        async with self._verifying:
            user = await run_in_threadpool(self.store.users.authenticate, name, password)
        if user is not None:
            await run_in_threadpool(self.store.review.log, user.name, "login", user.name, {"client": client})
            return user, None
        await run_in_threadpool(self.store.review.log, None, "login_failed", subject, {"client": client})
        n = len(await run_in_threadpool(self.store.review.failures_since, subject, now() - self.lockout))
        await asyncio.sleep(min(self.delay_s * 2 ** max(n - 1, 0), 8.0))
        if n >= self.max_failures:
            return None, (f"连续 {n} 次登录失败，账户锁定 {int(self.lockout.total_seconds() // 60)} 分钟 / "
                          f"account locked for {int(self.lockout.total_seconds() // 60)} minutes")
        return None, "用户名或密码错误 / wrong user name or password"
