"""Who is asking: log-in against ``store.users`` (Argon2id), the session, the CSRF token, roles.

The session is Starlette's signed cookie (itsdangerous), HttpOnly and SameSite=Lax, Secure when
``console.secure_cookies`` is set or the request came over HTTPS; it holds the user's name, a CSRF
token, when it began and the token of its row in the store's ``console_sessions``, never a password or
a personal value. Every request re-reads the session's row and the account, so log-out, a new
password, a disabled account or a changed role end the session on the server, whatever copy of the
cookie is kept. Every state-changing request carries the session's CSRF token (a form field or the
``X-CSRF-Token`` header htmx sends).

Log-in is bounded before any password is hashed: a client (its address) gets
``logins_per_client_per_minute`` attempts a minute (then 429; ``Users.client_attempt``), and a name
``max_failed_logins`` attempts in a row (``Users.reserve_attempt``), both counted atomically in the
store before the check — so guesses sent together cannot all be checked, and N console workers
allow what one does; the last allowed failure locks the name for ``lockout_minutes``. Only a log-in
asks the store about them: an ordinary request costs no extra round trip. The
Argon2id verification runs in a small thread pool of its own, off the event loop. Failed log-ins are
also written to the audit log, and each one waits longer than the last.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor
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
    """The logged-in user of a valid, unexpired session nobody ended (``console_sessions``) whose
    account is still active, with the role and the password it logged in with."""
    s = request.session
    name, began, sid = s.get("user"), s.get("began"), s.get("sid")
    if not name or not began or not sid:
        raise LoginRequired
    cfg = request.app.state.cfg.console
    since = now() - timedelta(hours=cfg.session_hours)
    if datetime.fromisoformat(began) < since:
        s.clear()
        raise LoginRequired
    try:
        user = request.app.state.store.users.session_user(sid, since)
    except UserError:
        user = None
    if user is None or user.name != name or user.role != s.get("role") or user.credential != s.get("cred"):
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


TOO_MANY = "登录尝试过于频繁，请一分钟后再试 / too many log-in attempts from this address: try again in a minute"


class Throttle:
    """Log-in bounded before the password is hashed (per client, per name), hashed in a small pool.

    One address's log-ins wait in a line of their own (``IN_FLIGHT`` at a time) before the pool, so a
    burst from one address never fills the pool's queue ahead of everyone else, and an office behind
    one address is served in turn rather than refused. The line and the pool are this process's
    (they share out its cores; N workers hash up to 2N at once); what an address and a name may try
    is the store's."""

    IN_FLIGHT = 2

    def __init__(self, store, max_failures: int, lockout: timedelta, delay_s: float, per_client: int = 10,
                 workers: int = 2):
        self.store, self.max_failures, self.lockout, self.delay_s = store, max_failures, lockout, delay_s
        # per client address, counted in the store for every worker; a successful log-in is given back
        # (a proxy not named in ``trusted_proxies`` shows every user as one address: a morning's
        # log-ins must not lock the office out)
        self.per_client = per_client
        # Argon2id takes 64 MiB and a core for a fraction of a second: a few at a time, in threads of
        # their own, so the event loop (every other page) never waits for one
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="healthqa-argon2")
        self._lines: dict[str, tuple[asyncio.Semaphore, int]] = {}  # address -> its line, requests in it

    @staticmethod
    def subject(name: str) -> str:
        try:
            return normalise_name(name)
        except UserError:
            return " ".join(name.split())[:64] or "?"

    async def _hashing(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def attempt(self, name: str, password: str, client: str | None
                      ) -> tuple[UserRecord | None, str | None, int]:
        """(user, None, 200) on success; (None, reason, HTTP status) otherwise, after the failure's delay."""
        subject = self.subject(name)
        if not await run_in_threadpool(self.store.users.client_attempt, client or "?", self.per_client):
            await run_in_threadpool(self.store.review.log, None, "login_refused_rate", subject, {"client": client})
            return None, TOO_MANY, 429
        key = client or "?"
        line, waiting = self._lines.get(key) or (asyncio.Semaphore(self.IN_FLIGHT), 0)
        self._lines[key] = (line, waiting + 1)
        try:
            async with line:
                return await self._checked(subject, name, password, client)
        finally:
            line, waiting = self._lines[key]
            if waiting > 1:
                self._lines[key] = (line, waiting - 1)
            else:
                del self._lines[key]

    async def _checked(self, subject: str, name: str, password: str, client: str | None
                       ) -> tuple[UserRecord | None, str | None, int]:
        users = self.store.users
        until = await run_in_threadpool(users.reserve_attempt, subject, self.max_failures, self.lockout)
        if until is not None:
            await run_in_threadpool(self.store.review.log, None, "login_refused_locked", subject, {"client": client})
            return None, (f"账户已锁定，请于 {shown(until)} 后再试 / account locked until {shown(until)} "
                          "after repeated failed log-ins"), 401
        user = await self._hashing(users.authenticate, name, password)
        if user is not None:
            await run_in_threadpool(users.client_succeeded, client or "?")
            await run_in_threadpool(users.attempt_succeeded, subject)
            await run_in_threadpool(self.store.review.log, user.name, "login", user.name, {"client": client})
            return user, None, 200
        n = await run_in_threadpool(users.attempt_failed, subject, self.max_failures, self.lockout)
        await run_in_threadpool(self.store.review.log, None, "login_failed", subject, {"client": client})
        await asyncio.sleep(min(self.delay_s * 2 ** max(n - 1, 0), 8.0))
        if n >= self.max_failures:
            return None, (f"连续 {n} 次登录失败，账户锁定 {int(self.lockout.total_seconds() // 60)} 分钟 / "
                          f"account locked for {int(self.lockout.total_seconds() // 60)} minutes"), 401
        return None, "用户名或密码错误 / wrong user name or password", 401

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
