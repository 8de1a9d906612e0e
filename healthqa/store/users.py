"""Users of the console (``store.users``) and the audit log of what was done to them.

Passwords are kept only as Argon2id hashes (argon2-cffi's defaults, the OWASP recommendation) and
must meet a minimum policy; names are normalised (NFKC, trimmed, lower case) so that ``LiHua``,
`` lihua `` and the full-width ｌｉｈｕａ are one account. Every change is written to the audit log with
the actor — for the command line, the operating-system user.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, or_, select, update

from healthqa.clock import now
from healthqa.errors import HealthqaError, StoreError

from .models import AuditLog, ConsoleSession, LoginGuard, LoginWindow, User
from .windows import count_in

if TYPE_CHECKING:
    from .store import AuditStore

ROLES = ("steward", "qc_manager", "engineer", "admin")
NAME = re.compile(r"^[\w.-]{2,32}$")  # letters (Chinese too), digits, . _ -
MIN_PASSWORD = 12
_HASHER = PasswordHasher()


class UserError(HealthqaError):
    pass


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: str
    active: bool
    created_at: datetime
    # a digest of the stored password hash: a console session remembers the one it logged in with and
    # ends when it changes (a new password, wherever it was set)
    credential: str = ""


def normalise_name(name: str) -> str:
    n = unicodedata.normalize("NFKC", name or "").strip().lower()
    if not NAME.fullmatch(n):
        raise UserError(f"user name {n!r}: 2 to 32 letters, digits, '.', '_' or '-' / 用户名须为 2–32 个字母、数字或 . _ -")
    return n


def check_password(password: str, name: str) -> None:
    """The minimum policy: 12 characters or more, not the user name, not one repeated character,
    at least two kinds among letters, digits and other characters."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters / 密码至少 {MIN_PASSWORD} 个字符")
    if name in password.lower() or len(set(password)) < 4:
        raise UserError("password: too easy to guess (contains the user name, or repeats a few characters) / 密码过于简单")
    kinds = sum(bool(re.search(p, password)) for p in (r"[^\W\d_]", r"\d", r"[\W_]"))
    if kinds < 2:
        raise UserError("password: mix letters with digits or other characters / 密码须包含字母与数字或符号")


