"""The console's log-in, sessions and reports under misuse (OWASP ASVS level 2 as the yardstick), on a
small audit store of its own (no demo platform): guesses sent together, a kept copy of a cookie, a
client that tries too often, forwarded headers from an untrusted peer, a Host header in a redirect,
reports asked for quarters nobody audited, an administrator disabling themself by another spelling."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from healthqa import config
from healthqa.console.app import SESSION_COOKIE, create_app
from healthqa.store import AuditStore

from .console_site import PASSWORD, csrf_of, logged_in, login

USERS = {"admin1": "admin", "qc1": "qc_manager", "steward1": "steward"}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An SQLite audit store with the users, made once (Argon2 hashing is slow on purpose)."""
    path = tmp_path_factory.mktemp("template") / "audit.db"
    with AuditStore(f"sqlite:///{path}") as store:
        for name, role in USERS.items():
            store.users.add(name, role, PASSWORD, actor="test")
    return path


@pytest.fixture(autouse=True)
def _template(template):
    global TEMPLATE
    TEMPLATE = template


TEMPLATE = None


def small_site(tmp_path, store_url: str | None = None, **console) -> config.Config:
    url = store_url or f"sqlite:///{tmp_path / 'audit.db'}"
    if store_url is None:
        shutil.copy(TEMPLATE, tmp_path / "audit.db")
    else:
        with AuditStore(url) as store:
            store.users.add("qc1", "qc_manager", PASSWORD, actor="test")
    return config.Config.model_validate({
        "sources": {}, "store": {"url": url}, "data_dir": str(tmp_path / "data"),
        "reports": {"out_dir": str(tmp_path / "reports")},
        "console": {"failed_login_delay_s": 0, **console}, "path": tmp_path / "healthqa.yml"})


def site_file(cfg: config.Config, folder) -> str:
    """The configuration written where ``healthqa serve`` and the command line read it."""
    path = folder / "healthqa.yml"
    path.write_text(config.yaml.safe_dump(cfg.model_dump(mode="json", exclude={"path"}, exclude_none=True),
                                          allow_unicode=True), encoding="utf-8")
    return str(path)


def _actions(app, action: str, subject: str | None = None) -> list[dict]:
    return [a for a in app.state.store.review.audit(limit=500)
            if a["action"] == action and (subject is None or a["subject"] == subject)]


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_burst_of_guesses_checks_no_more_than_the_lockout_allows(tmp_path, db, request):
    import asyncio

    import httpx

    url = request.getfixturevalue("pg_store_url") if db == "postgresql" else None
    app = create_app(small_site(tmp_path, url, max_failed_logins=5, logins_per_client_per_minute=100))

    async def burst() -> list[int]:
        # 18 browsers on one event loop, as uvicorn serves them: each has its session and token, then
        # all post their guess at once
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
                   for _ in range(18)]
        tokens = [csrf_of((await c.get("/login")).text) for c in clients]
        answers = await asyncio.gather(*(
            c.post("/login", data={"username": "qc1", "password": f"wrong-{i}-password", "csrf_token": t})
            for i, (c, t) in enumerate(zip(clients, tokens))))
        for c in clients:
            await c.aclose()
        return [r.status_code for r in answers]

    assert asyncio.run(burst()) == [401] * 18
    # counted before checking: five passwords were checked, the other thirteen refused unchecked
    assert len(_actions(app, "login_failed", "qc1")) == 5
    assert len(_actions(app, "login_refused_locked", "qc1")) == 13
    r = login(TestClient(app), "qc1")  # the right password, while the name is locked
    assert r.status_code == 401 and "锁定" in r.text


