"""The fourteen systems and the tables a site maps: a system whose tables no source maps reads "not
audited" and names them — in `sources check`, the run report and the quarterly report — never empty
or clean; a system that lost one of several tables is "partly mapped"."""

from __future__ import annotations

from types import SimpleNamespace

from healthqa import codelists, config
from healthqa.reports import run_report
from healthqa.reports.coverage import coverage

from ..conftest import demo_config, write_config
from ..pipelines.cli_run import invoke


def _load(tmp_path, raw: dict, demo=None):
    for name, src in raw["sources"].items():  # the demo's stores where they are (read only)
        if demo is not None:
            src["url"] = f"sqlite:///{demo / (name + '.db')}"
    return config.load(write_config(tmp_path / "healthqa.yml", raw))


def _without(raw: dict, table: str) -> dict:
    for src in raw["sources"].values():
        src["tables"].pop(table, None)
    return raw


def test_the_demo_maps_every_table_of_every_system_with_rules(demo, tmp_path):
    covered = coverage(_load(tmp_path, demo_config(demo)))
    assert [c.code for c in covered] == list(codelists.load("systems")["codes"])
    for c in covered:
        assert c.unmapped == ()
        assert (c.note() is None) == bool(c.tables), c


def test_a_system_whose_tables_are_unmapped_is_not_audited_and_says_which(demo, tmp_path):
    covered = {c.code: c for c in coverage(_load(tmp_path, _without(demo_config(demo), "lab_result"), demo))}
    lab = covered["12"]  # 区域临检系统: the lab results alone
    assert lab.tables == ("lab_result",) and not lab.audited
    assert lab.note() == "未纳入稽核 not audited — 未映射表 table not mapped: lab_result"
    drc = covered["10"]  # the resource centre keeps its other tables
    assert drc.audited and "lab_result" in drc.unmapped and drc.note().startswith("部分未映射 partly mapped")
    assert covered["2"].note() is None
    # the first command on a site says it too, and it is no error: a site may not hold the data
    res = invoke("sources", "check", "--config", tmp_path / "healthqa.yml")
    assert res.exit_code == 0, res.output
    assert "系统 system 12 区域临检系统: 未纳入稽核 not audited — 未映射表 table not mapped: lab_result" in res.stdout
    assert "系统 system 2 " not in res.stdout


def test_a_site_rule_brings_its_system_under_audit(demo, tmp_path):
    site = tmp_path / "suites"
    site.mkdir()
    (site / "person.yml").write_text("""table: person
rules:
  - id: SITE-REF-NAME
    type: not_null
    params: {column: name}
    zh: 转诊居民有姓名
    en: A referred resident has a name
    dimension: 完整性
    kahn: completeness/verification
    standard: site
    severity: 提示
    threshold: 0
    system: "7"
""", encoding="utf-8")
    raw = demo_config(demo)
    raw.setdefault("validation", {})["suites"] = str(site)
    covered = {c.code: c for c in coverage(_load(tmp_path, raw))}
    assert "person" in covered["7"].tables and covered["7"].audited


def test_a_nights_report_lists_all_fourteen_and_why_one_has_no_score(demo, tmp_path):
    cfg = _load(tmp_path, _without(demo_config(demo), "lab_result"))
    scored = {("system", "2"): {"conformance": 99.5}, ("system", "10"): {"conformance": None}}
    rows = run_report._system_rows(cfg, SimpleNamespace(kind="nightly"), scored,
                                   lambda lv, code: dict(scored[(lv, code)]), codelists.load("systems")["codes"])
    assert [r["code"] for r in rows] == list(codelists.load("systems")["codes"])
    by = {r["code"]: r for r in rows}
    assert by["12"]["note"] == "未纳入稽核 not audited — 未映射表 table not mapped: lab_result" and not by["12"]["checks"]
    assert by["2"]["note"] is None and by["2"]["conformance"] == 99.5
    assert by["10"]["note"].startswith("部分未映射 partly mapped")  # scored, yet lab results not read
    # an engineer's scoped run lists what it scored, not fourteen rows of "outside the scope"
    assert [r["code"] for r in run_report._system_rows(cfg, SimpleNamespace(kind="validate"), scored,
                                                        lambda lv, code: dict(scored[(lv, code)]), {})] == ["2", "10"]


def test_the_nights_report_and_the_quarterly_show_every_system(after_night):
    cfg, store, folder, result = after_night
    html = result.report.read_text(encoding="utf-8")
    for code, name in codelists.load("systems")["codes"].items():
        assert f"{code} {name}" in html
    assert "转诊闭环率" in html and "宁波市镇海区人民医院" in html.split("转诊闭环率", 1)[1]  # by receiving institution
    from healthqa.reports import quarterly

    day = store.runs.get(result.run_id).started_at
    q = quarterly.context(cfg, store, quarterly.Quarter(day.year, (day.month - 1) // 3 + 1))
    assert [s["code"] for s in q["systems"]] == list(codelists.load("systems")["codes"])
    covered = {c.code: c for c in coverage(cfg)}
    for s in q["systems"]:  # every system with rules was audited by the night
        assert s["status"].startswith("未纳入稽核") == (not covered[s["code"]].tables), s

