"""HTTP side of the command dashboard: the /command pages (HTML, not part of the REST contract).

Authentication here is a browser session, never a bearer token: the app's bearer middleware
skips /command (``access.rest.SESSION_PATHS``) and ``SessionAuth`` below takes over, with the
same rule as the API: a route names its policy operation, a route that names none is refused.
Every POST (login, logout) is CSRF-checked by Litestar's CSRF middleware, mounted on this
router only: the API's routes never see it (they take no cookies, so they need no CSRF check).

The pages are left out of the OpenAPI document: they answer HTML to a browser holding a
session cookie, which no integration client can use, and the contract tests would fuzz them
with credentials they do not accept.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader, Cookie, ResponseHeader
from litestar.exceptions import PermissionDeniedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from service import policy
from service.access.model import Principal
from service.access.rest import EXCLUDE_FROM_AUTH, client_address
from service.command import charts, service
from service.command.model import Dashboard
from service.db import Database
from service.errors import DomainError, Forbidden, RateLimited, Unauthorized, domain_error_to_response, problem_response
from service.http import ETAG_HEADER, if_none_match
from service.settings import Settings

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PATH = "/command"
STATIC_PATH = f"{PATH}/static"
SESSION_COOKIE = "qsite_session"
CSRF_COOKIE = "qsite_csrf"
# Handlers that answer a whole page: an absent session sends the browser to the login form
# instead of answering 401 (which only the page's own script understands).
PAGE = "command_page"
PUBLIC = {EXCLUDE_FROM_AUTH: True, **policy.rest("auth.session")}
MAX_FIELD = 256  # longest username or password the form takes
WIDE = 1200  # the line chart's canvas (it spans both columns)

BAD_CREDENTIALS = "Unknown username or wrong password."
NOT_FOR_ROLE = "This account has no access to the command dashboard."
FORM_EXPIRED = "The form had expired. Please log in again."
LOGGED_OUT = "You are logged out."
SESSION_ENDED = "Your session has ended. Please log in again."
# What the login page says after a redirect (?m=...): fixed texts, never the query's own words.
MESSAGES = {"out": LOGGED_OUT, "ended": SESSION_ENDED, "expired": FORM_EXPIRED, "role": NOT_FOR_ROLE}

# Nothing loads from elsewhere (the page works on an intranet); nothing may frame it.
SECURITY_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value="default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
]


class SessionAuth(AbstractAuthenticationMiddleware):
    """The session cookie's account, held to the route's policy operation (as ``AuthMiddleware`` does for the API)."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        state = connection.app.state
        principal = await service.session_principal(state.db, state.settings, connection.cookies.get(SESSION_COOKIE))
        if principal is None:
            raise Unauthorized("Log in to the command dashboard.", code="session_required")
        operation = connection.scope["route_handler"].opt.get(policy.OPERATION_OPT)
        if operation is None:
            raise Forbidden(f"Not allowed for the role {principal.role}.", code="role_not_allowed")
        policy.require(principal, operation)
        return AuthenticationResult(user=principal, auth=None)


def _session_cookie(settings: Settings, token: str) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        path=PATH,
        max_age=settings.command_session_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
    )


def _login_form(message: str | None, status: int = 200, *, username: str = "", headers: dict[str, str] | None = None) -> Template:
    return Template(
        template_name="command/login.html", context={"message": message, "username": username}, status_code=status, headers=headers or {}
    )


def _figures_context(figures: Dashboard, settings: Settings, etag: str) -> dict[str, Any]:
    return {
        "f": figures,
        "etag": etag,
        "refresh_seconds": settings.command_refresh_seconds,
        "tz": ZoneInfo(figures.time_zone),
        "site_chart": charts.bar_chart([(s.name, s.region or s.code, s.beds_occupied, s.beds_total) for s in figures.sites]),
        "region_chart": charts.bar_chart(
            [("› " * r.depth + r.name, f"{r.level}, {r.sites} site(s)", r.beds_occupied, r.beds_total) for r in figures.regions]
        ),
        "day_chart": charts.line_chart(
            [d.day for d in figures.days],
            [
                ("admitted", "admitted", [d.admitted for d in figures.days]),
                ("released", "released", [d.released for d in figures.days]),
                ("positives", "positive tests", [d.positives for d in figures.days]),
            ],
            width=WIDE,  # drawn across the page: a wider canvas keeps its text at the bars' size
            height=260,
        ),
    }


