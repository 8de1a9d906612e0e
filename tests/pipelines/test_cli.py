"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from healthqa import config
from healthqa.pipelines.cli import app

from ..conftest import AS_OF, build_with_cli
from .cli_run import invoke, refused, runner

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli")]  # the module's demo, built and audited once


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The module's own demo: its tests add nights, validations and scans to its history."""
    return build_with_cli(tmp_path_factory)


def test_demo_builds_platform_and_runs_the_audit(built):
    folder, res = built
    for f in ("healthqa.yml", "drc.db", "mpi.db", "qc.db", "audit.db", "truth/duplicate_pairs.csv",
              "truth/hard_negatives.csv", "truth/defects.csv"):
        assert (folder / f).exists(), f
    assert str(folder / "healthqa.yml") in res.output.replace("\n", "")
    with sqlite3.connect(folder / "audit.db") as conn:
        assert conn.execute("SELECT kind, status FROM runs").fetchall() == [("nightly", "success"), ("dedup", "success")]
        assert conn.execute("SELECT COUNT(*) FROM dedup_pairs WHERE decision = 'match'").fetchone()[0] > 0
        marks = {(s, t) for s, t in conn.execute("SELECT source, table_name FROM watermarks")}
    cfg = config.load(folder / "healthqa.yml")
    incremental = {(s, t) for s, src in cfg.sources.items() for t in src.tables
                   if src.sampling_for(t).method == "incremental"}
    # the incremental feeds (visits, stays, labs, accesses, referrals, slots) and the dedup scan
    assert len(incremental) == 6 and marks == incremental | {("mpi", "person")}


def test_sources_check_on_demo(built):
    folder, _ = built
    res = invoke("sources", "check", "--config", folder / "healthqa.yml")
    assert res.exit_code == 0, res.output
    for phys in ("T_GRDA", "tb_mzjzjl", "JK_MBSF"):
        assert phys in res.output


