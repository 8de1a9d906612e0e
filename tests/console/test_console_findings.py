"""Issue 22 in the console: the findings list shows the response deadline beside the fix deadline and
acts on several ticked findings at once (all of them or none, with the CSRF token), and a finding's
page opens its after-sales service report — on the small audit store of tests/reports/service_store.py."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from healthqa import clock, config
from healthqa.console.app import create_app
from healthqa.store import AuditStore

from ..reports.service_store import RAW_ID, build
from .console_site import PASSWORD, logged_in


def _site(folder):
    path, ids = build(folder, console={"failed_login_delay_s": 0})
    cfg = config.load(path)
    with AuditStore(cfg.store.url) as store:
        store.users.add("qc1", "qc_manager", PASSWORD, actor="test")
        app = create_app(cfg)
        with TestClient(app):
            yield app, store, ids


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Read only: the test that changes findings has its own."""
    yield from _site(tmp_path_factory.mktemp("console-findings"))


@pytest.fixture
def own_site(tmp_path):
    yield from _site(tmp_path)


def _row(page: str, fid: int) -> str:
    return next(r for r in page.split("<tr>") if f'href="/findings/{fid}"' in r)


def test_the_list_shows_both_deadlines_and_a_box_to_tick(site):
    app, store, ids = site
    client, _ = logged_in(app, "qc1")
    with clock.frozen(datetime(2026, 11, 21, 10)):
        page = client.get("/findings").text
    assert "响应期限 response by</th><th>修复期限 fix by" in page
    repaired = store.findings.get(ids["repaired"])
    assert repaired.state == "resolved"
    row = _row(client.get("/findings", params={"state": "all"}).text, ids["repaired"])
    assert "2026-11-20 04:00 (UTC+8)" in row and "2026-11-21 02:00 (UTC+8)" in row  # response, fix
    row = _row(page, ids["open"])
    assert "2026-11-20 04:00 (UTC+8) <span class=\"tag bad\">超期 overdue</span>" in row  # 二级: a response deadline only
    assert f'name="ids" value="{ids["open"]}" form="bulk"' in row and 'id="bulk"' in page


def test_ticked_findings_are_changed_together_or_not_at_all(own_site):
    app, store, ids = own_site
    client, token = logged_in(app, "qc1")
    two = [ids["open"], ids["notice"]]
    before = [store.findings.get(i) for i in two]
    r = client.post("/findings/bulk", data={"ids": [*two, 4242], "action": "ack", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 404 and "4242" in r.text
    r = client.post("/findings/bulk", data={"ids": [*two, ids["repaired"]], "action": "resolve", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 409 and "already resolved" in r.text
    r = client.post("/findings/bulk", data={"ids": two, "action": "ack"}, follow_redirects=False)
    assert r.status_code == 403  # no CSRF token, as every change
    assert [store.findings.get(i) for i in two] == before
    for data in ({"action": "ack"}, {"action": "assign", "assignee": "王工"}, {"action": "resolve", "note": "误报"}):
        r = client.post("/findings/bulk", data={"ids": two, **data, "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
    for f in (store.findings.get(i) for i in two):
        assert (f.state, f.acknowledged_by, f.assignee, f.resolved_by) == ("resolved", "qc1", "王工", "qc1")
        assert f.notes[-1]["text"] == "误报"


def test_a_findings_page_opens_its_service_report(site):
    app, store, ids = site
    client, _ = logged_in(app, "qc1")
    page = client.get(f"/findings/{ids['open']}").text
    link = re.search(r'id="service-report" href="([^"]+)"', page).group(1)
    report = client.get(link)
    assert report.status_code == 200 and "售后服务报告" in report.text and "未修复 not resolved" in report.text
    assert RAW_ID not in client.get(f"/findings/{ids['repaired']}/report.html").text
    assert client.get("/findings/4242/report.html").status_code == 404
