"""The nightly duplicate screening against the index (dedup/night.py, dedup/index.py): a night that
reads only the archives added, changed or removed stores the pairs and clusters a run over the whole
MPI stores with the same model and stored matches — archives sharing a number, archives removed,
deltas and their compaction included — and steward decisions made between nights count both ways."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest

from healthqa import clock, config
from healthqa.connectors.readers import Reader
from healthqa.dedup import index
from healthqa.dedup import spec as specs
from healthqa.pipelines.dedup import run_dedup
from healthqa.store import AuditStore
from healthqa.store.dedup import DedupRecords

from ..conftest import demo_config, write_config

pytestmark = pytest.mark.slow  # full and incremental scans compared


LATER = "2026-11-25 01:00:00"  # after the demo's last update time: the watermark of a first run


def configure(folder, where, name="healthqa"):
    raw = demo_config(folder)
    raw["store"]["url"] = f"sqlite:///{where / f'{name}.db'}"
    raw["data_dir"] = str(where / f"{name}-data")
    for s in raw["sources"].values():
        s["url"] = s["url"].replace("sqlite:///", f"sqlite:///{folder}/")
    return config.load(write_config(where / f"{name}.yml", raw))


def stored(store: AuditStore) -> tuple[list, list]:
    pairs = store.dedup.pairs("mpi")
    pairs = sorted(zip(pairs["left"], pairs["right"], pairs["decision"], pairs["score"].round(12)))
    found = sorted((tuple(c["members"]), c["status"], c["survivor"], str(c["proposal"])) for c in store.dedup.clusters("mpi"))
    return pairs, found


def sql(folder, *statements) -> None:
    with sqlite3.connect(folder / "mpi.db") as conn:
        for s in statements:
            conn.execute(s)


def members_of(store: AuditStore) -> set[str]:
    return {m for c in store.dedup.clusters("mpi") for m in c["members"]}


@pytest.fixture
def night(demo, tmp_path):
    """A platform whose tenth of archives was held back from a full run (``night`` table), and the
    configuration reading it."""
    folder = tmp_path / "platform"
    shutil.copytree(demo, folder)
    sql(folder, "CREATE TABLE night AS SELECT * FROM T_GRDA WHERE rowid % 10 = 7",
        "DELETE FROM T_GRDA WHERE rowid % 10 = 7")
    cfg = configure(folder, tmp_path)
    assert not run_dedup(cfg, AuditStore(cfg.store.url), incremental=True).incremental  # the first is a full run
    return folder, cfg


def copy_store(source, target) -> None:
    """A SQLite audit store copied through SQLite (its online backup): the store is in write-ahead-log
    mode, so the file alone misses the commits still in its WAL while a connection is open, and a file
    copied over a live store would have that store's WAL replayed onto it."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


class State:
    """The audit store and data folder of a configuration, kept aside and put back: the same night
    is then run once against the index and once without it (the reference)."""

    def __init__(self, cfg, where):
        self.cfg, self.where = cfg, where
        self.db = cfg.store.url.removeprefix("sqlite:///")

    def keep(self) -> None:
        shutil.rmtree(self.where, ignore_errors=True)
        self.where.mkdir()
        copy_store(self.db, self.where / "audit.db")
        shutil.copytree(self.cfg.data_dir, self.where / "data")

    def back(self, index_too: bool) -> None:
        copy_store(self.where / "audit.db", self.db)
        shutil.rmtree(self.cfg.data_dir)
        if index_too:
            shutil.copytree(self.where / "data", self.cfg.data_dir)
        else:
            index.data_dir(self.cfg)


def both_ways(cfg, state: State):
    """The night against the index, then the same night over the whole MPI from the same state:
    both runs and what each stored."""
    state.keep()
    n = run_dedup(cfg, AuditStore(cfg.store.url), incremental=True)
    mine = stored(AuditStore(cfg.store.url))
    state.back(index_too=False)
    ref = run_dedup(cfg, AuditStore(cfg.store.url), incremental=True)
    assert ref.incremental and ref.result.stats["index"] == "missing"
    theirs = stored(AuditStore(cfg.store.url))
    state.back(index_too=True)  # the night's own state again
    run_dedup(cfg, AuditStore(cfg.store.url), incremental=True)
    return n, ref, mine, theirs


