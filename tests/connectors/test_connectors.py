"""Every connector kind reads the same canonical rows; sources are read-only; failures are one line."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from openpyxl import Workbook

from healthqa import config
from healthqa.connectors.sampling import Scope
from healthqa.connectors.sources import reader
from healthqa.demo.platform import PHYSICAL
from healthqa.errors import ReadOnlyViolation, SourceError, SourceUnreachable

from ..conftest import demo_config, sqlite_frames, write_config

TABLES = ["person", "outpatient_visit", "chronic_followup"]


def source_cfg(kind: str, tables=TABLES, **kw) -> config.Source:
    spec = {}
    for t in tables:
        db, phys, cols = PHYSICAL[t]
        m = {"csv": {"file": f"{t}.csv"}, "excel": {"sheet": t}}.get(kind, {"table": phys})
        spec[t] = {**m, "columns": dict(cols)}
    return config.Source.model_validate({"kind": kind, "tables": spec, **kw})


def canonical(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Values as text, sorted by key: what every backend must agree on."""
    from healthqa import canonical
    def text(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(v)
        return str(v)

    key = canonical.table(table).key
    df = frame.map(text)
    # the key first; the rest breaks ties (an injected defect reuses some archive numbers)
    return df.sort_values([key] + [c for c in df.columns if c != key]).reset_index(drop=True)


def expected(demo, table: str) -> pd.DataFrame:
    db, phys, cols = PHYSICAL[table]
    df = sqlite_frames(demo)[table].rename(columns={v: k for k, v in cols.items()})
    if table == "chronic_followup":
        df["disease"] = df["disease"].map({"1": "htn", "2": "dm"})
    return canonical(df, table)


def read(kind_cfg: config.Source, table: str, name="src", scope=None) -> pd.DataFrame:
    with reader(name, kind_cfg) as r:
        return r.read_all(table, scope or Scope())


def with_value_map(cfg: config.Source) -> config.Source:
    if "chronic_followup" not in cfg.tables:
        return cfg
    cols = cfg.tables["chronic_followup"].columns
    cols["disease"] = config.ColumnMap(column=cols["disease"], values={"1": "htn", "2": "dm"})
    return cfg


@pytest.mark.parametrize("table", TABLES)
def test_sqlite_reads_canonical_rows(demo, table):
    cfg = with_value_map(source_cfg("sqlalchemy", url=f"sqlite:///{demo / (PHYSICAL[table][0] + '.db')}",
                                    tables=[table]))
    got = read(cfg, table)
    pd.testing.assert_frame_equal(canonical(got, table), expected(demo, table))


def _float_text(df: pd.DataFrame) -> pd.DataFrame:
    """Numbers written from SQLite REAL come back from MariaDB DOUBLE the same; compare as floats."""
    return df.apply(lambda s: s.astype(float) if s.name in ("sbp", "dbp", "fasting_glucose") else s)


@pytest.mark.parametrize("server", [pytest.param("pg_db", marks=pytest.mark.postgres),
                                    pytest.param("mariadb_db", marks=pytest.mark.mariadb)])
@pytest.mark.parametrize("table", TABLES)
def test_servers_read_same_rows_as_sqlite(demo, request, server, table):
    # small chunks: the server-side cursor is read in many fetches
    cfg = with_value_map(source_cfg("sqlalchemy", url=request.getfixturevalue(server), tables=[table], chunk_rows=300))
    got = read(cfg, table)
    pd.testing.assert_frame_equal(_float_text(canonical(got, table)), _float_text(expected(demo, table)))


def _odbc_string(pg_url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(pg_url)
    return (f"Driver={{PostgreSQL Unicode}};Server={u.host};Port={u.port or 5432};"
            f"Database={u.database};Uid={u.username};")


@pytest.mark.odbc
@pytest.mark.parametrize("table", TABLES)
def test_odbc_reads_same_rows_as_sqlite(demo, pg_db, odbc_driver, table):
    cfg = with_value_map(source_cfg("odbc", connection_string=_odbc_string(pg_db), tables=[table]))
    got = read(cfg, table)
    pd.testing.assert_frame_equal(_float_text(canonical(got, table)), _float_text(expected(demo, table)))


@pytest.mark.odbc
def test_odbc_random_sample_matches_sqlalchemy(demo, pg_db, odbc_driver):
    """Draws are made on sorted keys, so the same seed picks the same rows through any driver."""
    scope = Scope(sampling=config.Sampling(method="random", rows=150, seed=11))
    a = read(source_cfg("odbc", connection_string=_odbc_string(pg_db), tables=["person"]), "person", scope=scope)
    b = read(source_cfg("sqlalchemy", url=f"sqlite:///{demo / 'mpi.db'}", tables=["person"]), "person", scope=scope)
    # 150 keys are drawn; a key issued twice (the demo's archive_id_duplicate) brings both its rows
    assert a["archive_id"].nunique() == 150
    assert sorted(a["archive_id"]) == sorted(b["archive_id"])


def _write_csvs(demo, folder, encoding):
    folder.mkdir(exist_ok=True)
    frames = sqlite_frames(demo)
    for t in TABLES:
        # the injected mojibake (Latin-1 letters) has no GBK form: a GBK export writes '?' for it
        frames[t].to_csv(folder / f"{t}.csv", index=False, encoding=encoding, errors="replace")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_reads_utf8_and_gbk(demo, tmp_path, encoding):
    _write_csvs(demo, tmp_path / "csv", encoding)
    cfg = with_value_map(source_cfg("csv", path=str(tmp_path / "csv")))
    got = read(cfg, "person")
    assert len(got) == len(expected(demo, "person"))
    exp = expected(demo, "person").replace("", None)  # a CSV cannot tell an empty string from NULL
    got = canonical(got, "person")

    def gbk_safe(v):
        return v is None or v.encode("gbk", "replace").decode("gbk") == v

    keep = exp["name"].map(gbk_safe)
    # all but a few: the rare characters, look-alike dots and mojibake the demo injects have no GBK form
    assert keep.mean() > 0.99
    assert got["name"][keep].tolist() == exp["name"][keep].tolist()  # Chinese names survive GBK
    assert got["address"].tolist() == exp["address"].tolist()


def test_csv_with_wrong_declared_encoding_names_the_file(demo, tmp_path):
    _write_csvs(demo, tmp_path / "csv", "gbk")
    cfg = source_cfg("csv", path=str(tmp_path / "csv"), encoding="utf-8")
    with pytest.raises(SourceError) as e:
        read(cfg, "person")
    assert "tables.person.file: person.csv is not utf-8" in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def _write_workbook(demo, path, merge_header=False):
    wb = Workbook()
    wb.remove(wb.active)
    frames = sqlite_frames(demo)
    for t in TABLES:
        ws = wb.create_sheet(t)
        df = frames[t]
        ws.append(list(df.columns))
        for row in df.itertuples(index=False):
            ws.append([None if pd.isna(v) else v for v in row])
        if merge_header and t == "person":
            ws.merge_cells("A1:B1")
    wb.save(path)


def test_excel_reads_sheets(demo, tmp_path):
    _write_workbook(demo, tmp_path / "x.xlsx")
    cfg = with_value_map(source_cfg("excel", path=str(tmp_path / "x.xlsx")))
    got = canonical(read(cfg, "person"), "person")
    exp = expected(demo, "person").replace("", None)  # an empty cell is missing, as in a CSV
    assert got["archive_id"].tolist() == exp["archive_id"].tolist()
    assert got["name"].tolist() == exp["name"].tolist()
    fu = read(cfg, "chronic_followup")
    assert set(fu["disease"]) == {"htn", "dm"}


def test_excel_merged_header_is_refused_with_one_line(demo, tmp_path):
    _write_workbook(demo, tmp_path / "x.xlsx", merge_header=True)
    cfg = source_cfg("excel", path=str(tmp_path / "x.xlsx"))
    with pytest.raises(SourceError) as e:
        read(cfg, "person")
    msg = str(e.value)
    assert "merged cells in its header row 1 (A1:B1)" in msg and len(msg.splitlines()) == 1


def test_missing_column_is_reported_not_raised_on_read(demo):
    cfg = source_cfg("sqlalchemy", url=f"sqlite:///{demo / 'mpi.db'}", tables=["person"])
    cfg.tables["person"].columns["id_number"] = "SFZH2"
    with reader("mpi", cfg) as r:
        assert r.missing_columns("person") == {"id_number": "SFZH2"}
        df = r.read_all("person")
        assert "id_number" not in df and len(df) > 0  # the other columns are still read
        with pytest.raises(SourceError, match="tables.person.columns.id_number: column SFZH2 not found in table T_GRDA"):
            r.require_columns("person")


@pytest.mark.parametrize("url", ["sqlite:////nonexistent/folder/mpi.db",
                                 "postgresql+psycopg://root@127.0.0.1:1/none",
                                 "mysql+pymysql://root@127.0.0.1:1/none"])
def test_unreachable_source_raises_one_typed_line(url):
    cfg = source_cfg("sqlalchemy", url=url, tables=["person"], connect_timeout_s=2)
    with pytest.raises(SourceUnreachable) as e:
        reader("mpi", cfg).connect()
    assert str(e.value).startswith("source mpi unreachable: ")
    assert len(str(e.value).splitlines()) == 1


# -- read-only by construction ---------------------------------------------------------------

def _write_attempts(r, phys: str, key: str):
    """Try to write through the reader's own connection, both through and around the guard."""
    stmt = f"UPDATE {phys} SET {key} = {key}"
    from sqlalchemy import text

    with pytest.raises(ReadOnlyViolation), r.engine.connect() as c:
        c.execute(text(stmt))
    raw = r.engine.raw_connection()  # bypasses the statement guard: the database itself must refuse
    try:
        cur = raw.cursor()
        with pytest.raises(Exception) as e:
            cur.execute(stmt)
            raw.commit()
        return str(e.value)
    finally:
        raw.close()


def test_sqlite_source_refuses_writes(demo):
    with reader("mpi", source_cfg("sqlalchemy", url=f"sqlite:///{demo / 'mpi.db'}", tables=["person"])) as r:
        msg = _write_attempts(r, "T_GRDA", "DABH")
    assert "readonly" in msg.replace(" ", "").lower()
    with sqlite3.connect(demo / "mpi.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM T_GRDA").fetchone()[0] > 0


@pytest.mark.postgres
def test_postgresql_source_refuses_writes(pg_db):
    with reader("mpi", source_cfg("sqlalchemy", url=pg_db, tables=["person"])) as r:
        msg = _write_attempts(r, "t_grda", '"DABH"')
    assert "read-only transaction" in msg


@pytest.mark.mariadb
def test_mariadb_source_refuses_writes(mariadb_db):
    with reader("mpi", source_cfg("sqlalchemy", url=mariadb_db, tables=["person"])) as r:
        msg = _write_attempts(r, "T_GRDA", "DABH")
    assert "READ ONLY" in msg.upper()


@pytest.mark.odbc
def test_odbc_source_refuses_writes(pg_db, odbc_driver):
    import pyodbc

    with reader("qc", source_cfg("odbc", connection_string=_odbc_string(pg_db), tables=["person"])) as r:
        with pytest.raises(ReadOnlyViolation):
            r.cursor().execute("DELETE FROM t_grda")
        raw = r.conn.cursor()  # around the guard: the session itself is read-only
        with pytest.raises(pyodbc.Error, match="read-only transaction"):
            raw.execute("DELETE FROM t_grda")


@pytest.mark.postgres
def test_postgresql_statement_timeout_is_set(pg_db):
    from sqlalchemy import text

    with (reader("mpi", source_cfg("sqlalchemy", url=pg_db, tables=["person"], statement_timeout_s=7)) as r,
          r.engine.connect() as c):
        assert c.execute(text("SHOW statement_timeout")).scalar() == "7s"


def test_connection_cap_is_the_configured_pool(demo):
    with reader("mpi", source_cfg("sqlalchemy", url=f"sqlite:///{demo / 'mpi.db'}", tables=["person"],
                                  max_connections=3)) as r:
        assert r.engine.pool.size() == 3
        assert r.engine.pool._max_overflow == 0


def test_sources_check_cli_reports_mis_mapping(demo, tmp_path):
    from typer.testing import CliRunner

    from healthqa.pipelines.cli import app

    cfg = demo_config(demo)
    cfg["store"]["url"] = f"sqlite:///{tmp_path / 'audit.db'}"
    for db in cfg["sources"].values():
        db["url"] = db["url"].replace("sqlite:///", f"sqlite:///{demo}/")
    good = write_config(tmp_path / "good.yml", cfg)
    res = CliRunner().invoke(app, ["sources", "check", "--config", str(good)])
    assert res.exit_code == 0, res.output
    assert "T_GRDA" in res.output

    cfg["sources"]["mpi"]["tables"]["person"]["columns"]["id_number"] = "SFZH2"
    cfg["sources"]["drc"]["url"] = "sqlite:////nonexistent/drc.db"
    bad = write_config(tmp_path / "bad.yml", cfg)
    res = CliRunner().invoke(app, ["sources", "check", "--config", str(bad)])
    assert res.exit_code == 2
    assert "sources.mpi.tables.person.columns.id_number: column SFZH2 not found in table T_GRDA" in res.stderr
    assert "sources.drc: unreachable" in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "audit.db").exists()  # a check writes nothing to the audit store


@pytest.mark.mariadb
def test_mariadb_statement_timeout_is_set(mariadb_db):
    from sqlalchemy import text

    with (reader("mpi", source_cfg("sqlalchemy", url=mariadb_db, tables=["person"], statement_timeout_s=7)) as r,
          r.engine.connect() as c):
        assert float(c.execute(text("SELECT @@max_statement_time")).scalar()) == 7.0
        assert c.execute(text("SELECT @@session.tx_read_only")).scalar() == 1


@pytest.mark.odbc
def test_odbc_through_the_mariadb_driver(demo, mariadb_db, odbc_driver):
    """The same ODBC reader on another DBMS: its dialect and read-only session follow the driver
    (``odbc_driver`` first proves that the driver manager loads)."""
    import pyodbc
    from sqlalchemy.engine import make_url

    if "MariaDB Unicode" not in pyodbc.drivers():
        from ..conftest import absent

        absent("the ODBC driver 'MariaDB Unicode' is not installed; apt-get install odbc-mariadb")
    u = make_url(mariadb_db)
    cs = f"Driver={{MariaDB Unicode}};Server={u.host};Port={u.port or 3306};Database={u.database};User={u.username};Password=;"
    cfg = source_cfg("odbc", connection_string=cs, tables=["person"])
    got = read(cfg, "person")
    pd.testing.assert_frame_equal(canonical(got, "person"), expected(demo, "person"))
    with reader("mpi", cfg) as r:
        assert r.dbms in ("mariadb", "mysql")
        with pytest.raises(pyodbc.Error, match="(?i)read only"):
            r.conn.cursor().execute("DELETE FROM T_GRDA")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))


