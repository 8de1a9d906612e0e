"""Opening the audit store (migrations applied at start); its questions live in namespaces
(``store.runs``, ``store.watermarks``, ``store.results`` …) so callers never write queries.

Every command opens the store, and a store is nearly always at the newest migration already: opening
reads its revision (one query) and compares it with the newest migration's, read from the migration
files' ``revision`` / ``down_revision`` lines (``head``); only a store behind it (or new, or not
ours) loads Alembic to upgrade it (Alembic's import and its walk of the migration scripts were
about a fifth of a CPU second of every command)."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from healthqa.errors import StoreError, one_line

from .models import Base
from .results import Results
from .runs import Runs, Watermarks

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

    from .dedup import DedupRecords
    from .findings import FindingRecords, ScoreRecords
    from .institutions import Institutions
    from .jobs import Jobs
    from .locks import Locks
    from .review import Review
    from .tokens import Tokens
    from .users import Users

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_S = 30
# a SQLite store's companions in write-ahead-log mode: deleting the store deletes them too (a WAL left
# by a killed process would otherwise be replayed onto a new store of the same name)
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _sqlite_wal(dbapi_conn, _record) -> None:
    """A SQLite store in write-ahead-log mode, each commit still synced (``synchronous=FULL``): a
    commit in the default rollback-journal mode creates, syncs and deletes a journal file — 13–26 ms
    on this project's machines, against 0.3 ms in WAL — and the console's audit log, the steward's
    decisions and ``$match`` commit once per request. Readers no longer wait for a night's writer.
    A file system that cannot hold a WAL (a network share) keeps the journal mode SQLite chose."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
    finally:
        cur.close()


