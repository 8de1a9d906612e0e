"""Every rule of every suite runs its own examples through Great Expectations: the rows under
``pass`` raise no violation, the rows under ``fail`` do."""

from __future__ import annotations

import pandas as pd
import pytest

from healthqa.expectations import suite
from healthqa.expectations.rule_types import RuleContext
from healthqa.expectations.runner import validate_frame

RULES = [r for t in suite.builtin_tables() for r in suite.builtin(t).rules]


def context_for(rule) -> RuleContext:
    refs = {}
    for name, value in (rule.examples.context.get("references") or {}).items():
        if isinstance(value, dict):  # archive -> a date (person.birth_date) or a code (person.sex_code)
            dated = name.endswith("_date")
            refs[name] = pd.Series({k: pd.Timestamp(v) if dated else str(v) for k, v in value.items()})
        else:
            refs[name] = set(map(str, value))
    codes = rule.examples.context.get("diagnosis_codes")  # a site's code list: code -> name
    return RuleContext(as_of=pd.Timestamp("2026-11-25"), references=refs,
                       diagnosis_codes={str(k): str(v) for k, v in codes.items()} if codes else None)


def frame(rows, rule) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in rule.columns:  # optional parameters absent from an example are simply missing
        if c not in df:
            df[c] = None
    return df


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_examples(rule):
    ctx = context_for(rule)
    # a rule split per system (the suite's ``system_by``) has a result per system: judged together
    oks = validate_frame(frame(rule.examples.pass_, rule), rule.table, [rule], ctx)
    assert len(oks) == max(1, len(rule.system_by.systems) if rule.system_by else 1)
    for ok in oks:
        assert ok.status in ("pass", "not_applicable") and ok.violations == 0, (ok.rule.id, ok.status, ok.error)
    bads = validate_frame(frame(rule.examples.fail, rule), rule.table, [rule], ctx)
    expected = rule.examples.violations or len(rule.examples.fail)
    assert any(b.status == "fail" for b in bads) and sum(b.violations for b in bads) == expected, \
        [(b.rule.id, b.violations, b.error) for b in bads]


def test_every_rule_type_in_use_is_documented():
    from healthqa.expectations import rule_types

    for r in RULES:
        assert rule_types.get(r.type).doc, r.type


def test_rule_ids_are_unique_across_suites():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))


def test_a_broken_rule_is_an_error_and_the_others_still_run():
    from healthqa.expectations import rule_types

    @rule_types.rule_type("test_explodes", columns=("column",))
    def explodes(df, p, ctx):
        raise ValueError("boom")

    good = suite.builtin("person").rules[0]
    bad = good.model_copy(update={"id": "TEST-BOOM", "type": "test_explodes"})
    df = pd.DataFrame({"archive_id": ["33021100100100001", None]})
    res = validate_frame(df, "person", [bad, good], RuleContext(as_of=pd.Timestamp("2026-11-25")))
    assert res[0].status == "error" and "boom" in res[0].error
    assert res[1].status == "fail" and res[1].violations == 1 and res[1].denominator == 2


def test_missing_column_is_a_finding_not_a_crash():
    rules = suite.builtin("person").rules
    df = pd.DataFrame({"archive_id": ["33021100100100001"]})
    res = {r.rule.id: r for r in validate_frame(df, "person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")),
                                                missing_columns={"name": "XM"})}
    assert res["MPI-NAME-REQUIRED"].status == "error"
    assert "column missing: name (XM)" in res["MPI-NAME-REQUIRED"].error
    assert res["MPI-ARCHIVE-FORMAT"].status == "pass"


def test_tiny_rates_never_round_to_zero():
    from healthqa.pipelines.cli.render import format_pct

    assert format_pct(100 * 1 / 1_000_000) == "0.0001%"
    assert format_pct(0.0) == "0%"
    assert format_pct(12.345) == "12.35%"


def test_every_shipped_rule_carries_examples():
    assert all(r.examples is not None and r.examples.pass_ and r.examples.fail for r in RULES)


SITE_SUITE = """
table: person
rules:
  - id: SITE-NAME-NOT-ZHANG-SAN
    type: matches
    params: {column: name, pattern: "(?!张三$).*"}
    zh: 姓名不是“张三”（本地常见测试名）
    en: Name is not 张三 (a test name common at this site)
    dimension: 规范性
    kahn: plausibility.atemporal/verification
    standard: 镇海区质控细则
    severity: 二级
    threshold: 0
  - id: SITE-ARCHIVE-ODD
    type: site_archive_odd
    params: {column: archive_id}
    zh: 档案编号末位为奇数（演示自定义类型）
    en: Archive number ends in an odd digit (a custom type, for the test)
    dimension: 规范性
    kahn: conformance.value/verification
    standard: test
    severity: 提示
    threshold: 0
  - id: MPI-PHONE-REQUIRED
    type: not_null
    params: {column: phone}
    zh: 联系电话不能为空
    en: Phone number is present
    dimension: 完整性
    kahn: completeness/verification
    standard: WS 365
    severity: 提示
    threshold: 0
    enabled: false
"""

