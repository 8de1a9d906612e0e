"""The promise of one line, never a traceback: every command with the misuses a careless user makes
exits 2 with one line `错误 error: …` on stderr (issue 12's table)."""

from __future__ import annotations

import sqlite3

import pytest
import yaml

from .cli_run import invoke, refused

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli_readers")]  # the session's demo (conftest.built)


def variant(folder, tmp_path, **store):
    cfg = yaml.safe_load((folder / "healthqa.yml").read_text(encoding="utf-8"))
    cfg["store"] = store
    path = folder / f"{tmp_path.name}.yml"  # beside the demo's: its sources are relative to the folder
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("args, fragment", [
    (["demo", "--dir", "{tmp}/d", "--persons", "100", "--seed", "-1"], "--seed"),
    (["demo", "--dir", "{tmp}/d", "--persons", "5"], "--persons"),
    (["validate", "--config", "{cfg}", "--source", "mpi", "--json", "{tmp}/no/such/out.json"], "does not exist"),
    (["dedup", "--config", "{cfg}", "--truth", "{tmp}/missing.csv"], "--truth"),
    (["report", "--config", "{cfg}", "--quarter", "Q4"], "2026Q4"),
    (["report", "--config", "{cfg}", "--run", "424242"], "no such run"),
    (["findings", "ack", "424242", "--config", "{cfg}"], "no such finding"),
    (["findings", "--config", "{cfg}", "--json", "{tmp}"], "it is a folder"),
    (["users", "passwd", "nobody", "--config", "{cfg}"], "no such user"),
    (["validate", "--config", "{tmp}/nope.yml", "--source", "mpi"], "nope.yml"),
    (["validate", "--config", "{cfg}", "--source", "nosuch"], "no such source"),
])
def test_misuse_is_one_line(built, tmp_path, args, fragment):
    folder, _ = built
    args = [a.format(tmp=tmp_path, cfg=folder / "healthqa.yml") for a in args]
    refused(invoke(*args), fragment)


@pytest.mark.parametrize("url, fragment", [
    ("not a url::", "store.url: not a database URL"),
    ("postgresql+psycopg://root@127.0.0.1:1/none?connect_timeout=2", "audit store postgresql+psycopg://root@127.0.0.1:1"),
    ("nosuchdialect://x/y", "audit store nosuchdialect://x/y"),
])
def test_a_bad_store_url_is_one_line(built, tmp_path, url, fragment):
    folder, _ = built
    res = invoke("validate", "--config", variant(folder, tmp_path, url=url), "--source", "mpi", "--table", "person")
    refused(res, fragment)


def test_a_store_locked_beyond_its_busy_timeout_is_one_line(built, tmp_path, monkeypatch):
    """Another program takes the SQLite audit store while the validation works: recording its
    results fails in one line, exit 2, saying nothing of the step was written."""
    from healthqa.pipelines import validate as validate_mod
    from healthqa.store import store as store_mod

    folder, _ = built
    db = tmp_path / "audit.db"
    cfg = variant(folder, tmp_path, url=f"sqlite:///{db}")
    assert invoke("validate", "--config", cfg, "--source", "drc", "--table", "organization").exit_code in (0, 1)
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM rule_results").fetchone()[0]
    monkeypatch.setattr(store_mod, "SQLITE_BUSY_S", 1)
    holder = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    work = validate_mod._validate_tables

    def validate_then_lock(*args, **kwargs):
        out = work(*args, **kwargs)
        holder.execute("BEGIN EXCLUSIVE")  # the validation is done; now somebody holds the store
        return out

    monkeypatch.setattr(validate_mod, "_validate_tables", validate_then_lock)
    try:
        res = invoke("validate", "--config", cfg, "--source", "drc", "--table", "organization")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = refused(res, "database is locked")
    assert "nothing of this step was written" in line
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM rule_results").fetchone()[0] == before
