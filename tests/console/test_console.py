"""The web console through its HTTP API (FastAPI's TestClient): sessions on every route, CSRF on every
change, roles, lockout, the steward's decisions and their refusals (a made-up pair, an archive not in
the MPI, retiring an active archive into a deceased one, a pair another steward decided at the same
moment), undo, reveal, the merge export, the QC manager's and the engineer's actions, accounts."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from datetime import datetime

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from healthqa import clock, config
from healthqa.console.app import create_app, routes
from healthqa.store import AuditStore
from healthqa.store.models import DedupPair, StewardDecision
from healthqa.store.review import AlreadyDecided

from .console_site import PASSWORD, build, csrf_of, logged_in, login

pytestmark = pytest.mark.xdist_group("console")  # one console site for the module


PUBLIC = {"/login"}  # and the static files, which are mounted, not routes


@pytest.fixture(scope="module")
def site(demo, tmp_path_factory):
    return build(demo, tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def app(site):
    return create_app(config.load(site))


@pytest.fixture
def store(site):
    with AuditStore(config.load(site).store.url) as s:
        yield s


def _open_pairs(store, n: int) -> list[tuple[str, str]]:
    """Pairs of the queue nobody decided yet (each test takes its own)."""
    return [(p.left, p.right) for _, p in store.review.queue("mpi", user_id=None, limit=500)
            if store.review.in_force("mpi", p.left, p.right) is None][:n]


_taken: set = set()


def _fresh(store, n: int = 1) -> list[tuple[str, str]]:
    out = [p for p in _open_pairs(store, 200) if p not in _taken][:n]
    _taken.update(out)
    assert len(out) == n, "the demo's scan suggests too few pairs for the tests"
    return out


def _routes(app):
    # every route the application serves comes from its routers (or is the static mount, or a
    # machines' route, which takes an API token instead of a session: tests/console/test_match.py)
    machine = {x.path for rt in app.state.machine_routers for x in rt.routes}
    for r in app.routes:
        assert isinstance(r, Mount) and r.path == "/static" or getattr(r, "original_router", r) in app.state.routers \
            or isinstance(r, APIRoute) and any(r.path == x.path for rt in app.state.routers for x in rt.routes) \
            or getattr(r, "original_router", None) in app.state.machine_routers \
            or isinstance(r, APIRoute) and r.path in machine, r
    for method, template in routes(app):
        path = re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1).endswith("_id") else "x", template)
        yield method, template, path


def test_every_route_but_login_needs_a_session(app):
    seen = 0
    for method, template, path in _routes(app):
        if template in PUBLIC:
            continue
        client = TestClient(app)
        anonymous_csrf = csrf_of(client.get("/login").text)  # a real token: the refusal is the session's
        r = client.request(method, path, data={"csrf_token": anonymous_csrf}, follow_redirects=False)
        if method == "GET":
            assert r.status_code == 303 and r.headers["location"] == "/login", (method, template, r.status_code)
        else:
            assert r.status_code == 401, (method, template, r.status_code)
        seen += 1
    assert seen >= 25  # the enumeration found the application's routes
    assert TestClient(app).get("/static/htmx.min.js").status_code == 200


def test_every_change_needs_the_csrf_token(app, store):
    client, token = logged_in(app, "steward1")
    changing = [(m, t, p) for m, t, p in _routes(app) if m != "GET" and t not in PUBLIC]
    assert len(changing) >= 10
    for method, template, path in changing:
        for sent in ({}, {"csrf_token": "forged"}):
            r = client.request(method, path, data=sent, follow_redirects=False)
            assert r.status_code == 403, (template, sent, r.status_code)
    (a, b), = _fresh(store)
    before = store.review.count_decided("mpi")
    r = client.post(f"/review/pair/{a}/{b}/decide", data={"decision": "not_same"}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    assert store.review.count_decided("mpi") == before
    r = client.post(f"/review/pair/{a}/{b}/decide", data={"decision": "not_same"}, headers={"X-CSRF-Token": token},
                    follow_redirects=False)
    assert r.status_code == 303  # the same request with the token (as htmx sends it) goes through


PAGES = {"steward": ["/review", "/review/clusters", "/review/history", "/review/export/csv"],
         "qc_manager": ["/dashboard", "/findings", "/reports"],
         "engineer": ["/validate"],
         "admin": ["/admin/users", "/admin/audit"]}
NAMES = {"steward": "steward1", "qc_manager": "qc1", "engineer": "eng1", "admin": "admin1"}


def test_each_role_sees_only_its_pages(app):
    for role, name in NAMES.items():
        client, _ = logged_in(app, name)
        for owner, pages in PAGES.items():
            for page in pages:
                r = client.get(page, follow_redirects=False)
                assert r.status_code == (200 if owner == role else 403), (name, page, r.status_code)


def test_session_cookie_flags(site, tmp_path):
    r = login(TestClient(create_app(config.load(site))), "qc1")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    raw = config.load(site).model_dump(by_alias=True, exclude_none=True)
    raw["console"]["secure_cookies"] = True
    cfg = config.Config.model_validate({**raw, "path": site})
    r = login(TestClient(create_app(cfg), base_url="https://testserver"), "qc1")
    assert "; secure" in r.headers["set-cookie"].lower()
    assert PASSWORD not in r.headers["set-cookie"]


def test_failed_logins_slow_down_and_lock_the_account(site):
    raw = config.load(site).model_dump(by_alias=True, exclude_none=True)
    raw["console"] |= {"max_failed_logins": 3, "lockout_minutes": 0.1, "failed_login_delay_s": 0.2}
    app = create_app(config.Config.model_validate({**raw, "path": site}))
    client = TestClient(app)
    took = []
    with clock.frozen() as c:
        for _ in range(3):
            t0 = time.perf_counter()
            r = login(client, "eng1", "wrong-password-123")
            took.append(time.perf_counter() - t0)
            assert r.status_code == 401
        assert took[1] >= 0.4 and took[2] >= 0.8  # each failure waits twice as long as the one before
        assert "锁定" in r.text
        r = login(client, "eng1")  # the right password while locked
        assert r.status_code == 401 and "锁定" in r.text
        log = app.state.store.review.audit(limit=50)
        assert sum(a["action"] == "login_failed" and a["subject"] == "eng1" for a in log) >= 3
        assert any(a["action"] == "login_refused_locked" and a["subject"] == "eng1" for a in log)
        c.advance(seconds=6.5)  # the lock (0.1 minutes) is over
        assert login(client, "eng1").status_code == 303


def test_made_up_pair_is_refused(app, store):
    client, token = logged_in(app, "steward1")
    before = store.review.count_decided("mpi")
    r = client.get("/review/pair/NOSUCH1/NOSUCH2")
    assert r.status_code == 404 and "不是查重建议的档案对" in r.text
    for decision in ("merge", "not_same", "skip"):
        r = client.post("/review/pair/NOSUCH1/NOSUCH2/decide",
                        data={"decision": decision, "survivor": "NOSUCH1", "csrf_token": token})
        assert r.status_code == 404 and "NOSUCH1" in r.text and "nothing was recorded" in r.text
    assert store.review.count_decided("mpi") == before
    csv = client.get("/review/export/csv").text
    assert "NOSUCH" not in csv


def test_a_pair_whose_archive_is_not_in_the_mpi_is_refused(app, store):
    (a, _), = _fresh(store)
    with store.session() as s:  # a suggestion naming an archive the MPI does not hold (deleted since the scan)
        s.add(DedupPair(run_id=store.review.latest_scan("mpi"), source="mpi", left_id=a, right_id="99999999999999999",
                        score=0.7, decision="review", created_at=clock.now()))
    client, token = logged_in(app, "steward1")
    r = client.post(f"/review/pair/{a}/99999999999999999/decide", data={"decision": "not_same", "csrf_token": token})
    assert r.status_code == 409 and "不存在" in r.text
    assert store.review.in_force("mpi", a, "99999999999999999") is None
    with store.session() as s:  # out of the other tests' queue
        s.query(DedupPair).filter_by(right_id="99999999999999999").delete()


def test_steward_merges_choosing_the_survivor_undoes_and_exports(app, store):
    client, token = logged_in(app, "steward1")
    (a, b), (c, e) = _fresh(store, 2)
    page = client.get(f"/review/pair/{a}/{b}").text
    records = app.state.archives.fetch([a, b])
    field = next(c for c in ("name", "phone", "id_number", "address") if records[a].get(c))
    raw = records[a][field]
    assert raw not in page and "查看原值" in page  # masked by default
    assert "<mark>" in page or records[a] == records[b]  # differing characters marked
    assert re.search(r"[+-]\d+\.\d\d", page)  # per-field weights
    # reveal: logged first, then shown
    r = client.post(f"/review/pair/{a}/{b}/reveal", data={"field": field}, headers={"X-CSRF-Token": token,
                                                                                      "HX-Request": "true"})
    assert r.status_code == 200 and raw in r.text.replace("<mark>", "").replace("</mark>", "")
    assert any(x["action"] == "reveal" and x["subject"] == f"{a}|{b}" and x["detail"]["field"] == field
               for x in store.review.audit(user="steward1", limit=20))
    # merge keeping the right-hand archive (not necessarily the proposal)
    r = client.post(f"/review/pair/{a}/{b}/decide", data={"decision": "merge", "survivor": b, "csrf_token": token},
                    follow_redirects=False)
    # straight to the next pair of the queue (not through /review/next: a request less per decision)
    me = next(u.id for u in store.users.list() if u.name == "steward1")
    (_, first), = store.review.queue("mpi", user_id=me, limit=1)
    assert r.status_code == 303 and r.headers["location"] == f"/review/pair/{first.left}/{first.right}"
    d = store.review.in_force("mpi", a, b)
    assert d.decision == "merge" and d.survivor == b and d.user == "steward1" and d.retired == a
    assert (a, b) not in [(p.left, p.right) for _, p in store.review.queue("mpi", user_id=None, limit=1000)]
    # exported from the stored decision, with who and when, in every format
    rows = client.get("/review/export/csv").text.splitlines()
    assert rows[0] == "survivor,retired,decided_at,decided_by,basis,kind,kind_zh"
    assert any(line.startswith(f"{b},{a},") and ",steward1,," in line for line in rows)
    doc = json.loads(client.get("/review/export/json").text)
    assert any({"survivor": b, "retired": a, "decided_at": clock.iso(d.decided_at),  # with the zone's offset
                "decided_by": "steward1", "basis": None}.items() <= x.items() and x["kind"] for x in doc)
    hl7 = client.get("/review/export/hl7").text
    assert f"MRG|{a}^^^ARCHIVE^PI" in hl7 and f"PID|||{b}^^^ARCHIVE^PI" in hl7 and "|steward1|" in hl7
    fhir = json.loads(client.get("/review/export/fhir").text)
    prov = [e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert any(p["agent"][0]["who"]["display"] == "steward1" and p["target"][0]["reference"] == f"Patient/{a}"
               for p in prov)
    # undo: the pair is back in the queue and out of the export
    r = client.post(f"/review/undo/{d.id}", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert store.review.in_force("mpi", a, b) is None
    assert f"{b},{a}," not in client.get("/review/export/csv").text
    # another steward cannot undo my decision
    r = client.post(f"/review/pair/{c}/{e}/decide", data={"decision": "not_same", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    mine = store.review.in_force("mpi", c, e)
    other, other_token = logged_in(app, "steward2")
    r = other.post(f"/review/undo/{mine.id}", data={"csrf_token": other_token})
    assert r.status_code == 409 and "只能撤销自己的处理" in r.text
    actions = [x["action"] for x in store.review.audit(user="steward1", limit=50)]
    assert {"steward_merge", "steward_undo", "steward_not_same", "merge_export"} <= set(actions)
    history = client.get("/review/history").text
    assert "steward_merge" in history and "steward_undo" in history


def test_skip_hides_a_pair_from_that_steward_only(app, store):
    (a, b), = _fresh(store)
    s1, t1 = logged_in(app, "steward1")
    s2, _ = logged_in(app, "steward2")
    assert s1.post(f"/review/pair/{a}/{b}/decide", data={"decision": "skip", "csrf_token": t1},
                   follow_redirects=False).status_code == 303
    u1 = store.users.get("steward1").id
    u2 = store.users.get("steward2").id
    assert (a, b) not in [(p.left, p.right) for _, p in store.review.queue("mpi", user_id=u1, limit=1000)]
    assert (a, b) in [(p.left, p.right) for _, p in store.review.queue("mpi", user_id=u2, limit=1000)]
    assert s2.get(f"/review/pair/{a}/{b}").status_code == 200


def _set_status(site, archive: str, status: str) -> None:
    with sqlite3.connect(site.parent / "mpi.db") as conn:  # the test's own copy of the source
        conn.execute("UPDATE T_GRDA SET DAZT = ? WHERE DABH = ?", (status, archive))


def test_retiring_an_active_archive_into_a_deceased_one_needs_confirmation(app, store, site):
    (a, b), = _fresh(store)
    _set_status(site, a, "2")
    _set_status(site, b, "1")
    client, token = logged_in(app, "steward1")
    r = client.post(f"/review/pair/{a}/{b}/decide", data={"decision": "merge", "survivor": a, "csrf_token": token})
    assert r.status_code == 409 and "死亡" in r.text and 'name="confirm_inactive"' in r.text
    assert store.review.in_force("mpi", a, b) is None
    r = client.post(f"/review/pair/{a}/{b}/decide", data={"decision": "merge", "survivor": a, "confirm_inactive": "yes",
                                                          "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert store.review.in_force("mpi", a, b).survivor == a
    entry = next(x for x in store.review.audit(user="steward1", limit=20) if x["subject"] == f"{a}|{b}")
    assert entry["detail"]["confirmed_inactive_survivor"].startswith("死亡")
    # the other way round (keep the active one) needs nothing more
    (c, d), = _fresh(store)
    _set_status(site, c, "2")
    r = client.post(f"/review/pair/{c}/{d}/decide", data={"decision": "merge", "survivor": d, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303


def test_two_stewards_on_one_pair_no_lost_update(app, store):
    (a, b), = _fresh(store)
    clients = [logged_in(app, "steward1"), logged_in(app, "steward2")]
    start = threading.Barrier(2, timeout=60)  # a thread that dies before the barrier fails the test, never hangs it
    answers = {}

    def decide(k):
        client, token = clients[k]
        start.wait()
        answers[k] = client.post(f"/review/pair/{a}/{b}/decide",
                                 # (confirmed: the pair drawn may keep a deceased archive; the race is the point here)
                                 data={"decision": "merge" if k == 0 else "not_same", "survivor": a, "csrf_token": token,
                                       "confirm_inactive": "yes"},
                                 follow_redirects=False)

    threads = [threading.Thread(target=decide, args=(k,), daemon=True) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and len(answers) == 2, answers
    codes = sorted(r.status_code for r in answers.values())
    assert codes == [303, 409], codes
    winner = store.review.in_force("mpi", a, b)
    loser = next(r for r in answers.values() if r.status_code == 409)
    assert f"已由 {winner.user}" in loser.text and "already decided" in loser.text
    with store.session() as s:
        assert s.query(StewardDecision).filter_by(left_id=a, right_id=b, undone_at=None).count() == 1
    # and someone opening the pair afterwards sees who decided it, with no buttons
    page = clients[1][0].get(f"/review/pair/{a}/{b}").text
    assert f"已由 {winner.user}" in page and 'id="merge"' not in page


@pytest.mark.postgres
def test_concurrent_decisions_on_postgresql_keep_one(demo, tmp_path, pg_store_url):
    """The database refuses the second decision even when both pass the check at the same moment."""
    build(demo, tmp_path, store_url=pg_store_url, validate=False)
    store = AuditStore(pg_store_url)
    pairs = [(p.left, p.right) for _, p in store.review.queue("mpi", user_id=None, limit=20)]
    users = [store.users.get("steward1"), store.users.get("steward2")]
    results: list = []
    lock = threading.Lock()

    def worker(k):
        for a, b in pairs:
            try:
                store.review.decide("mpi", a, b, "not_same", user_id=users[k].id, user=users[k].name)
                out = "ok"
            except AlreadyDecided as e:
                out = e.decided.user
            with lock:
                results.append((a, b, k, out))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    for a, b in pairs:
        outcomes = [o for x, y, _, o in results if (x, y) == (a, b)]
        assert outcomes.count("ok") == 1 and len(outcomes) == 2
    with store.session() as s:
        assert s.query(StewardDecision).filter(StewardDecision.undone_at.is_(None)).count() == len(pairs)


def test_qc_manager_filters_findings_acts_and_opens_reports(app, store):
    client, token = logged_in(app, "qc1")
    dash = client.get("/dashboard").text
    assert "数据符合率" in dash and "95% 区间" in dash and "<svg" in dash
    everything = store.findings.list(state="open")
    level = everything[0].level
    page = client.get("/findings", params={"level": level}).text
    shown = set(map(int, re.findall(r'href="/findings/(\d+)"', page)))
    assert shown == {f.id for f in everything if f.level == level}
    org = next(f.org_code for f in everything if f.org_code)
    page = client.get("/findings", params={"org": org, "state": "all"}, headers={"HX-Request": "true"}).text
    assert "<html" not in page  # htmx gets the table alone
    assert set(map(int, re.findall(r'href="/findings/(\d+)"', page))) == {f.id for f in store.findings.list(org=org)}
    f = next(x for x in everything if x.kind == "rule")
    detail = client.get(f"/findings/{f.id}").text
    assert f.subject in detail and "规则结果" in detail
    for path, data in ((f"/findings/{f.id}/ack", {}), (f"/findings/{f.id}/assign", {"assignee": "王工"}),
                       (f"/findings/{f.id}/note", {"text": "已联系厂商"})):
        assert client.post(path, data={**data, "csrf_token": token}, follow_redirects=False).status_code == 303
    after = store.findings.get(f.id)
    assert after.state == "acknowledged" and after.acknowledged_by == "qc1" and after.assignee == "王工"
    assert after.notes[-1]["text"] == "已联系厂商" and after.notes[-1]["by"] == "qc1"
    run = store.scores.latest_run()
    html = client.get(f"/reports/run/{run}.html")
    assert html.status_code == 200 and "稽核报告" in html.text
    pdf = client.get(f"/reports/run/{run}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and "attachment" in pdf.headers["content-disposition"]
    q = client.get("/reports/quarter/2026Q4.html")
    assert q.status_code == 200 and "2026" in q.text


def test_recent_runs_show_state_and_scope_chinese_first(app, store):
    scope = {"source": "mpi", "tables": ["person"], "orgs": ["ORG9"], "since": None, "until": None}
    with store.runs.start("validate", scope) as run:
        pass
    client, _ = logged_in(app, "eng1")
    page = client.get("/validate").text
    assert f"run #{run.id}" in page
    assert "完成 success · 数据源 mpi · 表 居民健康档案（主索引） person · 机构 ORG9" in page
    client, _ = logged_in(app, "qc1")
    kinds = re.findall(r"<tr><td>#\d+</td><td>([^<]*)</td>", client.get("/reports").text)
    assert kinds and all(k in ("夜间稽核 nightly", "专项校验 validate", "重复档案筛查 dedup") for k in kinds), kinds


def test_the_validation_page_shows_change_passing_rules_and_its_report(app, store):
    client, token = logged_in(app, "eng1")
    org = next(f.org_code for f in store.findings.list() if f.org_code)  # one institution: a short run
    r = client.post("/validate", data={"source": "mpi", "tables": "person", "orgs": org, "csrf_token": token})
    for _ in range(240):
        if 'data-state="running"' not in r.text:
            break
        time.sleep(0.5)
        r = client.get(str(r.url).removesuffix("/status") + "/status")
    status = r.text
    assert 'data-state="done"' in status, status
    run_id = int(re.search(r"run #(\d+)", status).group(1))
    assert "较上次 change" in status and 'id="passed-rules"' in status  # the rules that pass now, with their change
    passed = status.split('id="passed-rules"', 1)[1]
    assert "居民健康档案（主索引） person" in passed and re.search(r'<td class="num">(=|新 new|[↑↓] [+−][\d.]+%)</td>', passed)
    assert f'href="/reports/run/{run_id}.html"' in status
    report = client.get(f"/reports/run/{run_id}.html")
    assert report.status_code == 200 and "稽核报告" in report.text
    other = next(r.id for r in store.runs.recent(500) if r.kind != "validate")
    assert client.get(f"/reports/run/{other}.html").status_code == 403  # the engineer's validations' reports only


def test_engineer_runs_a_scoped_validation(app, store):
    client, token = logged_in(app, "eng1")
    r = client.post("/validate", data={"source": "mpi", "tables": "person", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    job = r.headers["location"]
    for _ in range(240):
        status = client.get(job + "/status").text
        if 'data-state="running"' not in status:
            break
        time.sleep(0.5)
    assert 'data-state="done"' in status, status
    run_id = int(re.search(r"run #(\d+)", status).group(1))
    assert store.runs.get(run_id).kind == "validate" and store.runs.get(run_id).scope["tables"] == ["person"]
    assert "这次校验解决的问题" in status
    # a scope that matches nothing: the job says so, in one line
    r = client.post("/validate", data={"source": "mpi", "tables": "person", "orgs": "NO-SUCH-ORG", "csrf_token": token})
    for _ in range(60):
        if 'data-state="running"' not in r.text:
            break
        time.sleep(0.5)
        r = client.get(str(r.url) + "/status")
    assert 'data-state="failed"' in r.text and "NO-SUCH-ORG" in r.text
    assert client.post("/validate", data={"source": "nosuch", "csrf_token": token}).status_code == 400


def test_the_engineers_window_takes_the_whole_last_day(app, store):
    """The form's dates are days: 'until 2026-11-20' takes the 20th's rows too, as the command line's
    --until does; a time the form cannot have sent is refused with the accepted formats."""
    client, token = logged_in(app, "eng1")
    bad = client.post("/validate", data={"source": "drc", "tables": "outpatient_visit", "since": "20/11/2026",
                                         "csrf_token": token})
    assert bad.status_code == 400 and "2026-11-20 08:30" in bad.text
    r = client.post("/validate", data={"source": "drc", "tables": "outpatient_visit", "since": "2026-11-20",
                                       "until": "2026-11-20", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    job = app.state.jobs.get(int(r.headers["location"].rsplit("/", 1)[1]))
    assert job.scope["since"] == datetime(2026, 11, 20) and job.scope["until"] == datetime(2026, 11, 20, 23, 59, 59, 999999)
    for _ in range(240):  # let it end before the app does
        if 'data-state="running"' not in client.get(r.headers["location"] + "/status").text:
            break
        time.sleep(0.5)


def test_admin_manages_accounts_in_the_audit_log(app, store):
    admin, token = logged_in(app, "admin1")
    r = admin.post("/admin/users", data={"name": "Steward3", "role": "steward", "password": "short", "csrf_token": token})
    assert r.status_code == 400 and "12" in r.text  # the password policy
    r = admin.post("/admin/users", data={"name": "Steward3", "role": "steward", "password": PASSWORD, "csrf_token": token},
                   follow_redirects=False)
    assert r.status_code == 303 and store.users.get("steward3").role == "steward"
    s3, _ = logged_in(app, "steward3")
    assert s3.get("/review").status_code == 200
    admin.post("/admin/users/steward3/passwd", data={"password": PASSWORD + "-new", "csrf_token": token})
    assert s3.get("/review", follow_redirects=False).headers["location"] == "/login"  # a new password ends it
    s3, _ = logged_in(app, "steward3", PASSWORD + "-new")
    assert s3.get("/review").status_code == 200
    admin.post("/admin/users/steward3/disable", data={"csrf_token": token})
    assert s3.get("/review", follow_redirects=False).headers["location"] == "/login"  # the session ends at once
    log = store.review.audit(user="admin1", limit=20)
    assert {("user_add", "steward3"), ("user_disable", "steward3")} <= {(x["action"], x["subject"]) for x in log}



def test_queue_filters_by_institution_score_band_and_date(app, store, site):
    client, _ = logged_in(app, "steward1")
    with sqlite3.connect(site.parent / "mpi.db") as conn:  # every row, an archive number shared by two included
        orgs_of: dict[str, set] = {}
        for a, o in conn.execute("SELECT DABH, JDJGDM FROM T_GRDA"):
            orgs_of.setdefault(str(a), set()).add(o)
    some = _open_pairs(store, 50)
    org = sorted(orgs_of[some[0][0]])[0]
    shown = _queued(client.get("/review", params={"org": org}).text)
    assert shown
    for a, b in shown:
        assert org in orgs_of[a] | orgs_of[b]  # one of the two archives was created by the institution
    scores = sorted(p.score for _, p in store.review.queue("mpi", user_id=None, limit=1000))
    cut = scores[len(scores) // 2]
    shown = _queued(client.get("/review", params={"low": cut}).text)
    assert shown and all(store.review.pair("mpi", a, b).score >= cut for a, b in shown)
    assert "没有待审核" in client.get("/review", params={"since": "2999-01-01"}).text
    assert client.get("/review", params={"low": "high"}).status_code == 400


def _queued(page: str) -> list[tuple[str, str]]:
    """The pairs of the queue table (not the steward's recent decisions beside it)."""
    table = page.split('<table class="queue">', 1)[1].split("</table>", 1)[0]
    return re.findall(r'href="/review/pair/(\d+)/(\d+)', table)


def test_serve_refuses_a_bad_configuration_in_one_line(tmp_path):
    from ..pipelines.cli_run import invoke, refused

    refused(invoke("serve", "--config", tmp_path / "missing.yml"), "missing.yml")


def test_an_mpi_that_cannot_be_read_is_one_line_not_a_traceback(site, store):
    (a, b), = _fresh(store)
    raw = config.load(site).model_dump(by_alias=True, exclude_none=True)
    raw["sources"]["mpi"]["url"] = "sqlite:////nonexistent-folder/mpi.db"
    app = create_app(config.Config.model_validate({**raw, "path": site}))
    client, token = logged_in(app, "steward1")
    r = client.get(f"/review/pair/{a}/{b}")
    assert r.status_code == 503 and "mpi" in r.text and "Traceback" not in r.text
    r = client.post(f"/review/pair/{a}/{b}/decide", data={"decision": "not_same", "csrf_token": token})
    assert r.status_code == 503 and store.review.in_force("mpi", a, b) is None


def test_merges_are_written_in_an_order_an_mpi_can_carry_out():
    from healthqa.dedup.merge import Merge, in_order

    decided = [Merge("B", "A", "t1", "li"), Merge("C", "B", "t2", "wang"),  # A into B, then B into C
               Merge("A", "C", "t3", "li"),  # the same cluster again: nothing left to do
               Merge("D", "E", "t4", "zhao")]
    out = in_order(decided)
    assert [(m.survivor, m.retired, m.decided_by) for m in out] == [("B", "A", "li"), ("C", "B", "wang"), ("D", "E", "zhao")]
    for k, m in enumerate(out):  # never into an archive an earlier instruction retired
        assert m.survivor not in {x.retired for x in out[:k]}


def test_one_id_number_is_judged_as_a_column_judges_it(demo):
    """The comparison page checks two numbers one at a time; the rules check columns: one answer."""
    import pandas as pd

    from healthqa import standards as st

    with sqlite3.connect(demo / "mpi.db") as conn:
        values = [r[0] for r in conn.execute("SELECT SFZH FROM T_GRDA")]
    values += [None, "", "  ", 330211198001011234, "３３０２１１１９８００１０１１２３ｘ", "330211800101123",
               "33021119800230123X", "99999919800101123X", "330211160001011231", "330211198001011234 "]
    column = st.id_valid(st.normalise_id(pd.Series(values, dtype=object))).tolist()
    assert [st.id_valid_one(v) for v in values] == column
    assert sum(column) > len(values) / 2  # most demo numbers are valid: the comparison means something


def test_every_time_on_a_page_is_in_the_platform_zone_and_labelled(app, store):
    """The console shows stored times (naive, the configured zone's) as ``2026-11-25 10:00 (UTC+8)``:
    a finding's dates and deadlines, the run list, the accounts, the audit log to the second."""
    f = next(x for x in store.findings.list(state="open") if x.response_due_at)
    client, token = logged_in(app, "qc1")
    client.post(f"/findings/{f.id}/note", data={"text": "zone check", "csrf_token": token})
    page = client.get(f"/findings/{f.id}").text
    for when in (f.opened_at, f.last_seen_at, f.response_due_at):
        assert f"{when:%Y-%m-%d %H:%M} (UTC+8)" in page
    assert re.search(r"<li>\d{4}-\d\d-\d\d \d\d:\d\d \(UTC\+8\) qc1: zone check</li>", page)
    run = store.runs.recent(1)[0]
    assert f"{run.started_at:%Y-%m-%d %H:%M} (UTC+8)" in client.get("/reports").text
    admin, _ = logged_in(app, "admin1")
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(UTC\+8\)</td><td>qc1</td>", admin.get("/admin/audit").text)
    assert "(UTC+8)" in admin.get("/admin/users").text


def test_a_merge_of_odd_archive_numbers_does_not_break_the_export(app, store):
    """An archive number with `_` or Chinese characters is no FHIR id: every format is still served
    (the FHIR ids derived from the numbers, the numbers kept as identifiers)."""
    odd_left, odd_right = "330211_0001", "镇海档案0002"
    scan = store.review.latest_scan("mpi")
    with store.session() as s:
        s.add(DedupPair(run_id=scan, source="mpi", left_id=odd_left, right_id=odd_right, score=0.9,
                        decision="review", created_at=clock.now()))
    d = store.review.decide("mpi", odd_left, odd_right, "merge", user_id=None, user="steward9", survivor=odd_left)
    try:
        client, _ = logged_in(app, "steward1")
        for fmt in ("csv", "json", "hl7", "fhir"):
            r = client.get(f"/review/export/{fmt}")
            assert r.status_code == 200 and r.headers["X-Healthqa-Merges-Skipped"] == "0", (fmt, r.status_code)
            assert odd_right in r.text if fmt != "fhir" else odd_right in json.loads(r.text)["entry"].__repr__()
    finally:
        store.review.undo(d.id, user_id=None, user="test")
        with store.session() as s:
            s.query(DedupPair).filter_by(left_id=odd_left, right_id=odd_right).delete()


# -- every error a styled page (issue 22) ---------------------------------------------------------------
ODD = ["9" * 30, "9223372036854775808", "2147483648", "-1", "0", "1e400", "-1e400", "nan", "NaN", "inf",
       "9999-12-31", "0001-01-01", "9999Q4", "0Q1", "1e400_1", "nan_1", "1_nan", "", " ", "１２", "镇海",
       "\u202e", "[/]", "<b>", "..", "%", "a/b", "\x00"]
# the query parameters the routes read from request.query_params (not declared, so not in the routes' signatures)
READ_QUERY = ("org", "low", "high", "since", "until", "after", "state", "level", "system", "overdue", "user")


def _fuzz_values():
    from hypothesis import strategies as st

    return st.sampled_from(ODD) | st.integers().map(str) | st.text(max_size=8)


def _fuzzed_routes(app):
    """(method, template, path parameters, query parameters, form fields) of every route but log-out
    (which takes nothing and ends the session the other requests need)."""
    from starlette.routing import compile_path

    list(_routes(app))  # every route the application serves is one of its routers' (checked there)
    for r in (r for router in app.state.routers for r in router.routes):
        if r.path == "/logout":
            continue
        _, _, params = compile_path(r.path)
        query = sorted({p.name for p in r.dependant.query_params} | set(READ_QUERY))
        forms = sorted({p.alias for p in r.dependant.body_params} - {"csrf_token"})
        for method in sorted(r.methods):
            yield method, r.path, sorted(params), query, forms


@pytest.fixture(scope="module")
def clients(app):
    """A session of each role: (client, CSRF token)."""
    return {role: logged_in(app, name) for role, name in NAMES.items()}


def test_every_route_answers_odd_parameters_without_a_server_error(app, clients):
    """Huge, negative, non-finite, far-future, empty and Unicode values in every path and query
    parameter (and form field) of every route, as each role: never a 5xx, never a traceback."""
    from urllib.parse import quote

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    routes_ = list(_fuzzed_routes(app))
    assert len(routes_) >= 25

    roles = list(clients)
    examples = iter(range(10**6))

    @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])  # no shrinking: the failing request is in the message as it is
    @given(st.data())
    def fuzz(data):
        k = next(examples)
        requests = []  # every value drawn before the first request: what is drawn never depends on an answer
        for i, (method, template, params, query, forms) in enumerate(routes_):
            path = template
            for p in params:
                path = path.replace("{" + p + "}", quote(data.draw(_fuzz_values(), label=p), safe=""))
            q = {k: data.draw(_fuzz_values(), label=k) for k in data.draw(st.sets(st.sampled_from(query)), label="query")}
            form = {k: data.draw(_fuzz_values(), label=k) for k in forms}
            # each route as each role in turn: every fourth example as the role whose page it is
            requests.append((roles[(k + i) % len(roles)], method, path, q, form))
        for role, method, path, q, form in requests:
            client, token = clients[role]
            r = client.request(method, path, params=q, data=form or None, follow_redirects=False,
                               headers={"X-CSRF-Token": token, "Accept": "text/html"})
            assert r.status_code < 500, (role, method, path, q, form, r.status_code, r.text[:300])
            assert "Traceback" not in r.text, (role, method, path, q)
    fuzz()


