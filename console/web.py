"""The console's request plumbing: who is logged in, in which language, CSRF,
security headers and rendering. Pages (console/pages.py) only say what they show.

Every page needs a live session; the session's user names the tenant, and
every query of a page is scoped to it (another tenant's call is a 404).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from console.i18n import COOKIE as LANG_COOKIE
from console.i18n import LANGUAGES, Locale, negotiate
from console.sessions import Session, find_session, signing_key, unsign
from store.settings import Settings, TenantSettings

SESSION_COOKIE = "cs_session"
LOGIN_CSRF_COOKIE = "cs_login_csrf"
MAX_FORM_BYTES = 16 * 1024
_HERE = Path(__file__).parent

#: No inline script or style anywhere: every script and stylesheet is a file of ours.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class StaticAssets(StaticFiles):
    """Static files with cache headers: URLs carry the package version (?v=),
    so a day of caching is safe across upgrades."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = "public, max-age=86400"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


@dataclass(frozen=True)
class Ctx:
    """What a page knows about its request: the user, their tenant, their language."""

    request: Request
    session: Session
    tenant: TenantSettings
    locale: Locale

    @property
    def tenant_id(self) -> str:
        return self.session.user.tenant_id


Page = Callable[[Request, Ctx], Awaitable[Response]]


class Web:
    def __init__(self, settings: Settings, engine: AsyncEngine, version: str) -> None:
        self.settings = settings
        self.engine = engine
        self.version = version
        self._key: bytes | None = None
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, auto_reload=False,
        )

    async def key(self) -> bytes:
        if self._key is None:
            async with self.engine.begin() as conn:
                self._key = await signing_key(conn, self.settings.session_secret)
        return self._key

    def lang(self, request: Request) -> tuple[str, str | None]:
        """The page's language, and the new choice to remember (from ?lang=)."""
        chosen = request.query_params.get("lang")
        if chosen in LANGUAGES:
            return chosen, chosen
        return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")), None

    async def session(self, request: Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        session_id = unsign(await self.key(), cookie)
        if session_id is None:
            return None
        async with self.engine.begin() as conn:
            return await find_session(conn, session_id)

    def render(self, template: str, locale: Locale, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            _=locale.gettext, loc=locale, lang=locale.lang, v=self.version, **context)
        return HTMLResponse(html, status_code=status)

    def page(self, role: str, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint that needs a session with at least `role` (and CSRF on POST)."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            response = await inner(request)
            # The server's own time, for bench/console and the browser's network panel.
            response.headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - started):.1f}"
            return response

        async def inner(request: Request) -> Response:
            lang, remember = self.lang(request)
            session = await self.session(request)
            if session is None:
                target = "/ui/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return secure(RedirectResponse(target, status_code=303), request, remember)
            try:
                tenant = self.settings.tenant(session.user.tenant_id)
            except KeyError:  # the user's tenant is no longer configured: they see nothing
                tenant = None
            locale = Locale(lang, tenant.zone if tenant else self.settings.tenants[0].zone)
            base = {"user": session.user, "csrf": session.csrf_token, "path": request.url.path}
            if tenant is None:
                response: Response = self.render("error.html", locale, 403, message=locale.gettext("error.no_tenant"), **base)
            elif not session.user.allows(role):
                response = self.render("error.html", locale, 403, message=locale.gettext("error.forbidden"), **base)
            elif request.method == "POST" and not check_csrf(request, session.csrf_token, await form(request)):
                response = self.render("error.html", locale, 403, message=locale.gettext("error.csrf"), **base)
            else:
                response = await handler(request, Ctx(request, session, tenant, locale))
            return secure(response, request, remember)

        return endpoint

    def page_context(self, ctx: Ctx, **more: Any) -> dict[str, Any]:
        return {"user": ctx.session.user, "csrf": ctx.session.csrf_token, "path": ctx.request.url.path, **more}

    def show(self, ctx: Ctx, template: str, status: int = 200, **more: Any) -> HTMLResponse:
        return self.render(template, ctx.locale, status, **self.page_context(ctx, **more))

    def not_found(self, ctx: Ctx) -> HTMLResponse:
        return self.show(ctx, "error.html", 404, message=ctx.locale.gettext("error.not_found"))


async def form(request: Request) -> Mapping[str, str]:
    """The urlencoded form of a POST (read once, kept on the request); at most 16 KiB."""
    cached: dict[str, str] | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    fields: dict[str, str] = {}
    if len(body) <= MAX_FORM_BYTES:
        try:
            for k, v in parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100):
                if "\x00" not in k + v:
                    fields.setdefault(k, v)
        except (UnicodeDecodeError, ValueError):
            fields = {}
    request.state.form = fields
    return fields


def check_csrf(request: Request, expected: str, fields: Mapping[str, str]) -> bool:
    """The form's token matches and, when the browser names an origin, it is ours."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        return False
    given = fields.get("csrf", "")
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def secure(response: Response, request: Request, remember_lang: str | None = None) -> Response:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    if remember_lang:
        set_cookie(response, request, LANG_COOKIE, remember_lang, max_age=365 * 86400, http_only=False)
    return response


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int | None = None,
               http_only: bool = True) -> None:
    # Secure whenever the browser reached us over https (directly or, with
    # trusted proxy headers, through a proxy): the cookie never travels in clear.
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=http_only, samesite="lax",
                        secure=request.url.scheme == "https")


def login_csrf(request: Request) -> str:
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def safe_next(value: str | None) -> str:
    """Where to go after login: a path of the console, never another site."""
    if value and value.startswith("/ui/") and "//" not in value and "\\" not in value and "\n" not in value:
        return value
    return "/ui/"