class CommandController(Controller):
    path = "/"

    @get("/", opt={**policy.rest(service.OPERATION), PAGE: True})
    async def dashboard(self, db: Database, settings: Settings, principal: Principal) -> Template:
        """The dashboard page, with the figures of the moment; its script then polls ``/command/panels``."""
        etag = await service.figures_tag(db, principal)
        figures = await service.dashboard(db, settings, principal)
        context = _figures_context(figures, settings, etag)
        return Template(template_name="command/dashboard.html", context={**context, "user": principal.name or str(principal.id)})

    @get("/panels", opt=policy.rest(service.OPERATION))
    async def panels(self, request: Request, db: Database, settings: Settings, principal: Principal) -> Response[Any] | Template:
        """The panels alone (HTML fragment) for the page's refresh; 304 while nothing at the caller's sites changed."""
        etag = await service.figures_tag(db, principal)
        headers = {ETAG_HEADER: etag, "Cache-Control": "no-cache, private"}
        if if_none_match(request, etag):
            return Response(b"", status_code=304, headers=headers)
        figures = await service.dashboard(db, settings, principal)
        return Template(template_name="command/_panels.html", context=_figures_context(figures, settings, etag), headers=headers)

    @get("/login", opt=PUBLIC)
    async def login_page(self, request: Request, db: Database, settings: Settings) -> Template | Redirect:
        """The login form (straight to the dashboard when the browser's session is still live)."""
        principal = await service.session_principal(db, settings, request.cookies.get(SESSION_COOKIE))
        if principal is not None and policy.allows(principal, service.OPERATION):
            return Redirect(path=PATH, status_code=303)
        message = MESSAGES.get(request.query_params.get("m", ""))
        return _login_form(message)

    @post("/login", opt=PUBLIC)
    async def login(self, request: Request, db: Database, settings: Settings) -> Template | Redirect:
        """Check the form's credentials; on success set the session cookie and go to the dashboard."""
        form = await request.form()
        username, password = str(form.get("username", ""))[:MAX_FIELD], str(form.get("password", ""))[:MAX_FIELD]
        try:
            token, _ = await service.start_session(db, settings, username=username, password=password, address=client_address(request))
        except RateLimited as exc:
            return _login_form(f"Too many login attempts. Try again in {exc.headers['Retry-After']} seconds.", 429, username=username, headers=exc.headers)
        except Forbidden:
            return _login_form(NOT_FOR_ROLE, 403, username=username)
        except Unauthorized:
            return _login_form(BAD_CREDENTIALS, 401, username=username)
        return Redirect(path=PATH, status_code=303, cookies=[_session_cookie(settings, token)])

    @post("/logout", opt=PUBLIC)
    async def logout(self, request: Request, db: Database) -> Redirect:
        """End the session and forget its cookie."""
        await service.end_session(db, request.cookies.get(SESSION_COOKIE))
        response = Redirect(path=f"{PATH}/login?m=out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PATH)
        return response


def _refused(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    """A page without a live session (or whose account lost the role) goes to the login form;
    the page's script gets problem+json."""
    if not request.scope["route_handler"].opt.get(PAGE):
        return domain_error_to_response(request, exc)
    reason = "role" if isinstance(exc, Forbidden) else "ended" if SESSION_COOKIE in request.cookies else ""
    response: Response[Any] = Redirect(path=f"{PATH}/login" + (f"?m={reason}" if reason else ""), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PATH)
    return response


def _csrf_failed(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    """A POST whose CSRF token is missing or wrong. From the login form (an old tab, a rotated
    secret): the form again, with a new token; anything else: 403 ``csrf_failed``."""
    if request.scope["route_handler"].handler_name != "login":
        return problem_response(403, "csrf_failed", "CSRF check failed", "The request's CSRF token is missing or does not match; reload the page.")
    response: Response[Any] = Redirect(path=f"{PATH}/login?m=expired", status_code=303)
    response.delete_cookie(CSRF_COOKIE, path=PATH)  # the next GET issues a fresh one
    return response


def _csrf_secret(settings: Settings) -> str:
    """Derived from the JWT secret, so that deployments need no new secret (and instances agree)."""
    return hmac.new(settings.jwt_secret.encode(), b"qsite command csrf", hashlib.sha256).hexdigest()


def router(settings: Settings) -> Router:
    """The /command pages, with their session and CSRF middleware."""
    csrf = CSRFConfig(
        secret=_csrf_secret(settings),
        cookie_name=CSRF_COOKIE,
        cookie_path=PATH,
        cookie_httponly=True,  # the forms carry the token; no script needs to read it
        cookie_samesite="strict",
        cookie_secure=settings.cookie_secure,
    )
    return Router(
        path=PATH,
        route_handlers=[CommandController],
        middleware=[DefineMiddleware(CSRFMiddleware, config=csrf), DefineMiddleware(SessionAuth, exclude_from_auth_key=EXCLUDE_FROM_AUTH)],
        exception_handlers={Unauthorized: _refused, Forbidden: _refused, PermissionDeniedException: _csrf_failed},
        response_headers=SECURITY_HEADERS,
        include_in_schema=False,
    )


def _local(value: Any, tz: ZoneInfo, fmt: str = "%m-%d %H:%M") -> str:
    return value.astimezone(tz).strftime(fmt)


def _cover(days: float | None) -> str:
    return "—" if days is None else f"{days:.1f} d"


def _share(done: int, due: int) -> str:
    """done of due as a whole percentage ("—" when nothing was due yet)."""
    return f"{round(100 * done / due)}%" if due else "—"


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} h"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 (autoescaping) over each package's ``templates/``; names are ``<package>/<file>``."""

    def filters(engine: JinjaTemplateEngine) -> None:
        engine.engine.filters.update(local=_local, cover=_cover, hours=_hours)
        engine.engine.globals.update(share=_share)

    from service.handover.rest import TEMPLATES_DIR as HANDOVER_TEMPLATES

    return TemplateConfig(directory=[TEMPLATES_DIR, HANDOVER_TEMPLATES], engine=JinjaTemplateEngine, engine_callback=filters)


# The script and style sheet; like the docs' assets, they change only with a release.
assets_router = create_static_files_router(
    path=STATIC_PATH,
    directories=[STATIC_DIR],
    include_in_schema=False,
    cache_control=CacheControlHeader(max_age=300, public=True),
    name="command_assets",
)
