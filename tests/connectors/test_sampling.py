"""Sampling strategies: reproducible draws, stratification floors, windows, and watermarks."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timedelta

import pandas as pd
import pytest

from healthqa import config
from healthqa.connectors.sampling import Scope, choose_keys
from healthqa.connectors.sources import reader
from healthqa.pipelines.extract import read_table, scope_for
from healthqa.store import AuditStore

from ..conftest import AS_OF
from .test_connectors import source_cfg


def mpi(demo, **kw):
    return source_cfg("sqlalchemy", url=f"sqlite:///{demo / 'mpi.db'}", tables=["person"], **kw)


def drc(path, sampling=None):
    cfg = source_cfg("sqlalchemy", url=f"sqlite:///{path}", tables=["outpatient_visit"])
    if sampling:
        cfg.sampling = sampling
    return cfg


def sample(cfg, table, sampling, **filters):
    with reader("src", cfg) as r:
        return r.read_all(table, Scope(sampling=sampling, **filters))


def test_random_sample_is_reproducible_and_seeded(demo):
    s1 = sample(mpi(demo), "person", config.Sampling(method="random", rows=300, seed=1))
    s2 = sample(mpi(demo), "person", config.Sampling(method="random", rows=300, seed=1))
    s3 = sample(mpi(demo), "person", config.Sampling(method="random", rows=300, seed=2))
    # 300 archives drawn; an archive number the MPI reused (a defect the demo injects) fetches both rows
    everyone = sample(mpi(demo), "person", config.Sampling(method="full"))
    assert s1["archive_id"].nunique() == 300
    assert len(s1) == everyone["archive_id"].isin(set(s1["archive_id"])).sum()
    assert sorted(s1["archive_id"]) == sorted(s2["archive_id"])
    assert sorted(s1["archive_id"]) != sorted(s3["archive_id"])


def test_random_sample_does_not_depend_on_key_order():
    keys = pd.DataFrame({"key": [f"k{i:04d}" for i in range(1000)]})
    s = config.Sampling(method="random", rows=50, seed=5)
    a = choose_keys(keys, s)
    b = choose_keys(keys.sample(frac=1, random_state=3), s)
    assert list(a) == list(b)


def test_stratified_gives_every_institution_its_floor(demo):
    s = config.Sampling(method="stratified", rows=400, per_org_min=15, seed=4)
    got = sample(mpi(demo), "person", s)
    with sqlite3.connect(demo / "mpi.db") as conn:
        sizes = pd.read_sql_query("SELECT JDJGDM AS org, COUNT(*) AS n FROM T_GRDA GROUP BY JDJGDM", conn)
    per_org = got["org_code"].value_counts()
    for org, n in zip(sizes["org"], sizes["n"]):
        assert per_org.get(org, 0) >= min(15, n), org
    # small institutions are not left out, and the total is what was asked when floors fit in it
    assert set(per_org.index) == set(sizes["org"])
    assert 400 <= len(got) <= 405


def test_stratified_is_proportional_beyond_the_floor(demo):
    s = config.Sampling(method="stratified", rows=1500, per_org_min=5, seed=4)
    got = sample(mpi(demo), "person", s)
    with sqlite3.connect(demo / "mpi.db") as conn:
        sizes = pd.read_sql_query("SELECT JDJGDM AS org, COUNT(*) AS n FROM T_GRDA GROUP BY JDJGDM", conn)
    big = sizes.sort_values("n").iloc[-1]
    share_pop = big["n"] / sizes["n"].sum()
    share_sample = (got["org_code"] == big["org"]).mean()
    assert abs(share_sample - share_pop) < 0.05


def test_full_with_rows_cap_and_org_filter(demo):
    s = config.Sampling(method="full", rows=50)
    got = sample(mpi(demo), "person", s)
    assert len(got) == 50
    org = got["org_code"].iloc[0]
    only = sample(mpi(demo), "person", config.Sampling(), orgs=(org,))
    assert set(only["org_code"]) == {org} and len(only) > 50


def test_since_until_window(demo):
    since, until = AS_OF - timedelta(days=30), AS_OF - timedelta(days=10)
    got = sample(drc(demo / "drc.db"), "outpatient_visit", config.Sampling(), since=since, until=until)
    t = pd.to_datetime(got["upload_time"])
    assert len(got) > 0 and t.min() > since and t.max() <= until
    with sqlite3.connect(demo / "drc.db") as conn:
        n = conn.execute("SELECT COUNT(*) FROM tb_mzjzjl WHERE scsj > ? AND scsj <= ?",
                         (since.isoformat(sep=" "), until.isoformat(sep=" "))).fetchone()[0]
    assert len(got) == n


def test_undated_rows_beside_a_watermark_and_the_keys_alone(demo, tmp_path):
    """The dedup night's reads: rows after the watermark and those without a time (NULL, blank), in
    SQL and in a CSV file; and every row's key, one column."""
    shutil.copy(demo / "mpi.db", tmp_path / "mpi.db")
    mark = datetime(2026, 11, 24, 12)
    with sqlite3.connect(tmp_path / "mpi.db") as conn:
        keys = [r[0] for r in conn.execute("SELECT DABH FROM T_GRDA ORDER BY DABH LIMIT 4")]
        conn.execute("UPDATE T_GRDA SET GXSJ = '2026-01-01 00:00:00'")
        for k, t in zip(keys, [None, "", "  ", "2026-11-25 01:00:00"]):
            conn.execute("UPDATE T_GRDA SET GXSJ = ? WHERE DABH = ?", (t, k))
        everything = pd.read_sql_query("SELECT * FROM T_GRDA", conn)
    night = Scope(sampling=config.Sampling(method="incremental", time_column="updated_at"), watermark=mark, undated=True)
    with reader("src", mpi(tmp_path)) as r:
        assert sorted(r.read_all("person", night)["archive_id"]) == keys
        assert r.read_all("person", Scope(sampling=night.sampling, watermark=mark))["archive_id"].tolist() == keys[3:]
        assert sorted(r.keys("person")) == sorted(everything["DABH"])
    (tmp_path / "csv").mkdir()
    everything.to_csv(tmp_path / "csv" / "person.csv", index=False)
    with reader("src", source_cfg("csv", path=str(tmp_path / "csv"), tables=["person"])) as r:
        assert sorted(r.read_all("person", night)["archive_id"]) == keys
        assert sorted(r.keys("person")) == sorted(everything["DABH"])


