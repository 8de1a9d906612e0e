"""Configuration: a good file loads; every kind of bad file names its file and key path."""

from __future__ import annotations

import pytest

from healthqa import config
from healthqa.errors import ConfigError

from .conftest import demo_config, write_config

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
    (GOOD.replace("rows: 500", "rows: -5"), "sources.mpi.sampling.rows: Input should be greater than 0"),
    ("sources: []", "sources: Input should be a valid dictionary"),
    ("- just\n- a list", "expected a mapping of keys at the top level"),
])
def test_bad_config_names_its_key(tmp_path, monkeypatch, text, expected):
    monkeypatch.setenv("MPI_DB_URL", "sqlite:///x.db")
    msg = error_of(tmp_path, text)
    assert expected in msg, msg
    assert "Traceback" not in msg


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
                "HEALTHQA_WEBHOOK_SECRET", "HEALTHQA_SMTP_PASSWORD"):
        monkeypatch.setenv(var, "sqlite:///x.db")
    example = Path(__file__).parents[1] / "healthqa.example.yml"
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