def test_night_against_the_index_equals_a_night_over_the_whole_mpi(night, tmp_path, monkeypatch):
    folder, cfg = night
    store = AuditStore(cfg.store.url)
    state = State(cfg, tmp_path / "kept")
    clustered = sorted(members_of(store))
    gone = [clustered[0]]
    sql(folder, f"UPDATE night SET GXSJ = '{LATER}'", "INSERT INTO T_GRDA SELECT * FROM night",
        # a clustered archive changed, one removed, one given a second row of its own number
        f"UPDATE T_GRDA SET LXDH = '13912345678', GXSJ = '{LATER}' WHERE DABH = '{clustered[1]}'",
        f"DELETE FROM T_GRDA WHERE DABH = '{gone[0]}'",
        f"INSERT INTO T_GRDA SELECT * FROM T_GRDA WHERE DABH = '{clustered[3]}'",
        f"UPDATE T_GRDA SET GXSJ = '{LATER}', XZZ = XZZ || '1号' WHERE rowid = (SELECT max(rowid) FROM T_GRDA)")
    monkeypatch.setattr(index, "COMPACT_SHARE", 1.0)  # a tenth of the MPI is new: kept as a delta all the same
    n, ref, mine, theirs = both_ways(cfg, state)
    assert n.incremental and n.result.stats["index"] == "used" and n.result.stats["index_write"] == "delta"
    assert 0 < n.result.stats["clusters_made"] < n.result.stats["clusters"]  # only the touched ones were made
    assert n.result.stats["candidate_pairs"] == ref.result.stats["candidate_pairs"] > 20
    assert mine == theirs and len(mine[1]) > 10
    for k in ("clusters", "clusters_to_review"):
        assert n.result.stats[k] == ref.result.stats[k]
    assert n.as_json()["survivors"] == ref.as_json()["survivors"]
    assert gone[0] not in members_of(store)
    assert not store.dedup.pairs("mpi")[["left", "right"]].isin(gone).any().any()

    # a second night, whose delta makes the deltas outgrow their share: the index is compacted
    sql(folder, f"UPDATE T_GRDA SET XM = XM || '华', GXSJ = '2026-11-25 02:00:00' WHERE DABH = '{clustered[5]}'",
        f"DELETE FROM T_GRDA WHERE DABH = '{clustered[7]}'")
    monkeypatch.setattr(index, "COMPACT_SHARE", 0.0)
    n2, _, mine, theirs = both_ways(cfg, state)
    assert n2.result.stats["index"] == "used" and n2.result.stats["index_write"] == "compacted"
    assert mine == theirs
    folder_ = index.path(index.data_dir(cfg), "mpi", index.identity(cfg, "mpi", specs.builtin()))
    assert [f.name.startswith("base-") for f in folder_.glob("*.arrow")] == [True]
    idx, why = index.load(folder_, index.identity(cfg, "mpi", specs.builtin()), store.dedup.last_model("mpi")["index"])
    with sqlite3.connect(folder / "mpi.db") as conn:
        assert why == "used" and idx.rows == conn.execute("SELECT COUNT(*) FROM T_GRDA").fetchone()[0]
    # a number that loses one of its two rows (the reference cannot tell: it never knew the count)
    twice = store.dedup.pairs("mpi").query("left == right")
    assert set(twice["left"]) == {clustered[3]}  # the pair of its two rows
    sql(folder, f"DELETE FROM T_GRDA WHERE rowid = (SELECT max(rowid) FROM T_GRDA WHERE DABH = '{clustered[3]}')")
    one = run_dedup(cfg, store, incremental=True)
    assert one.result.stats["candidate_pairs"] > 0 and store.dedup.pairs("mpi").query("left == right").empty
    # a night with nothing new changes nothing, on the compacted index too
    after = stored(store)
    quiet = run_dedup(cfg, store, incremental=True)
    assert quiet.result.stats["index"] == "used" and quiet.result.stats["candidate_pairs"] == 0
    assert quiet.result.stats["clusters_made"] == 0 and stored(store) == after


