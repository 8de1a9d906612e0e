"""Commands start in a second: what each loads, not how long it takes (the seconds are in
benchmarks/startup.py). The history, findings and report commands load no rule engine, Prefect, PDF
or web stack; the engineer's validation starts no Prefect API unless a Prefect server is named."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from healthqa.pipelines import prefect_api

from .cli_run import invoke

# never for reading the run history or the findings: the rule engine, Prefect, the PDF and web stacks
NOT_FOR_READING = {"great_expectations", "prefect", "weasyprint", "fastapi", "uvicorn"}

_PROBE = """
import runpy, sys
for argv in sys.argv[1:]:
    sys.argv = ["healthqa", *argv.split()]
    try:
        runpy.run_module("healthqa", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
    print(sorted({m.split(".")[0] for m in sys.modules}), flush=True)
"""


def _platform(tmp_path):
    """A one-institution CSV source, an audit store, and a site diagnosis code list (read when the
    configuration loads)."""
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "org.csv").write_text("JGDM,JGMC,JGJB,SFQY\nORG1,镇海区人民医院,二级甲等医院,1\n", encoding="utf-8")
    (tmp_path / "codes.csv").write_text("code,name\nI10.x00,高血压\n", encoding="utf-8")
    cfg = {"store": {"url": f"sqlite:///{tmp_path / 'audit.db'}"},
           "validation": {"diagnosis_codes": str(tmp_path / "codes.csv")},
           "sources": {"ext": {"kind": "csv", "path": str(folder), "tables": {
               "organization": {"file": "org.csv", "columns": {"org_code": "JGDM", "name": "JGMC", "level": "JGJB",
                                                               "active": "SFQY"}}}}}}
    path = tmp_path / "healthqa.yml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def test_runs_and_findings_load_no_rule_engine_prefect_or_web_stack(tmp_path):
    """``healthqa runs`` (and the configuration with its code list) loads not even pandas;
    ``findings`` reads the institution registry from the source (pandas) and nothing heavier."""
    cfg = _platform(tmp_path)
    out = subprocess.run([sys.executable, "-c", _PROBE, f"runs -c {cfg}", f"findings -c {cfg}"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    after_runs, after_findings = (eval(line) for line in out.stdout.splitlines() if line.startswith("["))
    assert not set(after_runs) & (NOT_FOR_READING | {"pandas", "numpy", "pyarrow", "openpyxl"}), after_runs
    assert not set(after_findings) & NOT_FOR_READING, after_findings


def test_report_loads_no_rule_types_nor_pandas(no_prefect_settings):
    """``healthqa report`` names each rule from the suites read as plain data (``suite.listed``), counts
    duplicate pairs from plain rows, and loads the quarterly report's modules for ``--quarter`` only:
    neither the rule types nor pandas, NumPy or pyarrow load to write a run's report (once the audit
    store keeps the institution register: the first report reads it from its source)."""
    cfg = _platform(no_prefect_settings)
    res = invoke("validate", "--config", cfg, "--source", "ext", "--table", "organization")
    assert res.exit_code in (0, 1), res.output
    assert invoke("report", "-c", cfg, "--run", "1", "--out", no_prefect_settings / "reports").exit_code == 0
    out = subprocess.run([sys.executable, "-c", _PROBE + "print(sorted(m for m in sys.modules if m.startswith('healthqa.exp')))",
                          f"report -c {cfg} --run 1 --out {no_prefect_settings / 'reports'}"],
                         capture_output=True, text=True, cwd=no_prefect_settings)
    assert out.returncode == 0, out.stderr
    loaded, ours = (eval(line) for line in out.stdout.splitlines() if line.startswith("["))
    assert (no_prefect_settings / "reports" / "run-1.html").is_file()
    assert not set(loaded) & (NOT_FOR_READING | {"pandas", "numpy", "pyarrow", "openpyxl"}), loaded
    assert "healthqa.expectations.rule_types" not in ours, ours


def test_reports_name_the_rules_as_the_validation_reads_them(tmp_path):
    """``suite.listed`` (plain YAML) gives every shipped suite's enabled rules as ``rules_for`` does;
    a site's own suite for a table is read through ``rules_for`` (checked, its rule types loaded)."""
    from healthqa.expectations import suite

    for table in suite.builtin_tables():
        assert suite.listed(table) == [suite.Listed.of(r) for r in suite.rules_for(table)], table
        assert suite.shipped_system(table) == suite.builtin(table).system
    site = tmp_path / "suites"
    site.mkdir()
    first = suite.builtin("organization").rules[0]
    (site / "organization.yml").write_text(yaml.safe_dump({"table": "organization", "rules": [
        {**first.model_dump(by_alias=True, exclude={"table", "examples"}, exclude_none=True), "zh": "本地改写"}]},
        allow_unicode=True), encoding="utf-8")
    mine = suite.listed("organization", str(site))
    assert mine == [suite.Listed.of(r) for r in suite.rules_for("organization", str(site))]
    assert next(r for r in mine if r.id == first.id).zh == "本地改写"
    assert suite.listed("person", str(site)) == suite.listed("person")  # no site file for it: the shipped suite