PLUGIN = '''
from healthqa.expectations.rule_types import rule_type


@rule_type("site_archive_odd", columns=("column",))
class ArchiveOdd:
    """The archive number's last digit is odd."""

    def __call__(self, df, params, ctx):
        s = df[params["column"]].astype(str)
        applies = s.str[-1].str.isdigit()
        return applies, applies & s.str[-1].isin(list("02468"))
'''


def test_site_suite_adds_replaces_and_disables_rules(tmp_path, monkeypatch):
    """A QC manager adds rules by YAML; a custom type is a class in a module the configuration names."""
    import yaml

    from healthqa import config
    from healthqa.pipelines.validate import ValidationRequest, validate_adhoc

    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "person.yml").write_text(SITE_SUITE, encoding="utf-8")
    (tmp_path / "site_rules.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "p.csv").write_text("DABH,XM,LXDH\n33021100100100001,张三,\n33021100100100002,王伟,13812345678\n",
                                    encoding="utf-8")
    cfg = {"store": {"url": f"sqlite:///{tmp_path / 'a.db'}"},
           "validation": {"suites": "suites", "plugins": ["site_rules"], "as_of": "2026-11-25 00:00:00"},
           "sources": {"x": {"kind": "csv", "path": str(tmp_path), "tables": {"person": {
               "file": "p.csv", "columns": {"archive_id": "DABH", "name": "XM", "phone": "LXDH"}}}}}}
    (tmp_path / "c.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    run = validate_adhoc(config.load(tmp_path / "c.yml"), ValidationRequest("x", all_keys=True))
    res = {r.rule.id: r for _, r in run.results}
    assert res["SITE-NAME-NOT-ZHANG-SAN"].violating_keys == ["33021100100100001"]
    assert res["SITE-ARCHIVE-ODD"].violating_keys == ["33021100100100002"]
    assert "MPI-PHONE-REQUIRED" not in res  # switched off by the site
    assert "MPI-NAME-PLACEHOLDER" in res  # shipped rules still run


def test_unknown_plugin_is_a_configuration_error(tmp_path):
    from healthqa.errors import ConfigError
    from healthqa.expectations.suite import load_plugins

    with pytest.raises(ConfigError, match="validation.plugins: cannot import no_such_module_hq"):
        load_plugins(["no_such_module_hq"])


def test_two_validations_in_threads_give_the_sequential_results():
    """Each validation has its own GE engine carrying its rule context: no shared table, no lock."""
    from concurrent.futures import ThreadPoolExecutor

    rules = suite.builtin("outpatient_visit").rules
    frames, contexts = [], []
    for i, birth in enumerate(("2000-01-01", "2030-01-01")):  # the two contexts disagree on purpose
        frames.append(pd.DataFrame({
            "visit_id": [f"V{i}{n}" for n in range(6)], "archive_id": ["33021100100100001"] * 5 + ["X"],
            "org_code": ["A1"] * 6, "visit_time": ["2026-11-01 10:00:00"] * 6,
            "upload_time": ["2026-11-01 11:00:00"] * 3 + ["2026-11-05 11:00:00"] * 3,
            "diagnosis_code": ["I10", "E11.9", "Q99.9", "X", None, "J06.9"], "dept_code": ["03"] * 6,
            "diagnosis_name": ["高血压"] + [None] * 5}))
        contexts.append(RuleContext(as_of=pd.Timestamp("2026-11-25"), references={
            "person.archive_id": {"33021100100100001"}, "organization.org_code": {"A1"},
            "person.birth_date": pd.Series({"33021100100100001": pd.Timestamp(birth)}),
            "person.death_date": pd.Series({"33021100100100001": pd.NaT}),
            "person.sex_code": pd.Series({"33021100100100001": "1"}), "organization.inactive": set(),
            "person.registered_death_date": pd.Series(dtype="datetime64[ns]"),
            "infectious_report.first_report_date": pd.Series(dtype="datetime64[ns]")}))

    def run(i):
        return [(r.rule.id, r.status, r.violations, r.denominator, r.sample_keys, r.error)
                for r in validate_frame(frames[i], "outpatient_visit", rules, contexts[i])]

    sequential = [run(0), run(1)]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            assert list(pool.map(run, [0, 1])) == sequential
    births = [{r[0]: r[2] for r in s}["OPV-NOT-BEFORE-BIRTH"] for s in sequential]
    assert births == [0, 5]  # each validation saw its own reference data
    assert not any(r[5] for s in sequential for r in s)


def test_ge_verdict_is_the_threshold_semantics():
    """``mostly`` = 1 - threshold/100 and GE's test agree with 'fail when violations exceed the
    tolerated %' at and around every boundary the shipped thresholds have."""
    from great_expectations.expectations.expectation import _mostly_success

    for threshold in sorted({r.threshold for r in RULES} | {0.1, 0.5, 3}):
        for den in (*range(1, 401), 999, 1000, 1001, 1_000_000, 1_058_285):
            edge = int(den * threshold / 100)
            for viol in {0, edge - 1, edge, edge + 1, den} & set(range(den + 1)):
                tolerated = 100.0 * viol / den <= threshold
                assert _mostly_success(den, viol, 1 - threshold / 100) == tolerated, (threshold, den, viol)


def test_compiled_suites_export_as_ge_json(tmp_path):
    import json

    import great_expectations as gx

    from healthqa.expectations import gx_bridge

    paths = gx_bridge.export_suites(tmp_path)
    assert {p.name for p in paths} == {f"healthqa.{t}.json" for t in suite.builtin_tables()}
    loaded = gx.ExpectationSuite(**json.loads((tmp_path / "healthqa.person.json").read_text("utf-8")))
    assert len(loaded.expectations) == len(suite.builtin("person").rules)
    by_id = {e.meta["rule_id"]: e for e in loaded.expectations}
    e = by_id["MPI-ID-VALID"]
    assert type(e).__name__ == "ExpectColumnValuesToBeValidGb11643Id" and e.column == "id_number"
    assert e.params == {"id": "id_number", "id_type": "id_type_code"} and e.mostly == 1
    assert e.severity.value == "warning" and e.description.startswith("身份证号")
    assert e.meta | {"standard": None} == {"rule_id": "MPI-ID-VALID", "table": "person", "dimension": "规范性",
                                           "kahn": "conformance.computational/verification", "standard": None,
                                           "system": "10", "severity": "二级", "threshold_pct": 0}
    phone = by_id["MPI-PHONE-REQUIRED"]
    assert phone.mostly == pytest.approx(0.99) and "1 %" in phone.notes and "no phone" in phone.notes
    pair = by_id["MPI-ID-BIRTH"]
    assert type(pair).__name__ == "ExpectColumnPairValuesToAgreeIdAndBirthDate"
    assert (pair.column_A, pair.column_B) == ("id_number", "birth_date")


def test_a_ge_user_runs_an_expectation_with_ge_alone():
    """The expectations are ordinary GE expectations: GE's own batch.validate, its result format and
    ``unexpected_index_column_names`` work on them (no reference data needed for this rule)."""
    import great_expectations as gx

    from healthqa.expectations import gx_bridge

    rule = next(r for r in suite.builtin("person").rules if r.id == "MPI-ID-VALID")
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
             .get_batch(batch_parameters={"dataframe": pd.DataFrame({
                 "archive_id": ["A1", "A2", "A3", "A4"], "id_type_code": ["01"] * 4,
                 "id_number": ["11010519491231002X", "110105194912310021", None, "11010519491231002X"]})}))
    res = batch.validate(gx_bridge.expectation_for(rule),
                         result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["archive_id"]})
    assert not res.success
    assert res.result["unexpected_count"] == 1 and res.result["unexpected_percent"] == pytest.approx(100 / 3)
    assert res.result["unexpected_index_list"] == [{"archive_id": "A2", "id_number": "110105194912310021"}]


