"""Opening the audit store (migrations applied at start), runs and watermarks."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from ..errors import HealthqaError
from .models import Run, Watermark

if TYPE_CHECKING:
    from .dedup import DedupRecords

MIGRATIONS = Path(__file__).with_name("migrations")


class StoreError(HealthqaError):
    """The audit store cannot be opened or migrated."""


def now() -> datetime:
    return datetime.now().replace(microsecond=0)


@dataclass
class RunContext:
    """A run in progress. Watermarks staged here are written only when the run succeeds."""

    id: int
    kind: str
    pending_watermarks: dict[tuple[str, str, str], datetime] = field(default_factory=dict)

    def stage_watermark(self, source: str, table: str, column: str, value: datetime | None) -> None:
        if value is None:
            return
        k = (source, table, column)
        self.pending_watermarks[k] = max(value, self.pending_watermarks.get(k, value))


class AuditStore:
    """The audit store at a SQLAlchemy URL. Opening it brings its schema to the newest migration."""

    def __init__(self, url: str, *, upgrade: bool = True):
        self.url = url
        try:
            self.engine: Engine = create_engine(url)
            if upgrade:
                self.upgrade()
        except SQLAlchemyError as e:
            from ..errors import one_line

            raise StoreError(f"audit store {self.engine.url.render_as_string(hide_password=True)}: {one_line(e)}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _alembic(self, conn) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        with self.engine.begin() as conn:
            command.upgrade(self._alembic(conn), revision)

    def downgrade(self, revision: str) -> None:
        with self.engine.begin() as conn:
            command.downgrade(self._alembic(conn), revision)

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def session(self):
        with self._sessions() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

    @cached_property
    def dedup(self) -> "DedupRecords":
        """Duplicate-archive pairs, clusters and steward decisions (``store/dedup.py``)."""
        from .dedup import DedupRecords  # imported here: it imports this module

        return DedupRecords(self)

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, kind: str, scope: dict | None = None) -> RunContext:
        with self.session() as s:
            run = Run(kind=kind, status="running", scope=scope, started_at=now())
            s.add(run)
            s.flush()
            return RunContext(id=run.id, kind=kind)

    def finish_run(self, ctx: RunContext, *, ok: bool, message: str | None = None, partial: bool = False) -> None:
        """Close a run; only a successful run advances the watermarks it staged. A ``partial`` run
        (some source failed, the others were read) advances the watermarks still staged on it."""
        with self.session() as s:
            run = s.get(Run, ctx.id)
            run.status = ("partial" if partial else "success") if ok else "failed"
            run.finished_at = now()
            run.message = message
            if ok:
                for (source, table, column), value in ctx.pending_watermarks.items():
                    wm = s.get(Watermark, (source, table, column))
                    if wm is None:
                        s.add(Watermark(source=source, table_name=table, time_column=column, value=value,
                                        run_id=ctx.id, updated_at=now()))
                    elif value > wm.value:
                        wm.value, wm.run_id, wm.updated_at = value, ctx.id, now()

    @contextmanager
    def run(self, kind: str, scope: dict | None = None):
        """``with store.run("nightly") as ctx:`` marks the run failed if the block raises."""
        ctx = self.start_run(kind, scope)
        try:
            yield ctx
        except BaseException as e:
            self.finish_run(ctx, ok=False, message=f"{type(e).__name__}: {e}"[:2000])
            raise
        self.finish_run(ctx, ok=True)

    # -- query namespaces: what reports, the CLI and the console read and change ------------------
    @cached_property
    def scores(self):
        from .findings import ScoreRecords

        return ScoreRecords(self)

    @cached_property
    def findings(self):
        from .findings import FindingRecords

        return FindingRecords(self)

    def watermark(self, source: str, table: str, column: str) -> datetime | None:
        with self.session() as s:
            wm = s.execute(select(Watermark.value).where(
                Watermark.source == source, Watermark.table_name == table, Watermark.time_column == column
            )).scalar_one_or_none()
            return wm
