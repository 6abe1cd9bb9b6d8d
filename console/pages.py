"""The console's pages: login, wallboard, reports, campaigns, calls, a call, its
recording, alerts and the access audit. Each handler parses, calls the query functions
that /api and the command line use, and renders; none has SQL of its own.

Pages that only read go through the read routing (the read replica while it is
healthy); login, sessions, playback and its audit, and the alert rules (a page
shown right after they were saved) use the primary.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from datetime import datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from console import views
from console.sessions import close_session, open_session, record_login, sign, throttled, unsign
from console.web import (
    LOGIN_CSRF_COOKIE, SESSION_COOKIE, Ctx, StaticAssets, Web, check_csrf, form, login_csrf, safe_next, secure,
    set_cookie,
)
from console.i18n import Locale
from receiver.byte_ranges import Unsatisfiable, parse_range
from receiver.params import BadParameter
from receiver.recordings_api import AudioResponse, RecordingsAPI
from reports.alerts.listing import callback_list, recent_alerts
from reports.alerts.rules import DEFAULT_RULE, FIELDS, load_rules, set_rule
from reports.campaign_report import parse_request as parse_campaign_request
from reports.campaign_report import read_campaign_report, read_campaigns
from reports.campaign_report import render as render_campaigns
from reports.queries import (InvalidParameter, QueueReportRequest, parse_request, read_queue_report, render,
                             resolve_queue)
from store.audit import AccessQuery, list_accesses
from store.calls_query import call_events, call_recording, find_calls, search_calls
from store.engine import is_unavailable
from store.recordings import Access, find_recordings, open_access
from store.replica import ReadRouting
from store.settings import Settings
from store.users import login_candidates, touch_login, verify_password

log = logging.getLogger("callstore.console")
STATIC = Path(__file__).parent / "static"


def _version() -> str:
    try:
        return version("callstore")
    except PackageNotFoundError:
        return "dev"


class Console:
    def __init__(self, settings: Settings, engine: AsyncEngine, audio: RecordingsAPI,
                 reads: ReadRouting | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.reads = reads or ReadRouting(engine)
        self.web = Web(settings, engine, _version())
        #: Playback shares the API's storage, streaming and audit completion.
        self.audio = audio

    def routes(self) -> list[BaseRoute]:
        p = self.web.page
        return [
            Route("/", _to_console, methods=["GET"]),
            Route("/ui", _to_console, methods=["GET"]),
            Route("/ui/login", self.login_form, methods=["GET"]),
            Route("/ui/login", self.login, methods=["POST"]),
            Route("/ui/logout", p("reader", self.logout), methods=["POST"]),
            Route("/ui/", p("reader", self.wallboard), methods=["GET"]),
            Route("/ui/wallboard/tiles", p("reader", self.tiles), methods=["GET"]),
            Route("/ui/reports", p("reader", self.reports), methods=["GET"]),
            Route("/ui/campaigns", p("reader", self.campaigns), methods=["GET"]),
            Route("/ui/calls", p("reader", self.calls), methods=["GET"]),
            Route("/ui/calls/{call_id:path}", p("reader", self.call), methods=["GET"]),
            # Reader is enough to reach the handler: a refusal is audited there.
            Route("/ui/recordings/{call_id:path}", p("reader", self.recording), methods=["GET", "HEAD"]),
            Route("/ui/alerts", p("reader", self.alerts), methods=["GET"]),
            Route("/ui/alerts/rules", p("admin", self.set_rules), methods=["POST"]),
            Route("/ui/audit", p("compliance", self.audit), methods=["GET"]),
            Mount("/ui/static", StaticAssets(directory=STATIC), name="console-static"),
            # Any other page under /ui: the console's own "not found" page, in the
            # user's language (after the login), not the API's JSON error.
            Route("/ui/{rest:path}", p("reader", self.unknown_page), methods=["GET", "HEAD", "POST"]),
        ]

    async def unknown_page(self, request: Request, ctx: Ctx) -> Response:
        return self.web.not_found(ctx)

    # --- login ---------------------------------------------------------------

    def _login_page(self, request: Request, status: int = 200, error: str | None = None,
                    username: str = "") -> Response:
        lang, remember = self.web.lang(request)
        locale = Locale(lang, self.settings.tenants[0].zone)
        token = login_csrf(request)
        response = self.web.render("login.html", locale, status, csrf=token, error=error, username=username,
                                   next=safe_next(request.query_params.get("next")), user=None, path="/ui/login")
        set_cookie(response, request, LOGIN_CSRF_COOKIE, token)
        return secure(response, request, remember)

    async def login_form(self, request: Request) -> Response:
        if await self.web.session(request) is not None:
            return secure(RedirectResponse(safe_next(request.query_params.get("next")), 303), request)
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        fields = await form(request)
        lang, _ = self.web.lang(request)
        t = Locale(lang, self.settings.tenants[0].zone).gettext
        if not check_csrf(request, request.cookies.get(LOGIN_CSRF_COOKIE, ""), fields):
            return self._login_page(request, 403, t("login.expired"))
        username, password = fields.get("username", "")[:200], fields.get("password", "")[:1024]
        addr = request.client.host if request.client else None
        async with self.engine.connect() as conn:
            if await throttled(conn, username, addr):
                return self._login_page(request, 429, t("login.throttled"), username)
            candidates = await login_candidates(conn, username) if username and password else []
        # Hashing takes ~0.1 s of a core: no database connection is held meanwhile.
        matches = [u for u, h in candidates if await verify_password(password, h)]
        if not candidates:
            await verify_password(password, None)
        ok = len(matches) == 1
        async with self.engine.begin() as conn:
            await record_login(conn, username, addr, ok)
            if ok:
                session_id = await open_session(conn, matches[0].id)
                await touch_login(conn, matches[0].id)
        if len(matches) > 1:  # the same name and password in two tenants: say which
            return self._login_page(request, 400, t("login.ambiguous"), username)
        if not ok:
            return self._login_page(request, 401, t("login.wrong"), username)
        response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
        set_cookie(response, request, SESSION_COOKIE, sign(await self.web.key(), session_id))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return secure(response, request)

    async def logout(self, request: Request, ctx: Ctx) -> Response:
        session_id = unsign(await self.web.key(), request.cookies.get(SESSION_COOKIE, ""))
        if session_id is not None:
            async with self.engine.begin() as conn:
                await close_session(conn, session_id)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- wallboard -----------------------------------------------------------

    async def _today(self, ctx: Ctx) -> dict[str, Any]:
        zone = ctx.tenant.zone
        start = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # the next local midnight, DST or not
        req = QueueReportRequest(ctx.tenant_id, zone, start, end, "day", None, "json")
        async def read(conn: AsyncConnection) -> tuple[list[Any], list[dict[str, Any]]]:
            return await read_queue_report(conn, req, None), await recent_alerts(conn, ctx.tenant_id, 20)

        rows, recent = await self.reads.run(read)
        alerts = [a for a in recent if a["state"] == "firing"]
        firing = {a["queue_id"] for a in alerts}
        return {"tiles": views.tiles(rows, ctx.locale, firing), "alerts": alerts, "day": start}

    async def wallboard(self, request: Request, ctx: Ctx) -> Response:
        return self.web.show(ctx, "wallboard.html", **await self._today(ctx))

    async def tiles(self, request: Request, ctx: Ctx) -> Response:
        return self.web.show(ctx, "tiles.html", **await self._today(ctx))

    # --- reports -------------------------------------------------------------

    async def reports(self, request: Request, ctx: Ctx) -> Response:
        qp = request.query_params
        today = datetime.now(ctx.tenant.zone).date()
        params = {
            "from": qp.get("from") or (today - timedelta(days=6)).isoformat(),
            "to": qp.get("to") or (today + timedelta(days=1)).isoformat(),
            "interval": qp.get("interval") or "day",
            "queue": qp.get("queue") or None,
            "tenant": ctx.tenant_id,
        }
        form_values = {**params, "queue": params["queue"] or ""}
        try:
            views.check_report_params(params)
            req = parse_request(params, self.settings, formats=("json",))
        except (InvalidParameter, BadParameter) as exc:
            return self.web.show(ctx, "reports.html", 400, error=str(exc), form=form_values, **views.empty_report())
        async def read(conn: AsyncConnection) -> tuple[Any, list[Any]]:
            queue = await resolve_queue(conn, req.tenant_id, req.queue)
            return queue, await read_queue_report(conn, req, queue)

        try:
            queue, rows = await self.reads.run(read)
        except InvalidParameter as exc:
            return self.web.show(ctx, "reports.html", 400, error=str(exc), form=form_values, **views.empty_report())
        if qp.get("format") == "csv":
            media, body = render(dataclasses.replace(req, format="csv"), queue, rows)
            return Response(body, media_type=media, headers={
                "Content-Disposition": f'attachment; filename="queues-{req.start.date()}-{req.interval}.csv"'})
        return self.web.show(ctx, "reports.html", error=None, form=form_values, **views.report(rows, req, ctx.locale))

    # --- campaigns -----------------------------------------------------------

    async def campaigns(self, request: Request, ctx: Ctx) -> Response:
        qp = request.query_params
        today = datetime.now(ctx.tenant.zone).date()
        params = {
            "from": qp.get("from") or (today - timedelta(days=6)).isoformat(),
            "to": qp.get("to") or (today + timedelta(days=1)).isoformat(),
            "campaign": qp.get("campaign") or None,
            "tenant": ctx.tenant_id,
        }
        form_values = {**params, "campaign": params["campaign"] or ""}
        known = await self.reads.run(lambda conn: read_campaigns(conn, ctx.tenant_id))
        try:
            views.check_report_params(params)
            req = parse_campaign_request(params, self.settings, formats=("json",))
        except (InvalidParameter, BadParameter) as exc:
            return self.web.show(ctx, "campaigns.html", 400, error=str(exc), form=form_values,
                                 **views.campaigns_page(known, [], ctx.locale))
        # Another tenant's campaign (or one never followed) does not exist here.
        if req.campaign is not None and all(c["campaign_id"] != req.campaign for c in known):
            return self.web.not_found(ctx)
        rows = await self.reads.run(lambda conn: read_campaign_report(conn, req))
        if qp.get("format") == "csv":
            media, body = render_campaigns(dataclasses.replace(req, format="csv"), rows)
            return Response(body, media_type=media, headers={
                "Content-Disposition": f'attachment; filename="campaigns-{req.start}-{req.end}.csv"'})
        return self.web.show(ctx, "campaigns.html", error=None, form=form_values,
                             **views.campaigns_page(known, rows, ctx.locale))

    # --- calls ---------------------------------------------------------------

    async def calls(self, request: Request, ctx: Ctx) -> Response:
        try:
            search = views.parse_call_search(request.query_params, ctx.tenant)
        except BadParameter as exc:
            return self.web.show(ctx, "calls.html", 400, error=str(exc), calls=[], next_url=None,
                                 form=dict(request.query_params))
        calls, cursor = await self.reads.run(lambda conn: search_calls(conn, search))
        next_url = None
        if cursor is not None:
            next_url = views.with_param(request, "cursor", cursor.encode())
        return self.web.show(ctx, "calls.html", error=None, calls=calls, next_url=next_url,
                             form=dict(request.query_params))

    async def call(self, request: Request, ctx: Ctx) -> Response:
        call_id = request.path_params["call_id"]
        if "\x00" in call_id or len(call_id) > 256:
            return self.web.not_found(ctx)
        full = ctx.session.user.allows("compliance")

        async def read(conn: AsyncConnection) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                       dict[str, Any] | None, list[dict[str, Any]]]:
            found = await find_calls(conn, call_id, ctx.tenant_id)
            if not found:
                return [], [], None, []
            accesses = (await list_accesses(conn, AccessQuery(ctx.tenant_id, call_id=call_id, limit=50)))[0] \
                if full else []
            return (found, await call_events(conn, ctx.tenant_id, call_id),
                    await call_recording(conn, ctx.tenant_id, call_id), accesses)

        found, events, recording, accesses = await self.reads.run(read)
        if not found:
            return self.web.not_found(ctx)
        return self.web.show(ctx, "call.html", call=found[0], timeline=views.timeline(events, full),
                             recording=recording, accesses=accesses, can_play=full)

    async def recording(self, request: Request, ctx: Ctx) -> Response:
        """The audio under the session cookie, with Range; every try audited with the user's name."""
        user = ctx.session.user
        call_id = request.path_params["call_id"]
        if "\x00" in call_id or len(call_id) > 256:
            return self.web.not_found(ctx)
        async with self.engine.connect() as conn:
            found = await find_recordings(conn, call_id, ctx.tenant_id)
        rec = found[0] if found else None
        status, byte_range, size = 200, None, 0
        if not user.allows("compliance"):
            status = 403
        elif rec is None or rec.status != "stored" or rec.storage_key is None:
            status = 404
        else:
            stored_size = await self.audio.store.size(rec.storage_key)
            if stored_size is None or stored_size != rec.size:
                log.error("recording of call %s: file %s (run callstore recordings verify)", call_id,
                          "missing" if stored_size is None else "has the wrong size")
                status = 500
            else:
                size = stored_size
                if_range = request.headers.get("if-range")
                if if_range is None or if_range.strip() == f'"{rec.sha256}"':
                    try:
                        byte_range = parse_range(request.headers.get("range"), size)
                    except Unsatisfiable:
                        status = 416
                if status == 200 and byte_range is not None:
                    status = 206
        serving = status in (200, 206)
        access = Access(
            token_id=None, token_name=None, tenant_id=ctx.tenant_id, call_id=call_id,
            client_addr=request.client.host if request.client else None, method=request.method,
            range_header=(request.headers.get("range") or None) and request.headers["range"][:200],
            status_code=status,
            first_byte=(byte_range.start if byte_range else 0) if serving else None,
            last_byte=(byte_range.end if byte_range else size - 1) if serving else None,
            bytes_planned=(byte_range.length if byte_range else size) if serving and request.method != "HEAD" else 0,
            sha256=rec.sha256 if rec else None, user_name=user.username,
        )
        try:
            async with self.engine.begin() as conn:
                access_id = await open_access(conn, access)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            return self.web.show(ctx, "error.html", 503, message=ctx.locale.gettext("error.audit_unavailable"))
        if status == 403:
            return self.web.show(ctx, "error.html", 403, message=ctx.locale.gettext("error.forbidden"))
        if status == 404:
            return self.web.not_found(ctx)
        if status == 500:
            return self.web.show(ctx, "error.html", 500, message=ctx.locale.gettext("error.integrity"))
        if status == 416:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})
        assert rec is not None
        response = AudioResponse(self.audio, rec, size, byte_range, access_id, head=request.method == "HEAD")
        if request.query_params.get("download"):
            response.headers["Content-Disposition"] = response.headers["Content-Disposition"].replace(
                "inline", "attachment", 1)
        return response

    # --- alerts --------------------------------------------------------------

    async def alerts(self, request: Request, ctx: Ctx, status: int = 200, error: str | None = None) -> Response:
        now = datetime.now(timezone.utc)
        async def read(conn: AsyncConnection) -> tuple[list[dict[str, Any]], dict[Any, Any]]:
            alerts = await recent_alerts(conn, ctx.tenant_id, 50)
            return alerts, {a["alert_id"]: await callback_list(conn, ctx.tenant_id, a, now) for a in alerts[:10]}

        alerts, callbacks = await self.reads.run(read)
        # The rules from the primary: this page is shown right after they are saved.
        async with self.engine.connect() as conn:
            book = await load_rules(conn, ctx.tenant_id)
        return self.web.show(ctx, "alerts.html", status, alerts=alerts, callbacks=callbacks, book=book,
                             fields=FIELDS, defaults=DEFAULT_RULE, error=error)

    async def set_rules(self, request: Request, ctx: Ctx) -> Response:
        fields = await form(request)
        try:
            queue, values = views.parse_rule_form(fields)
        except ValueError as exc:
            return await self.alerts(request, ctx, 400, str(exc))
        async with self.engine.connect() as conn:
            tx = await conn.begin()
            try:
                await set_rule(conn, ctx.tenant_id, queue, values)
            except ValueError as exc:  # the CLI's validation: nothing is changed
                await tx.rollback()
                return await self.alerts(request, ctx, 400, str(exc))
            await tx.commit()
        return RedirectResponse("/ui/alerts", status_code=303)

    # --- audit ---------------------------------------------------------------

    async def audit(self, request: Request, ctx: Ctx) -> Response:
        try:
            f = views.parse_audit_filter(request.query_params, ctx.tenant)
        except BadParameter as exc:
            return self.web.show(ctx, "audit.html", 400, error=str(exc), rows=[], form=dict(request.query_params))
        rows, _ = await self.reads.run(lambda conn: list_accesses(conn, f))
        if request.query_params.get("format") == "csv":
            out = io.StringIO()
            w = csv.writer(out, lineterminator="\n")
            columns = list(rows[0]) if rows else ["id", "accessed_at", "user_name", "token_name", "call_id"]
            w.writerow(columns)
            for r in rows:
                w.writerow([views.csv_cell(r[c]) for c in columns])
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="recording-access.csv"'})
        return self.web.show(ctx, "audit.html", error=None, rows=rows, form=dict(request.query_params))


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=303)