def delete_sqlite_store(path: Path) -> None:
    """Delete a SQLite audit store file and its WAL companions."""
    for suffix in ("", *SQLITE_COMPANIONS):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:['"]([^'"]+)['"]|None)\s*$""", re.M)


@cache
def head() -> str:
    """The newest migration's revision, from the migration files without Alembic: the one revision
    no other names as its ``down_revision`` (``tests/core/test_store.py`` holds it equal to
    Alembic's head). A branch or a file the pattern cannot read raises: upgrade through Alembic."""
    revisions: set[str] = set()
    downs: set[str | None] = set()
    for f in (MIGRATIONS / "versions").glob("*.py"):
        found: dict[str, str | None] = {k: v or None for k, v in _REVISION_LINE.findall(f.read_text(encoding="utf-8"))}
        revision = found.get("revision")
        if revision is None or "down_revision" not in found:
            raise ValueError(f"{f.name}: no revision / down_revision line")
        revisions.add(revision)
        downs.add(found["down_revision"])
    heads = revisions - downs
    if len(heads) != 1:
        raise ValueError(f"migration heads: {sorted(heads)}")
    return heads.pop()


def _owner_only(u) -> None:
    """A SQLite audit store file is readable by its owner only (0600): it holds archive numbers,
    steward decisions and masked samples. Created so before SQLite opens it (SQLite gives its journal
    and WAL files the database file's permissions); an existing one of ours is tightened."""
    db = u.database if u.get_backend_name() == "sqlite" else None
    if not db or db == ":memory:" or db.startswith("file:") or not os.path.isdir(os.path.dirname(db) or "."):
        return  # a server store, an in-memory one, or a folder that does not exist (SQLite says so)
    try:
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        st = os.stat(db)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(db, 0o600)
    except OSError as e:
        raise StoreError(f"audit store {db}: {e.strerror or e}") from None


class AuditStore:
    """The audit store at a SQLAlchemy URL. Opening it brings its schema to the newest migration."""

    def __init__(self, url: str, *, upgrade: bool = True):
        self.url = url
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as e:
            raise StoreError(f"store.url: not a database URL ({one_line(e)}); e.g. sqlite:///audit.db or "
                             "postgresql+psycopg://user@host/db") from None
        self._shown = parsed.render_as_string(hide_password=True)
        _owner_only(parsed)
        # SQLite: wait for a writer rather than fail at once (a report or a second command may hold it)
        args = {"timeout": SQLITE_BUSY_S} if parsed.get_backend_name() == "sqlite" else {}
        try:
            self.engine: Engine = create_engine(parsed, connect_args=args)
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
                event.listen(self.engine, "connect", _sqlite_wal)
            if upgrade:
                self.upgrade()
        except (SQLAlchemyError, ImportError) as e:
            raise StoreError(f"audit store {self._shown}: {one_line(e)}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # one statement's read needs no transaction of its own: without BEGIN and COMMIT it is one
        # round trip to the server instead of three (a queue page reads six times)
        self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def _alembic(self, conn) -> AlembicConfig:
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        if revision == "head" and self._at_head():
            return
        from alembic import command

        with self.engine.begin() as conn:
            command.upgrade(self._alembic(conn), revision)

    def _at_head(self) -> bool:
        """Whether the store is at the newest migration (one query, no Alembic): its version table
        holds exactly the head's revision. Anything else — no version table, another revision, a
        migration file the quick read cannot parse — is left to Alembic's upgrade."""
        try:
            newest = head()
        except (OSError, ValueError):
            return False
        try:
            with self.engine.connect() as conn:
                found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except SQLAlchemyError:
            return False  # a new store (no version table yet): Alembic creates it
        return found == [newest]

    def downgrade(self, revision: str) -> None:
        from alembic import command

        with self.engine.begin() as conn:
            command.downgrade(self._alembic(conn), revision)

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def session(self):
        """One transaction. A database that refuses it (locked beyond the busy timeout, gone, a row
        another run wrote at the same moment) is a one-line StoreError, never a driver traceback."""
        try:
            with self._sessions() as s, s.begin():
                yield s
        except (OperationalError, IntegrityError, InterfaceError) as e:
            raise StoreError(f"audit store {self._shown}: {one_line(e)} — nothing of this step was written; "
                             "run it again / 本步骤未写入，请重试") from None

    @contextmanager
    def transaction(self):
        """One transaction on a plain connection (SQLAlchemy Core, no ORM session): for the console's
        requests, which ask a few questions each — a session's set-up, its unit of work and ORM rows
        cost more CPU than the statements. Errors as ``session``'s."""
        try:
            with self.engine.begin() as c:
                yield c
        except (OperationalError, IntegrityError, InterfaceError) as e:
            raise StoreError(f"audit store {self._shown}: {one_line(e)} — nothing of this step was written; "
                             "run it again / 本步骤未写入，请重试") from None

    def rows(self, statement, params: dict | None = None) -> list:
        """The rows of one read: one statement, in autocommit (it sees what one statement of a
        transaction would; no BEGIN or COMMIT sent). Errors as ``session``'s. Statements are meant
        to be built once (module level, ``bindparam``) so that SQLAlchemy only looks up their
        compiled form."""
        try:
            with self._reader.connect() as c:
                return list(c.execute(statement, params or {}).all())
        except (OperationalError, IntegrityError, InterfaceError) as e:
            raise StoreError(f"audit store {self._shown}: {one_line(e)} — nothing of this step was written; "
                             "run it again / 本步骤未写入，请重试") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def counts(self) -> dict[str, int]:
        """Rows in each table the store holds (what deleting it would lose), without migrating it."""
        try:
            present = set(inspect(self.engine).get_table_names())
            with self.engine.connect() as conn:
                return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                        for t in Base.metadata.sorted_tables if t.name in present}
        except SQLAlchemyError as e:  # not a database at all (any file named audit.db), or not readable
            raise StoreError(f"审计库无法读取 audit store {self._shown} cannot be read: {one_line(e)}") from None

    # -- what the store answers, one namespace per subject ------------------------------------
    @cached_property
    def runs(self) -> Runs:
        """Start and finish runs (the one run lifecycle); find past runs."""
        return Runs(self)

    @cached_property
    def watermarks(self) -> Watermarks:
        """Incremental sampling's watermarks (advanced only by finishing a run)."""
        return Watermarks(self)

    @cached_property
    def results(self) -> Results:
        """Validation results: record a run's, read a scope's previous ones."""
        return Results(self)

    # The namespaces below load on first use: pandas and Argon2 come with the first question that
    # needs them, not with every command (the command line imports the store at start).
    @cached_property
    def dedup(self) -> DedupRecords:
        """Duplicate-archive pairs, clusters and steward decisions (``store/dedup.py``)."""
        from .dedup import DedupRecords

        return DedupRecords(self)

    @cached_property
    def review(self) -> Review:
        """The steward's review: the queue, decisions with who made them, merges to export, the audit log."""
        from .review import Review

        return Review(self)

    @cached_property
    def locks(self) -> Locks:
        """Locks that die with their process (runs, the nightly audit)."""
        from .locks import Locks

        return Locks(self)

    @cached_property
    def users(self) -> Users:
        """Console accounts: Argon2 hashes, normalised names, every change in the audit log."""
        from .users import Users

        return Users(self)

    @cached_property
    def jobs(self) -> Jobs:
        """The engineer's validations started from the console: state, progress, result, for every process."""
        from .jobs import Jobs

        return Jobs(self)

    @cached_property
    def tokens(self) -> Tokens:
        """Machines' API tokens (the match API): hashed, revocable, every change in the audit log."""
        from .tokens import Tokens

        return Tokens(self)

    @cached_property
    def institutions(self) -> Institutions:
        """The register of institutions as the last read of it found it (names for reports)."""
        from .institutions import Institutions

        return Institutions(self)

    @cached_property
    def scores(self) -> ScoreRecords:
        """Quality scores of runs, and their history."""
        from .findings import ScoreRecords

        return ScoreRecords(self)

    @cached_property
    def findings(self) -> FindingRecords:
        """Maintenance findings: what runs keep, what people read and change."""
        from .findings import FindingRecords

        return FindingRecords(self)
