"""Duplicate screening under degraded inputs and faults (issue 12, cases 3, 8, 9 and 12): a mapping
typo or an empty table stops the run with one line and keeps what is stored; a run's pairs, clusters,
model and watermark commit together or not at all; the incremental index belongs to one source,
includes archives without an update time, is rebuilt when damaged or stale, and is owner-only in the
data directory, as is the SQLite audit store."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from healthqa import config
from healthqa.dedup import index
from healthqa.dedup import spec as specs
from healthqa.pipelines.cli import app
from healthqa.pipelines.dedup import DedupInputError, run_dedup
from healthqa.pipelines.nightly import run_nightly
from healthqa.store import AuditStore
from healthqa.store.runs import Watermarks

from ..conftest import demo_config, write_config

pytestmark = pytest.mark.slow  # duplicate scans run again after damage


NEW = "33021100100199999"  # an archive number the demo does not use


@pytest.fixture(autouse=True)
def _usual_umask():
    """Files are created under the common umask 022: owner-only must come from healthqa, not luck."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def platform(demo: Path, tmp_path: Path, name: str = "platform") -> Path:
    folder = tmp_path / name
    shutil.copytree(demo, folder)
    return folder


def configure(folder: Path, path: Path, store: str | None = None, **changes) -> config.Config:
    """A configuration at ``path`` reading the platform in ``folder``; ``changes``: top-level keys."""
    raw = demo_config(folder)
    raw["store"]["url"] = store or f"sqlite:///{path.with_suffix('.db')}"
    for s in raw["sources"].values():
        s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{folder}/")
    raw.update(changes)
    return config.load(write_config(path, raw))


def mapped(cfg: config.Config, column: str, physical: str, path: Path) -> config.Config:
    """``cfg`` with the person table's ``column`` mapped to ``physical``, written to ``path``."""
    raw = yaml.safe_load(cfg.path.read_text(encoding="utf-8"))
    raw["sources"]["mpi"]["tables"]["person"]["columns"][column] = physical
    return config.load(write_config(path, raw))


def stored(store: AuditStore, source: str = "mpi"):
    pairs = store.dedup.pairs(source)
    found = sorted((tuple(c["members"]), c["status"], c["survivor"]) for c in store.dedup.clusters(source))
    return sorted(zip(pairs["left"], pairs["right"], pairs["decision"], pairs["run_id"])), found


