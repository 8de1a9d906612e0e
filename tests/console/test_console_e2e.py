"""The console end to end in a browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``, the
``chromium`` package .ci/run installs — no browser download) against a real ``healthqa serve`` on a
free port over the demo platform. Screenshots of the review page and the dashboard are saved for a
person to look at (``HEALTHQA_SCREENS``, default: the test's temporary folder)."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import pytest

from healthqa import config
from healthqa.store import AuditStore

from ..conftest import absent, free_port
from .console_site import PASSWORD, add_twin_pair, build, serve

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("console_e2e")]  # one server and one browser


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        absent(f"Chromium not found at {CHROMIUM} (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        absent("playwright is not installed (pip install -e '.[dev]')")
    folder = tmp_path_factory.mktemp("console-e2e")
    site = build(demo, folder)
    port = free_port()
    proc, url = serve(site, port, tries=120)
    yield url, site
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("HEALTHQA_SCREENS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _login(browser, url: str, name: str):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    page.goto(url + "/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    return page


def _pair_of(page) -> tuple[str, str]:
    parts = page.url.split("?")[0].rstrip("/").split("/")
    return parts[-2], parts[-1]


def test_steward_reviews_merges_undoes_rejects_and_exports(server, browser, screens):
    url, site = server
    store = AuditStore(config.load(site).store.url)
    page = _login(browser, url, "steward1")
    page.wait_for_url(url + "/review")
    assert page.locator("table.queue tr").count() > 2
    page.keyboard.press("Enter")  # start reviewing: the first pair of the queue
    page.wait_for_selector("table#compare")
    left, right = _pair_of(page)
    # reveal a masked field (htmx swaps the row; the reveal is in the audit log)
    row = page.locator("#row-name")
    masked = row.locator("td").nth(0).inner_text()
    row.locator("button").click()
    page.wait_for_selector("#row-name >> text=已显示")
    assert page.locator("#row-name td").nth(0).inner_text() != masked or "*" not in masked
    page.screenshot(path=str(screens / "review.png"), full_page=True)
    # merge keeping archive B, by keyboard: 2 then M
    page.keyboard.press("2")
    page.keyboard.press("m")
    page.wait_for_url(lambda u: f"/{left}/{right}" not in u)
    d = store.review.in_force("mpi", left, right)
    assert d.decision == "merge" and d.survivor == right and d.user == "steward1"
    # undo it with U from the next pair's page
    page.wait_for_selector("table#compare")
    page.keyboard.press("u")
    page.wait_for_url(f"**/review/pair/{left}/{right}")
    assert store.review.in_force("mpi", left, right) is None
    # merge it again, keeping the proposed survivor; the next pair of the queue opens
    proposed = page.locator("input[name=survivor]:checked").get_attribute("value")
    page.click("#merge")
    page.wait_for_url(lambda u: f"/{left}/{right}" not in u)
    page.wait_for_selector("table#compare")
    # the next pair: not the same person (N)
    a, b = _pair_of(page)
    page.keyboard.press("n")
    page.wait_for_url(lambda u: f"/{a}/{b}" not in u)
    assert store.review.in_force("mpi", a, b).decision == "not_same"
    page.goto(url + "/review")
    with page.expect_download() as dl:
        page.click("aside >> text=CSV")
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
    retired = right if proposed == left else left
    assert {"survivor": proposed, "retired": retired, "decided_by": "steward1"}.items() <= next(
        r for r in rows if r["retired"] == retired).items()
    # the audit log, as the steward sees it
    page.goto(url + "/review/history")
    audit = page.locator("#audit").inner_text()
    for action in ("reveal", "steward_merge", "steward_undo", "steward_not_same", "merge_export"):
        assert action in audit
    page.context.close()


def test_qc_manager_filters_findings_and_opens_a_report(server, browser, screens):
    url, _ = server
    page = _login(browser, url, "qc1")
    page.wait_for_url(url + "/dashboard")
    assert page.locator("svg.chart").count() >= 2
    page.screenshot(path=str(screens / "dashboard.png"), full_page=True)
    page.goto(url + "/findings")
    total = page.locator("table.findings tr").count()
    with page.expect_response(lambda r: "/findings?" in r.url):
        page.select_option("select[name=level]", "二级")  # htmx swaps the table in place
    page.wait_for_function("() => [...document.querySelectorAll('table.findings .tag')]"
                           ".every(t => !t.className.includes('level-') || t.textContent.includes('二级'))")
    levels = page.locator("table.findings td .tag[class*=level-]").all_inner_texts()
    assert levels and set(levels) == {"二级"} and page.locator("table.findings tr").count() < total
    assert "level=" in page.url  # the filter is in the address, to share or come back to
    page.goto(url + "/reports")
    with page.context.expect_page() as opened:
        page.locator("a.open-report").first.click()
    report = opened.value
    report.wait_for_load_state()
    assert "稽核报告" in report.title() or "稽核报告" in report.locator("h1").inner_text()
    page.context.close()


def test_engineer_runs_a_scoped_validation(server, browser):
    url, _ = server
    page = _login(browser, url, "eng1")
    page.wait_for_url(url + "/validate")
    page.select_option("#source", "mpi")
    page.check("input[name=tables][value=person]")
    assert not page.locator("label.tbl[data-source=drc]").first.is_visible()  # only the chosen source's tables
    page.click("#validate-form button[type=submit]")
    page.wait_for_selector("#job[data-state=done], #job[data-state=failed]", timeout=180_000)
    text = page.locator("#job").inner_text()
    assert "完成 done" in text and "这次校验解决的问题" in text, text
    page.context.close()


def test_steward_accepts_a_score_band_through_its_sample_undoes_it_and_sees_a_twin_pair_explained(server, browser):
    url, site = server
    store = AuditStore(config.load(site).store.url)
    twin = add_twin_pair(store)
    page = _login(browser, url, "steward2")
    page.wait_for_url(url + "/review")
    page.keyboard.press("b")  # the top score band: its random sample
    page.wait_for_selector("#sample")
    bid = int(page.url.rstrip("/").rsplit("/", 1)[1])
    b = store.review.batch(bid)
    assert twin not in b.pairs and len(b.sample) == min(len(b.pairs), max(30, math.ceil(math.sqrt(len(b.pairs)))))
    assert page.locator("#sample button.not-same").count() == len(b.sample)
    page.keyboard.press("a")  # no error in the sample: the band is accepted
    page.wait_for_selector("#undo-batch")
    decided = [store.review.in_force("mpi", *p) for p in b.pairs]  # (a pair of one deceased archive: one by one)
    assert any(decided) and all(d is None or d.batch_id == bid for d in decided)
    page.keyboard.press("u")  # and undone as one
    page.wait_for_selector("#band-state >> text=已撤销")
    assert not any(store.review.in_force("mpi", *p) for p in b.pairs)
    page.goto(f"{url}/review/pair/{twin[0]}/{twin[1]}")
    assert "性别不同、身份证号均有效且不同 — 可能为双胞胎" in page.locator("#held").inner_text()
    assert "primary" not in (page.locator("#merge").get_attribute("class") or "")
    assert page.locator("button.primary").inner_text().startswith("不是同一人")
    page.context.close()


# pages a crawl must not follow: leaving, downloads, and what changes state through a GET-looking link
_NOT_FOLLOWED = ("/logout", "/export/", ".pdf", "/static/", "/next")


@pytest.mark.parametrize("user", ["steward1", "qc1", "eng1", "admin1"])
def test_every_page_a_role_reaches_renders_offline_without_an_error(server, browser, user):
    """Each role follows every link of the console it is shown (up to 40 pages): each page answers
    below 400 in Chinese (``lang=zh-CN``, a title), no script fails, nothing is fetched from another
    host (no CDN: the console works offline) and no resource it asks for is missing."""
    url, _ = server
    page = _login(browser, url, user)
    page.wait_for_load_state()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else problems.append(f"off the machine: {r.url}"))
    seen: set[str] = set()
    todo = [page.url.split("#")[0]]
    while todo and len(seen) < 40:
        at = todo.pop(0)
        if at in seen:
            continue
        seen.add(at)
        answer = page.goto(at)
        assert answer is not None and answer.status < 400, (user, at, answer and answer.status)
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("lang") == "zh-CN" and page.title().strip(), (user, at)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            href = href.split("#")[0]
            if href.startswith(url) and not any(n in href for n in _NOT_FOLLOWED) and href not in seen:
                todo.append(href)
    assert not problems, (user, problems)
    assert len(seen) >= 2, (user, seen)  # the role's pages were reached, not only the one it lands on
    page.context.close()
