"""The console over real HTTP (no browser): login, sessions, CSRF, roles,
tenants, the recording audit, headers and languages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.console.site import PASSWORD, Site, running_site


@pytest.fixture
async def site(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(engine, tmp_path, calls=40) as s:
        yield s


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/ui/login")
    return await client.post("/ui/login", data={"username": username, "password": password, "csrf": _csrf(page.text)})


async def test_login_logout_and_csrf(site: Site, engine: AsyncEngine) -> None:
    async with httpx.AsyncClient(base_url=site.url) as c:
        root = await c.get("/")
        assert root.status_code == 303 and root.headers["location"] == "/ui/"
        anon = await c.get("/ui/calls?phone=1")
        assert anon.status_code == 303 and anon.headers["location"] == "/ui/login?next=/ui/calls%3Fphone%3D1"

        wrong_user = await login(c, "nobody")
        wrong_pass = await login(c, "lan", "not the password")
        assert wrong_user.status_code == wrong_pass.status_code == 401
        message = "Wrong user name or password."
        assert message in wrong_user.text and message in wrong_pass.text
        # Without the form's token, even the right password is refused.
        assert (await c.post("/ui/login", data={"username": "lan", "password": PASSWORD})).status_code == 403

        ok = await login(c, "LAN")
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/"
        cookie = ok.headers["set-cookie"]
        assert "cs_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
        assert "Secure" not in cookie  # plain http here; https sets it
        home = await c.get("/ui/")
        assert home.status_code == 200 and "lan" in home.text
        for name, value in {"x-frame-options": "DENY", "referrer-policy": "same-origin"}.items():
            assert home.headers[name] == value
        assert "script-src 'self'" in home.headers["content-security-policy"]
        assert "<script>" not in home.text and "onclick" not in home.text

        # A POST without the session's CSRF token does nothing.
        refused = await c.post("/ui/logout", data={})
        assert refused.status_code == 403 and (await c.get("/ui/")).status_code == 200
        foreign = await c.post("/ui/logout", data={"csrf": _csrf(home.text)}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        out = await c.post("/ui/logout", data={"csrf": _csrf(home.text)})
        assert out.status_code == 303
        assert (await c.get("/ui/")).status_code == 303
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore.console_sessions")) == 0


async def test_login_is_throttled_per_user(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.url) as c:
        for _ in range(5):
            assert (await login(c, "minh", "wrong password!")).status_code == 401
        throttled = await login(c, "minh")  # even the right password must wait
        assert throttled.status_code == 429 and "15" in throttled.text


async def test_tenants_roles_and_recording_audit(site: Site, engine: AsyncEngine) -> None:
    call = site.played
    async with httpx.AsyncClient(base_url=site.url) as reader, httpx.AsyncClient(base_url=site.url) as officer, \
            httpx.AsyncClient(base_url=site.url) as other:
        await login(reader, "minh")
        await login(officer, "lan")
        await login(other, "paul")

        page = await reader.get(f"/ui/calls/{call}")
        assert page.status_code == 200 and "<audio" not in page.text
        assert (await reader.get(f"/ui/recordings/{call}")).status_code == 403
        assert (await reader.get("/ui/audit")).status_code == 403

        page = await officer.get(f"/ui/calls/{call}")
        assert page.status_code == 200 and f'<audio id="player" controls preload="metadata" src="/ui/recordings/{call}"' in page.text
        part = await officer.get(f"/ui/recordings/{call}", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100 and part.headers["content-type"] == "audio/mpeg"
        download = await officer.get(f"/ui/recordings/{call}?download=1")
        assert download.status_code == 200 and download.headers["content-disposition"].startswith("attachment")

        # Tenant acme's user: tenant default's call, recording and figures do not exist for them.
        assert (await other.get(f"/ui/calls/{call}")).status_code == 404
        assert (await other.get(f"/ui/recordings/{call}")).status_code == 404
        assert site.other_tenant_call in (await other.get("/ui/calls")).text
        assert call not in (await other.get("/ui/calls")).text
        assert (await officer.get(f"/ui/calls/{site.other_tenant_call}")).status_code == 404

        # Nor do its queues, figures or alerts.
        for page in ("/ui/", "/ui/reports", "/ui/alerts"):
            mine, theirs = (await officer.get(page)).text, (await other.get(page)).text
            assert "Support" in mine and "Support" not in theirs, page

        audit = await officer.get(f"/ui/audit?call={call}&format=csv")
        assert audit.status_code == 200 and audit.headers["content-type"].startswith("text/csv")
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT tenant_id, user_name, status_code FROM callstore.recording_access ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [
        ("default", "minh", 403), ("default", "lan", 206), ("default", "lan", 200), ("acme", "paul", 404),
    ]
    assert audit.text.count("\n") == 1 + 3  # header + the three rows of tenant default


async def test_pages_in_both_languages(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.url) as c:
        await login(c, "root")
        en = await c.get("/ui/", headers={"Accept-Language": "fr, en;q=0.8"})
        assert 'lang="en"' in en.text and "Queues today" in en.text
        vi = await c.get("/ui/", headers={"Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5"})
        assert 'lang="vi"' in vi.text and "Hàng đợi hôm nay" in vi.text
        chosen = await c.get("/ui/reports?lang=vi")
        assert "lang=vi" in chosen.headers["set-cookie"] and 'lang="vi"' in chosen.text
        for path in ("/ui/", "/ui/wallboard/tiles", "/ui/reports", "/ui/reports?interval=hour", "/ui/calls",
                     "/ui/alerts", "/ui/audit", f"/ui/calls/{site.played}"):
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert 'lang="vi"' in r.text or path == "/ui/wallboard/tiles"
        for query in ("from=yesterday", "from=0001-01-01", "queue=99999999999999999999", "queue=x", "interval=year"):
            bad = await c.get(f"/ui/reports?{query}")
            assert bad.status_code == 400 and query.split("=")[0] in bad.text, query
        csv = await c.get("/ui/reports?interval=hour&format=csv")
        assert csv.status_code == 200 and csv.text.startswith("tenant_id,queue_id")
        assert (await c.get("/ui/calls?phone=abc")).status_code == 400
        assert (await c.get("/ui/calls?queue=99999999999999999999")).status_code == 400
        for unknown in ("/ui/nowhere", "/ui/calls/x/y/../../z/%3Cb%3E/extra-page-that-does-not-exist", "/ui/reports/x"):
            missing = await c.get(unknown)
            assert missing.status_code == 404 and 'lang="vi"' in missing.text, unknown
            assert missing.headers["content-type"].startswith("text/html") and "<b>" not in missing.text
        static = await c.get("/ui/static/console.js")
        assert static.status_code == 200 and "max-age" in static.headers["cache-control"]


async def test_admin_edits_rules_with_the_cli_checks(site: Site, engine: AsyncEngine) -> None:
    async with httpx.AsyncClient(base_url=site.url) as admin, httpx.AsyncClient(base_url=site.url) as reader:
        await login(admin, "root")
        await login(reader, "minh")
        page = await admin.get("/ui/alerts")
        token = _csrf(page.text)
        bad = await admin.post("/ui/alerts/rules", data={"csrf": token, "queue": "tenant", "clear_rate": "0.5"})
        assert bad.status_code == 400 and "clear_rate" in bad.text
        ok = await admin.post("/ui/alerts/rules", data={"csrf": token, "queue": "1001226", "min_offered": "12"})
        assert ok.status_code == 303
        denied = await reader.post("/ui/alerts/rules", data={"csrf": _csrf((await reader.get("/ui/alerts")).text),
                                                             "queue": "tenant", "min_offered": "1"})
        assert denied.status_code == 403
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT scope, queue_id, min_offered, clear_rate FROM callstore.alert_rules ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [("tenant", None, 10, 0.1), ("queue", 1001226, 12, None)]


async def test_forged_idle_and_disabled_sessions_end(site: Site, engine: AsyncEngine) -> None:
    from store.users import set_disabled

    async with httpx.AsyncClient(base_url=site.url) as c:
        await login(c, "minh")
        good = c.cookies["cs_session"]
        session_id, _, mac = good.partition(".")
        c.cookies.set("cs_session", f"{session_id}.{mac[::-1]}")
        assert (await c.get("/ui/")).status_code == 303  # altered signature
        c.cookies.set("cs_session", good)
        assert (await c.get("/ui/")).status_code == 200
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE callstore.console_sessions SET last_seen_at = now() - interval '11 hours'"))
        assert (await c.get("/ui/")).status_code == 200  # 11 idle hours: still in, and the clock restarts
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE callstore.console_sessions SET last_seen_at = now() - interval '12 hours 1 minute'"))
        assert (await c.get("/ui/")).status_code == 303  # past 12 idle hours: out

        c.cookies.clear()  # the cookie set by hand above would shadow the new one
        await login(c, "minh")
        assert (await c.get("/ui/")).status_code == 200
        async with engine.begin() as conn:
            await set_disabled(conn, "default", "minh")
        assert (await c.get("/ui/")).status_code == 303
        assert (await login(c, "minh")).status_code == 401