@pytest.mark.parametrize("role, method, path, status, reason", [
    ("steward", "POST", f"/review/undo/{10**30}", 409, "只能撤销自己的处理"),
    ("steward", "GET", "/review?until=9999-12-31", 200, None),
    ("steward", "GET", "/review?after=1e400_1", 400, "after"),
    ("steward", "GET", f"/review?after=0.5_{10**30}", 400, "after"),
    ("steward", "GET", "/review?low=nan", 400, "low: 应为 0–1 之间的数"),
    ("qc_manager", "GET", f"/findings/{10**30}", 404, "不存在"),
    ("qc_manager", "GET", "/findings/abc", 422, "参数无效"),
    ("qc_manager", "GET", f"/reports/run/{10**30}.html", 404, "不存在"),
    ("qc_manager", "GET", "/reports/quarter/9999Q4.html", 404, "年份应在"),
    ("admin", "GET", "/no/such/page", 404, "页面不存在"),
    ("admin", "DELETE", "/admin/users", 405, "不支持该请求方法"),
])
def test_every_error_is_the_styled_page_with_its_status(clients, role, method, path, status, reason):
    client, token = clients[role]
    r = client.request(method, path, headers={"X-CSRF-Token": token, "Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == status, (path, r.status_code, r.text[:300])
    if reason:
        assert r.headers["content-type"].startswith("text/html") and 'role="alert"' in r.text and reason in r.text
        assert "无法完成" in r.text and "Traceback" not in r.text
    # a client that asks for JSON gets the same reason as JSON
    j = client.request(method, path, headers={"X-CSRF-Token": token, "Accept": "application/json"},
                       follow_redirects=False)
    assert j.status_code == status and (reason is None or reason in j.json()["detail"])
