"""The audit store: what healthqa saw, decided and published, kept in SQLite or PostgreSQL."""

from .store import AuditStore, RunContext

__all__ = ["AuditStore", "RunContext"]