def test_a_night_learns_from_the_stewards_as_the_whole_mpi_does(night, tmp_path):
    """Enough decisions for the stewards' model: the night takes the decided pairs' rows from the
    index and learns the same model a night over the whole MPI learns."""
    folder, cfg = night
    store = AuditStore(cfg.store.url)
    pairs = store.dedup.pairs("mpi").sort_values(["left", "right"])
    matched = pairs[pairs["decision"] == "match"]
    assert len(matched) >= 35
    with clock.frozen() as c:
        for k, (a, b) in enumerate(zip(matched["left"], matched["right"])):
            if k < 35:
                store.review.decide("mpi", a, b, "not_same" if k % 7 == 0 else "merge", user_id=None, user="li",
                                    survivor=a)
        c.advance(seconds=1)  # a decision of the instant a run reads them would count again
        run_dedup(cfg, store, incremental=True)  # the decisions are taken in
        sql(folder, f"UPDATE night SET GXSJ = '{LATER}'", "INSERT INTO T_GRDA SELECT * FROM night")
        n, ref, mine, theirs = both_ways(cfg, State(cfg, tmp_path / "kept"))
    assert n.result.stats["index"] == "used" and n.result.stats["supervised_on"] == ref.result.stats["supervised_on"] == 35
    assert n.result.stats["candidate_pairs"] > 20 and mine == theirs


def test_decisions_between_nights_count_both_ways(night, monkeypatch):
    folder, cfg = night
    store = AuditStore(cfg.store.url)
    pair = store.dedup.pairs("mpi").query("decision == 'match'").iloc[0]
    a, b = pair["left"], pair["right"]
    d = store.review.decide("mpi", a, b, "not_same", user_id=None, user="li")
    quiet = run_dedup(cfg, store, incremental=True)  # nothing new in the MPI, one decision
    assert quiet.result.stats["rescored_pairs"] == 1
    row = store.dedup.pairs("mpi").query("left == @a and right == @b")
    assert row["decision"].tolist() == ["non_match"]  # never suggested again
    assert not any({a, b} <= set(c["members"]) and c["status"] == "proposed" for c in store.dedup.clusters("mpi"))
    assert store.review.undo(d.id, user_id=None, user="li").undone_at is not None
    run_dedup(cfg, store, incremental=True)
    row = store.dedup.pairs("mpi").query("left == @a and right == @b")
    assert row["decision"].tolist() == ["match"]  # suggested again once the decision is undone
    assert any({a, b} <= set(c["members"]) for c in store.dedup.clusters("mpi"))
    # a decision made while a night computes (after it read the decisions) counts for the next one
    c, d = store.dedup.pairs("mpi").query("decision == 'match'").iloc[1][["left", "right"]]
    read = DedupRecords.open_clusters

    def meanwhile(self, source):
        frozen.advance(milliseconds=1)  # after the night read the decisions
        store.review.decide("mpi", c, d, "not_same", user_id=None, user="li")
        frozen.advance(seconds=1.1)  # the run's own record starts later: the decision is older than it
        return read(self, source)

    monkeypatch.setattr(DedupRecords, "open_clusters", meanwhile)
    with clock.frozen() as frozen:
        run_dedup(cfg, store, incremental=True)
        monkeypatch.undo()
        assert run_dedup(cfg, store, incremental=True).result.stats["rescored_pairs"] >= 1  # (and those of this second)
    assert store.dedup.pairs("mpi").query("left == @c and right == @d")["decision"].tolist() == ["non_match"]


def test_an_archive_that_appears_with_an_old_update_time_is_compared(night):
    """Not after the watermark, yet new to the index (a migrated archive): the read of the table's
    archive numbers notices it."""
    folder, cfg = night
    store = AuditStore(cfg.store.url)
    sql(folder, "INSERT INTO T_GRDA SELECT * FROM night WHERE rowid % 7 = 0")  # their old update times
    with sqlite3.connect(folder / "mpi.db") as conn:
        added = {r[0] for r in conn.execute("SELECT DABH FROM night WHERE rowid % 7 = 0")}
    n = run_dedup(cfg, store, incremental=True)
    assert n.result.stats["index"] == "used" and n.result.stats["candidate_pairs"] > 0
    m = n.result.matches
    assert (m["left"].isin(added) | m["right"].isin(added)).any()
    assert run_dedup(cfg, store, incremental=True).result.stats["candidate_pairs"] == 0  # and not again


