"""The audit store: migrations up and down on SQLite and PostgreSQL, and models that match them."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from healthqa.errors import HealthqaError
from healthqa.store import AuditStore
from healthqa.store.models import Base

TABLES = {"runs", "rule_results", "scores", "findings", "watermarks", "dedup_pairs", "dedup_clusters",
          "dedup_cluster_members", "steward_decisions", "users", "audit_log"}


def _check_migrations(url: str) -> None:
    store = AuditStore(url)  # opening applies the migrations
    assert store.revision() is not None
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    store.downgrade("base")
    assert store.revision() is None
    assert not TABLES & set(inspect(store.engine).get_table_names())
    store.upgrade()
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    store.close()


def test_migrations_up_and_down_sqlite(tmp_path):
    _check_migrations(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.mark.postgres
def test_migrations_up_and_down_postgresql(pg_store_url):
    _check_migrations(pg_store_url)


def test_reopening_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditStore(url) as a, a.runs.start("nightly"):
        pass
    with AuditStore(url) as b:
        assert [(r.kind, r.status) for r in b.runs.recent()] == [("nightly", "success")]


def test_failed_run_is_recorded_and_keeps_watermarks(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with pytest.raises(ValueError), store.runs.start("nightly") as ctx:
        ctx.stage_watermark("drc", "outpatient_visit", "upload_time", datetime(2026, 1, 1))
        raise ValueError("boom")
    run = store.runs.get(ctx.id)
    assert run.status == "failed" and run.message == "ValueError: boom" and run.finished_at is not None
    assert store.watermarks.get("drc", "outpatient_visit", "upload_time") is None
    with store.runs.start("nightly") as ctx:
        ctx.stage_watermark("drc", "outpatient_visit", "upload_time", datetime(2026, 1, 2))
        ctx.stage_watermark("drc", "outpatient_visit", "upload_time", datetime(2026, 1, 1))
    assert store.watermarks.get("drc", "outpatient_visit", "upload_time") == datetime(2026, 1, 2)
    # a later run that read older rows never moves a watermark back
    with store.runs.start("nightly") as ctx:
        ctx.stage_watermark("drc", "outpatient_visit", "upload_time", datetime(2025, 6, 1))
    assert store.watermarks.all() == {("drc", "outpatient_visit", "upload_time"): datetime(2026, 1, 2)}


def test_partial_run_keeps_the_watermarks_of_the_parts_that_completed(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with store.runs.start("nightly") as run:
        with run.attempt():
            run.stage_watermark("drc", "lab_result", "upload_time", datetime(2026, 1, 3))
        try:
            with run.attempt():
                run.stage_watermark("qc", "health_exam", "exam_date", datetime(2026, 1, 3))
                raise RuntimeError("qc went away")
        except RuntimeError as e:
            run.problem(f"qc: {e}")
        run.problem("dedup:  a stage\nfailed")
    rec = store.runs.get(run.id)
    assert rec.status == "partial" and rec.message == "qc: qc went away; dedup: a stage failed"
    assert store.watermarks.get("drc", "lab_result", "upload_time") == datetime(2026, 1, 3)
    assert store.watermarks.get("qc", "health_exam", "exam_date") is None


def test_previous_results_are_the_last_successful_run_of_the_same_scope(tmp_path):
    from healthqa.store import StoredResult

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    person = {"source": "mpi", "tables": ["person"], "orgs": [], "since": None, "until": None}
    one_org = {**person, "orgs": ["ORG1"]}

    def validated(scope, pct, fail=False):
        with store.runs.start("validate", scope) as run:
            store.results.record(run.id, [StoredResult("mpi", "person", "MPI-ID-VALID", "fail", 3, 100, pct, 0.0,
                                                       columns=["id_number"], by_org={"ORG1": {"violations": 3}})])
            if fail:
                raise RuntimeError("interrupted")
        return run.id

    assert store.results.previous(person) == {}
    first = validated(person, 3.0)
    validated(one_org, 50.0)
    with pytest.raises(RuntimeError):
        validated(person, 99.0, fail=True)  # a failed run is no baseline
    prev = store.results.previous(person)
    assert list(prev) == [("mpi", "person", "MPI-ID-VALID")]
    got = prev[("mpi", "person", "MPI-ID-VALID")]
    assert got.violation_pct == 3.0 and got.columns == ["id_number"] and got.by_org == {"ORG1": {"violations": 3}}
    assert store.results.previous(one_org)[got.key].violation_pct == 50.0
    assert store.runs.last_success("validate", scope=person).id == first
    assert store.runs.last_success("validate", where=lambda s: s["orgs"] == ["ORG1"]).scope == one_org
    assert store.runs.last_success("dedup") is None


def test_a_result_keeps_its_watched_keys_and_none_when_nothing_was_watched(tmp_path):
    """rule_results.watched_keys (migration 0009): every flagged key among those the run watched
    (the demo's valid records, for its exact truth check); NULL for a run that watched none."""
    from healthqa.store import StoredResult

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with store.runs.start("nightly", {}) as run:
        store.results.record(run.id, [
            StoredResult("drc", "outpatient_visit", "OPV-DX-FORMAT", "fail", 900, 9000, 10.0, 5.0,
                         sample_keys=[f"V{i:04d}" for i in range(50)], watched_keys=["V0777"]),
            StoredResult("mpi", "person", "MPI-ID-VALID", "pass", 0, 100, 0.0, 0.0, sample_keys=[])])
    got = {r.rule_id: r for r in store.results.of_run(run.id)}
    assert got["OPV-DX-FORMAT"].watched_keys == ["V0777"] and got["MPI-ID-VALID"].watched_keys is None


def test_pipelines_ask_the_store_and_write_no_queries():
    """The rooms that use the audit store go through its namespaces: no ORM class, no SQLAlchemy."""
    import ast
    from pathlib import Path

    import healthqa.pipelines as pipelines

    here = Path(pipelines.__file__).parent
    for path in [here / f"{name}.py" for name in ("validate", "nightly", "extract")] + sorted((here / "cli").glob("*.py")):
        name = path.relative_to(here).with_suffix("")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for m in mods:
                assert not m.startswith("sqlalchemy") and not m.endswith("store.models"), f"{name}.py imports {m}"


def test_users_are_unique_hashed_and_logged(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.users.add("LiHua", "steward", "green-tea-2026", actor="ops")
    for variant in (" lihua ", "ＬｉＨｕａ", "LIHUA"):  # one account, whatever the case, padding or width
        with pytest.raises(HealthqaError, match="already exists"):
            store.users.add(variant, "admin", "green-tea-2026", actor="ops")
    for name, role, password, why in (("wang", "boss", "green-tea-2026", "role"),
                                      ("wang", "admin", "short1", "at least 12"),
                                      ("wang", "admin", "wang-wang-2026", "too easy"),
                                      ("wang", "admin", "aaaaaaaaaaaaaaaa", "too easy"),
                                      ("wang", "admin", "onlylettershere", "mix letters"),
                                      ("[/x]", "admin", "green-tea-2026", "user name"),
                                      ("", "admin", "green-tea-2026", "user name")):
        with pytest.raises(HealthqaError, match=why):
            store.users.add(name, role, password, actor="ops")
    from healthqa.store.models import AuditLog, User

    with store.session() as s:
        u = s.query(User).one()
        assert u.name == "lihua" and u.password_hash.startswith("$argon2id$") and "green" not in u.password_hash
        assert [(a.user_name, a.action, a.subject) for a in s.query(AuditLog)] == [("ops", "user_add", "lihua")]
    assert store.users.authenticate("LiHua", "green-tea-2026").role == "steward"
    assert store.users.authenticate("lihua", "green-tea-2025") is None
    assert store.users.authenticate("nobody", "green-tea-2026") is None
    store.users.passwd("lihua", "black-tea-2027", actor="ops")
    assert store.users.authenticate("lihua", "green-tea-2026") is None
    assert store.users.authenticate("lihua", "black-tea-2027") is not None
    store.users.disable("lihua", actor="ops")
    assert store.users.authenticate("lihua", "black-tea-2027") is None
    with store.session() as s:
        assert [a.action for a in s.query(AuditLog).order_by(AuditLog.id)] == ["user_add", "user_passwd", "user_disable"]


def test_unreachable_store_is_one_line(tmp_path):
    from healthqa.store.store import StoreError

    with pytest.raises(StoreError) as e:
        AuditStore("postgresql+psycopg://root@127.0.0.1:1/none?connect_timeout=2")
    assert str(e.value).startswith("audit store postgresql+psycopg://root@127.0.0.1:1/none")
    assert len(str(e.value).splitlines()) == 1


# a source named as a district names its systems: 100 characters, Chinese (issue 18)
LONG = {name: (f"{name}：某某市某某区卫生健康信息平台居民电子健康档案与电子病历数据中心质量控制库" * 4)[:100]
        for name in ("mpi", "drc", "qc")}


@pytest.mark.slow
@pytest.mark.postgres
def test_long_source_names_work_on_a_postgresql_store(demo, tmp_path, pg_store_url):
    """Issue 18: a source name over 64 characters broke a PostgreSQL store (``character varying(64)``)
    the first time a result was written. A whole night with three 100-character Chinese names: every
    result, score, finding, watermark and duplicate pair is stored under the full name."""
    from healthqa import config as hconfig
    from healthqa.pipelines.nightly import run_nightly

    from ..conftest import copy_platform, demo_config, write_config

    copy_platform(demo, tmp_path)
    doc = demo_config(tmp_path)
    doc["sources"] = {LONG[k]: v for k, v in doc["sources"].items()}
    doc["store"] = {"url": pg_store_url}
    cfg = hconfig.load(write_config(tmp_path / "healthqa.yml", doc))
    night = run_nightly(cfg)
    with AuditStore(pg_store_url) as store:
        run = store.runs.get(night.run_id)
        assert run.status == "success", run.message
        results = store.results.of_run(night.run_id)
        assert {r.source for r in results} == set(LONG.values())
        with store.engine.connect() as c:
            for table in ("findings", "watermarks", "dedup_pairs"):
                stored = {s for (s,) in c.exec_driver_sql(f"SELECT DISTINCT source FROM {table}")}
                assert stored and stored <= set(LONG.values()), (table, stored)
            subjects = {s for (s,) in c.exec_driver_sql("SELECT subject FROM scores WHERE level = 'table'")}
            assert f"{LONG['mpi']}.person" in subjects


def test_a_source_name_longer_than_the_store_holds_is_refused(demo, tmp_path):
    from healthqa import config as hconfig
    from healthqa.errors import ConfigError

    from ..conftest import demo_config, write_config

    doc = demo_config(demo)
    name = "数" * 256
    doc["sources"][name] = doc["sources"].pop("qc")
    with pytest.raises(ConfigError) as e:
        hconfig.load(write_config(tmp_path / "healthqa.yml", doc))
    assert f"sources.{'数' * 40}…: 数据源名称过长，256 个字符，最多 255 个 (a source's name is at most 255 characters, " \
           f"this one has 256)" in str(e.value)


def test_a_sqlite_store_writes_ahead_and_syncs_each_commit(tmp_path):
    """WAL: a commit does not create, sync and delete a journal file (13–26 ms here); FULL: a commit
    is on disk when it returns. A reader sees a writer's committed rows while the writer holds the file."""
    import sqlite3

    db = tmp_path / "audit.db"
    with AuditStore(f"sqlite:///{db}") as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        with store.runs.start("validate") as run, sqlite3.connect(db) as other:  # another process' view
            assert other.execute("SELECT status FROM runs WHERE id = ?", (run.id,)).fetchone() == ("running",)


def test_deleting_a_sqlite_store_deletes_its_wal_companions(tmp_path):
    from healthqa.store import delete_sqlite_store

    db = tmp_path / "audit.db"
    for name in ("audit.db", "audit.db-wal", "audit.db-shm", "audit.db-journal", "keep.db"):
        (tmp_path / name).write_bytes(b"x")
    delete_sqlite_store(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.db"]

def test_the_newest_migration_read_from_the_files_is_alembics_head():
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from healthqa.store.store import MIGRATIONS, head

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head() == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_store_at_the_newest_migration_opens_without_alembic(tmp_path):
    """Every command opens the store: one query says it is current; Alembic loads only to upgrade."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    probe = "import sys; from healthqa.store import AuditStore; AuditStore(sys.argv[1]); print('alembic' in sys.modules)"
    opened = [subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True).stdout.strip()
              for _ in range(2)]
    assert opened == ["True", "False"]  # a new store is created through Alembic; a current one is not


def test_a_store_behind_the_newest_migration_is_still_upgraded(tmp_path):
    from healthqa.store.store import head

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(url).downgrade("0010_api_tokens")
    with AuditStore(url) as store:
        assert store.revision() == head()
        assert "institution_names" in inspect(store.engine).get_table_names()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_tokens_match_calls_are_counted_in_the_store_by_the_minute(backend, tmp_path, request):
    """Two store handles (two console processes) count one token's calls together; the window starts
    again a minute after its first call; another token has its own."""
    from healthqa import clock

    url = request.getfixturevalue("pg_store_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'a.db'}"
    with AuditStore(url) as one, AuditStore(url) as two, clock.frozen(datetime(2026, 12, 8, 3, 0)) as c:
        assert [one.tokens.call("his", 3), two.tokens.call("his", 3), one.tokens.call("his", 3)] == [True] * 3
        assert not two.tokens.call("his", 3) and not one.tokens.call("his", 3)
        assert two.tokens.call("lis", 3)  # another token's own window
        c.advance(seconds=59)
        assert not one.tokens.call("his", 3)
        c.advance(seconds=1)
        assert two.tokens.call("his", 3) and one.tokens.call("his", 3)
        c.advance(hours=2)
        assert one.tokens.call("his", 1) and not two.tokens.call("his", 1)


def test_a_new_validation_job_clears_jobs_ended_long_ago_never_a_running_one(tmp_path):
    """console_jobs keeps the engineer's jobs ``console.job_keep_days``: those that ended longer ago go
    when a new job starts; one still running stays however old, as do the runs the old jobs made."""
    from healthqa import clock
    from healthqa.store.models import ConsoleJob

    with AuditStore(f"sqlite:///{tmp_path / 'a.db'}") as store, clock.frozen(datetime(2026, 1, 1, 9, 0)) as c:
        jobs, scope = store.jobs, {"source": "mpi", "tables": ["person"], "orgs": []}
        with jobs.running("eng1", scope) as old_done:
            jobs.finish(old_done, "done")
        with jobs.running("eng1", scope) as old_failed:
            jobs.finish(old_failed, "failed", error="x")
        with store.session() as s:  # a job whose process still runs it (as far as the row says)
            s.add(ConsoleJob(user_name="eng2", scope=scope, state="running", owner="elsewhere",
                             started_at=clock.now(), done_tables=[]))
        c.advance(days=10)
        with jobs.running("eng1", scope, keep_days=30) as recent:
            jobs.finish(recent, "done")
        c.advance(days=25)  # the first two ended 35 days ago, the third 25
        with jobs.running("eng1", scope, keep_days=30) as new:
            jobs.finish(new, "done")
        with store.session() as s:
            left = {j.id: j.state for j in s.query(ConsoleJob)}
        assert old_done not in left and old_failed not in left
        assert recent in left and new in left and "running" in left.values()
