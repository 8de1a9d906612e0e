"""Issue 12, cases 1 and 2: odd values a driver returns never stop the audit, and a capped incremental
read takes the oldest rows in time order and advances the watermark only to what it read.

Every case is built as real rows in a real database: SQLite copies of the synthetic platform (text
times with UTC offsets, BLOBs in a text column), PostgreSQL ``timestamptz`` and ``numeric``.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from healthqa import config
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import reader
from healthqa.connectors.values import normalise, parse_times
from healthqa.errors import ConfigError
from healthqa.pipelines.extract import read_table, scope_for
from healthqa.pipelines.validate import ValidationRequest, validate_adhoc, validate_nightly
from healthqa.store import AuditStore

from ..conftest import PG_ADMIN, _temporary_database, demo_config, write_config
from .test_connectors import source_cfg

SHANGHAI = ZoneInfo("Asia/Shanghai")


def platform_copy(demo, tmp_path, **changes):
    """The demo's stores and configuration in ``tmp_path`` (the configuration with ``changes``)."""
    for f in ("drc.db", "mpi.db", "qc.db"):
        shutil.copy(demo / f, tmp_path / f)
    cfg = demo_config(demo)
    cfg["store"] = {"url": f"sqlite:///{tmp_path / 'audit.db'}"}
    cfg.pop("demo", None)
    cfg.update(changes)
    return config.load(write_config(tmp_path / "healthqa.yml", cfg))


def nightly_validation(cfg, source):
    """What the nightly run does for one source: validate it on a nightly run that stages watermarks."""
    with AuditStore(cfg.store.url) as store, store.runs.start("nightly") as run:
        out = validate_nightly(cfg, store, run, ValidationRequest(source))
    with AuditStore(cfg.store.url) as store:
        wms = {t: store.watermarks.get(source, t, "upload_time") for t in ("outpatient_visit", "inpatient_stay")}
    return out, wms


# -- case 1: odd values ------------------------------------------------------------------------------
def test_offset_times_in_an_incremental_time_column_are_read_as_local_time(demo, tmp_path):
    """A text time with a UTC offset among naive ones: the nightly validates, and the watermark is the
    latest time in the configuration's time zone (Asia/Shanghai), not a crash."""
    cfg = platform_copy(demo, tmp_path)
    with sqlite3.connect(tmp_path / "drc.db") as conn:
        latest = conn.execute("SELECT MAX(scsj) FROM tb_mzjzjl").fetchone()[0]
        keys = [k for (k,) in conn.execute("SELECT jzlsh FROM tb_mzjzjl ORDER BY jzlsh LIMIT 3")]
        later = datetime.fromisoformat(latest) + timedelta(hours=2)
        # +08:00 is Shanghai time as written; Z is UTC, eight hours earlier on Shanghai's clock
        conn.execute("UPDATE tb_mzjzjl SET scsj = ? WHERE jzlsh = ?", (later.isoformat() + "+08:00", keys[0]))
        conn.execute("UPDATE tb_mzjzjl SET scsj = ? WHERE jzlsh = ?",
                     ((later - timedelta(hours=9)).isoformat() + "Z", keys[1]))
        conn.execute("UPDATE tb_mzjzjl SET scsj = ? WHERE jzlsh = ?", ("2025-11-24T10:00:00-05:00", keys[2]))
    run, wms = nightly_validation(cfg, "drc")
    visits = next(t for t in run.tables if t.table == "outpatient_visit")
    assert visits.rows > 0 and visits.results
    assert wms["outpatient_visit"] == later  # the +08:00 row; the Z row is one hour earlier locally


def test_timezone_key_decides_local_time(demo, tmp_path):
    cfg = platform_copy(demo, tmp_path, timezone="UTC")
    with sqlite3.connect(tmp_path / "drc.db") as conn:
        latest = datetime.fromisoformat(conn.execute("SELECT MAX(scsj) FROM tb_mzjzjl").fetchone()[0])
        later = latest + timedelta(days=1)
        conn.execute("UPDATE tb_mzjzjl SET scsj = ? WHERE jzlsh = (SELECT MIN(jzlsh) FROM tb_mzjzjl)",
                     (later.isoformat() + "+08:00",))
    _, wms = nightly_validation(cfg, "drc")
    assert wms["outpatient_visit"] == later - timedelta(hours=8)