class Users:
    """``store.users``: add, change the password of, disable, and authenticate console users."""

    def __init__(self, store: AuditStore):
        self._store = store

    def add(self, name: str, role: str, password: str, actor: str) -> UserRecord:
        name = normalise_name(name)
        if role not in ROLES:
            raise UserError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
        check_password(password, name)
        with self._store.session() as s:
            if s.execute(select(User).where(User.name == name)).scalar_one_or_none():
                raise UserError(f"user {name!r} already exists / 用户已存在")
            u = User(name=name, role=role, active=True, created_at=now(), password_hash=_HASHER.hash(password))
            s.add(u)
            s.add(AuditLog(at=now(), user_name=actor, action="user_add", subject=name, detail={"role": role}))
            s.flush()
            return _record(u)

    def get(self, name: str) -> UserRecord:
        with self._store.session() as s:
            return _record(self._get(s, normalise_name(name)))

    def passwd(self, name: str, password: str, actor: str) -> None:
        name = normalise_name(name)
        with self._store.session() as s:
            u = self._get(s, name)
            check_password(password, name)
            u.password_hash = _HASHER.hash(password)
            _end_sessions(s, u.id)
            s.add(AuditLog(at=now(), user_name=actor, action="user_passwd", subject=name))

    def disable(self, name: str, actor: str) -> None:
        name = normalise_name(name)
        with self._store.session() as s:
            u = self._get(s, name)
            u.active = False
            _end_sessions(s, u.id)
            s.add(AuditLog(at=now(), user_name=actor, action="user_disable", subject=name))

    def enable(self, name: str, actor: str) -> None:
        """A disabled account active again (its password unchanged; its old sessions stay ended)."""
        name = normalise_name(name)
        with self._store.session() as s:
            u = self._get(s, name)
            u.active = True
            s.add(AuditLog(at=now(), user_name=actor, action="user_enable", subject=name))

    def set_role(self, name: str, role: str, actor: str) -> None:
        """A new role; the account's sessions end (the next log-in has the new role's pages)."""
        name = normalise_name(name)
        if role not in ROLES:
            raise UserError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
        with self._store.session() as s:
            u = self._get(s, name)
            before, u.role = u.role, role
            _end_sessions(s, u.id)
            s.add(AuditLog(at=now(), user_name=actor, action="user_role", subject=name,
                           detail={"before": before, "role": role}))

    # -- sessions the server can end ----------------------------------------------------------
    def start_session(self, user_id: int) -> str:
        """A new session of the user: the token its cookie carries (the store keeps only its digest)."""
        token = secrets.token_urlsafe(32)
        with self._store.session() as s:
            # sessions are at most a week long (config: session_hours): older rows are of no use
            s.execute(delete(ConsoleSession).where(ConsoleSession.began_at < now() - timedelta(days=8)))
            s.add(ConsoleSession(id=_digest(token), user_id=user_id, began_at=now()))
        return token

    def session_user(self, token: str, since: datetime) -> UserRecord | None:
        """The account of a session begun after ``since`` that nobody ended, when it is active (every
        console request asks: one built statement, no ORM session)."""
        rows = self._store.rows(_SESSION_USER, {"sid": _digest(token), "since": since})
        if len(rows) != 1 or not rows[0].active:
            return None
        return _record(rows[0])

    def end_session(self, token: str) -> None:
        with self._store.session() as s:
            s.execute(update(ConsoleSession).where(ConsoleSession.id == _digest(token),
                                                   ConsoleSession.ended_at.is_(None)).values(ended_at=now()))

    # -- log-in attempts, counted before the password is checked ------------------------------
    def reserve_attempt(self, subject: str, max_failures: int, lockout: timedelta) -> datetime | None:
        """Count one log-in attempt of ``subject`` before its password is checked; None when it may
        be checked, else until when the name is locked. The check and the count are one conditional
        UPDATE in one transaction, so attempts sent at the same moment are counted one after the
        other: at most ``max_failures`` of them are ever checked."""
        at = now()
        try:
            with self._store.session() as s:
                if s.get(LoginGuard, subject) is None:
                    s.add(LoginGuard(subject=subject, attempts=0))
        except StoreError:  # another attempt made the row at the same moment: it is there
            pass
        g = LoginGuard
        with self._store.session() as s:
            # a lock that is over, or attempts older than the lock-out, are forgotten
            s.execute(update(g).where(g.subject == subject, or_(g.locked_until <= at, g.last_at < at - lockout))
                      .values(attempts=0, locked_until=None))
            counted = s.execute(update(g).where(g.subject == subject, g.attempts < max_failures,
                                                or_(g.locked_until.is_(None), g.locked_until <= at))
                                .values(attempts=g.attempts + 1, last_at=at)).rowcount
            if counted == 1:
                return None
            until = s.execute(select(g.locked_until).where(g.subject == subject)).scalar_one_or_none()
            return until or at + lockout  # attempts still being checked fill the allowance: locked as well

    def attempt_failed(self, subject: str, max_failures: int, lockout: timedelta) -> int:
        """A reserved attempt that failed; the name's failures in a row. The last allowed one locks it."""
        with self._store.session() as s:
            g = s.get(LoginGuard, subject, with_for_update=True)
            if g is None:
                return 0
            if g.attempts >= max_failures and g.locked_until is None:
                g.locked_until = now() + lockout
            return g.attempts

    def attempt_succeeded(self, subject: str) -> None:
        with self._store.session() as s:
            s.execute(update(LoginGuard).where(LoginGuard.subject == subject).values(attempts=0, locked_until=None))

    # -- log-in attempts of one client address, counted in the store for every console process ----
    CLIENT_WINDOW = timedelta(minutes=1)

    def client_attempt(self, client: str, per_window: int) -> bool:
        """Count one log-in attempt from ``client`` in its window (a minute from its first attempt
        after the last window ended); False, uncounted, when the window holds ``per_window`` already.
        Two conditional UPDATEs in one transaction, as ``reserve_attempt``: attempts sent together,
        through whichever console process, are counted one after the other."""
        at = now()
        client = client[:64]
        w = LoginWindow
        try:
            with self._store.session() as s:
                if s.get(LoginWindow, client) is None:
                    # a new address: rows of addresses quiet for an hour go (a scan of many addresses
                    # must not grow the table without end)
                    s.execute(delete(w).where(w.started_at < at - timedelta(hours=1)))
                    s.add(LoginWindow(client=client, started_at=at, attempts=0))
        except StoreError:  # another attempt made the row at the same moment: it is there
            pass
        with self._store.session() as s:
            return count_in(s, w.client, w.started_at, w.attempts, client, per_window, at, self.CLIENT_WINDOW)

    def client_succeeded(self, client: str) -> None:
        """A log-in from ``client`` succeeded: its attempt is given back (an office behind one address
        logging in of a morning is not a guesser)."""
        w = LoginWindow
        with self._store.session() as s:
            s.execute(update(w).where(w.client == client[:64], w.attempts > 0).values(attempts=w.attempts - 1))

    def authenticate(self, name: str, password: str) -> UserRecord | None:
        """The user when the name and password match an active account; None otherwise (the same
        answer for an unknown name, a wrong password and a disabled account)."""
        try:
            name = normalise_name(name)
        except UserError:
            return None
        with self._store.session() as s:
            u = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
            if u is None or not u.active or not u.password_hash:
                _HASHER.hash(password)  # the same work either way: timing says nothing about the name
                return None
            try:
                _HASHER.verify(u.password_hash, password)
            except (VerificationError, InvalidHashError):
                return None
            if _HASHER.check_needs_rehash(u.password_hash):
                u.password_hash = _HASHER.hash(password)
            return _record(u)

    def list(self) -> list[UserRecord]:
        with self._store.session() as s:
            return [_record(u) for u in s.execute(select(User).order_by(User.name)).scalars()]

    @staticmethod
    def _get(s, name: str) -> User:
        u = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if u is None:
            raise UserError(f"user {name!r}: no such user / 用户不存在")
        return u


_SESSION_USER = (select(User.id, User.name, User.role, User.active, User.created_at, User.password_hash)
                 .join(ConsoleSession, ConsoleSession.user_id == User.id)
                 .where(ConsoleSession.id == bindparam("sid"), ConsoleSession.ended_at.is_(None),
                        ConsoleSession.began_at > bindparam("since")))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _end_sessions(s, user_id: int) -> None:
    s.execute(update(ConsoleSession).where(ConsoleSession.user_id == user_id, ConsoleSession.ended_at.is_(None))
              .values(ended_at=now()))


def _record(u) -> UserRecord:
    """A user (a ``User`` or a row with its columns) as the console knows it."""
    stamp = hashlib.sha256((u.password_hash or "").encode()).hexdigest()[:16]
    return UserRecord(u.id, u.name, u.role, u.active, u.created_at, stamp)