@pytest.mark.odbc
def test_odbc_reads_postgresql_a_chunk_at_a_time(odbc_driver):
    """psqlODBC reads a whole result set into memory unless it uses a cursor: the reader turns that on,
    so reading 300,000 rows (about 70 MB) in chunks of 1,000 holds a chunk, not the table."""
    from sqlalchemy import create_engine, text

    from ..conftest import PG_ADMIN, _temporary_database

    for url in _temporary_database(PG_ADMIN, "PostgreSQL", '"', " WITH (FORCE)"):
        eng = create_engine(url)
        with eng.begin() as c:
            c.execute(text("CREATE TABLE t_grda AS SELECT lpad(g::text, 17, '0') AS dabh, repeat('x', 200) AS xm "
                           "FROM generate_series(1, 300000) g"))
        eng.dispose()
        cfg = source_cfg("odbc", connection_string=_odbc_string(url), tables=["person"], chunk_rows=1000)
        cfg.tables["person"].columns = {"archive_id": "dabh", "name": "xm"}
        with reader("mpi", cfg) as r:
            r.present_columns("person")
            with open("/proc/self/clear_refs", "w") as fh:  # reset the peak RSS (Linux >= 4.0)
                fh.write("5")
            before = _peak_rss_mb()
            n = sum(len(df) for df in r.read("person"))
            grown = _peak_rss_mb() - before
        assert n == 300_000
        assert grown < 40, f"peak RSS grew {grown:.0f} MB"
