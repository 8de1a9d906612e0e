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
        if isinstance(value, dict):  # archive -> date
            refs[name] = pd.Series({k: pd.Timestamp(v) for k, v in value.items()})
        else:
            refs[name] = set(map(str, value))
    return RuleContext(as_of=pd.Timestamp("2026-11-25"), references=refs)


def frame(rows, rule) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in rule.columns:  # optional parameters absent from an example are simply missing
        if c not in df:
            df[c] = None
    return df


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_examples(rule):
    ctx = context_for(rule)
    (ok,) = validate_frame(frame(rule.examples.pass_, rule), rule.table, [rule], ctx)
    assert ok.status in ("pass", "not_applicable") and ok.violations == 0, (ok.status, ok.error)
    (bad,) = validate_frame(frame(rule.examples.fail, rule), rule.table, [rule], ctx)
    expected = rule.examples.violations or len(rule.examples.fail)
    assert bad.status == "fail" and bad.violations == expected, (bad.violations, bad.error)


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
    from healthqa.expectations.runner import format_pct

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
    from healthqa.pipelines.validate import validate_source

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
    run = validate_source(config.load(tmp_path / "c.yml"), "x", all_keys=True)
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
