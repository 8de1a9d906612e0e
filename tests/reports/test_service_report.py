"""Issue 22: the engineer's after-sales service report (售后服务报告) of a finding, and the quarterly
inspection report's list of them — on a small audit store written through the store's API
(tests/reports/service_store.py), at a fixed clock."""

from __future__ import annotations

import io
import re
from datetime import datetime

import pytest

from healthqa import clock, config
from healthqa.reports import quarterly, render, service
from healthqa.reports.quarterly import Quarter
from healthqa.store import AuditStore

from .service_store import RAW_ID, build

AT = datetime(2026, 11, 21, 10, 0)  # the morning after: the repair verified at 20:00, one finding still open


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    path, ids = build(tmp_path_factory.mktemp("service"))
    cfg = config.load(path)
    with AuditStore(cfg.store.url) as store:
        yield cfg, store, ids


def _text(page: str) -> str:
    """The page as a reader sees it: the tags and the style sheet gone, spaces folded."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _page(site, name: str) -> str:
    cfg, store, ids = site
    with clock.frozen(AT):
        return render.html("service.html.j2", service.context(cfg, store, ids[name]))


def test_the_report_of_a_repair_shows_who_acknowledged_it_and_the_runs_before_and_after(site):
    page = _page(site, "repaired")
    text = _text(page)
    assert "确认 acknowledged 2026-11-20 03:00 (UTC+8) · wang.gong" in text
    assert "负责人 assigned to li.si" in text and "修正接口映射并补传" in text  # the cause and the fix
    # the run that filed it with its counts, and the engineer's validation that verified the repair
    assert re.search(r"#1 发现 filed it 2026-11-20 02:00 \(UTC\+8\) 夜间稽核 nightly .* 30 / 1,000 发现 filed", text)
    assert re.search(r"#2 复核 re-validation 2026-11-20 20:00 \(UTC\+8\) 专项校验 validate .*机构 ORG1 全量读取 whole read "
                     r"0 / 1,000 验证已修复 verified fixed", text)
    assert "已修复 resolved — 经运行 #2 验证 verified" in text and "未修复" not in text
    # the contract's times: 一级, answered in 1 h of 2, fixed in 18 h of 24
    assert "一级 level 1" in text and "24 小时内 within 24 h" in text
    assert "响应 response 按时 met — 提前 1 小时 (1 h) ahead" in text
    assert "修复 fix 按时 met — 提前 6 小时 (6 h) ahead" in text
    assert "客户签字 customer" in text and "日期 date" in text and "工程师签字 engineer" in text


def test_an_open_finding_says_not_resolved_and_how_late_it_is(site):
    text = _text(_page(site, "open"))
    assert "未修复 not resolved" in text and "已修复" not in text
    assert "确认 acknowledged 未确认 not acknowledged" in text
    assert "尚无复核运行" in text  # no run looked at ORG2's rows again
    # due 2026-11-20 04:00, nobody answered by the fixed clock's 2026-11-21 10:00: 30 hours late
    assert "响应 response 已逾期 overdue by 1 天 6 小时 (1 d 6 h)" in text
    assert "修复 fix 本级别无此时限 no deadline at this level" in text  # 二级 has no fix deadline


def test_examples_are_masked_even_when_stored_raw(site):
    page = _page(site, "repaired")
    assert RAW_ID not in page
    assert "33021100100100417 · id_number=330211********1234" in page  # the record key stays, the ID is masked


def test_the_quarterly_report_lists_the_service_reports_of_its_quarter(site):
    cfg, store, ids = site
    with clock.frozen(AT):
        lines = quarterly.context(cfg, store, Quarter(2026, 4))["service_reports"]
        earlier = quarterly.context(cfg, store, Quarter(2026, 3))["service_reports"]
    # the one a person worked on, with its times and status; nobody worked on the others
    assert [(x["id"], x["level"], x["response"], x["fix"], x["status"]) for x in lines] == \
        [(ids["repaired"], "一级", "按时 met", "按时 met", "已修复 resolved")]
    assert lines[0]["acknowledged"] == "2026-11-20 03:00 (UTC+8)" and earlier == []


def _pages(pdf: bytes) -> int:
    """The PDF's page count, as a PDF reader sees it."""
    from pypdf import PdfReader
    return len(PdfReader(io.BytesIO(pdf)).pages)


def test_the_pdf_is_one_page(site, tmp_path):
    cfg, store, ids = site
    pytest.importorskip("weasyprint")
    with clock.frozen(AT):
        written = service.write(cfg, store, ids["repaired"], tmp_path / "service.html", pdf=True)
    pdf = written.pdf.read_bytes()
    assert pdf.startswith(b"%PDF") and _pages(pdf) == 1