@pytest.fixture
def no_prefect_settings(tmp_path, monkeypatch):
    """No Prefect server in the environment, the working folder or the Prefect profiles."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_validate_without_a_prefect_server_starts_no_prefect_api(no_prefect_settings, monkeypatch):
    """The engineer's check of one small table runs the validation here, recorded in the audit
    store as a run of its own, without a Prefect API started for one flow run."""
    def no_api(*args, **kwargs):
        raise AssertionError("a Prefect API was started")

    monkeypatch.setattr(prefect_api.LocalAPI, "spawn", no_api)
    cfg = _platform(no_prefect_settings)
    res = invoke("validate", "--config", cfg, "--source", "ext", "--table", "organization")
    assert res.exit_code in (0, 1) and (res.exception is None or isinstance(res.exception, SystemExit)), res.output
    assert "ORG-" in res.output and "rows read: organization 1" in " ".join(res.output.split())
    res = invoke("runs", "--config", cfg)
    assert res.exit_code == 0 and "validate" in res.output, res.output


def test_a_prefect_server_is_looked_for_only_where_prefect_settings_can_name_one(no_prefect_settings, monkeypatch):
    def prefects_answer():
        return "http://prefect.example:4200/api"

    monkeypatch.setattr(prefect_api, "server_url", lambda: pytest.fail("Prefect's settings were loaded"))
    assert prefect_api.named_server() is None  # nothing names a server: Prefect's settings are not loaded
    home = no_prefect_settings / "prefect-home"
    home.mkdir()
    (home / "profiles.toml").write_text('active = "ephemeral"\n[profiles.ephemeral]\n'
                                        'PREFECT_SERVER_EPHEMERAL_ENABLED = "true"\n[profiles.local]\n'
                                        'PREFECT_API_URL = "http://127.0.0.1:4200/api"\n', encoding="utf-8")
    assert prefect_api.named_server() is None  # a profile names one, but not the active profile

    monkeypatch.setattr(prefect_api, "server_url", prefects_answer)
    monkeypatch.setenv("PREFECT_PROFILE", "local")  # the active profile names one: Prefect's answer
    assert prefect_api.named_server() == prefects_answer()
    monkeypatch.delenv("PREFECT_PROFILE")
    (no_prefect_settings / "prefect.toml").write_text('[api]\nurl = "http://prefect.example:4200/api"\n', encoding="utf-8")
    assert prefect_api.named_server() == prefects_answer()  # a settings file here: Prefect's answer
    monkeypatch.setenv("PREFECT_API_URL", "http://other:4200/api")
    assert prefect_api.named_server() == "http://other:4200/api"  # the environment's, as Prefect reads it


@pytest.mark.slow  # imports Great Expectations in a process of its own
def test_great_expectations_loads_without_altair_and_scipy_stats():
    """Only GE's KL-divergence expectation and KS-test metrics use them, which no rule does; they
    still load, for real, on first use."""
    probe = ("import sys; from healthqa.expectations import gx_bridge; "
             "print(sorted(m for m in ('altair', 'scipy.stats') if m in sys.modules)); "
             "from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl; "
             "print(round(float(kl.stats.entropy([0.5, 0.5])), 4), kl.alt.Chart.__name__, 'altair' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "0.6931 Chart True"], out.stdout


def test_installed_rule_types_are_looked_up_once_a_process_not_once_a_table(monkeypatch):
    """Scanning every installed package's entry points costs each night about 0.3 s when done for
    every table a night validates; a type not yet known is still looked for (``rule_types.get``)."""
    import importlib.metadata

    from healthqa.expectations import suite

    scans = []
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: scans.append(kw) or real(**kw))
    for _table in range(3):
        suite.load_plugins([])
    assert len(scans) <= 1, scans


@pytest.mark.slow  # imports Great Expectations in a process of its own
def test_expectation_classes_are_built_for_the_rule_types_used_once_each():
    """Building a GE expectation class (a pydantic model and three metric providers) for each of the
    sixty-odd rule types at import was a tenth of a scoped validation: only the types used are
    built, once, also when threads ask for the same one at the same moment."""
    probe = """
import sys, threading
from healthqa.expectations import gx_bridge, rule_types, suite
print(len(gx_bridge._CLASSES))
got = []
threads = [threading.Thread(target=lambda: got.append(gx_bridge.expectation_class("not_null"))) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(len(set(map(id, got))), sorted(gx_bridge._CLASSES))
rule = suite.rules_for("organization")[0]
print(type(gx_bridge.expectation_for(rule)).__name__ == rule_types.get(rule.type).expectation, len(rule_types.REGISTRY) > 20)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "0", out.stdout
    assert lines[1] == "1 ['not_null']", out.stdout
    assert lines[2] == "True True", out.stdout