def test_index_segments_round_trip(tmp_path, monkeypatch):
    """A base, a delta replacing one number and removing another, then a compaction: the live rows are
    the latest of each number; a column empty in the base takes the values a delta brings."""
    import numpy as np
    import pandas as pd

    def frame(keys, org):
        return pd.DataFrame({"key": keys, "__block0": np.arange(len(keys), dtype=np.int64) + 1, index.ROW: np.zeros(
            len(keys), dtype=np.uint64), index.PRESENT: 1, index.UPDATED: 0, index.ORG: org})

    folder = tmp_path / "idx"
    monkeypatch.setattr(index, "COMPACT_SHARE", 10.0)
    index.save(folder, frame(["a", "b", "b", "c"], [None] * 4), ["archive_id"], "id", "t1", 1)
    idx, why = index.load(folder, "id", "t1")
    assert why == "used" and idx.rows == 4
    assert index.append(idx, frame(["b"], ["X1"]), ["c"], "id", "t2", 2) == "delta"
    assert index.load(folder, "id", "t1")[1] == "stale"
    idx, _ = index.load(folder, "id", "t2")
    assert sorted(idx.take(idx.having("key", ["a", "b", "c"]), ["key", index.ORG]).itertuples(index=False, name=None)) \
        == [("a", None), ("b", "X1")]
    new, gone, recount, many = idx.differences(pd.Series(["a", "b", "b", "d"]))
    assert (new, gone, recount, many) == ({"d"}, set(), {"b"}, {"b": 2})
    monkeypatch.setattr(index, "COMPACT_SHARE", 0.0)
    assert index.append(idx, frame(["d"], ["X2"]), [], "id", "t3", 3) == "compacted"
    idx, why = index.load(folder, "id", "t3")
    assert why == "used" and len(idx.tables) == 1 and sorted(idx.take(np.arange(idx.rows), ["key"])["key"]) == ["a", "b", "d"]
    assert sorted(p.name for p in folder.iterdir()) == ["base-t3.arrow", index.MANIFEST]


def test_a_night_reads_its_own_archives_and_their_blocks_only(night, monkeypatch):
    """What a night reads, counted: from the MPI, the archives updated since the last run (and the
    first rows that tell every spec field has values), never the whole table; from the index, the
    rows sharing a block with them, never the whole index."""
    folder, cfg = night
    sql(folder, f"UPDATE night SET GXSJ = '{LATER}' WHERE rowid % 10 = 3",
        "INSERT INTO T_GRDA SELECT * FROM night WHERE rowid % 10 = 3")
    with sqlite3.connect(folder / "mpi.db") as conn:
        new = conn.execute("SELECT COUNT(*) FROM night WHERE rowid % 10 = 3").fetchone()[0]
        total = conn.execute("SELECT COUNT(*) FROM T_GRDA").fetchone()[0]
    read: dict[tuple[str, str], int] = {}
    taken: list[int] = []
    read_all, take = Reader.read_all, index.Index.take

    def counted_read(self, table, scope=None, columns=None):
        df = read_all(self, table, scope, columns)
        what = (table, scope.sampling.method if scope else "full")
        read[what] = read.get(what, 0) + len(df)
        return df

    def counted_take(self, positions, columns=None):
        taken.append(len(positions))
        return take(self, positions, columns)

    monkeypatch.setattr(Reader, "read_all", counted_read)
    monkeypatch.setattr(index.Index, "take", counted_take)
    n = run_dedup(cfg, AuditStore(cfg.store.url), incremental=True)
    assert n.result.stats["index"] == "used" and n.result.stats["compared"] == new > 10
    person = {k: v for k, v in read.items() if k[0] == specs.builtin().table}  # (the register is read too)
    assert person == {("person", "incremental"): new, ("person", "full"): 1000}  # and the probe's first rows
    assert 0 < sum(taken) < total / 5, (taken, total)


def test_the_incremental_command_loads_no_orchestration_rule_engine_nor_unused_libraries(night):
    """``healthqa dedup --incremental`` as the user runs it loads neither Prefect nor Great
    Expectations, nor SciPy (clusters are connected in NumPy), nor pypinyin's phrase dictionary
    (names are read a character at a time)."""
    folder, cfg = night
    sql(folder, f"UPDATE night SET GXSJ = '{LATER}' WHERE rowid % 10 = 3",
        "INSERT INTO T_GRDA SELECT * FROM night WHERE rowid % 10 = 3")
    probe = ("import runpy, sys\nsys.argv = ['healthqa', 'dedup', '--config', sys.argv[1], '--incremental']\n"
             "try:\n    runpy.run_module('healthqa', run_name='__main__', alter_sys=True)\n"
             "except SystemExit as e:\n    assert e.code == 0, e.code\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'great_expectations', 'scipy')"
             " or m == 'pypinyin.phrases_dict'), 'pypinyin' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(cfg.path)], capture_output=True, text=True, cwd=folder)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[] True", out.stdout[-2000:]  # names were read, without the phrases
