"""The run report and the quarterly inspection report as a QC manager receives them: offline HTML
with no external URL and no personal value, a PDF whose text is the same Chinese, and plain
statements where there is nothing to show (no runs, every source down, no rows, unregistered codes)."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime

import pytest

from healthqa import codelists
from healthqa.pipelines.nightly import run_nightly
from healthqa.reports import quarterly, run_report
from healthqa.reports.quarterly import Quarter, compliance

from ..conftest import copy_after_night
from .rows import finding_row as _f

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report_render")]  # the module's night, built once

EXTERNAL = re.compile(r"""(?:src|href)\s*=|url\(|@import|https?://|//[a-z0-9.-]+\.[a-z]{2,}/""", re.I)


def personal_values(folder) -> set[str]:
    """Names, ID numbers, phones and addresses of the synthetic MPI (long enough to be meaningful)."""
    with sqlite3.connect(folder / "mpi.db") as conn:
        rows = conn.execute("SELECT XM, SFZH, LXDH, XZZ FROM T_GRDA").fetchall()
    values = {str(v).strip() for row in rows for v in row if v is not None}
    # placeholders the platform injects (无名, 测试, 00000000) are not anybody's data: rules cite them
    placeholders = {str(v) for vs in codelists.load("placeholders").values() if isinstance(vs, list) for v in vs}
    return {v for v in values - placeholders if len(v) >= 3 or (len(v) == 2 and not v.isascii())}


@pytest.fixture(scope="module")
def night(demo_after_night, tmp_path_factory):
    """One night on a copy of the platform, read by the module's tests (they write only elsewhere)."""
    return copy_after_night(demo_after_night, tmp_path_factory.mktemp("night"))


def test_the_nightly_writes_an_offline_report_without_personal_data(night):
    cfg, store, folder, res = night
    assert res.report is not None and res.report.is_file()
    html = res.report.read_text(encoding="utf-8")
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)
    for heading in ("数据质量稽核报告", "各系统得分", "各质量维度得分", "各表得分", "机构排名", "影响最大的规则", "问题清单",
                    "重复档案"):
        assert heading in html
    leaked = [v for v in personal_values(folder) if v in html]
    assert not leaked, f"personal values in the report: {leaked[:5]}"
    # institutions by name, the unregistered codes of the platform said plainly
    assert "镇海区" in html and "未登记 not in registry" in html and "未在机构注册表中登记" in html
    assert res.assessment.summary()["overall_conformance"] is not None


