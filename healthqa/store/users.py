"""Users of the console and the audit log of what they did."""

from __future__ import annotations

from sqlalchemy import select

from healthqa.errors import HealthqaError

from .models import AuditLog, User
from .runs import now
from .store import AuditStore

ROLES = ("steward", "qc_manager", "engineer", "admin")


def add_user(store: AuditStore, name: str, role: str, actor: str = "cli") -> None:
    if role not in ROLES:
        raise HealthqaError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    with store.session() as s:
        if s.execute(select(User).where(User.name == name)).scalar_one_or_none():
            raise HealthqaError(f"user {name!r} already exists")
        s.add(User(name=name, role=role, active=True, created_at=now()))
        s.add(AuditLog(at=now(), user_name=actor, action="user_add", subject=name, detail={"role": role}))