@pytest.mark.parametrize("server", [pytest.param("pg_db", marks=pytest.mark.postgres),
                                    pytest.param("mariadb_db", marks=pytest.mark.mariadb)])
def test_the_nights_reads_are_the_same_on_database_servers(demo, request, server):
    mark = AS_OF - timedelta(days=20)
    night = Scope(sampling=config.Sampling(method="incremental", time_column="updated_at"), watermark=mark, undated=True)
    got = {}
    for name, url in (("sqlite", f"sqlite:///{demo / 'mpi.db'}"), (server, request.getfixturevalue(server))):
        with reader("src", source_cfg("sqlalchemy", url=url, tables=["person"])) as r:
            got[name] = (sorted(r.read_all("person", night)["archive_id"]), sorted(r.keys("person")))
    assert len(got["sqlite"][0]) > 0 and got[server] == got["sqlite"]


def test_sampling_pushes_limits_and_keys_into_sql(demo, monkeypatch):
    """A sample never loads the table whole: full+rows uses LIMIT, a draw fetches by key lists."""
    statements = []
    cfg = mpi(demo)
    from healthqa.connectors import readonly, sql

    # every statement a reader sends passes the read-only guard: record them there
    for module in (readonly, sql):
        monkeypatch.setattr(module, "guard", lambda stmt, *a, _g=readonly.guard: (statements.append(stmt), _g(stmt, *a)))
    with reader("src", cfg) as r:
        r.read_all("person", Scope(sampling=config.Sampling(method="full", rows=10)))
        assert any("LIMIT" in s for s in statements)
        statements.clear()
        r.read_all("person", Scope(sampling=config.Sampling(method="random", rows=20, seed=1)))
    wide = [s for s in statements if '"XM"' in s or " XM" in s]
    assert wide and all(" IN (" in s for s in wide)  # rows are only ever fetched by key
    narrow = [s for s in statements if s not in wide]
    assert any("DABH" in s and "XM" not in s for s in narrow)  # the draw reads keys only


