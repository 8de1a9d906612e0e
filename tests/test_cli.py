"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from healthqa.pipelines.cli import app

from .conftest import AS_OF

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "demo"
    res = invoke("demo", "--dir", folder, "--persons", 800, "--seed", 5, "--as-of", AS_OF.isoformat())
    assert res.exit_code == 0, res.output
    return folder, res


def test_demo_builds_platform_and_runs_the_audit(built):
    folder, res = built
    for f in ("healthqa.yml", "drc.db", "mpi.db", "qc.db", "audit.db", "truth/duplicate_pairs.csv",
              "truth/hard_negatives.csv", "truth/defects.csv"):
        assert (folder / f).exists(), f
    assert str(folder / "healthqa.yml") in res.output.replace("\n", "")
    with sqlite3.connect(folder / "audit.db") as conn:
        assert conn.execute("SELECT kind, status FROM runs").fetchall() == [("nightly", "success")]
        wm = conn.execute("SELECT COUNT(*) FROM watermarks").fetchone()[0]
    assert wm == 3  # the three incremental clinical feeds


def test_sources_check_on_demo(built):
    folder, _ = built
    res = invoke("sources", "check", "--config", folder / "healthqa.yml")
    assert res.exit_code == 0, res.output
    for phys in ("T_GRDA", "tb_mzjzjl", "JK_MBSF"):
        assert phys in res.output


def test_nightly_twice_reads_only_new_rows(built):
    folder, _ = built
    res = invoke("run", "nightly", "--config", folder / "healthqa.yml")
    assert res.exit_code == 0, res.output
    with sqlite3.connect(folder / "audit.db") as conn:
        assert conn.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone() == ("success",)


@pytest.mark.parametrize("text, fragment", [
    ("sources: {mpi: {kind: csv\n", "malformed YAML"),
    ("sources: {mpi: {kind: csv, path: x, tables: {}, colour: red}}", "sources.mpi.colour: unknown key"),
    ("sources: {mpi: {kind: sqlalchemy, url: '${NO_SUCH_VAR_HQ}', tables: {}}}", "environment variable NO_SUCH_VAR_HQ is not set"),
])
def test_bad_configuration_exits_2_with_one_line(tmp_path, text, fragment):
    p = tmp_path / "bad.yml"
    p.write_text(text, encoding="utf-8")
    res = invoke("sources", "check", "--config", p)
    assert res.exit_code == 2
    assert fragment in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_unreachable_source_exits_2(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text("sources:\n  mpi:\n    kind: sqlalchemy\n    url: postgresql+psycopg://root@127.0.0.1:1/x\n"
                 "    connect_timeout_s: 2\n    tables:\n      person: {table: T, columns: {archive_id: A}}\n",
                 encoding="utf-8")
    res = invoke("sources", "check", "--config", p)
    assert res.exit_code == 2
    assert "sources.mpi: unreachable:" in res.stderr
    assert not (tmp_path / "healthqa-audit.db").exists()


def test_users_add(built):
    folder, _ = built
    cfg = folder / "healthqa.yml"
    assert invoke("users", "add", "lihua", "--role", "steward", "--config", cfg).exit_code == 0
    again = invoke("users", "add", "lihua", "--role", "steward", "--config", cfg)
    assert again.exit_code == 2 and "already exists" in again.stderr
    bad = invoke("users", "add", "x", "--role", "boss", "--config", cfg)
    assert bad.exit_code == 2 and "--role" in bad.stderr


def test_console_script_is_installed():
    """The real entry point, as a newcomer runs it: usage errors exit 2 without a traceback."""
    exe = [sys.executable, "-m", "healthqa"]
    ok = subprocess.run(exe + ["--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("healthqa ")
    bad = subprocess.run(exe + ["validat"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def _file_config(tmp_path, kind: str, path, table_spec: dict, **extra) -> str:
    import yaml

    cfg = {"store": {"url": f"sqlite:///{tmp_path / 'audit.db'}"},
           "sources": {"ext": {"kind": kind, "path": str(path), **extra, "tables": {"organization": table_spec}}}}
    p = tmp_path / "c.yml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def test_gbk_csv_reads_and_wrong_encoding_is_one_line(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "org.csv").write_bytes("机构代码,机构名称\nA1,镇海区人民医院\n".encode("gbk"))
    spec = {"file": "org.csv", "columns": {"org_code": "机构代码", "name": "机构名称"}}
    ok = invoke("sources", "check", "--config", _file_config(tmp_path, "csv", folder, spec))
    assert ok.exit_code == 0, ok.output
    bad = invoke("sources", "check", "--config", _file_config(tmp_path, "csv", folder, spec, encoding="utf-8"))
    assert bad.exit_code == 2
    assert "org.csv is not utf-8" in bad.stderr and "Traceback" not in bad.output
    assert not (tmp_path / "audit.db").exists()


def test_excel_with_merged_header_exits_2(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "机构"
    ws.append(["机构信息", None])
    ws.merge_cells("A1:B1")
    ws.append(["A1", "镇海区人民医院"])
    wb.save(tmp_path / "x.xlsx")
    spec = {"sheet": "机构", "columns": {"org_code": "机构代码", "name": "机构名称"}}
    res = invoke("sources", "check", "--config", _file_config(tmp_path, "excel", tmp_path / "x.xlsx", spec))
    assert res.exit_code == 2
    assert "merged cells in its header row 1 (A1:B1)" in res.stderr
    assert "Traceback" not in res.output