def test_unknown_timezone_is_a_configuration_error(demo):
    cfg = source_cfg("sqlalchemy", url=f"sqlite:///{demo / 'mpi.db'}", tables=["person"])
    with pytest.raises(ConfigError, match="timezone: unknown time zone 'Mars/Olympus'"):
        reader("mpi", cfg, "Mars/Olympus")


def test_blobs_in_a_text_column_are_read_or_counted(demo, tmp_path):
    """Bytes in a name column (SQLite stores whatever it is given): UTF-8 and GBK bytes are read as the
    names they are; bytes in no encoding are counted as unreadable and fail the name rule."""
    cfg = platform_copy(demo, tmp_path)
    with sqlite3.connect(tmp_path / "mpi.db") as conn:
        keys = [k for (k,) in conn.execute("SELECT DABH FROM T_GRDA ORDER BY DABH LIMIT 3")]
        conn.execute("UPDATE T_GRDA SET XM = ? WHERE DABH = ?", ("张三".encode(), keys[0]))
        conn.execute("UPDATE T_GRDA SET XM = ? WHERE DABH = ?", ("李四".encode("gbk"), keys[1]))
        conn.execute("UPDATE T_GRDA SET XM = ? WHERE DABH = ?", (b"\xff\xfe\x00\x81\xff", keys[2]))
    run = validate_adhoc(cfg, ValidationRequest("mpi", all_keys=True))
    person = next(t for t in run.tables if t.table == "person")
    plausible = next(r for r in person.results if r.rule.type == "name_plausible")
    assert keys[2] in plausible.violating_keys
    assert keys[0] not in plausible.violating_keys and keys[1] not in plausible.violating_keys
    with reader("mpi", cfg.sources["mpi"]) as r:
        people = r.read_all("person")
        assert r.unreadable["person"] == {"name": 1}
    names = dict(zip(people["archive_id"], people["name"]))
    assert names[keys[0]] == "张三" and names[keys[1]] == "李四"
    assert "\ufffd" in names[keys[2]]


def test_normalise_makes_every_driver_value_plain():
    aware = datetime(2025, 11, 24, 2, 0, tzinfo=UTC)
    df = pd.DataFrame({
        "t": [aware, datetime(2025, 11, 24, 9, 0), None, pd.Timestamp("2025-11-24 03:00", tz="UTC")],
        "b": [b"\xe5\xbc\xa0", bytearray(b"\xd5\xc5"), memoryview(b"\xff\xff\xff"), None],
        "d": [Decimal("33021100100100417"), Decimal("1.5"), Decimal("NaN"), Decimal("-Infinity")],
        "s": ["a\x00b\x1f", "x" * 100_000, float("nan"), float("inf")],
    }, dtype=object)
    out, bad = normalise(df, SHANGHAI)
    assert out["t"].tolist()[:2] == [datetime(2025, 11, 24, 10, 0), datetime(2025, 11, 24, 9, 0)]
    assert out["t"].iloc[3] == pd.Timestamp("2025-11-24 11:00")
    assert out["b"].tolist()[:2] == ["张", "张"] and "\ufffd" in out["b"].iloc[2]
    assert bad == {"b": 1}
    assert out["d"].tolist()[:2] == [33021100100100417, 1.5] and out["d"].iloc[2] is None
    assert out["d"].iloc[3] == float("-inf")
    assert out["s"].iloc[0] == "a\x00b\x1f" and len(out["s"].iloc[1]) == 100_000
    tz_col = pd.DataFrame({"t": pd.to_datetime(["2025-11-24 02:00"]).tz_localize("UTC")})
    assert normalise(tz_col, SHANGHAI)[0]["t"].iloc[0] == pd.Timestamp("2025-11-24 10:00")