def test_a_rule_type_name_is_registered_once():
    from healthqa.expectations import rule_types

    with pytest.raises(ValueError, match=r"'not_null' is already registered by healthqa\.expectations\.rule_types"
                                         r"\.not_null; tests\.expectations\.test_rules\..*other_not_null cannot"):
        @rule_types.rule_type("not_null", columns=("column",))
        def other_not_null(df, p, ctx):
            """Another not_null."""
    assert rule_types.get("not_null").origin == "healthqa.expectations.rule_types.not_null"


ENTRY_POINT_PLUGIN = '''
from healthqa.expectations.rule_types import rule_type


@rule_type("ep_archive_even", columns=("column",), expectation="ExpectColumnValuesToEndInAnEvenDigit")
def archive_even(df, params, ctx):
    """The archive number's last digit is even (a type an installed package adds)."""
    s = df[params["column"]].astype(str)
    return s.notna(), s.str[-1].isin(list("13579"))
'''


def test_rule_types_from_an_installed_package_entry_point(tmp_path, monkeypatch):
    """A package declares its module under the ``healthqa.rule_types`` entry-point group; a suite
    may then use its types without any configuration."""
    from healthqa.expectations import gx_bridge

    (tmp_path / "hq_ep_rules.py").write_text(ENTRY_POINT_PLUGIN, encoding="utf-8")
    dist = tmp_path / "hq_ep_rules-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hq-ep-rules\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[healthqa.rule_types]\nsite = hq_ep_rules\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    rule = suite.Rule.model_validate({
        "id": "SITE-ARCHIVE-EVEN", "type": "ep_archive_even", "params": {"column": "archive_id"},
        "zh": "档案编号末位为偶数", "en": "Archive number ends in an even digit", "dimension": "规范性",
        "kahn": "conformance.value/verification", "standard": "test", "severity": "提示", "threshold": 0})
    rule.table = "person"
    (res,) = validate_frame(pd.DataFrame({"archive_id": ["33021100100100002", "33021100100100003"]}), "person",
                            [rule], RuleContext(as_of=pd.Timestamp("2026-11-25")), all_keys=True)
    assert res.violating_keys == ["33021100100100003"]
    assert type(gx_bridge.expectation_for(rule)).__name__ == "ExpectColumnValuesToEndInAnEvenDigit"


