"""Configuration: a good file loads; every kind of bad file names its file and key path."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import create_engine, text

from healthqa import config
from healthqa.errors import ConfigError

from ..conftest import MARIADB_ADMIN, _temporary_database, demo_config, write_config

GOOD = """
store: {url: "sqlite:///audit.db"}
sources:
  mpi:
    kind: sqlalchemy
    url: ${MPI_DB_URL}
    sampling: {method: stratified, rows: 500, per_org_min: 10, seed: 3}
    tables:
      person:
        table: T_GRDA
        columns: {archive_id: DABH, name: XM, id_number: SFZH}
"""


def load_text(tmp_path, text: str):
    p = tmp_path / "healthqa.yml"
    p.write_text(text, encoding="utf-8")
    return config.load(p)


def error_of(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    return str(e.value)


def test_good_config_loads_with_env_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("MPI_DB_URL", "postgresql+psycopg://reader@db/mpi")
    cfg = load_text(tmp_path, GOOD)
    src = cfg.sources["mpi"]
    assert src.url == "postgresql+psycopg://reader@db/mpi"
    assert src.sampling_for("person").method == "stratified"
    assert src.tables["person"].physical("id_number") == "SFZH"
    # a relative SQLite store lives beside the configuration file
    assert cfg.store.url == f"sqlite:///{tmp_path / 'audit.db'}"


def test_env_default_is_used_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("MPI_DB_URL", raising=False)
    cfg = load_text(tmp_path, GOOD.replace("${MPI_DB_URL}", "${MPI_DB_URL:-sqlite:///mpi.db}"))
    assert cfg.sources["mpi"].url == f"sqlite:///{tmp_path / 'mpi.db'}"


def test_missing_env_var_names_key_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("MPI_DB_URL", raising=False)
    msg = error_of(tmp_path, GOOD)
    assert "sources.mpi.url: environment variable MPI_DB_URL is not set" in msg
    assert "healthqa.yml" in msg


def test_malformed_yaml_gives_line(tmp_path):
    msg = error_of(tmp_path, "sources:\n  mpi: {kind: csv\n  bad")
    assert "malformed YAML" in msg and "line" in msg
    assert len(msg.splitlines()) == 1


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("columns:", "colums:"), "sources.mpi.tables.person.colums: unknown key"),
    (GOOD.replace("kind: sqlalchemy", "kind: oracle"),
     "sources.mpi.kind: Input should be 'sqlalchemy', 'odbc', 'csv' or 'excel'"),
    (GOOD.replace("url: ${MPI_DB_URL}", "path: x"), "sources.mpi: a source of kind 'sqlalchemy' needs 'url'"),
    (GOOD.replace("person:", "persons:"), "sources.mpi.tables.persons: not a canonical table"),
    (GOOD.replace("name: XM", "nmae: XM"), "sources.mpi.tables.person.columns.nmae: not a column of mpi.person"),
    (GOOD.replace("archive_id: DABH, ", ""), "sources.mpi.tables.person.columns: the key column 'archive_id' must be mapped"),
    (GOOD.replace("rows: 500, ", ""), "sources.mpi.sampling: sampling method 'stratified' needs 'rows'"),
    (GOOD.replace("rows: 500", "rows: -5"), "sources.mpi.sampling.rows: 数值过小 Input should be greater than 0"),
    ("sources: []", "sources: Input should be a valid dictionary"),
    (GOOD + "orchestration: {nightly_cron: '0 2 * *'}", "orchestration.nightly_cron: not a cron expression"),
    (GOOD + "orchestration: {nightly_cron: '* * * * * */10 1'}", "orchestration.nightly_cron: not a cron expression"),
    ("- just\n- a list", "expected a mapping of keys at the top level"),
])
def test_bad_config_names_its_key(tmp_path, monkeypatch, text, expected):
    monkeypatch.setenv("MPI_DB_URL", "sqlite:///x.db")
    msg = error_of(tmp_path, text)
    assert expected in msg, msg
    assert "Traceback" not in msg


def test_a_cron_takes_five_fields_or_a_sixth_of_seconds(tmp_path, monkeypatch):
    monkeypatch.setenv("MPI_DB_URL", "sqlite:///x.db")
    five = load_text(tmp_path, GOOD + "orchestration: {nightly_cron: ' 0 2 * * * '}")
    six = load_text(tmp_path, GOOD + "orchestration: {nightly_cron: '* * * * * */10'}")
    assert (five.orchestration.nightly_cron, six.orchestration.nightly_cron) == ("0 2 * * *", "* * * * * */10")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(tmp_path / "nope.yml")


def test_demo_config_roundtrips(demo, tmp_path):
    cfg = config.load(write_config(tmp_path / "c.yml", demo_config(demo)))
    assert set(cfg.sources) == {"drc", "mpi", "qc"}
    vm = cfg.sources["qc"].tables["chronic_followup"].value_map("disease")
    assert vm == {"1": "htn", "2": "dm"}


def test_example_config_is_valid(monkeypatch):
    """healthqa.example.yml documents every key; it must itself load."""
    from pathlib import Path

    for var in ("MPI_DB_URL", "DRC_DB_URL", "QC_ODBC", "AUDIT_DB_URL", "HEALTHQA_WEBHOOK_URL",
                "HEALTHQA_WEBHOOK_SECRET", "HEALTHQA_SMTP_PASSWORD", "HEALTHQA_CONSOLE_SECRET"):
        monkeypatch.setenv(var, "sqlite:///x.db")
    monkeypatch.setenv("AUDIT_DB_URL", "sqlite:///audit.db")  # the store is never one of the sources
    monkeypatch.setenv("HEALTHQA_WEBHOOK_URL", "https://tickets.example.cn/healthqa")  # http(s) only
    example = Path(__file__).parents[2] / "healthqa.example.yml"
    cfg = config.load(example)
    assert {s.kind for s in cfg.sources.values()} == {"sqlalchemy", "odbc", "csv", "excel"}
    assert cfg.reports.webhook is not None and cfg.reports.mail.starttls
    # every key of every section is shown in the example (the demo's own section excepted)
    text = example.read_text(encoding="utf-8")

    def keys(model, seen=()):
        for name, field in model.model_fields.items():
            if name in ("path", "demo") or field.exclude:
                continue
            yield field.alias or name
            for sub in getattr(field.annotation, "__args__", ()) + (field.annotation,):
                if isinstance(sub, type) and issubclass(sub, config.BaseModel) and sub not in seen:
                    yield from keys(sub, (*seen, sub))

    missing = sorted({k for k in keys(config.Config) if f"{k}:" not in text})
    assert not missing, f"keys the example does not show: {missing}"


# -- issue 12: hostile or careless configurations --------------------------------------------

BOMB = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
sources: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """Issue 12 case 14: nine levels of nine aliases stand for 387 million strings."""
    import time

    t0 = time.perf_counter()
    msg = error_of(tmp_path, BOMB)
    assert time.perf_counter() - t0 < 2
    assert msg.startswith(f"{tmp_path / 'healthqa.yml'}: ") and "alias" in msg
    assert len(msg.splitlines()) == 1


def test_yaml_recursive_alias_is_refused(tmp_path):
    msg = error_of(tmp_path, "x: &x [*x]\nsources: {}\n")
    assert "recursive alias" in msg and len(msg.splitlines()) == 1


def test_yaml_ordinary_aliases_still_load(tmp_path, monkeypatch):
    """A configuration may share a block between sources with an anchor: that is not a bomb."""
    monkeypatch.setenv("MPI_DB_URL", "sqlite:///x.db")
    text = GOOD.replace("sampling: {method: stratified", "sampling: &s {method: stratified") + """
  mpi_copy:
    kind: sqlalchemy
    url: sqlite:///y.db
    sampling: *s
    tables: {person: {table: T_GRDA, columns: {archive_id: DABH}}}
