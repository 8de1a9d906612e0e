"""The console's application: ``create_app(cfg)``, or ``create_app()`` with the configuration file
named by ``HEALTHQA_CONFIG`` (how ``healthqa serve`` starts it under uvicorn, as a factory).

Every route but the log-in page and the static files needs a session (``auth.current``); every
state-changing route checks the CSRF token (``auth.check_csrf``); each role sees only its pages
(``auth.role``). tests/console/test_console.py enumerates the routes and proves all three.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from healthqa import clock
from healthqa import config as config_mod
from healthqa.config import Config
from healthqa.dedup import spec as specs
from healthqa.errors import HealthqaError, SourceError, one_line
from healthqa.reports import labels
from healthqa.store import AuditStore
from healthqa.store.store import StoreError

from . import admin, engineer, match, qc, steward
from .archives import Archives
from .auth import HOME, ROLE_ZH, LoginRequired, Throttle, check_csrf, csrf_token, current
from .jobs import Jobs

log = logging.getLogger(__name__)
CONFIG_ENV = "HEALTHQA_CONFIG"
SESSION_KEY_ENV = "HEALTHQA_SESSION_KEY"  # set by ``healthqa serve --workers N`` (pipelines/cli/schedule.py)
SESSION_COOKIE = "healthqa_session"
# scripts only from the console itself; the run reports it serves carry their own inline styles
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("healthqa.console", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)  # packaged: no stat per page
    env.globals["ROLE_ZH"] = ROLE_ZH
    env.globals["STATIC_V"] = static_version()
    # runs' kinds, states, scopes and tables as the CLI and the reports show them (reports/labels.py)
    env.filters.update(scope_text=labels.scope_text, status_text=labels.status_text, kind_text=labels.kind_text,
                       table_text=labels.table_text)
    env.filters.update(clock.jinja_filters())  # every time on a page: {{ t|shown }}, in the platform's zone
    return Jinja2Templates(env=env)


def static_version() -> str:
    """A digest of the console's static files: their URLs carry it (``?v=``), so a browser keeps them
    (``SecurityHeaders``) and asks again only when an upgrade changed one."""
    import hashlib
    from importlib.resources import files

    h = hashlib.sha256()
    for f in sorted((x for x in files("healthqa.console").joinpath("static").iterdir() if x.is_file()),
                    key=lambda x: x.name):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    """A page of the console, with the user and the CSRF token every form carries."""
    who = context.pop("who", None)
    return request.app.state.templates.TemplateResponse(
        request, name, {"who": who, "csrf": csrf_token(request), **context}, status_code=status_code)


def create_app(cfg: Config | None = None) -> FastAPI:
    if cfg is None:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise RuntimeError(f"{CONFIG_ENV} names no configuration file (healthqa serve --config FILE sets it)")
        cfg = config_mod.load(path)
    c = cfg.console
    app = FastAPI(title="healthqa console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    store = AuditStore(cfg.store.url)
    source = cfg.source_of("person")
    app.state.cfg, app.state.store, app.state.source = cfg, store, source
    app.state.archives = Archives(cfg, source) if source else None
    spec = specs.load(cfg.dedup.spec) if cfg.dedup.spec else specs.builtin()
    if cfg.dedup.thresholds:  # the site's thresholds outrank the spec's, as the scan applies them
        spec = spec.model_copy(update={"thresholds": specs.Thresholds(**cfg.dedup.thresholds.model_dump())})
    app.state.spec_fields = {f.column: f.name for f in spec.fields}  # canonical column -> its explanation key
    app.state.spec = spec  # its guards: why a pair was held back (console/evidence.py)
    # the queue's score bands: every pair counted by band, kept until a scan writes pairs again
    app.state.bands_lock, app.state.band_base, app.state.band_counting = threading.Lock(), None, {}
    app.state.held_memo = {}
    app.state.templates = templates()
    app.state.jobs = Jobs(store)  # rows of the store: every worker sees every job
    app.state.throttle = Throttle(store, c.max_failed_logins, timedelta(minutes=c.lockout_minutes), c.failed_login_delay_s,
                                  per_client=c.logins_per_client_per_minute)
    app.state.render = render
    app.state.rendered = {}  # report files rendered on demand: (kind, id, ext) -> (the data's key, the file)
    # no redirect to a slash-ended path: Starlette builds it from the request's Host header, which a
    # client chooses (GET /static with Host: evil.example would be sent on to evil.example)
    app.router.redirect_slashes = False
    # unset: the key ``healthqa serve --workers N`` made for all its workers, else a new one per start
    key = c.secret_key or os.environ.get(SESSION_KEY_ENV) or secrets.token_urlsafe(32)
    app.add_middleware(SessionMiddleware, secret_key=key,
                       session_cookie=SESSION_COOKIE, max_age=int(c.session_hours * 3600), same_site="lax",
                       https_only=c.secure_cookies)
    app.add_middleware(SecureOverHttps)

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        if request.method == "GET" and "HX-Request" not in request.headers:
            return RedirectResponse("/login", status_code=303)
        return Response("请先登录 / log in first", status_code=401, headers={"HX-Redirect": "/login"},
                        media_type="text/plain; charset=utf-8")

    # Starlette's own (a URL no route serves, a method a route does not take) as well as the routes'
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_page(request, exc.status_code, _reason(request, exc), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return error_page(request, 422, _invalid(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        # a bug: the traceback goes to the server's log, the user gets the page and the time to quote
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_page(request, 500, f"内部错误，已记入服务器日志（{clock.shown(clock.now())}）/ internal error, "
                                         "written to the server's log")

    @app.exception_handler(HealthqaError)
    async def healthqa_error(request: Request, exc: HealthqaError):
        # a source or the store that cannot answer now: one line for the user, never a traceback
        status = 503 if isinstance(exc, SourceError | StoreError) else 409
        return error_page(request, status, one_line(exc))

    app.mount("/static", StaticFiles(packages=[("healthqa.console", "static")]), name="static")
    app.state.routers = [_accounts(), steward.router, qc.router, engineer.router, admin.router]
    for router in app.state.routers:
        app.include_router(router)
    # machines' routes: an API token, never a session (console/match.py)
    app.state.machine_routers = [match.router]
    match.install(app)
    return app


class SecurityHeaders:
    """The headers every answer carries: the Content-Security-Policy, no MIME sniffing, the referrer
    kept to the console, and no caching of pages (they may hold revealed values). Static files are
    cached: for a year when the URL names their version (``?v=``, as the pages link them: a browser
    does not ask again for them on every page), else checked each time (ETag / Last-Modified, 304).
    Plain ASGI: a ``@app.middleware("http")`` function costs a task and a stream per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cache = b"no-store"
        if scope["path"].startswith("/static/"):
            versioned = any(p.startswith(b"v=") for p in scope.get("query_string", b"").split(b"&"))
            cache = b"public, max-age=31536000, immutable" if versioned else b"no-cache"

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers = [(k, v) for k, v in headers if k.lower() not in (b"x-content-type-options", b"referrer-policy")]
                if b"content-security-policy" not in have:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
                if b"cache-control" not in have:
                    headers.append((b"cache-control", cache))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class SecureOverHttps:
    """The session cookie marked Secure whenever the request came over HTTPS (the scheme uvicorn
    reports: the connection's own, or a trusted proxy's X-Forwarded-Proto), even without
    ``console.secure_cookies``: a browser never sends it back over plain HTTP."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("scheme") != "https":
            return await self.app(scope, receive, send)

        async def secure(message):
            if message["type"] == "http.response.start":
                headers = []
                for k, v in message.get("headers", []):
                    if k.lower() == b"set-cookie" and v.startswith(SESSION_COOKIE.encode() + b"=") \
                            and b"; secure" not in v.lower():
                        v += b"; secure"
                    headers.append((k, v))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secure)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    try:  # jobs a console that stopped was running: interrupted, not running for ever
        await run_in_threadpool(app.state.store.jobs.reap)
    except HealthqaError as e:  # a store that cannot answer now: a job's page marks it when read
        log.warning("validation jobs not checked at start: %s", one_line(e))
    if app.state.source is not None:  # the queue's score bands counted before a steward asks (a thread)
        try:
            await run_in_threadpool(steward.band_base, app, app.state.source)
        except HealthqaError as e:  # a store that cannot answer now: the first queue page asks again
            log.warning("score bands not counted at start: %s", one_line(e))
    yield
    app.state.throttle.close()
    if app.state.archives is not None:
        app.state.archives.close()
    app.state.store.close()


def routes(app: FastAPI):
    """(method, path template) of every route of the console (the tests enumerate them)."""
    for router in app.state.routers:
        for r in router.routes:
            for method in sorted(r.methods):
                yield method, r.path


def error_page(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
    """Every error the console answers: the styled page (Chinese first) with the reason and the
    status for a browser, the fragment for htmx, ``{"detail": …}`` for a client that asks for JSON."""
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    if "HX-Request" in request.headers:
        return HTMLResponse(f'<p class="error">{_esc(message)}</p>', status_code=status, headers=headers)
    return render(request, "error.html.j2", status_code=status, message=message, who=_maybe_user(request))


# Starlette's reasons are English only: each status a Chinese-first line
REASONS = {404: "页面不存在 / not found", 405: "不支持该请求方法 / method not allowed",
           400: "请求无效 / bad request", 422: "参数无效 / invalid parameters"}


def _reason(request: Request, exc: StarletteHTTPException) -> str:
    from http import HTTPStatus

    if isinstance(exc, HTTPException) or exc.detail != HTTPStatus(exc.status_code).phrase:
        return str(exc.detail)  # the routes' own reasons are Chinese first already
    line = REASONS.get(exc.status_code, f"{exc.status_code} {exc.detail}")
    return f"{line}: {request.url.path}" if exc.status_code == 404 else line


def _invalid(exc: RequestValidationError) -> str:
    """Which parameter was wrong and why, one line."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("path", "query", "body"))
        parts.append(f"{where}: {err.get('msg', '')}")
    return f"{REASONS[422]}: " + "; ".join(parts)[:300]


