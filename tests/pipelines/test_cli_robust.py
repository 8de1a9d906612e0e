"""Odd input on the command line is one line and exit 2, never a traceback (issue 22): a configuration
nested too deep or with numbers beyond any table, a malformed comparison spec, a quarter or ids beyond
the calendar and the store, a table name that looks like Rich markup, a file named audit.db that is
no database, a busy port, filters that match nothing."""

from __future__ import annotations

import copy
import socket

import pytest
import yaml

from ..conftest import copy_platform, write_config
from .cli_run import invoke, refused


@pytest.fixture(scope="module")
def site(demo, tmp_path_factory):
    """A copy of the demo platform with an empty audit store: (its configuration file, the folder)."""
    cfg, store, folder = copy_platform(demo, tmp_path_factory.mktemp("robust"))
    store.close()
    return cfg.path, folder


def _variant(site, name: str, change) -> str:
    path, folder = site
    cfg = copy.deepcopy(yaml.safe_load(path.read_text(encoding="utf-8")))
    change(cfg)
    return str(write_config(folder / f"{name}.yml", cfg))


def test_a_configuration_nested_too_deep_is_one_line(site):
    path, folder = site
    deep = folder / "deep.yml"
    deep.write_text(path.read_text(encoding="utf-8") + "extra: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    refused(invoke("validate", "--config", deep, "--source", "mpi"), "YAML 嵌套过深")


@pytest.mark.parametrize("key, value", [("rows", 1e20), ("rows", 10**20), ("chunk_rows", 1e20), ("chunk_rows", 10**20)])
def test_numbers_beyond_any_table_are_one_line(site, key, value):
    def change(cfg):
        if key == "rows":
            cfg["sources"]["mpi"]["sampling"] = {"method": "full", "rows": value}
        else:
            cfg["sources"]["mpi"][key] = value
    where = "sources.mpi.sampling.rows" if key == "rows" else "sources.mpi.chunk_rows"
    line = refused(invoke("validate", "--config", _variant(site, f"big-{key}-{type(value).__name__}", change),
                          "--source", "mpi", "--table", "person"), where)
    assert "数值过大" in line


@pytest.mark.parametrize("text, fragment", [
    ("fields: [\n", "YAML 格式错误"),
    ("fields: " + "[" * 3000 + "]" * 3000 + "\n", "YAML 嵌套过深"),
    ("fields:\n  - name: x\n", "比对规格无效"),
    (b"\xff\xfe", "无法读取"),
])
def test_a_malformed_spec_is_one_line(site, text, fragment):
    path, folder = site
    spec = folder / "bad-spec.yml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    refused(invoke("dedup", "--config", path, "--spec", spec), fragment)


@pytest.mark.parametrize("args, fragment", [
    (["report", "--quarter", "9999Q4"], "年份应在"),
    (["report", "--run", str(10**20)], "不存在"),
    (["report", "--run", str(2**63)], "不存在"),
    (["findings", "ack", str(10**20)], "不存在"),
    (["findings", "resolve", str(2**31)], "不存在"),
])
def test_values_beyond_the_calendar_and_the_store_are_one_line(site, args, fragment):
    refused(invoke(*args, "--config", site[0]), fragment)


def test_a_table_name_like_rich_markup_is_shown_as_it_is(site):
    def change(cfg):
        cfg["sources"]["mpi"]["tables"]["person"]["table"] = "T_GRDA[/]"
    refused(invoke("sources", "check", "--config", _variant(site, "markup", change)), "table T_GRDA[/] not found")


def test_a_file_named_audit_db_that_is_no_database_is_one_line(tmp_path):
    (tmp_path / "audit.db").write_text("not a database", encoding="utf-8")
    refused(invoke("demo", "--dir", tmp_path, "--persons", 100), "审计库无法读取")
    assert (tmp_path / "audit.db").read_text(encoding="utf-8") == "not a database"  # kept without --force


def test_serve_on_a_busy_port_is_one_line(site):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        refused(invoke("serve", "--config", site[0], "--port", busy.getsockname()[1]), "端口已被占用")


def test_findings_filters_that_match_nothing_are_refused_as_validate_refuses_them(site):
    refused(invoke("findings", "--config", site[0], "--system", "15"), "没有匹配的记录 nothing matched --system 15")
    refused(invoke("findings", "--config", site[0], "--org", "NOSUCH"), "没有匹配的记录 nothing matched --org NOSUCH")
    # a system and a registered institution with no findings (the store is empty) are an empty list
    res = invoke("findings", "--config", site[0], "--system", "1", "--org", demo_config_org(site))
    assert res.exit_code == 0 and res.output.splitlines()[1:] == [], res.output  # the header line alone


def demo_config_org(site) -> str:
    """An institution of the register (the platform's first)."""
    import sqlite3

    path, folder = site
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    org = cfg["sources"]["drc"]["tables"]["organization"]
    with sqlite3.connect(folder / "drc.db") as conn:
        return conn.execute(f"SELECT {org['columns']['org_code']} FROM {org['table']} LIMIT 1").fetchone()[0]




def test_a_pdf_without_a_chinese_font_is_refused_naming_the_package(site, tmp_path, monkeypatch):
    """On a machine whose fonts have no Chinese (here: an empty fontconfig configuration), a PDF would
    draw every character as a box; it is refused, naming the package, and nothing is written."""
    empty = tmp_path / "fonts.conf"
    empty.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig></fontconfig>\n',
                     encoding="utf-8")
    monkeypatch.setenv("FONTCONFIG_FILE", str(empty))
    out = tmp_path / "reports"
    refused(invoke("report", "--config", site[0], "--quarter", "2026Q4", "--pdf", "--out", out), "fonts-noto-cjk")
    assert not out.exists() or not any(out.iterdir())