def test_data_docs_show_rules_and_counts_never_values(tmp_path):
    """GE's Data Docs of a run: a static site with the rules and their counts; no value, no key."""
    from healthqa.expectations import data_docs

    rules = [r for r in suite.builtin("person").rules if r.id in ("MPI-ID-VALID", "MPI-NAME-PLAUSIBLE")]
    df = pd.DataFrame({"archive_id": ["33021100100100001", "33021100100177777"], "name": ["王伟", "Zhao Qiansun"],
                       "id_number": ["11010519491231002X", "110105194912310021"], "id_type_code": ["01", "01"]})
    results = validate_frame(df, "person", rules, RuleContext(as_of=pd.Timestamp("2026-11-25")))
    assert [r.violations for r in results] == [1, 1]
    index = data_docs.build(tmp_path / "docs", {"person": results}, "nightly")
    assert index.is_file()
    (page,) = (tmp_path / "docs" / "validations").rglob("*.html")
    html = page.read_text("utf-8")
    assert all(r.rule.zh in html for r in results) and "Unsuccessful Expectations" in html
    for personal in ("110105194912310021", "Zhao Qiansun", "33021100100177777"):
        assert personal not in html and personal not in index.read_text("utf-8")


def test_data_docs_work_offline(tmp_path):
    """No page loads a script or a style from the network: GE's CDN links point at vendored copies
    in the site (or are dropped), and every local script and style a page names exists."""
    import re

    from healthqa.expectations import data_docs

    rules = [r for r in suite.builtin("person").rules if r.id == "MPI-ID-VALID"]
    df = pd.DataFrame({"archive_id": ["33021100100100001"], "id_number": ["110105194912310021"], "id_type_code": ["01"]})
    index = data_docs.build(tmp_path / "docs", {"person": validate_frame(df, "person", rules,
                                                                         RuleContext(as_of=pd.Timestamp("2026-11-25")))},
                            "nightly")
    pages = list((tmp_path / "docs").rglob("*.html"))
    assert index in pages and len(pages) >= 2
    for page in pages:
        html = page.read_text("utf-8")
        tags = re.findall(r"<(?:script|link|img)\b[^>]*>", html)
        remote = [t for t in tags if re.search(r'(?:src|href)="(?:https?:)?//', t)]
        assert not remote, f"{page.name}: {remote[:3]}"
        local = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"#]+\.(?:js|css))"', html)
        assert any("vendor/jquery" in u for u in local) and any("vendor/bootstrap-4.3.1.min.css" in u for u in local)
        assert all((page.parent / u).is_file() for u in local), page.name


def test_a_kept_graph_judges_each_batch_by_its_own_context():
    """A table's rules are compiled into GE's graph once per thread and kept for the next validation
    of the same rules (a night validates the same tables as the night before): the kept graph must
    read the new batch's rows and the new validation's reference data, never the earlier ones."""
    from healthqa.expectations import gx_bridge

    rule = next(r for r in RULES if r.id == "OPV-ARCHIVE-EXISTS")
    rows = pd.DataFrame({"visit_id": ["V1", "V2", "V3"], "archive_id": ["A1", "A2", "B1"]})
    graphs = gx_bridge._built_graphs()

    def violating(known: set[str], df: pd.DataFrame) -> list:
        ctx = RuleContext(as_of=pd.Timestamp("2026-11-25"), references={"person.archive_id": known})
        (r,) = validate_frame(df, "outpatient_visit", [rule], ctx, all_keys=True)
        return sorted(r.violating_keys or [])

    assert violating({"A1", "A2"}, rows) == ["V3"]
    kept = len(graphs)
    assert violating({"B1"}, rows) == ["V1", "V2"]  # the second validation's references
    assert violating({"B1"}, rows.iloc[:1]) == ["V1"]  # and its rows
    assert len(graphs) == kept  # one graph served all three
