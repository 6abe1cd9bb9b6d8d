"""The console in a real browser: Debian's Chromium driven by Playwright.

Every page must load without a console error, a failed request or an
unexpected HTTP error, and axe-core must find no serious or critical
accessibility violation. With CONSOLE_SCREENSHOTS=DIR set, every page is
also saved as DIR/<page>-<lang>.png (that is how docs/console/ is made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from console.i18n import Locale
from store.phone import canonical_phone
from tests.console.site import ICT, PASSWORD, Site, running_site

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")

if shutil.which(CHROMIUM) is None and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed (CI installs it with apt-get)", allow_module_level=True)


class Watch:
    """Console errors, failed requests and HTTP errors of a page, except those a test expects."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        self.expected: set[str] = set()
        page.on("console", lambda m: m.type == "error" and (m.location or {}).get("url", "").split("?")[0]
                not in self.expected and self.problems.append(f"console: {m.text} ({(m.location or {}).get('url')})"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self._failed(r))
        page.on("response", lambda r: r.status >= 400 and r.url.split("?")[0] not in self.expected
                and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def _failed(self, request: Any) -> None:
        # A media element may cancel its own range request once it has enough.
        if request.resource_type == "media" and "ERR_ABORTED" in (request.failure or ""):
            return
        self.problems.append(f"request failed: {request.url} {request.failure}")


@pytest.fixture
async def site(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(engine, tmp_path, calls=80, campaigns=2) as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield b
        finally:
            await b.close()


async def login(browser: Any, site: Site, user: str, lang: str = "en", **options: Any) -> tuple[Any, Any, Watch]:
    context = await browser.new_context(base_url=site.url, locale=lang, viewport={"width": 1366, "height": 768},
                                        **options)
    page = await context.new_page()
    watch = Watch(page)
    await page.goto("/ui/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/ui/")
    return context, page, watch


async def shot(page: Any, name: str, lang: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}-{lang}.png"), full_page=True)


async def test_wallboard_search_play_and_languages(site: Site, browser: Any, engine: AsyncEngine) -> None:
    context, page, watch = await login(browser, site, "lan")

    # The wallboard shows what the daily view says, formatted as the page's language does.
    loc = Locale("en", ICT)
    today = datetime.now(ICT).replace(hour=0, minute=0, second=0, microsecond=0)
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT queue_id, offered, answered, abandoned, in_progress, service_level, abandon_rate, asa_seconds, "
            "max_wait_seconds FROM analytics.queue_stats_daily WHERE tenant_id = 'default' AND bucket_start = :d"),
            {"d": today})).all()
    assert rows, "the demo data has calls today"
    for r in rows:
        tile = page.locator(f'section.tile[data-queue="{"unassigned" if r.queue_id is None else r.queue_id}"]')
        expected = {"offered": loc.number(r.offered), "answered": loc.number(r.answered),
                    "abandoned": loc.number(r.abandoned), "in_progress": loc.number(r.in_progress),
                    "service_level": loc.percent(r.service_level), "abandon_rate": loc.percent(r.abandon_rate),
                    "asa_seconds": loc.seconds(r.asa_seconds), "max_wait_seconds": loc.seconds(r.max_wait_seconds)}
        for metric, value in expected.items():
            assert await tile.locator(f'dd[data-metric="{metric}"]').inner_text() == value, (r.queue_id, metric)
    await shot(page, "wallboard", "en")

    # It refreshes itself (fetch, not a reload): a new call shows up within two periods.
    await page.evaluate("window.notReloaded = true")
    first = rows[0]
    tile = page.locator(f'section.tile[data-queue="{"unassigned" if first.queue_id is None else first.queue_id}"]')
    async with engine.connect() as conn:
        same_queue = await conn.scalar(text(
            "SELECT call_id FROM analytics.calls WHERE tenant_id = 'default' AND direction = 'inbound' "
            "AND queue_id IS NOT DISTINCT FROM :q LIMIT 1"), {"q": first.queue_id})
    record = next(r for r in site.records if r["call_id"] == same_queue)
    from store.ingest import Delivery, ingest
    from store.settings import TenantSettings

    async with engine.begin() as conn:
        new = {**record, "call_id": "live-call-1", "starttime": datetime.now(ICT).strftime("%Y-%m-%d %H:%M:%S")}
        await ingest(conn, [Delivery("default", "live-call-1", "history", new, datetime.now(ICT))],
                     {"default": TenantSettings("default")})
        from reports.rollups import refresh_rollups

        await refresh_rollups(conn)
    await tile.locator('dd[data-metric="offered"]').filter(has_text=loc.number(first.offered + 1)).wait_for(timeout=12000)
    assert await page.evaluate("window.notReloaded") is True

    # Search a call by phone number, typed three ways.
    target = next(r for r in site.records if r["caller_number"] and r["direction"].lower() == "inbound")
    e164 = canonical_phone(target["caller_number"])
    assert e164 is not None
    for typed in ("0" + e164[3:], e164, e164[1:]):
        await page.goto("/ui/calls?phone=" + typed.replace("+", "%2B"))
        await page.locator(f'#calls a[href="/ui/calls/{target["call_id"]}"]').wait_for()
    await shot(page, "calls", "en")

    # Play the recording: the audio element gets enough data; the audit names the user.
    await page.goto(f"/ui/calls/{site.played}")
    await page.evaluate("document.getElementById('player').play().catch(() => {})")
    await page.wait_for_function("document.getElementById('player').readyState >= 4", timeout=15000)
    await shot(page, "call", "en")
    async with engine.connect() as conn:
        names = (await conn.execute(text(
            "SELECT DISTINCT user_name FROM callstore.recording_access WHERE call_id = :c"), {"c": site.played})).scalars().all()
    assert names == ["lan"]

    # Switch to Vietnamese: text and number formats follow.
    await page.goto("/ui/")
    await page.click("a[hreflang=vi]")
    await page.wait_for_selector("html[lang=vi]")
    assert "Hàng đợi hôm nay" in await page.inner_text("h1")
    vi = Locale("vi", ICT)
    offered = await page.locator(f'section.tile[data-queue="{"unassigned" if first.queue_id is None else first.queue_id}"] '
                                 'dd[data-metric="service_level"]').inner_text()
    assert offered == "–" or offered.endswith(" %") and "." not in offered, offered
    assert vi.percent(0.853) == "85,3 %" and vi.number(1234) == "1.234"
    await page.goto("/ui/")
    assert await page.locator("html").get_attribute("lang") == "vi"  # remembered
    assert watch.problems == [], watch.problems
    await context.close()


