"""The audit store: what healthqa saw, decided and published, kept in SQLite or PostgreSQL.

Callers ask it through its namespaces (``store.runs``, ``store.watermarks``, ``store.results`` …)
and never import its ORM classes or write queries.
"""

from healthqa.errors import StoreError

from .results import StoredResult
from .runs import RunContext, RunRecord
from .store import AuditStore, delete_sqlite_store

__all__ = ["AuditStore", "RunContext", "RunRecord", "StoreError", "StoredResult", "delete_sqlite_store"]