def test_the_pdf_says_the_same_in_chinese_with_a_cjk_font(night, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    cfg, store, _, res = night
    written = run_report.write(cfg, store, res.run_id, tmp_path, pdf=True)
    reader = pypdf.PdfReader(str(written.pdf))
    text = "".join(p.extract_text() for p in reader.pages)
    assert "数据质量稽核报告" in text and "各系统得分" in text and "机构排名" in text
    overall = next(s for s in store.scores.of_run(res.run_id) if s["level"] == "overall")
    assert f"{overall['conformance']:.1f}%" in text
    fonts = {str(f.get_object().get("/BaseFont")) for p in reader.pages
             for f in (p.get("/Resources", {}).get("/Font", {}) or {}).values()}
    assert any("CJK" in f for f in fonts), fonts  # Chinese set in a CJK font, not in boxes
    assert "\ufffd" not in text


def test_a_run_with_every_source_down_is_reported_plainly(platform):
    cfg, store, folder = platform
    (folder / "gone").mkdir()
    for f in ("mpi.db", "drc.db", "qc.db"):
        (folder / f).rename(folder / "gone" / f)  # the stores are gone
    res = run_nightly(cfg)
    assert res.status == "partial" and set(res.failures) >= {"mpi", "drc", "qc"}
    levels = {f.subject: f.level for f in store.findings.list(state="open")}
    assert levels.get("store_unreachable") == "一级"  # a whole store unreachable: the contract's highest level
    html = res.report.read_text(encoding="utf-8")
    assert "本次运行未完整完成" in html and "没有产生任何规则结果" in html


def test_a_table_with_zero_rows_is_said_not_failed(platform):
    cfg, store, folder = platform
    with sqlite3.connect(folder / "qc.db") as conn:
        conn.execute("DELETE FROM JK_TJJL")
    res = run_nightly(cfg)
    html = res.report.read_text(encoding="utf-8")
    exam = [r for r in store.results.of_run(res.run_id) if r.table == "health_exam"]
    assert exam and all(r.status == "not_applicable" for r in exam)
    assert "health_exam" not in {f.table_name for f in store.findings.list()}
    assert "数据质量稽核报告" in html


def test_quarterly_report_over_scripted_nights(after_night):
    cfg, store, folder, _ = after_night  # the first night is the session's (conftest.demo_after_night)
    run_nightly(cfg)
    f = store.findings.list(state="open")[0]
    store.findings.acknowledge(f.id, "qc")
    store.findings.note(f.id, "机构反馈：接口改造中，预计下周完成", "qc")
    now = datetime.now()
    q = Quarter(now.year, (now.month - 1) // 3 + 1)
    ctx = quarterly.context(cfg, store, q)
    assert len(ctx["systems"]) == 14 and ctx["runs"]["scored"] == 2
    assert {s["code"] for s in ctx["systems"] if s["last"] is not None} >= {"4", "10"}
    assert ctx["findings"]["opened"] == len(store.findings.opened_between(q.start, q.end)) > 0
    assert ctx["notes"][0]["text"] == "机构反馈：接口改造中，预计下周完成"
    written = quarterly.write(cfg, store, q, folder / "reports")
    html = written.html.read_text(encoding="utf-8")
    for heading in ("巡检报告", "十四个系统运行状况", "问题与处理时限", "重复档案", "收集的问题与需求", "建议", "签字确认"):
        assert heading in html
    assert "服务方" in html and "客户方" in html and not EXTERNAL.search(html)


def test_a_quarter_without_runs_says_so(platform, tmp_path):
    cfg, store, _ = platform
    html = quarterly.write(cfg, store, quarterly.parse_quarter("2025Q1"), tmp_path).html.read_text(encoding="utf-8")
    assert "本季度没有稽核运行记录" in html and "签字确认" in html


def test_quarters_parse_and_bound():
    q = quarterly.parse_quarter("2026q4")
    assert (q.start, q.end) == (datetime(2026, 10, 1), datetime(2027, 1, 1))
    assert quarterly.parse_quarter(" 2026-Q1 ").end == datetime(2026, 4, 1)
    with pytest.raises(Exception, match="2026Q4"):
        quarterly.parse_quarter("2026Q5")



def test_deadline_compliance_by_hand():
    t0 = datetime(2026, 11, 1, 2, 0)
    rows = [
        _f(1, "一级", t0, ack=datetime(2026, 11, 1, 3, 0), resolved=datetime(2026, 11, 1, 20, 0)),  # both in time
        _f(2, "一级", t0, ack=datetime(2026, 11, 1, 5, 0), resolved=datetime(2026, 11, 3, 0, 0)),   # both late
        _f(3, "一级", t0),                                                                         # never answered
        _f(4, "二级", t0, resolved=datetime(2026, 11, 1, 3, 0)),  # resolved within 2 h counts as a response
        _f(5, "二级", datetime(2026, 11, 30, 23, 0)),             # deadline not reached yet: pending
    ]
    one, two = compliance(rows, at=datetime(2026, 11, 30, 23, 30))
    assert (one["opened"], one["response_met"], one["response_missed"], one["fix_met"], one["fix_missed"]) == (3, 1, 2, 1, 2)
    assert one["response_rate"] == pytest.approx(100 / 3)
    assert (two["opened"], two["response_met"], two["response_missed"], two["response_pending"]) == (2, 1, 0, 1)
    assert two["fix_met"] == two["fix_missed"] == 0  # 二级 has no fix deadline in the contract


def test_compiled_templates_are_kept_and_a_damaged_entry_is_compiled_again(tmp_path):
    """A report command compiles its templates once a machine, not once a run; an entry that cannot
    be read is compiled again, never an error."""
    from jinja2 import DictLoader, Environment

    from healthqa.reports.render import _CompiledTemplates

    kept = _CompiledTemplates(directory=str(tmp_path))

    def render(x: int) -> str:
        return Environment(loader=DictLoader({"t.j2": "{{ x }}!"}), bytecode_cache=kept).get_template("t.j2").render(x=x)

    assert render(1) == "1!"
    [entry] = tmp_path.iterdir()
    assert render(2) == "2!"
    entry.write_bytes(b"damaged")
    assert render(3) == "3!"