def test_parse_times_reads_offsets_naive_text_and_datetimes():
    s = pd.Series(["2025-11-24T10:00:00+08:00", "2025-11-24 10:00:00", "2025-11-24T02:00:00Z", "20251124",
                   "not a time", None, datetime(2025, 11, 24, 2, tzinfo=UTC), b"2025-11-24 01:00:00"],
                  dtype=object)
    got = parse_times(s, SHANGHAI)
    ten = pd.Timestamp("2025-11-24 10:00")
    assert got.tolist()[:4] == [ten, ten, ten, pd.Timestamp("2025-11-24")]
    assert got.iloc[4:6].isna().all()
    assert got.iloc[6] == ten and got.iloc[7] == pd.Timestamp("2025-11-24 01:00")


@pytest.fixture(scope="module")
def pg_odd():
    """A PostgreSQL database whose session time zone is UTC, with a timestamptz time column and a
    numeric archive number."""
    for url in _temporary_database(PG_ADMIN, "PostgreSQL", '"', " WITH (FORCE)"):
        eng = create_engine(url)
        with eng.begin() as c:
            c.execute(text(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET timezone TO 'UTC'"))
            c.execute(text("CREATE TABLE tb_mzjzjl (jzlsh text PRIMARY KEY, dabh numeric(18, 0), jgdm text, "
                           "jzsj timestamptz, scsj timestamptz)"))
            for i in range(20):
                c.execute(text("INSERT INTO tb_mzjzjl VALUES (:k, :a, 'ORG1', :t, :t)"),
                          {"k": f"V{i:03d}", "a": 33021100100100417 + i,
                           "t": datetime(2025, 11, 24, i, 0, tzinfo=SHANGHAI)})
        eng.dispose()
        yield url


@pytest.mark.postgres
def test_postgresql_timestamptz_watermark_is_local_time(pg_odd, tmp_path):
    cfg = source_cfg("sqlalchemy", url=pg_odd, tables=["outpatient_visit"])
    cfg.tables["outpatient_visit"].columns = {k: v for k, v in cfg.tables["outpatient_visit"].columns.items()
                                              if k in ("visit_id", "archive_id", "org_code", "visit_time",
                                                       "upload_time")}
    cfg.sampling = config.Sampling(method="incremental")
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")

    def night() -> pd.DataFrame:
        with reader("drc", cfg) as r, store.runs.start("nightly") as ctx:  # Asia/Shanghai, the default
            parts = list(read_table(r, "outpatient_visit", scope_for(r, store, "outpatient_visit"), ctx))
        return pd.concat(parts, ignore_index=True)

    first = night()
    assert len(first) == 20
    # the session speaks UTC; the audit reads Shanghai time, naive, and archive numbers keep every digit
    assert first["upload_time"].max() == datetime(2025, 11, 24, 19, 0)
    assert first["archive_id"].iloc[0] == 33021100100100417 and isinstance(first["archive_id"].iloc[0], int)
    assert store.watermarks.get("drc", "outpatient_visit", "upload_time") == datetime(2025, 11, 24, 19, 0)
    assert len(night()) == 0  # the watermark (Shanghai time) compares right with timestamptz in UTC
    eng = create_engine(pg_odd)
    with eng.begin() as c:
        c.execute(text("INSERT INTO tb_mzjzjl VALUES ('V900', 1, 'ORG1', now(), :t)"),
                  {"t": datetime(2025, 11, 24, 19, 30, tzinfo=SHANGHAI)})
    eng.dispose()
    assert night()["visit_id"].tolist() == ["V900"]


@pytest.mark.mariadb
def test_mariadb_blob_and_decimal_columns(tmp_path):
    """MariaDB hands a BLOB over as bytes and DECIMAL as Decimal: names decode (UTF-8 or GBK), a BLOB
    in no encoding is counted, archive numbers keep every digit."""
    from ..conftest import MARIADB_ADMIN

    for url in _temporary_database(MARIADB_ADMIN, "MariaDB", "`"):
        eng = create_engine(url)
        with eng.begin() as c:
            c.execute(text("CREATE TABLE T_GRDA (DABH DECIMAL(18, 0) PRIMARY KEY, XM BLOB, JDSJ DATETIME)"))
            for i, name in enumerate(["张三".encode(), "李四".encode("gbk"), b"\xff\xfe\x81\x00"]):
                c.execute(text("INSERT INTO T_GRDA VALUES (:k, :n, '2025-11-24 10:00:00')"),
                          {"k": 33021100100100417 + i, "n": name})
        eng.dispose()
        cfg = source_cfg("sqlalchemy", url=url, tables=["person"])
        cfg.tables["person"].columns = {"archive_id": "DABH", "name": "XM", "created_at": "JDSJ"}
        with reader("mpi", cfg) as r:
            got = r.read_all("person").sort_values("archive_id", ignore_index=True)
            assert r.unreadable["person"] == {"name": 1}
        assert got["archive_id"].tolist() == [33021100100100417, 33021100100100418, 33021100100100419]
        assert got["name"].tolist()[:2] == ["张三", "李四"] and "\ufffd" in got["name"].iloc[2]


# -- case 2: incremental with rows -------------------------------------------------------------------
def _nights(cfg, store, table="outpatient_visit"):
    """Run incremental nights until nothing new; the keys each night read and the watermark after it."""
    out = []
    for _ in range(50):
        with reader("drc", cfg) as r, store.runs.start("nightly") as ctx:
            parts = list(read_table(r, table, scope_for(r, store, table), ctx))
        keys = pd.concat(parts, ignore_index=True)["visit_id"].tolist()
        out.append((keys, store.watermarks.get("drc", table, "upload_time")))
        if not keys:
            return out
    raise AssertionError("incremental nights never caught up")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_capped_incremental_reads_oldest_first_and_loses_nothing(demo, tmp_path, request, backend):
    if backend == "sqlite":
        shutil.copy(demo / "drc.db", tmp_path / "drc.db")
        url = f"sqlite:///{tmp_path / 'drc.db'}"
    else:
        url = request.getfixturevalue("pg_db")
    eng = create_engine(url)
    with eng.connect() as c:
        rows = c.execute(text("SELECT jzlsh, scsj FROM tb_mzjzjl")).fetchall()
    eng.dispose()
    when: dict = {}  # a visit id sent twice (a defect the demo injects): its first upload is read first
    for k, t in rows:
        when[k] = min(pd.Timestamp(t), when.get(k, pd.Timestamp.max))
    cfg = source_cfg("sqlalchemy", url=url, tables=["outpatient_visit"])
    cfg.sampling = config.Sampling(method="incremental", rows=700)
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    nights = _nights(cfg, store)
    read = [k for keys, _ in nights for k in keys]
    assert set(read) == set(when)  # every visit validated on some night
    first, wm = nights[0]
    assert len(first) == 700
    oldest = sorted(pd.Timestamp(t) for _, t in rows)
    assert max(when[k] for k in first) == oldest[699]  # the oldest 700, in time order
    assert wm == max(when[k] for k in first)  # the watermark is the last row read
    for keys, wm in nights[:-1]:
        assert all(when[k] <= wm for k in keys)


def test_capped_incremental_does_not_skip_rows_sharing_the_last_instant(demo, tmp_path, caplog):
    """When the cap falls inside a group of rows with one upload time, the watermark stops before that
    instant: the rows left at it are read the next night instead of never."""
    shutil.copy(demo / "drc.db", tmp_path / "drc.db")
    with sqlite3.connect(tmp_path / "drc.db") as conn:
        conn.execute("DELETE FROM tb_mzjzjl")
        for i in range(10):
            t = "2025-11-24 08:00:00" if 3 <= i < 8 else f"2025-11-24 0{i}:30:00" if i < 3 else f"2025-11-24 1{i}:00:00"
            conn.execute("INSERT INTO tb_mzjzjl (jzlsh, dabh, jgdm, scsj, jzsj) VALUES (?, 'a', 'b', ?, ?)",
                         (f"V{i}", t, t))
    cfg = source_cfg("sqlalchemy", url=f"sqlite:///{tmp_path / 'drc.db'}", tables=["outpatient_visit"])
    cfg.sampling = config.Sampling(method="incremental", rows=5)
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with caplog.at_level("WARNING", logger="healthqa.extract"):
        nights = _nights(cfg, store)
    assert nights[0][0] == ["V0", "V1", "V2", "V3", "V4"]
    assert nights[0][1] == datetime(2025, 11, 24, 2, 30)  # before 08:00, where V5-V7 wait
    assert set(nights[1][0]) == {"V3", "V4", "V5", "V6", "V7"}
    assert {k for keys, _ in nights for k in keys} == {f"V{i}" for i in range(10)}
    assert "capped at rows=5" in caplog.text


def test_capped_incremental_csv_reads_oldest_first(demo, tmp_path):
    src = tmp_path / "csv"
    src.mkdir()
    with sqlite3.connect(demo / "drc.db") as conn:
        df = pd.read_sql_query("SELECT * FROM tb_mzjzjl", conn)
    df.sample(frac=1, random_state=3).to_csv(src / "outpatient_visit.csv", index=False)  # out of time order
    cfg = source_cfg("csv", path=str(src), tables=["outpatient_visit"], chunk_rows=500)
    cfg.sampling = config.Sampling(method="incremental", rows=300)
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with reader("drc", cfg) as r, store.runs.start("nightly") as ctx:
        got = pd.concat(list(read_table(r, "outpatient_visit", scope_for(r, store, "outpatient_visit"), ctx)))
        assert r.capped["outpatient_visit"].rows == 300
    times = pd.to_datetime(df["scsj"]).sort_values()
    assert len(got) == 300
    assert pd.to_datetime(got["upload_time"]).max() == times.iloc[299]
    assert store.watermarks.get("drc", "outpatient_visit", "upload_time") == times.iloc[299]


def test_capped_full_read_is_unchanged(demo):
    cfg = source_cfg("sqlalchemy", url=f"sqlite:///{demo / 'drc.db'}", tables=["outpatient_visit"])
    with reader("drc", cfg) as r:
        assert len(r.read_all("outpatient_visit", Scope(sampling=config.Sampling(method="full", rows=123)))) == 123
        assert not r.capped


# -- case 4: encoding: auto decodes row by row --------------------------------------------------------
def _person_csv(demo, folder):
    folder.mkdir()
    with sqlite3.connect(demo / "mpi.db") as conn:
        df = pd.read_sql_query("SELECT DABH, XM, XZZ FROM T_GRDA ORDER BY DABH LIMIT 400", conn)
    cfg = source_cfg("csv", path=str(folder), tables=["person"], chunk_rows=100)
    cfg.tables["person"].columns = {"archive_id": "DABH", "name": "XM", "address": "XZZ"}
    return df, cfg


def _csv_lines(df) -> list[bytes]:
    return [(",".join(map(str, r)) + "\n").encode() for r in [list(df.columns), *df.fillna("").values.tolist()]]


def test_auto_encoding_reads_a_utf8_file_with_one_gbk_row(demo, tmp_path):
    """A UTF-8 extract in which one row was written in GBK: every row reads as written, none as mojibake."""
    df, cfg = _person_csv(demo, tmp_path / "csv")
    lines = _csv_lines(df)
    lines[150] = lines[150].decode().encode("gbk", errors="replace")
    (tmp_path / "csv" / "person.csv").write_bytes(codecs_bom() + b"".join(lines))
    with reader("f", cfg) as r:
        got = r.read_all("person")
        assert not r.undecodable_lines
    assert got["name"].fillna("").tolist() == df["XM"].fillna("").tolist()
    assert got["address"].fillna("").tolist() == df["XZZ"].fillna("").tolist()


def test_auto_encoding_reads_a_gbk_file(demo, tmp_path):
    df, cfg = _person_csv(demo, tmp_path / "csv")
    (tmp_path / "csv" / "person.csv").write_bytes(
        b"".join(line.decode().encode("gbk", errors="replace") for line in _csv_lines(df)))
    with reader("f", cfg) as r:
        got = r.read_all("person")
    safe = df["XM"].fillna("").map(lambda v: v.encode("gbk", "replace").decode("gbk") == v)
    assert safe.sum() > 390
    assert got["name"].fillna("")[safe].tolist() == df["XM"].fillna("")[safe].tolist()


def test_auto_encoding_counts_and_reports_an_undecodable_row(demo, tmp_path, caplog):
    df, cfg = _person_csv(demo, tmp_path / "csv")
    lines = _csv_lines(df)
    lines[10] = df["DABH"].iloc[9].encode() + b",\xff\xfe\xfa,\xff\n"  # neither UTF-8 nor GB18030
    (tmp_path / "csv" / "person.csv").write_bytes(b"".join(lines))
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with caplog.at_level("WARNING", logger="healthqa.extract"), reader("f", cfg) as r, \
            store.runs.start("nightly") as ctx:
        got = pd.concat(list(read_table(r, "person", Scope(), ctx)), ignore_index=True)
        assert r.undecodable_lines == {"person": [11]}
    assert "undecodable lines" in caplog.text and "lines 11" in caplog.text
    assert "\ufffd" in got["name"].iloc[9]
    keep = got.index != 9
    assert got["name"].fillna("")[keep].tolist() == df["XM"].fillna("")[keep].tolist()


def codecs_bom() -> bytes:
    return b"\xef\xbb\xbf"


# -- case 5: Excel cells as the sheet shows them, streamed --------------------------------------------
def _archive_workbook(path, rows=3):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "person"
    ws.append(["DABH", "XM", "CSRQ", "XBDM", "SG"])
    for i in range(rows):
        ws.append([33021100100100417 + i, "张三", datetime(1980, 1, 2), 1.0, 172.5])
        r = ws.max_row
        ws.cell(r, 3).number_format = "yyyy/m/d"
        ws.cell(r, 5).number_format = "0.00"
    ws.append([3.3021100100100417e16, "李四", datetime(1990, 5, 6, 8, 30), 2, 0.1 + 0.2])  # a float, General
    ws.cell(ws.max_row, 3).number_format = "yyyy-mm-dd hh:mm"
    ws.append([330211001001004, "王五", None, 10, 0.125])
    ws.cell(ws.max_row, 5).number_format = "0.0%"
    wb.save(path)


def test_excel_cells_read_as_the_sheet_shows_them(tmp_path):
    _archive_workbook(tmp_path / "x.xlsx")
    cfg = config.Source.model_validate({"kind": "excel", "path": str(tmp_path / "x.xlsx"), "tables": {
        "person": {"sheet": "person", "columns": {"archive_id": "DABH", "name": "XM", "birth_date": "CSRQ",
                                                  "sex_code": "XBDM", "adcode": "SG"}}}})
    with reader("x", cfg) as r:
        got = r.read_all("person")
    # a workbook holds numbers with 15 significant digits (Excel shows 33021100100100400 for a
    # 17-digit number typed in): full digits, never 3.30211001001e+16; 15 digits stay exact
    assert got["archive_id"].tolist() == ["33021100100100400"] * 4 + ["330211001001004"]
    assert got["birth_date"].tolist() == ["1980-01-02"] * 3 + ["1990-05-06 08:30:00", None]
    assert got["sex_code"].tolist() == ["1", "1", "1", "2", "10"]
    assert got["adcode"].tolist() == ["172.50"] * 3 + ["0.3", "12.5%"]


@pytest.mark.slow
def test_excel_sheet_is_streamed_in_chunks(tmp_path):
    """The workbook is opened read-only and the sheet streamed: reading 15,000 rows in chunks of 1,000
    holds a chunk, not the sheet (openpyxl's full load of it takes about 35 MB)."""
    import tracemalloc

    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("person")
    ws.append(["DABH", "XM", "CSRQ", "XBDM", "SG"])
    for i in range(15_000):
        ws.append([33021100100100417 + i, "张三", datetime(1980, 1, 2), 1, 172.5])
    wb.save(tmp_path / "big.xlsx")
    cfg = config.Source.model_validate({"kind": "excel", "path": str(tmp_path / "big.xlsx"), "chunk_rows": 1000,
                                        "tables": {"person": {"sheet": "person", "columns": {
                                            "archive_id": "DABH", "name": "XM", "birth_date": "CSRQ"}}}})
    tracemalloc.start()
    n = sizes = 0
    with reader("x", cfg) as r:
        for df in r.read("person"):
            n += len(df)
            sizes = max(sizes, len(df))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 15_000 and sizes == 1000
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MB"