def test_log_out_ends_the_session_on_the_server(tmp_path):
    app = create_app(small_site(tmp_path))
    client, token = logged_in(app, "qc1")
    kept = client.cookies.get(SESSION_COOKIE)
    assert client.post("/logout", headers={"X-CSRF-Token": token}, follow_redirects=False).status_code == 303
    copy = TestClient(app, cookies={SESSION_COOKIE: kept})  # the cookie as it was before log-out
    r = copy.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_a_role_change_in_the_console_ends_the_sessions(tmp_path):
    # (a new password or a disabled account already ended them: tests/console/test_console.py)
    app = create_app(small_site(tmp_path))
    client, _ = logged_in(app, "steward1")
    assert client.get("/review/history", follow_redirects=False).status_code == 200
    admin, token = logged_in(app, "admin1")
    r = admin.post("/admin/users/steward1/role", data={"role": "engineer"}, headers={"X-CSRF-Token": token},
                   follow_redirects=False)
    assert r.status_code == 303
    r = client.get("/review/history", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    again, _ = logged_in(app, "steward1")  # the next log-in has the new role's pages
    assert again.get("/validate", follow_redirects=False).status_code == 200
    assert any(a["action"] == "user_role" and a["user"] == "admin1" for a in app.state.store.review.audit(limit=20))


def test_the_session_cookie_is_secure_over_https_without_being_told(tmp_path):
    app = create_app(small_site(tmp_path))  # console.secure_cookies left at its default
    r = login(TestClient(app, base_url="https://testserver"), "qc1")
    assert r.status_code == 303 and "; secure" in r.headers["set-cookie"].lower()
    r = login(TestClient(app), "qc1")  # plain HTTP (a test, a local port): no Secure, or it would never come back
    assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()


def test_a_client_that_tries_too_often_is_refused_before_any_hashing(tmp_path):
    app = create_app(small_site(tmp_path, logins_per_client_per_minute=3, max_failed_logins=50))
    office = TestClient(app, client=("192.0.2.1", 40000))  # users behind one address who log in are not held back
    assert [login(office, name).status_code for name in (*USERS, *USERS)] == [303] * 6
    noisy = TestClient(app, client=("203.0.113.9", 40000))
    statuses = [login(noisy, f"nobody{i}", "wrong-password-123") for i in range(6)]
    assert [r.status_code for r in statuses] == [401, 401, 401, 429, 429, 429]
    assert "登录尝试过于频繁" in statuses[-1].text
    assert len(_actions(app, "login_failed")) == 3  # the refused three were never hashed
    # a real user elsewhere logs in while that client is held back
    assert login(TestClient(app, client=("198.51.100.7", 40000)), "qc1").status_code == 303


def test_forwarded_headers_are_believed_only_from_configured_proxies(tmp_path, monkeypatch):
    import uvicorn

    from healthqa.pipelines.cli.schedule import console_server

    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    for trusted, client_seen, secure in (([], "127.0.0.1", False), (["127.0.0.1"], "6.6.6.6", True)):
        folder = tmp_path / str(len(trusted))
        folder.mkdir()
        path = site_file(small_site(folder, trusted_proxies=trusted), folder)
        monkeypatch.setenv("HEALTHQA_CONFIG", path)
        served = console_server(config.load(path), "127.0.0.1", 8000)
        assert isinstance(served, uvicorn.Config)
        served.load()
        client = TestClient(served.loaded_app, client=("127.0.0.1", 40000))
        page = client.get("/login", headers=forged)
        # sent by hand: a Secure cookie (forwarded as HTTPS) would not go back over the test's plain HTTP
        cookie = {"Cookie": f"{SESSION_COOKIE}={page.cookies[SESSION_COOKIE]}"}
        client.cookies.clear()
        r = client.post("/login", data={"username": "qc1", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
                        headers=forged | cookie, follow_redirects=False)
        assert r.status_code == 303
        with AuditStore(config.load(path).store.url) as store:
            logins = [a for a in store.review.audit(limit=20) if a["action"] == "login"]
        assert logins[0]["detail"]["client"] == client_seen
        assert ("; secure" in r.headers["set-cookie"].lower()) is secure


def test_no_redirect_echoes_the_host_header(tmp_path):
    client = TestClient(create_app(small_site(tmp_path)))
    for path in ("/static", "/admin", "/login/"):
        r = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert "evil.example" not in r.headers.get("location", ""), (path, r.status_code, r.headers.get("location"))


def test_reports_on_demand_only_for_audited_quarters_and_rendered_once(tmp_path, monkeypatch):
    from healthqa import clock
    from healthqa.reports import quarterly

    app = create_app(small_site(tmp_path))
    client, _ = logged_in(app, "qc1")
    out = tmp_path / "reports"
    for q in ("0001Q1", "9998Q4", "9999Q4", "2019Q3"):
        r = client.get(f"/reports/quarter/{q}.pdf")
        assert r.status_code == 404 and "季度" in r.text, q
        assert "<html" in r.text.lower(), q  # the console's own page in Chinese, not a bare error
    assert not out.exists() or not any(out.iterdir())  # nothing written for them

    store = app.state.store
    with store.runs.start("nightly"):
        pass
    now = clock.now()
    this = f"{now.year}Q{(now.month - 1) // 3 + 1}"
    rendered = []
    real = quarterly.write
    monkeypatch.setattr(quarterly, "write", lambda *a, **k: rendered.append(a[2]) or real(*a, **k))
    assert client.get(f"/reports/quarter/{this}.html").status_code == 200
    assert client.get(f"/reports/quarter/{this}.html").status_code == 200
    assert len(rendered) == 1  # the second request is served from the file already rendered
    with store.runs.start("nightly"):  # a new night: the quarter's data changed
        pass
    assert client.get(f"/reports/quarter/{this}.html").status_code == 200
    assert len(rendered) == 2


def test_an_admin_cannot_disable_themself_by_another_spelling_and_can_enable_again(tmp_path):
    from ..pipelines.cli_run import invoke

    site = small_site(tmp_path)
    app = create_app(site)
    client, token = logged_in(app, "admin1")
    for spelling in ("ADMIN1", "Admin1", "ａｄｍｉｎ１"):
        r = client.post(f"/admin/users/{spelling}/disable", headers={"X-CSRF-Token": token}, follow_redirects=False)
        assert r.status_code == 400, spelling
    assert app.state.store.users.get("admin1").active
    assert client.post("/admin/users/steward1/disable", headers={"X-CSRF-Token": token},
                       follow_redirects=False).status_code == 303
    assert login(TestClient(app), "steward1").status_code == 401
    assert client.post("/admin/users/steward1/enable", headers={"X-CSRF-Token": token},
                       follow_redirects=False).status_code == 303
    assert login(TestClient(app), "steward1").status_code == 303
    assert any(a["action"] == "user_enable" and a["user"] == "admin1" for a in app.state.store.review.audit(limit=50))
    # and from a terminal
    app.state.store.users.disable("qc1", actor="test")
    r = invoke("users", "enable", "qc1", "--config", site_file(site, tmp_path))
    assert r.exit_code == 0, r.output
    assert app.state.store.users.get("qc1").active


def test_a_role_given_from_the_terminal_ends_the_sessions(tmp_path):
    from ..pipelines.cli_run import invoke, refused

    site = small_site(tmp_path)
    app = create_app(site)
    client, _ = logged_in(app, "steward1")
    path = site_file(site, tmp_path)
    refused(invoke("users", "role", "steward1", "--role", "boss", "--config", path), "role")
    assert client.get("/review/history", follow_redirects=False).status_code == 200  # nothing changed
    r = invoke("users", "role", "STEWARD1", "--role", "engineer", "--config", path)
    assert r.exit_code == 0, r.output
    assert app.state.store.users.get("steward1").role == "engineer"
    r = client.get("/review/history", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


@pytest.mark.server
def test_every_worker_of_serve_knows_the_session(tmp_path, monkeypatch):
    """``healthqa serve --workers 2``: the form of one worker process and the log-in of the other agree
    (one key signs the cookies of the start, though no ``console.secret_key`` is set), every later
    request is served whichever process takes it, and log-out ends the session in both (sessions
    are rows of the audit store)."""
    import time

    import httpx

    from ..conftest import free_port
    from .console_site import serve

    monkeypatch.delenv("HEALTHQA_SESSION_KEY", raising=False)
    site = site_file(small_site(tmp_path), tmp_path)
    port = free_port()
    proc, base = serve(site, port, "--workers", "2")
    try:
        time.sleep(2)  # the second worker is up too

        def fresh(cookie=None):  # a new connection each time: the kernel hands it to either worker
            return httpx.Client(base_url=base, cookies={SESSION_COOKIE: cookie} if cookie else None)

        cookies = []
        for _ in range(6):  # form and log-in on separate connections
            with fresh() as c:
                token = csrf_of(c.get("/login").text)
                kept = c.cookies.get(SESSION_COOKIE)
            with fresh(kept) as c:
                r = c.post("/login", data={"username": "qc1", "password": PASSWORD, "csrf_token": token},
                           follow_redirects=False)
                assert r.status_code == 303, r.text[:300]
                cookies.append(r.cookies[SESSION_COOKIE])
        for cookie in cookies * 3:
            with fresh(cookie) as c:
                r = c.get("/", follow_redirects=False)
                assert r.headers["location"] == "/dashboard"
        with fresh(cookies[0]) as c:
            token = csrf_of(c.get("/reports").text)
            assert c.post("/logout", headers={"X-CSRF-Token": token}, follow_redirects=False).status_code == 303
        for _ in range(6):
            with fresh(cookies[0]) as c:
                assert c.get("/", follow_redirects=False).headers["location"] == "/login"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_pages_are_never_cached_and_static_files_are_kept_while_their_version_holds(tmp_path):
    import re

    app = create_app(small_site(tmp_path))
    client, _ = logged_in(app, "qc1")
    page = client.get("/dashboard")
    assert page.headers["cache-control"] == "no-store" and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]
    linked = re.findall(r'(?:href|src)="(/static/[^"?]+)\?v=([0-9a-f]+)"', page.text)
    assert {p for p, _ in linked} == {"/static/console.css", "/static/htmx.min.js", "/static/console.js"}
    path, v = linked[0]
    kept = client.get(f"{path}?v={v}")  # as the page links it: a browser does not ask again
    assert kept.status_code == 200 and kept.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert kept.headers["x-content-type-options"] == "nosniff"
    bare = client.get(path)  # without a version: checked each time, answered 304 while unchanged
    assert bare.headers["cache-control"] == "no-cache"
    again = client.get(path, headers={"if-none-match": bare.headers["etag"]})
    assert again.status_code == 304
def test_a_worker_slow_to_start_is_not_killed_as_hung(tmp_path):
    """uvicorn's process manager kills a worker that has not answered its ping within
    ``timeout_worker_healthcheck`` (default 5 s); a worker answers once its interpreter has imported
    the command line, which took longer on a loaded machine: ``serve --workers 2`` then killed and
    restarted every worker and never answered."""
    from healthqa.pipelines.cli.schedule import WORKER_HEALTHCHECK_S, console_server

    server = console_server(small_site(tmp_path), "127.0.0.1", 8000, workers=2)
    assert server.timeout_worker_healthcheck == WORKER_HEALTHCHECK_S >= 30