def test_nightly_twice_reads_only_new_rows(built):
    folder, _ = built
    res = invoke("run", "nightly", "--config", folder / "healthqa.yml")
    assert res.exit_code == 0, res.output  # the audit ran in full; failing rules are findings, not a failure
    with sqlite3.connect(folder / "audit.db") as conn:
        assert conn.execute("SELECT status FROM runs WHERE kind = 'nightly' ORDER BY id DESC LIMIT 1").fetchone() == ("success",)
        # incremental clinical feeds: the second night reads nothing new, the full tables again
        rows = dict(conn.execute("SELECT table_name, MAX(denominator) FROM rule_results WHERE run_id = "
                                 "(SELECT MAX(id) FROM runs WHERE kind = 'nightly') GROUP BY table_name").fetchall())
        # and the dedup scan of the second night is incremental: nothing changed, nothing compared
        scope = conn.execute("SELECT scope FROM runs WHERE kind = 'dedup' ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert '"incremental": true' in scope
    assert rows["outpatient_visit"] == 0 and rows["person"] > 0
    said = " ".join(res.output.split())  # the night's screening says what it compared, not "0 matches" alone
    assert "0 new or changed archives compared; 新匹配 0 new matches" in said and "open clusters among" in said


@pytest.mark.parametrize("text, fragment", [
    ("sources: {mpi: {kind: csv\n", "malformed YAML"),
    ("sources: {mpi: {kind: csv, path: x, tables: {}, colour: red}}", "sources.mpi.colour: unknown key"),
    ("sources: {mpi: {kind: sqlalchemy, url: '${NO_SUCH_VAR_HQ}', tables: {}}}",
     "environment variable NO_SUCH_VAR_HQ is not set"),
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


def test_users_add_passwd_disable(built):
    import getpass

    folder, _ = built
    cfg = folder / "healthqa.yml"

    def users(*args, password=None):
        return runner.invoke(app, ["users", *map(str, args), "--config", str(cfg)], input=password,
                             env={"COLUMNS": None})

    ok = users("add", "LiHua", "--role", "steward", password="green-tea-2026\n")
    assert ok.exit_code == 0 and "lihua (steward)" in ok.output, ok.output
    assert "green-tea-2026" not in ok.output
    again = users("add", "lihua", "--role", "steward", password="green-tea-2026\n")
    assert again.exit_code == 2 and "already exists" in again.stderr
    bad = users("add", "x", "--role", "boss", password="green-tea-2026\n")
    assert bad.exit_code == 2 and "--role" in bad.stderr
    weak = users("add", "wang", "--role", "admin", password="123\n")
    assert weak.exit_code == 2 and "at least 12" in weak.stderr
    markup = users("add", "[/x]", "--role", "admin", password="green-tea-2026\n")
    assert markup.exit_code == 2 and "user name" in markup.stderr and "Traceback" not in markup.output
    assert users("passwd", "lihua", password="black-tea-2027\n").exit_code == 0
    assert users("disable", "lihua").exit_code == 0
    with sqlite3.connect(folder / "audit.db") as conn:
        log = conn.execute("SELECT user_name, action FROM audit_log WHERE subject = 'lihua' ORDER BY id").fetchall()
    me = getpass.getuser()
    assert log == [(me, "user_add"), (me, "user_passwd"), (me, "user_disable")]


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


PERSON_CSV = """DABH,XM,XBDM,CSRQ,ZJLXDM,SFZH,JDJGDM,DAZT
33021100100100001,王伟,2,1949-12-31,01,11010519491231002X,ORG1,1
33021100100100002,李娜,2,1949-12-31,01,11010519491231002X,ORG1,3
"""
ORG_CSV = "JGDM,JGMC,JGJB,SFQY\nORG1,镇海区人民医院,二级甲等医院,0\n"


def _csv_platform(tmp_path, person=PERSON_CSV):
    import yaml

    folder = tmp_path / "csv"
    folder.mkdir(exist_ok=True)
    (folder / "person.csv").write_text(person, encoding="utf-8")
    (folder / "org.csv").write_text(ORG_CSV, encoding="utf-8")
    cols = {"archive_id": "DABH", "name": "XM", "sex_code": "XBDM", "birth_date": "CSRQ", "id_type_code": "ZJLXDM",
            "id_number": "SFZH", "org_code": "JDJGDM", "status_code": "DAZT"}
    cfg = {"store": {"url": f"sqlite:///{tmp_path / 'audit.db'}"},
           "sources": {"ext": {"kind": "csv", "path": str(folder), "tables": {
               "person": {"file": "person.csv", "columns": cols},
               "organization": {"file": "org.csv", "columns": {"org_code": "JGDM", "name": "JGMC", "level": "JGJB",
                                                               "active": "SFQY"}}}}}}
    p = tmp_path / "c.yml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def test_validate_exit_codes_json_and_before_after(tmp_path):
    import json

    cfg = _csv_platform(tmp_path)
    out = tmp_path / "v.json"
    res = invoke("validate", "--config", cfg, "--source", "ext", "--table", "person", "--json", out)
    # columns the extract lacks (phone, address …) are errors that name the column, not crashes
    assert res.exit_code == 1, res.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert set(doc) == {"run_id", "scope", "results"} and doc["scope"]["tables"] == ["person"]
    by_id = {r["rule_id"]: r for r in doc["results"]}
    first = by_id["MPI-ID-VALID"]
    for k in ("rule_id", "table", "columns", "dimension", "kahn", "severity", "status", "violations",
              "denominator", "violation_pct", "sample_keys", "by_org"):
        assert k in first
    assert first["status"] == "pass" and first["denominator"] == 2
    assert by_id["MPI-PHONE-REQUIRED"]["status"] == "error" and "phone" in by_id["MPI-PHONE-REQUIRED"]["error"]
    assert by_id["MPI-ID-ONE-ACTIVE"]["status"] == "pass"  # the second archive is 迁出, not active
    assert "新 new" in res.output

    again = invoke("validate", "--config", cfg, "--source", "ext", "--table", "person")
    assert "新 new" not in again.output and "=" in again.output  # compared with the same scope's last run


def test_validate_exits_0_when_every_rule_passes(tmp_path):
    from datetime import datetime, timedelta

    import yaml

    cfg_path = _csv_platform(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    folder = tmp_path / "csv"
    org = "123302114702500009"  # every rule of the suite passes: a GB 32100 code, an existing area code
    (folder / "org.csv").write_text(f"JGDM,JGMC,JGJB,SFQY,XZQHDM\n{org},镇海区人民医院,二级甲等医院,1,330211001\n",
                                    encoding="utf-8")
    cfg["sources"]["ext"]["tables"]["organization"]["columns"]["adcode"] = "XZQHDM"
    recent = (datetime.now() - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    (folder / "visit.csv").write_text(f"ID,DABH,JGDM,SCSJ\nV1,33021100100100001,{org},{recent}\n", encoding="utf-8")
    cfg["sources"]["ext"]["tables"]["outpatient_visit"] = {
        "file": "visit.csv", "columns": {"visit_id": "ID", "archive_id": "DABH", "org_code": "JGDM", "upload_time": "SCSJ"}}
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    res = invoke("validate", "--config", cfg_path, "--source", "ext", "--table", "organization")
    assert res.exit_code == 0, res.output
    # the same institution, silent for a day, is a failure of the feed rule
    old = (datetime.now() - timedelta(hours=30)).strftime("%Y-%m-%d %H:%M:%S")
    (folder / "visit.csv").write_text(f"ID,DABH,JGDM,SCSJ\nV1,33021100100100001,{org},{old}\n", encoding="utf-8")
    res = invoke("validate", "--config", cfg_path, "--source", "ext", "--table", "organization")
    assert res.exit_code == 1 and "ORG-FEED-ACTIVE" in res.output


def test_validate_without_reference_data_is_an_error_not_a_crash(tmp_path):
    cfg = _csv_platform(tmp_path)
    res = invoke("validate", "--config", cfg, "--source", "ext", "--table", "organization")
    assert res.exit_code == 1 and "uploads.last_day" in res.output


def test_validate_bad_usage_exits_2(tmp_path):
    cfg = _csv_platform(tmp_path)
    res = invoke("validate", "--config", cfg, "--source", "nope")
    assert res.exit_code == 2 and "no such source" in res.stderr
    res = invoke("validate", "--config", cfg, "--source", "ext", "--table", "lab_result")
    assert res.exit_code == 2 and "not mapped" in res.stderr
    res = invoke("validate", "--config", cfg, "--source", "ext", "--since", "2026-02-01", "--until", "2026-01-01")
    assert res.exit_code == 2


def test_validate_filters_by_org_and_window(built):
    import json

    folder, _ = built
    cfg = folder / "healthqa.yml"
    full = json.loads(_run_json(cfg, folder / "a.json", "--table", "outpatient_visit"))
    org = max(full["results"][0]["by_org"] or {"x": 0},
              key=lambda o: full["results"][0]["by_org"].get(o, {}).get("denominator", 0))
    one = json.loads(_run_json(cfg, folder / "b.json", "--table", "outpatient_visit", "--org", org))
    d_full = {r["rule_id"]: r["denominator"] for r in full["results"]}
    d_one = {r["rule_id"]: r for r in one["results"]}
    assert 0 < d_one["OPV-DX-REQUIRED"]["denominator"] < d_full["OPV-DX-REQUIRED"]
    assert set(d_one["OPV-DX-REQUIRED"]["by_org"]) <= {org}
    win = json.loads(_run_json(cfg, folder / "c.json", "--table", "outpatient_visit", "--since", "2026-11-18",
                               "--until", "2026-11-25"))
    assert 0 < {r["rule_id"]: r["denominator"] for r in win["results"]}["OPV-DX-REQUIRED"] < d_full["OPV-DX-REQUIRED"]


def _run_json(cfg, path, *args):
    res = invoke("validate", "--config", cfg, "--source", "drc", *args, "--json", path)
    assert res.exit_code in (0, 1), res.output
    return path.read_text(encoding="utf-8")


# -- as each of its users meets it: help, misuse, refusals ---------------------------------------------

def runs_in(folder):
    with sqlite3.connect(folder / "audit.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize("args", [["-h"], ["validate", "-h"], ["dedup", "-h"], ["sources", "-h"],
                                  ["sources", "check", "-h"], ["run", "nightly", "-h"], ["users", "add", "-h"],
                                  ["demo", "-h"]])
def test_dash_h_is_help_everywhere(args):
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output and "--help" in res.output and "-h" in res.output


@pytest.mark.parametrize("args, fragment", [
    (["validate", "--config", "x.yml"], "Missing option '--source'"),
    (["validat"], "No such command 'validat'"),
    (["demo", "--persons", "many"], "Invalid value for '--persons'"),
    (["dedup", "--config", "x.yml", "--incremental=maybe"], "--incremental: expected yes or no, got 'maybe'"),
    (["dedup", "--config", "x.yml", "--truth", "no-such-truth.csv"], "no-such-truth.csv"),
])
def test_usage_errors_are_one_line(args, fragment):
    line = refused(invoke(*args), fragment)
    assert "(see `healthqa " in line and " -h`)" in line  # where to look next


def test_incremental_takes_a_flag_or_a_value(built):
    import json

    folder, _ = built
    cfg = folder / "healthqa.yml"
    seen = {}
    for flag in ("--full", "--incremental=no", "--incremental", "--incremental=yes", "--full=no", "--incremental=1"):
        out = folder / "dedup.json"
        res = invoke("dedup", "--config", cfg, flag, "--json", out)
        assert res.exit_code == 0, res.output
        seen[flag] = json.loads(out.read_text(encoding="utf-8"))["incremental"]
    # the demo's nightly run already screened once, so an incremental run has something to build on
    assert seen == {"--full": False, "--incremental=no": False, "--incremental": True, "--incremental=yes": True,
                    "--full=no": True, "--incremental=1": True}


@pytest.mark.parametrize("command", ["validate", "dedup"])
def test_json_into_a_missing_folder_is_refused_before_any_work(built, command):
    folder, _ = built
    before = runs_in(folder)
    args = ["--source", "mpi"] if command == "validate" else []
    res = invoke(command, "--config", folder / "healthqa.yml", *args, "--json", folder / "no-such" / "out.json")
    refused(res, "folder")
    assert "no-such" in res.stderr
    assert runs_in(folder) == before  # nothing ran
    res = invoke(command, "--config", folder / "healthqa.yml", *args, "--json", folder)
    refused(res, "it is a folder")


@pytest.mark.parametrize("args, fragment", [
    (["--org", "NO-SUCH-ORG"], "nothing matched --org NO-SUCH-ORG"),
    (["--since", "2001-01-01", "--until", "2001-02-01"], "nothing matched --since 2001-01-01 00:00:00"),
    (["--table", "organization", "--org", "X"], "nothing matched --org X: in source drc (organization)"),
    (["--table", "organization", "--since", "2026-01-01"], "applies to none of organization"),
])
def test_filters_that_match_nothing_exit_2(built, args, fragment):
    folder, _ = built
    before = runs_in(folder)
    res = invoke("validate", "--config", folder / "healthqa.yml", "--source", "drc", *args)
    line = refused(res, fragment)
    assert "没有匹配的记录" in line  # Chinese first
    assert runs_in(folder) == before


def test_a_real_org_with_one_typo_among_them_is_refused(built):
    import json

    folder, _ = built
    one = json.loads(_run_json(folder / "healthqa.yml", folder / "o.json", "--table", "outpatient_visit"))
    org = next(o for r in one["results"] for o in (r["by_org"] or {}))
    res = invoke("validate", "--config", folder / "healthqa.yml", "--source", "drc", "--org", org, "--org", org + "9")
    refused(res, f"--org {org}9")


def _rule_ids(output: str) -> str:
    """The first column of a printed table, its folded fragments joined again."""
    return "".join(line.split("│")[1].strip() for line in output.splitlines() if line.startswith("│"))


@pytest.mark.parametrize("columns", [120, 60])
def test_validation_table_shows_meaning_and_threshold_and_never_cuts(built, columns):
    folder, _ = built
    res = runner.invoke(app, ["validate", "--config", str(folder / "healthqa.yml"), "--source", "drc",
                              "--table", "outpatient_visit"], env={"COLUMNS": str(columns)})
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns  # nothing runs past the edge to be cropped
    assert "…" not in res.stdout
    first_column = _rule_ids(res.stdout)
    for rule_id, meaning in (("OPV-UPLOAD-AFTER-VISIT", "上传时间不早于就诊时间"),
                             ("OPV-UPLOAD-T1", "就诊记录在就诊后24小时内上")):
        assert rule_id in first_column and meaning in first_column
    if columns == 120:  # room enough: thresholds beside rates, every rule id on one line, whole
        assert "阈值" in res.stdout and "≤2.00%" in res.stdout and "≤0%" in res.stdout
        for rule_id in ("OPV-UPLOAD-AFTER-VISIT", "OPV-NOT-BEFORE-BIRTH", "OPV-DX-CATEGORY"):
            assert any(rule_id in line for line in lines)


@pytest.fixture
def small(tmp_path):
    folder = tmp_path / "small"
    res = invoke("demo", "--dir", folder, "--persons", 100, "--seed", 3, "--as-of", AS_OF.isoformat())
    assert res.exit_code == 0, res.output
    # the night against the truth: recall per defect family, false flags per valid kind
    assert "真值核对 truth check" in res.stdout and "id_invalid" in res.stdout and "误报 false flags" in res.stdout
    return folder


def test_demo_again_refuses_without_force_and_says_what_would_be_lost(small):
    with sqlite3.connect(small / "audit.db") as conn:
        conn.execute("INSERT INTO steward_decisions (source, left_id, right_id, decision, decided_at) "
                     "VALUES ('mpi', 'a', 'b', 'not_same', '2026-11-25 10:00:00')")
    res = invoke("demo", "--dir", small, "--persons", 100, "--seed", 3)
    line = refused(res, "--force")
    assert "审核决定 steward decisions 1" in line and "运行 runs 2" in line
    assert runs_in(small) == 2  # untouched
    with sqlite3.connect(small / "audit.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM steward_decisions").fetchone()[0] == 1
    res = invoke("demo", "--dir", small, "--persons", 100, "--seed", 3, "--as-of", AS_OF.isoformat(), "--force")
    assert res.exit_code == 0, res.output
    with sqlite3.connect(small / "audit.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM steward_decisions").fetchone()[0] == 0
        assert conn.execute("SELECT kind, status FROM runs ORDER BY id").fetchall() == [("nightly", "success"),
                                                                                        ("dedup", "success")]


def test_nightly_run_is_finished_after_its_duplicate_scan(small, monkeypatch):
    """A failing duplicate scan leaves the night partial, saying so; the night is closed after it."""
    from healthqa.store import AuditStore

    cfg = small / "healthqa.yml"
    res = invoke("run", "nightly", "--config", cfg)
    assert res.exit_code == 0, res.output
    with AuditStore(f"sqlite:///{small / 'audit.db'}") as store:
        night, scan = sorted(store.runs.recent(2), key=lambda r: r.id)
    assert (night.kind, night.status, scan.kind, scan.status) == ("nightly", "success", "dedup", "success")

    def broken(*a, **kw):
        raise RuntimeError("the index\nis corrupt")

    monkeypatch.setattr("healthqa.pipelines.nightly.run_dedup", broken)
    res = invoke("run", "nightly", "--config", cfg)
    assert res.exit_code == 1 and "RuntimeError: the index is corrupt" in res.output  # part could not run
    with AuditStore(f"sqlite:///{small / 'audit.db'}") as store:
        night = store.runs.recent(1)[0]
    assert (night.kind, night.status, night.message) == ("nightly", "partial", "dedup: RuntimeError: the index is corrupt")


def test_the_source_of_a_table_is_looked_up_one_way(tmp_path, built):
    """`dedup --source` must map the archives; without it, the source that maps them is found."""
    folder, _ = built
    refused(invoke("dedup", "--config", folder / "healthqa.yml", "--source", "drc"),
            "source drc: table person is not mapped by this source (mapped: organization")
    refused(invoke("dedup", "--config", folder / "healthqa.yml", "--source", "nope"), "source nope: no such source")
    p = tmp_path / "c.yml"
    p.write_text(f"store: {{url: 'sqlite:///{tmp_path / 'a.db'}'}}\nsources:\n  drc:\n    kind: sqlalchemy\n"
                 f"    url: 'sqlite:///{folder / 'drc.db'}'\n    tables:\n"
                 "      organization: {table: tb_jgxx, columns: {org_code: JGDM}}\n", encoding="utf-8")
    refused(invoke("dedup", "--config", p), "c.yml: sources: no source maps the table person")


# -- refused before anything starts: a second night, an unreachable Prefect server, mistyped names ----

def _nothing_may_start(monkeypatch):
    """Prefect's local API and flow runs fail the test if the command gets that far."""
    from healthqa.pipelines import flows, prefect_api

    def started(*a, **kw):
        raise AssertionError("Prefect or a flow run was started before the refusal")

    for mod, name in ((prefect_api, "warm"), (flows, "run_nightly_flow"), (flows, "run_validate_flow")):
        monkeypatch.setattr(mod, name, started)


def test_a_second_nightly_is_one_line_before_prefect_starts(built, monkeypatch):
    from healthqa.store import AuditStore

    folder, _ = built
    _nothing_may_start(monkeypatch)
    before = runs_in(folder)
    with AuditStore(f"sqlite:///{folder / 'audit.db'}") as store, store.locks.hold("nightly"):
        refused(invoke("run", "nightly", "--config", folder / "healthqa.yml"), "另一次夜间稽核正在运行 another nightly")
    assert runs_in(folder) == before  # nothing counted


def test_the_flow_refused_by_the_nightly_lock_fails_quietly(built, monkeypatch):
    """A flow run that finds the lock taken (a deployment's run beside a command's) ends Failed with
    the reason, not with a traceback in the log; the command run says it in one line."""
    from healthqa.pipelines import flows
    from healthqa.pipelines.nightly_lock import NightlyInProgress

    def busy(cfg):
        raise NightlyInProgress("另一次夜间稽核正在运行 another nightly audit is running on this audit store")

    folder, _ = built
    monkeypatch.setattr(flows, "_night", busy)
    state = flows.nightly_audit(str(folder / "healthqa.yml"), return_state=True)
    assert state.is_failed() and "another nightly audit is running" in state.message
    assert isinstance(state.result(raise_on_failure=False), NightlyInProgress)
    res = invoke("run", "nightly", "--config", folder / "healthqa.yml")
    refused(res, "another nightly audit is running")
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["schedule"], ["deploy"], ["run", "nightly"],
                                  ["validate", "--source", "drc", "--table", "organization"]])
def test_an_unreachable_prefect_server_is_one_line_exit_2(built, monkeypatch, args):
    from healthqa.pipelines import flows, prefect_api

    folder, _ = built
    monkeypatch.setattr(prefect_api, "_api", None)  # this process's local API from earlier tests: none
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    for name in ("run_nightly_flow", "run_validate_flow", "deploy_to_pool"):
        monkeypatch.setattr(flows, name, lambda *a, **kw: pytest.fail("reached Prefect's client"))
    before = runs_in(folder)
    line = refused(invoke(*args, "--config", folder / "healthqa.yml"), "PREFECT_API_URL=http://127.0.0.1:1/api")
    assert "服务器无响应" in line and "does not answer" in line
    assert runs_in(folder) == before


@pytest.mark.parametrize("args, fragment", [
    (["--source", "MPI"], "source MPI: no such source (configured: drc, mpi, qc)"),
    (["--source", "drc", "--table", "persn"], "table persn is not mapped by this source"),
    (["--source", "drc", "--org", "NOPE"], "nothing matched --org NOPE"),
    (["--source", "drc", "--since", "2030-01-01"], "nothing matched --since 2030-01-01 00:00:00"),
])
def test_validate_mistakes_are_refused_before_prefect_starts(built, monkeypatch, args, fragment):
    folder, _ = built
    _nothing_may_start(monkeypatch)
    refused(invoke("validate", "--config", folder / "healthqa.yml", *args), fragment)


# -- small things a user meets ---------------------------------------------------------------------------

def test_a_date_alone_for_until_takes_that_whole_day():
    from datetime import datetime

    from healthqa.pipelines.cli.options import time_option

    assert time_option("2026-11-20", "--until", whole_day=True) == datetime(2026, 11, 20, 23, 59, 59, 999999)
    assert time_option("2026-11-20", "--since") == datetime(2026, 11, 20)
    assert time_option("2026-11-20 08:30", "--until", whole_day=True) == datetime(2026, 11, 20, 8, 30)
    assert time_option("2026-11-20T08:30:15", "--since") == datetime(2026, 11, 20, 8, 30, 15)


def test_until_a_day_reads_that_day_and_runs_shows_the_scope(built):
    import json

    folder, _ = built
    cfg = folder / "healthqa.yml"
    day = json.loads(_run_json(cfg, folder / "d.json", "--table", "outpatient_visit", "--since", "2026-11-18",
                               "--until", "2026-11-24"))
    before = json.loads(_run_json(cfg, folder / "e.json", "--table", "outpatient_visit", "--since", "2026-11-18",
                                  "--until", "2026-11-24 00:00"))
    assert day["scope"]["until"] == "2026-11-24T23:59:59.999999"
    rows = {r["rule_id"]: r["denominator"] for r in day["results"]}
    rows_before = {r["rule_id"]: r["denominator"] for r in before["results"]}
    assert rows["OPV-DX-REQUIRED"] > rows_before["OPV-DX-REQUIRED"]  # the 24th's visits are in
    org = next(o for r in day["results"] for o in (r["by_org"] or {}))
    _run_json(cfg, folder / "f.json", "--table", "outpatient_visit", "--org", org, "--since", "2026-11-18 08:00")
    res = runner.invoke(app, ["runs", "--config", str(cfg), "--last", "3"], env={"COLUMNS": "400"})  # no folding
    assert res.exit_code == 0, res.output
    out = res.stdout
    visits = "数据源 drc · 表 门诊就诊记录 outpatient_visit"
    assert f"{visits} · 机构 {org} · 2026-11-18 08:00→…" in out
    assert f"{visits} · 2026-11-18→2026-11-24 " in out  # the day given, not 23:59:59.999999
    assert f"{visits} · 2026-11-18→2026-11-24 00:00 " in out  # up to midnight: not the whole day


@pytest.mark.parametrize("value", ["2026/11/20", "20-11-2026", "yesterday", "2026-13-01"])
def test_a_bad_time_is_one_line_chinese_first_with_the_formats(value):
    line = refused(invoke("validate", "--config", "x.yml", "--source", "drc", "--until", value), "--until")
    assert "无法识别的时间" in line and repr(value) in line and "2026-11-20 08:30" in line


def test_plain_flags_show_no_type_in_help():
    for args in (["findings", "-h"], ["report", "-h"], ["demo", "-h"]):
        res = invoke(*args)
        assert res.exit_code == 0 and "<bool>" not in res.output, res.output
    assert "<time>" in invoke("validate", "-h").output  # options that take a value still say what


def test_lines_are_not_broken_in_a_pipe(built):
    """stdout is not a terminal under the test runner, as in a pipe or a log file: the summary line
    of the night stays one line, however long."""
    from rich.cells import cell_len

    _, res = built
    line = next(x for x in res.stdout.splitlines() if x.startswith("得分 scores"))
    assert "已解决 resolved" in line and cell_len(line) > 160  # wider than the tables of a pipe


def test_demo_with_an_unreachable_prefect_server_builds_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    refused(invoke("demo", "--dir", tmp_path / "d", "--persons", 100), "PREFECT_API_URL=http://127.0.0.1:1/api")
    assert not (tmp_path / "d").exists()
