"""The console's application: ``create_app(cfg)``, or ``create_app()`` with the configuration file
named by ``HEALTHQA_CONFIG`` (how ``healthqa serve`` starts it under uvicorn, as a factory).

Every route but the log-in page and the static files needs a session (``auth.current``); every
state-changing route checks the CSRF token (``auth.check_csrf``); each role sees only its pages
(``auth.role``). tests/console/test_console.py enumerates the routes and proves all three.
"""

from __future__ import annotations

import os
import secrets
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.middleware.sessions import SessionMiddleware

from healthqa import clock
from healthqa import config as config_mod
from healthqa.config import Config
from healthqa.dedup import spec as specs
from healthqa.errors import HealthqaError, SourceError, one_line
from healthqa.store import AuditStore
from healthqa.store.store import StoreError

from . import admin, engineer, qc, steward
from .archives import Archives
from .auth import HOME, ROLE_ZH, LoginRequired, Throttle, check_csrf, csrf_token, current
from .jobs import Jobs

CONFIG_ENV = "HEALTHQA_CONFIG"
SESSION_COOKIE = "healthqa_session"
# scripts only from the console itself; the run reports it serves carry their own inline styles
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("healthqa.console", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["ROLE_ZH"] = ROLE_ZH
    env.filters.update(clock.jinja_filters())  # every time on a page: {{ t|shown }}, in the platform's zone
    return Jinja2Templates(env=env)


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
    app.state.templates = templates()
    app.state.jobs = Jobs()
    app.state.throttle = Throttle(store, c.max_failed_logins, timedelta(minutes=c.lockout_minutes), c.failed_login_delay_s)
    app.state.render = render
    app.add_middleware(SessionMiddleware, secret_key=c.secret_key or secrets.token_urlsafe(32),
                       session_cookie=SESSION_COOKIE, max_age=int(c.session_hours * 3600), same_site="lax",
                       https_only=c.secure_cookies)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")  # pages may hold revealed values
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        if request.method == "GET" and "HX-Request" not in request.headers:
            return RedirectResponse("/login", status_code=303)
        return Response("请先登录 / log in first", status_code=401, headers={"HX-Redirect": "/login"},
                        media_type="text/plain; charset=utf-8")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if "HX-Request" in request.headers:
            return HTMLResponse(f'<p class="error">{_esc(exc.detail)}</p>', status_code=exc.status_code)
        return render(request, "error.html.j2", status_code=exc.status_code, message=exc.detail,
                      who=_maybe_user(request))

    @app.exception_handler(HealthqaError)
    async def healthqa_error(request: Request, exc: HealthqaError):
        # a source or the store that cannot answer now: one line for the user, never a traceback
        status = 503 if isinstance(exc, SourceError | StoreError) else 409
        return await http_error(request, HTTPException(status, one_line(exc)))

    app.mount("/static", StaticFiles(packages=[("healthqa.console", "static")]), name="static")
    app.state.routers = [_accounts(), steward.router, qc.router, engineer.router, admin.router]
    for router in app.state.routers:
        app.include_router(router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    if app.state.archives is not None:
        app.state.archives.close()
    app.state.store.close()


def routes(app: FastAPI):
    """(method, path template) of every route of the console (the tests enumerate them)."""
    for router in app.state.routers:
        for r in router.routes:
            for method in sorted(r.methods):
                yield method, r.path


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
        user, reason = await request.app.state.throttle.attempt(username, password, client)
        if user is None:
            return render(request, "login.html.j2", status_code=401, error=reason, username=username)
        request.session.clear()  # a new session (and CSRF token) at log-in: no fixation
        request.session.update(user=user.name, role=user.role, began=_now_iso(), cred=user.credential,
                               csrf=secrets.token_urlsafe(32))
        return RedirectResponse(HOME[user.role], status_code=303)

    @r.post("/logout", dependencies=[Depends(check_csrf)])
    def logout(request: Request, who=Depends(current)):
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