def refused(res, fragment: str) -> None:
    """Exit 2, exactly one line on stderr naming what is wrong, no traceback."""
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("错误 error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in res.output


def add_duplicate(folder: Path, updated: str | None) -> str:
    """A second archive of an existing resident (same ID, name and birth date; no phone)."""
    with sqlite3.connect(folder / "mpi.db") as conn:
        row = conn.execute("SELECT * FROM T_GRDA WHERE SFZH IS NOT NULL AND length(SFZH) = 18 "
                           "ORDER BY DABH LIMIT 1").fetchone()
        cols = [c[1] for c in conn.execute("PRAGMA table_info(T_GRDA)")]
        new = dict(zip(cols, row))
        original = new["DABH"]
        new["DABH"], new["LXDH"], new["GXSJ"] = NEW, None, updated
        conn.execute(f"INSERT INTO T_GRDA ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     list(new.values()))
    return original


def found_new(run) -> bool:
    m = run.result.matches
    return bool(((m["left"] == NEW) | (m["right"] == NEW)).any())


# -- case 3: a mapping typo or an empty column stops the run and keeps what is stored ------------------
@pytest.mark.parametrize("fault", ["typo", "empty"])
def test_degraded_spec_field_stops_dedup_and_keeps_suggestions_and_model(demo, tmp_path, fault):
    folder = platform(demo, tmp_path)
    cfg = configure(folder, tmp_path / "healthqa.yml")
    store = AuditStore(cfg.store.url)
    good = run_dedup(cfg, store)
    assert good.result.stats["matches"] > 0
    before, model = stored(store), store.dedup.last_model("mpi")
    if fault == "typo":  # id_number mapped to a column the MPI does not have
        bad = mapped(cfg, "id_number", "SFZHX", tmp_path / "healthqa.yml")
        fragment = "id_number (column SFZHX not found)"
    else:  # the column exists and holds nothing (an ETL that blanked it)
        with sqlite3.connect(folder / "mpi.db") as conn:
            conn.execute("UPDATE T_GRDA SET SFZH = CASE WHEN rowid % 2 = 0 THEN NULL ELSE '  ' END")
        bad, fragment = cfg, "id_number (column SFZH is empty in every row)"
    for mode in ("--full", "--incremental"):
        res = CliRunner().invoke(app, ["dedup", "--config", str(bad.path), mode])
        refused(res, fragment)
    assert "查重字段" in res.stderr  # Chinese first
    with pytest.raises(DedupInputError):
        run_dedup(bad, store, incremental=True)
    # the nightly reports it and goes on; nothing it reuses was replaced
    night = run_nightly(bad)
    assert night.dedup is None and "id_number" in night.failures["dedup"]
    assert night.validations  # validation still ran
    assert stored(store) == before
    assert store.dedup.last_model("mpi") == model


# -- case 8: atomic persistence, and an empty MPI table ---------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_run_that_fails_while_finishing_keeps_the_earlier_run(demo, tmp_path, monkeypatch, backend, request):
    store_url = request.getfixturevalue("pg_store_url") if backend == "postgresql" else None
    cfg = configure(demo, tmp_path / "healthqa.yml", store=store_url)
    store = AuditStore(cfg.store.url)
    first = run_dedup(cfg, store, incremental=True)
    before, model = stored(store), store.dedup.last_model("mpi")
    mark = store.watermarks.get("mpi", "person", "dedup:updated_at")
    a, b = first.result.matches[["left", "right"]].iloc[0]
    store.review.decide("mpi", a, b, "not_same", user_id=None, user=None)  # the next full run would change the stored pairs

    def lost(*_a, **_k):
        raise RuntimeError("connection to the audit store lost")

    monkeypatch.setattr(Watermarks, "_advance", staticmethod(lost))
    with pytest.raises(RuntimeError, match="lost"):
        run_dedup(cfg, store)
    monkeypatch.undo()
    assert stored(store) == before  # no pair and no cluster of the failed run
    assert store.dedup.last_model("mpi") == model
    assert store.watermarks.get("mpi", "person", "dedup:updated_at") == mark
    assert store.runs.recent(1, kind="dedup")[0].status == "failed"
    # the index still follows the last successful run: the next night builds on it
    again = run_dedup(cfg, store, incremental=True)
    assert again.incremental and again.result.stats["index"] == "used"


@pytest.mark.postgres
def test_two_dedups_at_once_on_a_postgresql_store(demo, tmp_path, monkeypatch, pg_store_url):
    """Both save at the same moment: the second waits for the first and replaces what it stored
    (no IntegrityError on the pairs both found)."""
    import threading

    from healthqa.store.dedup import DedupRecords

    cfg = configure(demo, tmp_path / "healthqa.yml", store=pg_store_url)
    together = threading.Barrier(2, timeout=60)
    save = DedupRecords.save

    def at_once(self, *a, **k):
        together.wait()
        return save(self, *a, **k)

    monkeypatch.setattr(DedupRecords, "save", at_once)
    errors: list[BaseException] = []

    def one(store):
        try:
            run_dedup(cfg, store)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    AuditStore(cfg.store.url).close()  # migrated once, before the two start (as by two processes)
    threads = [threading.Thread(target=one, args=(AuditStore(cfg.store.url, upgrade=False),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with AuditStore(cfg.store.url) as store:
        pairs = store.dedup.pairs("mpi")
        assert len(pairs) > 0 and pairs["run_id"].nunique() == 1  # one run's suggestions, whole
        assert [r.status for r in store.runs.recent(2, kind="dedup")] == ["success", "success"]


def test_empty_mpi_table_is_a_message_and_a_nightly_fault(demo, tmp_path):
    folder = platform(demo, tmp_path)
    with sqlite3.connect(folder / "mpi.db") as conn:
        conn.execute("DELETE FROM T_GRDA")
    cfg = configure(folder, tmp_path / "healthqa.yml")
    for mode in ("--full", "--incremental"):
        refused(CliRunner().invoke(app, ["dedup", "--config", str(cfg.path), mode]), "no archives to deduplicate")
    night = run_nightly(cfg)
    assert night.status == "partial" and "no archives" in night.failures["dedup"]
    assert any(f["kind"] == "run_incomplete" and f["source"] == "mpi" for f in night.faults)


# -- case 9: the incremental index ---------------------------------------------------------------------
def test_archive_without_update_time_is_compared_at_night(demo, tmp_path):
    folder = platform(demo, tmp_path)
    cfg = configure(folder, tmp_path / "healthqa.yml")
    store = AuditStore(cfg.store.url)
    assert not run_dedup(cfg, store, incremental=True).incremental  # the first night is a full run
    add_duplicate(folder, updated=None)
    night = run_dedup(cfg, store, incremental=True)
    assert night.incremental and found_new(night)
    assert 0 < night.result.stats["candidate_pairs"] < 50  # the new archive, not the whole MPI
    assert night.result.stats["index"] == "used"
    # an unchanged archive without an update time is not compared again every night
    quiet = run_dedup(cfg, store, incremental=True)
    assert quiet.result.stats["candidate_pairs"] == 0
    # ... but a change to it is noticed
    with sqlite3.connect(folder / "mpi.db") as conn:
        conn.execute("UPDATE T_GRDA SET LXDH = '13900000000' WHERE DABH = ?", (NEW,))
    assert run_dedup(cfg, store, incremental=True).result.stats["candidate_pairs"] > 0


def test_two_configurations_in_one_folder_keep_their_own_index(demo, tmp_path):
    """Production and a test copy configured side by side (same source name, same folder, each with
    its own store): the test run must not replace the index production's nights build on."""
    prod_db = platform(demo, tmp_path, "prod")
    test_db = platform(demo, tmp_path, "test")
    with sqlite3.connect(test_db / "mpi.db") as conn:  # test data: the same archive numbers, other people
        conn.execute("UPDATE T_GRDA SET SFZH = '330211' || substr('000000000000' || rowid, -12), "
                     "XM = '测试' || rowid, CSRQ = '1900-01-01', LXDH = '1390000' || substr('0000' || rowid, -4)")
    conf = tmp_path / "conf"
    conf.mkdir()
    prod = configure(prod_db, conf / "prod.yml")
    test = configure(test_db, conf / "test.yml")
    run_dedup(prod, AuditStore(prod.store.url), incremental=True)
    run_dedup(test, AuditStore(test.store.url), incremental=True)
    add_duplicate(prod_db, updated="2026-11-25 01:00:00")
    night = run_dedup(prod, AuditStore(prod.store.url), incremental=True)
    assert night.incremental and found_new(night)
    assert night.result.stats["index"] == "used"
    assert index.data_dir(prod) == index.data_dir(test)  # one folder, two stores beside each other
    assert len([d for d in index.data_dir(prod).glob("dedup-index-mpi-*") if d.is_dir()]) == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "stale", "foreign"])
def test_damaged_or_stale_index_is_rebuilt(demo, tmp_path, damage):
    folder = platform(demo, tmp_path)
    cfg = configure(folder, tmp_path / "healthqa.yml")
    store = AuditStore(cfg.store.url)
    run_dedup(cfg, store, incremental=True)
    spec = specs.builtin()
    folder_ = index.path(index.data_dir(cfg), "mpi", index.identity(cfg, "mpi", spec))
    manifest = (folder_ / index.MANIFEST).read_bytes()
    base = next(folder_.glob("base-*.arrow"))
    good = base.read_bytes()
    if damage == "truncated":
        base.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        base.write_bytes(b"ARROW1" + b"\0" * 100)
    elif damage == "stale":  # the index of a run before the last one
        run_dedup(cfg, store, incremental=True)
        (folder_ / index.MANIFEST).write_bytes(manifest)
    else:  # another configuration's index under this one's name
        other = configure(folder, tmp_path / "other.yml")
        run_dedup(other, AuditStore(other.store.url))
        theirs = index.path(index.data_dir(other), "mpi", index.identity(other, "mpi", spec))
        shutil.rmtree(folder_)
        shutil.copytree(theirs, folder_)
    add_duplicate(folder, updated="2026-11-25 01:00:00")
    night = run_dedup(cfg, store, incremental=True)
    expected = {"truncated": "damaged", "garbage": "damaged", "stale": "stale", "foreign": "another source"}
    assert night.incremental and night.result.stats["index"] == expected[damage]
    assert found_new(night)
    # rebuilt: the next night uses it again
    assert run_dedup(cfg, store, incremental=True).result.stats["index"] == "used"


def test_a_model_learned_on_other_inputs_is_not_reused(demo, tmp_path):
    """Another spec (here: other thresholds) or mapping than the last run's: the night runs in full."""
    cfg = configure(demo, tmp_path / "healthqa.yml")
    store = AuditStore(cfg.store.url)
    run_dedup(cfg, store, incremental=True)
    assert run_dedup(cfg, store, incremental=True).incremental
    strict = configure(demo, tmp_path / "strict.yml", store=cfg.store.url,
                       dedup={"thresholds": {"match": 0.999, "review": 0.9}})
    assert not run_dedup(strict, store, incremental=True).incremental
    assert run_dedup(strict, store, incremental=True).incremental


def test_index_identity_ignores_the_password_and_follows_the_source():
    raw = {"sources": {"mpi": {"kind": "sqlalchemy", "url": "postgresql+psycopg://u:secret@h/mpi",
                               "tables": {"person": {"table": "t_grda", "columns": {"archive_id": "dabh"}}}}},
           "store": {"url": "postgresql+psycopg://u:secret@h/audit"}}
    spec = specs.builtin()
    a = index.identity(config.Config.model_validate(raw), "mpi", spec)
    raw["sources"]["mpi"]["url"] = "postgresql+psycopg://u:rotated@h/mpi"
    assert index.identity(config.Config.model_validate(raw), "mpi", spec) == a
    raw["sources"]["mpi"]["url"] = "postgresql+psycopg://u:secret@h/mpi_test"
    assert index.identity(config.Config.model_validate(raw), "mpi", spec) != a


# -- case 12: personal data on disk is owner-only, in the data directory ----------------------------------
def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_index_lives_owner_only_in_the_configured_data_dir(demo, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    legacy = conf / ".healthqa-dedup-index-mpi.parquet"  # where earlier versions left it, 0644
    legacy.write_bytes(b"old index")
    folder = platform(demo, tmp_path)
    cfg = configure(folder, conf / "healthqa.yml", data_dir=str(tmp_path / "private" / "healthqa"))  # outside: absolute
    run_dedup(cfg, AuditStore(cfg.store.url))
    data = tmp_path / "private" / "healthqa"
    (data / "dedup-index-mpi-0123456789abcdef.parquet").write_bytes(b"an earlier release's index")
    add_duplicate(folder, updated="2026-11-25 01:00:00")
    assert run_dedup(cfg, AuditStore(cfg.store.url), incremental=True).result.stats["index_write"] == "delta"
    files = list(data.iterdir())
    assert [f.name.startswith("dedup-index-mpi-") and f.is_dir() for f in files] == [True]  # the old file is gone
    assert mode(data) == 0o700 and mode(files[0]) == 0o700
    inside = list(files[0].iterdir())
    assert {f.name for f in inside} >= {index.MANIFEST} and len(inside) >= 2
    assert all(mode(f) == 0o600 for f in inside)
    assert not legacy.exists() and not list(conf.glob("*.parquet")) and not list(conf.glob(".*.parquet"))
    # a data directory someone loosened is tightened again
    data.chmod(0o755)
    run_dedup(cfg, AuditStore(cfg.store.url))
    assert mode(data) == 0o700


def test_an_unusable_data_dir_stops_dedup_with_one_line(demo, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder", encoding="utf-8")
    cfg = configure(demo, tmp_path / "healthqa.yml", data_dir="taken")
    refused(CliRunner().invoke(app, ["dedup", "--config", str(cfg.path)]), "数据目录不可用 data_dir")
    assert AuditStore(cfg.store.url).runs.recent(kind="dedup") == []  # stopped before any work


def test_default_data_dir_is_beside_a_sqlite_store_or_in_the_user_data_folder(tmp_path, monkeypatch):
    assert index.default_data_dir(f"sqlite:///{tmp_path}/a/audit.db") == tmp_path / "a" / "healthqa-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert index.default_data_dir("postgresql+psycopg://u@h/audit") == tmp_path / "xdg" / "healthqa"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert index.default_data_dir("postgresql+psycopg://u@h/audit") == Path.home() / ".local/share/healthqa"


def test_sqlite_audit_store_is_owner_only(tmp_path):
    fresh = tmp_path / "new.db"
    AuditStore(f"sqlite:///{fresh}").close()
    assert mode(fresh) == 0o600
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()
    old.chmod(0o644)
    AuditStore(f"sqlite:///{old}").close()
    assert mode(old) == 0o600


def test_a_platform_folder_copied_whole_keeps_its_index_identity(demo, tmp_path):
    """A folder holding the configuration, its SQLite sources, audit store and (default) data directory,
    copied or moved whole, is the same index's; with a data directory outside the folder, which other
    configurations may share, the folder's absolute place still tells two copies apart."""
    spec = specs.builtin()
    cfgs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        raw = demo_config(demo)
        raw["store"] = {"url": f"sqlite:///{folder / 'audit.db'}"}  # absolute, as a copy's is written
        cfgs.append(config.load(write_config(folder / "healthqa.yml", raw)))
    assert index.identity(cfgs[0], "mpi", spec) == index.identity(cfgs[1], "mpi", spec)
    shared = []
    for c in cfgs:
        raw = demo_config(c.path.parent)
        raw["data_dir"] = str(tmp_path / "shared")
        shared.append(config.load(write_config(c.path, raw)))
    assert index.identity(shared[0], "mpi", spec) != index.identity(shared[1], "mpi", spec)
