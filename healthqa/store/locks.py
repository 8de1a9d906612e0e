"""Locks that die with their process: who is running what against one audit store.

A run holds a lock named by its owner token for as long as it runs; a run whose lock nobody holds
any more was killed (``kill -9``, a power cut) and is marked ``crashed`` by the next run that starts,
so it never shows as complete and its watermarks never advance. The nightly audit also holds a lock
of its own: a second one started on the same store is refused at once instead of counting twice.

The operating system or the database releases these locks when their holder dies — no timeouts, no
guesses: SQLite stores use ``flock`` on files in a folder beside the database, PostgreSQL stores
session advisory locks. Other databases cannot tell, so their runs are never declared crashed.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError

from healthqa.errors import HealthqaError

if TYPE_CHECKING:
    from .store import AuditStore

PG_NAMESPACE = 0x48514100  # "HQA\0": the first key of healthqa's advisory locks


class Busy(HealthqaError):
    """Somebody else holds the lock."""


class Locks:
    """``store.locks``: hold a named lock for the length of a block, or ask whether one is held."""

    def __init__(self, store: AuditStore):
        self._store = store
        url = store.engine.url
        self.kind = url.get_backend_name()
        db = url.database if self.kind == "sqlite" else None
        self._folder = Path(f"{db}.locks") if db and db != ":memory:" and not db.startswith("file:") else None

    @property
    def can_tell(self) -> bool:
        return self.kind == "postgresql" or self._folder is not None

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold ``name`` until the block ends; Busy at once if another process holds it."""
        if self.kind == "postgresql":
            with self._store.engine.connect() as conn:
                if not conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), _pg_key(name)).scalar():
                    raise Busy(name)
                conn.commit()
                try:
                    yield
                finally:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), _pg_key(name))
                        conn.commit()
                    except (OperationalError, InterfaceError):
                        pass  # the connection was dropped (server restart, terminated): its locks went with it
        elif self._folder is not None:
            with flocked(self._folder / f"{name}.lock", name):
                yield
        else:
            yield

    def held(self, name: str) -> bool:
        """Whether a living process holds ``name`` (True when this database cannot tell)."""
        if not self.can_tell:
            return True
        if self._folder is not None and not (self._folder / f"{name}.lock").exists():
            return False
        try:
            with self.hold(name):
                pass
        except Busy:
            return True
        if self._folder is not None:
            (self._folder / f"{name}.lock").unlink(missing_ok=True)
        return False

    def release_file(self, name: str) -> None:
        """Tidy a finished run's lock file (SQLite; advisory locks leave nothing behind)."""
        if self._folder is not None:
            (self._folder / f"{name}.lock").unlink(missing_ok=True)


@contextmanager
def flocked(path: Path, name: str) -> Iterator[None]:
    """Hold an ``flock`` on the file ``path`` (created, with its folder) until the block ends; Busy
    (``name``) at once if another process holds it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(name) from None
        yield
    finally:
        os.close(fd)  # closing releases the flock (so does the process dying)


def _pg_key(name: str) -> dict:
    return {"a": PG_NAMESPACE, "b": zlib.crc32(name.encode()) & 0x7FFFFFFF}