"""
    cfg = load_text(tmp_path, text)
    assert cfg.sources["mpi_copy"].sampling.rows == 500


@pytest.mark.parametrize("key, text", [
    ("sources.mpi.url", GOOD.replace("${MPI_DB_URL}", "sqlite:///../elsewhere/mpi.db")),
    ("store.url", GOOD.replace("sqlite:///audit.db", "sqlite:///sub/../../audit.db")),
    ("validation.suites", GOOD + "validation: {suites: ../suites}\n"),
    ("dedup.spec", GOOD + "dedup: {spec: ../spec.yml}\n"),
    ("reports.out_dir", GOOD + "reports: {out_dir: ../../tmp/reports}\n"),
    ("sources.lab.path", GOOD + "  lab:\n    kind: csv\n    path: ../extracts\n"
                                "    tables: {lab_result: {file: lab.csv, columns: {result_id: JGID}}}\n"),
    ("sources.lab.tables.lab_result.file", GOOD + "  lab:\n    kind: csv\n    path: extracts\n"
     "    tables: {lab_result: {file: ../../secret.csv, columns: {result_id: JGID}}}\n"),
])
def test_relative_path_leaving_the_config_folder_is_refused(tmp_path, monkeypatch, key, text):
    """Issue 12 case 14: ``../x`` is refused with the key that holds it; an absolute path is explicit."""
    monkeypatch.setenv("MPI_DB_URL", "sqlite:///mpi.db")
    msg = error_of(tmp_path, text)
    assert f"{key}: " in msg and "absolute path" in msg, msg
    assert len(msg.splitlines()) == 1


def test_absolute_path_outside_the_config_folder_is_allowed(tmp_path, monkeypatch):
    elsewhere = tmp_path.parent / "elsewhere"
    monkeypatch.setenv("MPI_DB_URL", f"sqlite:///{elsewhere / 'mpi.db'}")
    cfg = load_text(tmp_path, GOOD + f"reports: {{out_dir: {elsewhere / 'reports'}}}\n")
    assert cfg.reports.out_dir == str(elsewhere / "reports")
    assert cfg.sources["mpi"].url == f"sqlite:///{elsewhere / 'mpi.db'}"


@pytest.mark.parametrize("store, source", [
    ("sqlite:///mpi.db", "sqlite:///mpi.db"),
    ("sqlite:///./data/../mpi.db", "sqlite:///mpi.db"),  # the same file by another path
    ("sqlite:///link.db", "sqlite:///mpi.db"),  # ... or through a symbolic link
    ("postgresql+psycopg://audit@localhost/mpi", "postgresql://reader:pw@127.0.0.1:5432/mpi"),
    ("mysql+pymysql://root@db.example.cn/mpi", "mariadb+pymysql://reader@DB.example.cn:3306/mpi?charset=utf8mb4"),
])
def test_store_that_is_a_source_is_refused(tmp_path, monkeypatch, store, source):
    """Issue 12 case 10: the audit store would create its tables inside the platform's database."""
    (tmp_path / "mpi.db").write_bytes(b"")
    (tmp_path / "data").mkdir()
    (tmp_path / "link.db").symlink_to(tmp_path / "mpi.db")
    monkeypatch.setenv("MPI_DB_URL", source)
    msg = error_of(tmp_path, GOOD.replace("sqlite:///audit.db", store))
    assert msg == f"{tmp_path / 'healthqa.yml'}: store.url: 审计库不能是数据源 mpi 的数据库，与 sources.mpi.url " \
                  f"是同一个库 (the audit store must not be the database of source mpi: it is the database of " \
                  f"sources.mpi.url)"


