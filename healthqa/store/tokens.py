"""API tokens of machines (``store.tokens``): a vendor's registration system asks the match API
(console/match.py) with ``Authorization: Bearer <token>``.

A token is 32 random bytes, shown once when made; the store keeps its SHA-256 only (a random token
of that length cannot be guessed from its hash, so no slow password hash is needed, and a lookup is
one indexed query). Names follow the console's user names; every change is in the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from healthqa.clock import now
from healthqa.errors import StoreError

from .models import ApiCallWindow, ApiToken, AuditLog
from .users import UserError, normalise_name
from .windows import count_in

if TYPE_CHECKING:
    from .store import AuditStore

TOKEN_ROLES = ("matcher",)
PREFIX = "hqa_"  # tells a healthqa token in a configuration or a leaked log
CALL_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenRecord:
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """``store.tokens``: add, revoke, list and check API tokens."""

    def __init__(self, store: AuditStore):
        self._store = store

    def add(self, name: str, role: str, actor: str) -> str:
        """A new token of ``name``: returned once, kept only as its hash."""
        name = normalise_name(name)
        if role not in TOKEN_ROLES:
            raise UserError(f"role: expected one of {', '.join(TOKEN_ROLES)}, got {role!r}")
        token = PREFIX + secrets.token_urlsafe(32)
        with self._store.session() as s:
            if s.execute(select(ApiToken).where(ApiToken.name == name)).scalar_one_or_none():
                raise UserError(f"令牌已存在 token {name!r} already exists (revoke it, or choose another name)")
            s.add(ApiToken(name=name, role=role, token_hash=digest(token), created_at=now()))
            s.add(AuditLog(at=now(), user_name=actor, action="token_add", subject=name, detail={"role": role}))
        return token

    def revoke(self, name: str, actor: str) -> None:
        name = normalise_name(name)
        with self._store.session() as s:
            t = s.execute(select(ApiToken).where(ApiToken.name == name)).scalar_one_or_none()
            if t is None:
                raise UserError(f"令牌不存在 no token named {name!r}")
            if t.revoked_at is None:
                t.revoked_at = now()
            s.add(AuditLog(at=now(), user_name=actor, action="token_revoke", subject=name))

    def list(self) -> list[TokenRecord]:
        with self._store.session() as s:
            return [TokenRecord(t.name, t.role, t.created_at, t.revoked_at)
                    for t in s.execute(select(ApiToken).order_by(ApiToken.name)).scalars()]

    def check(self, token: str) -> TokenRecord | None:
        """The live token whose hash is ``token``'s, or None (unknown, revoked)."""
        if not token or len(token) > 256:
            return None
        h = digest(token)
        with self._store.session() as s:
            t = s.execute(select(ApiToken).where(ApiToken.token_hash == h)).scalar_one_or_none()
            if t is None or t.revoked_at is not None or not hmac.compare_digest(t.token_hash, h):
                return None
            return TokenRecord(t.name, t.role, t.created_at, t.revoked_at)

    def call(self, name: str, per_window: int) -> bool:
        """Count one match-API call of token ``name`` (``call_in`` in a transaction of its own): True
        when counted, False when its window is full."""
        self.open_window(name)
        with self._store.session() as s:
            return self.call_in(s, name, per_window) is None

    def open_window(self, name: str) -> None:
        """The token's row of calls, made if it is not there yet (once per token: rows stay, a
        token's name is never reused). Two processes making it at the same moment: one does."""
        name = name[:64]
        try:
            with self._store.session() as s:
                if s.get(ApiCallWindow, name) is None:
                    s.add(ApiCallWindow(token=name, started_at=now(), calls=0))
        except StoreError:  # another process made the row at the same moment: it is there
            pass

    @staticmethod
    def call_in(s, name: str, per_window: int) -> datetime | None:
        """Count one match-API call of token ``name`` in its window (a minute from its first call after
        the last window ended), inside the caller's transaction ``s``: None when counted, else the
        end of the full window (the call is not counted). In the store, so every console process
        counts the same calls (as ``users.client_attempt`` counts log-ins): two conditional UPDATEs
        — the window started again if it ended, then the call counted if there is room — so calls
        counted together through several processes are counted one after the other. The match API
        counts a batch's calls in the transaction that writes their audit-log entries: no commit of
        its own (console/match.py ``Batcher``). The row is ``open_window``'s (made here if missing).
        The window's arithmetic is ``windows.count_in``'s, as for log-ins."""
        at = now()
        name = name[:64]
        w = ApiCallWindow
        if count_in(s, w.token, w.started_at, w.calls, name, per_window, at, CALL_WINDOW):
            return None
        row = s.get(w, name)
        if row is None:  # not opened: made now (a same-moment twin fails this transaction, never the count)
            s.add(w(token=name, started_at=at, calls=1))
            return None
        return row.started_at + CALL_WINDOW