async def test_reader_and_other_tenant_are_refused(site: Site, browser: Any) -> None:
    context, page, watch = await login(browser, site, "minh")
    await page.goto(f"/ui/calls/{site.played}")
    assert await page.locator("audio").count() == 0
    watch.expected.add(f"{site.url}/ui/recordings/{site.played}")
    response = await page.goto(f"/ui/recordings/{site.played}")
    assert response is not None and response.status == 403
    assert watch.problems == [], watch.problems
    await context.close()

    context, page, watch = await login(browser, site, "paul")
    watch.expected.add(f"{site.url}/ui/calls/{site.played}")
    response = await page.goto(f"/ui/calls/{site.played}")
    assert response is not None and response.status == 404
    assert watch.problems == [], watch.problems
    await context.close()


PAGES = {"wallboard": "/ui/", "reports": "/ui/reports?interval=hour", "campaigns": "/ui/campaigns", "calls": "/ui/calls",
         "alerts": "/ui/alerts", "audit": "/ui/audit"}


async def test_every_page_is_accessible_and_clean(site: Site, browser: Any) -> None:
    for lang in ("en", "vi"):
        # axe is injected as a script: only this context bypasses the CSP to do it.
        context, page, watch = await login(browser, site, "root", lang, bypass_csp=True)
        pages = {**PAGES, "call": f"/ui/calls/{site.played}"}
        for name, path in pages.items():
            await page.goto(path + ("&" if "?" in path else "?") + f"lang={lang}")
            await page.wait_for_load_state("networkidle")
            if name == "campaigns":  # both charts drawn from the page's data
                await page.wait_for_function("['attempts-chart', 'penetration-chart'].every("
                                             "(id) => window.Chart && window.Chart.getChart(id))")
            await page.add_script_tag(path=str(AXE))
            result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
                   if v["impact"] in ("serious", "critical")]
            assert bad == [], (name, lang, bad)
            await shot(page, name, lang)
        assert watch.problems == [], watch.problems

        # On a phone every page fits the screen's width (wide tables scroll inside their box).
        await page.set_viewport_size({"width": 390, "height": 844})
        for name, path in pages.items():
            await page.goto(path)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (name, lang, width)
        assert watch.problems == [], watch.problems
        await context.close()

        # The login page.
        context = await browser.new_context(base_url=site.url, locale=lang, bypass_csp=True,
                                            viewport={"width": 390, "height": 844})
        page = await context.new_page()
        watch = Watch(page)
        await page.goto(f"/ui/login?lang={lang}")
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
        await shot(page, "login", lang)
        assert watch.problems == [], watch.problems
        await context.close()


async def test_csp_blocks_inline_script(site: Site, browser: Any) -> None:
    context, page, watch = await login(browser, site, "minh")
    blocked = await page.evaluate("""() => { window.ran = false; const s = document.createElement('script');
        s.textContent = 'window.ran = true'; document.head.appendChild(s); return window.ran; }""")
    assert blocked is False
    assert any("Content Security Policy" in p for p in watch.problems)
    await context.close()