def _esc(text) -> str:
    from html import escape

    return escape(str(text))


def _maybe_user(request: Request):
    try:
        return current(request)
    except LoginRequired:
        return None


def _accounts() -> APIRouter:
    r = APIRouter()

    @r.get("/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return render(request, "login.html.j2")

    @r.post("/login", dependencies=[Depends(check_csrf)])
    async def login(request: Request, username: str = Form(...), password: str = Form(...)):
        client = request.client.host if request.client else None
        user, reason, status = await request.app.state.throttle.attempt(username, password, client)
        if user is None:
            return render(request, "login.html.j2", status_code=status, error=reason, username=username)
        sid = await run_in_threadpool(request.app.state.store.users.start_session, user.id)
        request.session.clear()  # a new session (and CSRF token) at log-in: no fixation
        request.session.update(user=user.name, role=user.role, began=_now_iso(), cred=user.credential, sid=sid,
                               csrf=secrets.token_urlsafe(32))
        return RedirectResponse(HOME[user.role], status_code=303)

    @r.post("/logout", dependencies=[Depends(check_csrf)])
    def logout(request: Request, who=Depends(current)):
        request.app.state.store.users.end_session(request.session["sid"])  # a kept copy of the cookie ends too
        request.app.state.store.review.log(who.name, "logout", who.name)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @r.get("/")
    def home(who=Depends(current)):
        return RedirectResponse(HOME[who.role], status_code=303)

    return r


def _now_iso() -> str:
    from healthqa.clock import now

    return now().isoformat()