def test_incremental_watermark_advances_only_after_success(demo, tmp_path):
    path = tmp_path / "drc.db"
    shutil.copy(demo / "drc.db", path)
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    cfg = drc(path, config.Sampling(method="incremental"))

    def run(fail: bool = False) -> int:
        n = 0
        with reader("drc", cfg) as r:
            try:
                with store.runs.start("nightly") as ctx:
                    for df in read_table(r, "outpatient_visit", scope_for(r, store, "outpatient_visit"), ctx):
                        n += len(df)
                    if fail:
                        raise RuntimeError("a later stage failed")
            except RuntimeError:
                pass
        return n

    total = run(fail=True)
    assert total > 0
    assert store.watermarks.get("drc", "outpatient_visit", "upload_time") is None  # failed run: no advance
    assert run() == total  # so the next run reads everything again
    wm = store.watermarks.get("drc", "outpatient_visit", "upload_time")
    with sqlite3.connect(path) as conn:
        latest = conn.execute("SELECT MAX(scsj) FROM tb_mzjzjl").fetchone()[0]
    assert wm == datetime.fromisoformat(latest)
    assert run() == 0  # nothing new

    new_time = (wm + timedelta(hours=1)).isoformat(sep=" ")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO tb_mzjzjl (jzlsh, dabh, jgdm, scsj, jzsj) VALUES ('NEW1', 'a', 'b', ?, ?)",
                     (new_time, new_time))
    assert run() == 1
    assert store.watermarks.get("drc", "outpatient_visit", "upload_time") == wm + timedelta(hours=1)


@pytest.mark.postgres
def test_stratified_draw_is_the_same_on_postgresql(demo, pg_db):
    s = config.Sampling(method="stratified", rows=200, per_org_min=5, seed=9)
    a = sample(mpi(demo), "person", s)
    b = sample(source_cfg("sqlalchemy", url=pg_db, tables=["person"]), "person", s)
    assert sorted(a["archive_id"]) == sorted(b["archive_id"])


def test_a_read_records_what_narrowed_it_and_how_much_it_saw():
    from datetime import datetime

    from healthqa.connectors.sampling import NEW_ROWS, PART, WHOLE, read_extent

    night = config.Sampling(method="incremental")
    first = Scope(sampling=night).describe()
    assert first["watermark"] is None and read_extent(first) == WHOLE  # no watermark yet: every row
    later = Scope(sampling=night, watermark=datetime(2026, 11, 24, 2)).describe()
    assert later["watermark"] == "2026-11-24T02:00:00" and read_extent(later) == NEW_ROWS
    org = Scope(sampling=config.Sampling(), orgs=("B", "A")).describe()
    assert org["orgs"] == ["A", "B"] and read_extent(org) == WHOLE
    window = Scope(sampling=config.Sampling(), since=datetime(2026, 11, 1)).describe()
    assert window["window"] == {"since": "2026-11-01T00:00:00", "until": None} and read_extent(window) == PART
    assert read_extent(Scope(sampling=config.Sampling(method="random", rows=10)).describe()) == PART
    assert read_extent(Scope(sampling=config.Sampling(rows=10)).describe()) == PART
    assert read_extent(None) == WHOLE  # results stored before reads were recorded: as configured
    assert read_extent({"method": "incremental"}) == PART  # it may have read only new rows
