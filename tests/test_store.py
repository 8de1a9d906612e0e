"""The audit store: migrations up and down on SQLite and PostgreSQL, and models that match them."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from healthqa.store import AuditStore
from healthqa.store.models import Base
from healthqa.store.users import add_user
from healthqa.errors import HealthqaError

TABLES = {"runs", "rule_results", "scores", "findings", "watermarks", "dedup_pairs", "dedup_clusters",
          "dedup_cluster_members", "steward_decisions", "users", "audit_log"}


def _check_migrations(url: str) -> None:
    store = AuditStore(url)  # opening applies the migrations
    assert store.revision() is not None
    assert TABLES <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    store.downgrade("base")
    assert store.revision() is None
    assert not TABLES & set(inspect(store.engine).get_table_names())
    store.upgrade()
    assert TABLES <= set(inspect(store.engine).get_table_names())
    store.close()


def test_migrations_up_and_down_sqlite(tmp_path):
    _check_migrations(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.mark.postgres
def test_migrations_up_and_down_postgresql(pg_store_url):
    _check_migrations(pg_store_url)


def test_reopening_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    a = AuditStore(url)
    with a.run("nightly"):
        pass
    a.close()
    b = AuditStore(url)
    from healthqa.store.models import Run

    with b.session() as s:
        runs = s.query(Run).all()
    assert [(r.kind, r.status) for r in runs] == [("nightly", "success")]


def test_failed_run_is_recorded_and_keeps_watermarks(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with pytest.raises(ValueError):
        with store.run("nightly") as ctx:
            ctx.stage_watermark("drc", "outpatient_visit", "upload_time", datetime(2026, 1, 1))
            raise ValueError("boom")
    from healthqa.store.models import Run

    with store.session() as s:
        run = s.get(Run, ctx.id)
        assert run.status == "failed" and "boom" in run.message
    assert store.watermark("drc", "outpatient_visit", "upload_time") is None
    with store.run("nightly") as ctx:
        ctx.stage_watermark("drc", "outpatient_visit", "upload_time", datetime(2026, 1, 2))
        ctx.stage_watermark("drc", "outpatient_visit", "upload_time", datetime(2026, 1, 1))
    assert store.watermark("drc", "outpatient_visit", "upload_time") == datetime(2026, 1, 2)


def test_users_are_unique_and_logged(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    add_user(store, "li", "steward")
    with pytest.raises(HealthqaError, match="already exists"):
        add_user(store, "li", "admin")
    with pytest.raises(HealthqaError, match="role"):
        add_user(store, "wang", "boss")
    from healthqa.store.models import AuditLog

    with store.session() as s:
        assert [(a.action, a.subject) for a in s.query(AuditLog)] == [("user_add", "li")]


def test_unreachable_store_is_one_line(tmp_path):
    from healthqa.store.store import StoreError

    with pytest.raises(StoreError) as e:
        AuditStore("postgresql+psycopg://root@127.0.0.1:1/none?connect_timeout=2")
    assert str(e.value).startswith("audit store postgresql+psycopg://root@127.0.0.1:1/none")
    assert len(str(e.value).splitlines()) == 1