def test_store_that_is_an_odbc_source_is_refused(tmp_path):
    text = GOOD.replace("kind: sqlalchemy", "kind: odbc").replace(
        "url: ${MPI_DB_URL}", "connection_string: Driver={PostgreSQL Unicode};Server=localhost;Database=mpi;Uid=r")
    msg = error_of(tmp_path, text.replace("sqlite:///audit.db", "postgresql+psycopg://audit@127.0.0.1/mpi"))
    assert "store.url: 审计库不能是数据源 mpi 的数据库，与 sources.mpi.connection_string 是同一个库" in msg


def _host_spellings() -> list[str]:
    """Every way a user may name this machine: its name, what the name resolves to, its LAN
    addresses (the interfaces' own, not loopback), the loopback aliases."""
    import psutil

    lan = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
           if a.family == socket.AF_INET and not a.address.startswith("127.")]
    return list(dict.fromkeys(["localhost", socket.gethostname(), socket.gethostbyname(socket.gethostname()),
                               *lan, "[::1]", "127.0.0.2"]))


def _refused_by_every_spelling(tmp_path, monkeypatch, source: str, host: str, port: int) -> None:
    """Issue 18: the store named by another spelling of the source's host is refused (13 audit tables
    written into the MPI otherwise); where the spelling reaches the server, it is the source's very
    database (a table made through the source's URL is seen through the store's)."""
    eng = create_engine(source)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE mpi_marker (x integer)"))
    eng.dispose()
    monkeypatch.setenv("MPI_DB_URL", source)
    reached = []
    for spelling in [h for h in _host_spellings() if h != host]:
        store = source.replace(f"@{host}:{port}/", f"@{spelling}:{port}/")
        msg = error_of(tmp_path, GOOD.replace("sqlite:///audit.db", store))
        assert msg == f"{tmp_path / 'healthqa.yml'}: store.url: 审计库不能是数据源 mpi 的数据库，与 sources.mpi.url " \
                      f"是同一个库 (the audit store must not be the database of source mpi: it is the database of " \
                      f"sources.mpi.url)", (spelling, msg)
        try:
            probe = create_engine(store, connect_args={"connect_timeout": 2})
            with probe.connect() as c:
                c.execute(text("SELECT count(*) FROM mpi_marker"))
            reached.append(spelling)
            probe.dispose()
        except Exception:  # noqa: BLE001 - a spelling the server does not listen on is still this machine
            pass
        # another database on the same machine, however spelled, is a store beside the sources
        beside = store.replace(f":{port}/{source.rsplit('/', 1)[1].split('?')[0]}", f":{port}/healthqa_audit")
        assert load_text(tmp_path, GOOD.replace("sqlite:///audit.db", beside)).store.url == beside
    assert {"localhost", socket.gethostname()} <= set(reached), reached  # the danger is real


@pytest.mark.postgres
def test_store_naming_a_postgresql_source_by_another_host_spelling_is_refused(tmp_path, monkeypatch, pg_store_url):
    _refused_by_every_spelling(tmp_path, monkeypatch, pg_store_url, "127.0.0.1", 5432)


@pytest.mark.mariadb
def test_store_naming_a_mariadb_source_by_another_host_spelling_is_refused(tmp_path, monkeypatch):
    for url in _temporary_database(MARIADB_ADMIN, "MariaDB", "`"):
        _refused_by_every_spelling(tmp_path, monkeypatch, url, "127.0.0.1", 3306)


def test_store_reaching_a_sqlite_source_through_a_linked_folder_is_refused(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mpi.db").write_bytes(b"")
    (tmp_path / "alias").symlink_to(tmp_path / "data", target_is_directory=True)
    monkeypatch.setenv("MPI_DB_URL", f"sqlite:///{tmp_path / 'data' / 'mpi.db'}")
    msg = error_of(tmp_path, GOOD.replace("sqlite:///audit.db", "sqlite:///alias/mpi.db"))
    assert "store.url: 审计库不能是数据源 mpi 的数据库，与 sources.mpi.url 是同一个库" in msg


def test_store_beside_the_sources_is_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("MPI_DB_URL", "postgresql+psycopg://reader@db/mpi")
    cfg = load_text(tmp_path, GOOD.replace("sqlite:///audit.db", "postgresql+psycopg://audit@db/healthqa_audit"))
    assert cfg.store.url.endswith("/healthqa_audit")


MINIMAL = """
store: {url: "sqlite:///audit.db"}
sources:
  mpi: {kind: csv, path: ., tables: {person: {file: p.csv, columns: {archive_id: DABH}}}}
validation: {diagnosis_codes: %s}
"""


@pytest.mark.parametrize("name, text", [
    ("codes.csv", "# 国临版 sample\ncode,name\nE11.900,2型糖尿病\nI10.X00X032,高血压病3级（极高危）\n"),
    ("codes.yml", "codes:\n  E11.900: 2型糖尿病\n  I10.x00x032: 高血压病3级（极高危）\n"),
])
def test_a_site_diagnosis_code_list_loads_as_csv_or_yaml(tmp_path, name, text):
    """validation.diagnosis_codes: relative to the configuration's folder; codes as looked up (x lower-case)."""
    from healthqa.codelists import read_diagnosis_codes

    (tmp_path / name).write_text(text, encoding="utf-8")
    cfg = load_text(tmp_path, MINIMAL % name)
    assert cfg.validation.diagnosis_codes == str(tmp_path / name)
    assert read_diagnosis_codes(cfg.validation.diagnosis_codes) == {"E11.900": "2型糖尿病",
                                                                    "I10.x00x032": "高血压病3级（极高危）"}


@pytest.mark.parametrize("name, text, why", [
    ("missing.csv", None, "cannot be read"),
    ("codes.csv", "code;name\nE11.900;2型糖尿病\n", "header with the columns code and name"),
    ("codes.csv", "code,name\nE11.900,\n", "lacks a code or a name"),
    ("codes.yml", "- E11.900\n", "mapping of code: name"),
    ("codes.csv", "code,name\n", "holds no codes"),
])
def test_an_unreadable_diagnosis_code_list_is_refused_naming_its_key(tmp_path, name, text, why):
    if text is not None:
        (tmp_path / name).write_text(text, encoding="utf-8")
    msg = error_of(tmp_path, MINIMAL % name)
    assert "validation.diagnosis_codes" in msg and why in msg, msg


def test_the_shipped_sample_code_list_reads_and_the_demo_loads_it(demo):
    from healthqa.codelists import read_diagnosis_codes
    from healthqa.demo.platform import SAMPLE_CODE_LIST

    codes = read_diagnosis_codes(str(SAMPLE_CODE_LIST))
    assert codes["I15.800x005"] == "嗜铬细胞瘤性高血压" and codes["E11.900"] == "2型糖尿病"
    assert demo_config(demo)["validation"]["diagnosis_codes"] == str(SAMPLE_CODE_LIST)
