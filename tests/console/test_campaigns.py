"""The campaigns page over real HTTP: its figures are the views', its CSV is its
table, it is scoped to the user's tenant, and bad parameters are a 400."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from console.i18n import Locale
from store.phone import canonical_phone
from tests.console.site import ICT, OTHER_TENANT_CAMPAIGN, Site, running_site
from tests.console.test_console import login


@pytest.fixture
async def site(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(engine, tmp_path, calls=20, campaigns=2) as s:
        yield s


def table(page: str, table_id: str) -> list[list[str]]:
    """The body cells of one table, as text."""
    found = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert found, page[:500]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        rows.append([re.sub(r"\s+", " ", c) for c in cells])
    return rows


def shown(row: dict[str, str], loc: Locale) -> list[str]:
    """A CSV row as the page's table must show it, in the page's language."""

    def n(col: str) -> float | None:
        return None if row[col] == "" else float(row[col])

    name = f"{row['campaign_name']} ({row['campaign_id']})" if row["campaign_name"] else row["campaign_id"]
    day = date.fromisoformat(row["local_date"])
    return [
        name, day.strftime("%d/%m/%Y" if loc.lang == "vi" else "%Y-%m-%d"),
        loc.number(n("contacts_total")), loc.number(n("attempts")), loc.number(n("contacts_dialled")),
        loc.number(n("connected_contacts")), loc.percent(n("connect_rate")), loc.number(n("attempts_per_connected"), 2),
        loc.seconds(n("talk_seconds")), loc.seconds(n("aht_seconds")), loc.percent(n("penetration")),
        loc.number(n("contacts_processed")),
    ]


async def test_figures_csv_languages_and_no_phone_numbers(site: Site, engine: AsyncEngine) -> None:
    async with httpx.AsyncClient(base_url=site.url) as c:
        await login(c, "minh")  # a reader is enough
        page = await c.get("/ui/campaigns?lang=en")
        assert page.status_code == 200 and 'aria-current="page">Campaigns' in page.text
        assert "<script>" not in page.text and 'id="campaign-data"' in page.text

        # Followed campaigns: the figures of analytics.campaigns.
        async with engine.connect() as conn:
            view = (await conn.execute(text(
                "SELECT campaign_id, name, contacts_total, contacts_pending, contacts_in_call, contacts_processed, "
                "contacts_removed, last_synced_at FROM analytics.campaigns WHERE tenant_id = 'default' "
                "ORDER BY campaign_id"))).all()
            days = (await conn.execute(text(
                "SELECT count(*), sum(attempts) FROM analytics.campaign_daily WHERE tenant_id = 'default' "
                "AND local_date > :d"), {"d": datetime.now(ICT).date() - timedelta(days=7)})).one()
        en = Locale("en", ICT)
        assert [r[:6] for r in table(page.text, "campaigns")] == [
            [f"{v.name} ({v.campaign_id})", *(en.number(x) for x in v[2:7])] for v in view]
        assert [r[6:] for r in table(page.text, "campaigns")] == [[en.when(v.last_synced_at), "–"] for v in view]
        assert len(view) == 2 and days[0] > 2 and days[1] > 0, "the demo data dials both campaigns on several days"

        # The CSV is exactly the table: same rows, same order, the same figures.
        for lang in ("en", "vi"):
            loc = Locale(lang, ICT)
            page = await c.get(f"/ui/campaigns?lang={lang}")
            assert f'lang="{lang}"' in page.text
            download = await c.get("/ui/campaigns?format=csv")
            assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
            assert download.headers["content-disposition"].startswith("attachment")
            rows = list(csv.DictReader(io.StringIO(download.text)))
            assert len(rows) == days[0] and sum(int(r["attempts"]) for r in rows) == days[1]
            assert {r["tenant_id"] for r in rows} == {"default"}
            assert table(page.text, "campaign-days") == [shown(r, loc) for r in rows]
        assert any(cell.endswith(" %") and "," in cell for row in table(page.text, "campaign-days") for cell in row)

        # One campaign, a range of days: the same filter for the page and its CSV.
        first = min(rows, key=lambda r: r["local_date"])["local_date"]
        end = (date.fromisoformat(first) + timedelta(days=2)).isoformat()
        query = f"from={first}&to={end}&campaign=1043"
        page = await c.get(f"/ui/campaigns?{query}&lang=en")
        narrow = list(csv.DictReader(io.StringIO((await c.get(f"/ui/campaigns?{query}&format=csv")).text)))
        assert narrow and {r["campaign_id"] for r in narrow} == {"1043"}
        assert all(first <= r["local_date"] < end for r in narrow)
        assert table(page.text, "campaign-days") == [shown(r, en) for r in narrow]

        # No contact's phone number, in any form, on the page or in its CSV.
        everything = page.text + (await c.get("/ui/campaigns?lang=en")).text + download.text
        for phone in (p for phones in site.campaign_phones.values() for p in phones):
            e164 = canonical_phone(phone)
            assert e164 is not None
            for form in (phone, e164, e164[1:], phone[-7:]):
                assert form not in everything, form


async def test_tenants_and_roles(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.url) as anon:
        r = await anon.get("/ui/campaigns?campaign=1042")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=/ui/campaigns")
    for user in ("minh", "lan", "root"):
        async with httpx.AsyncClient(base_url=site.url) as c:
            await login(c, user)
            assert (await c.get("/ui/campaigns")).status_code == 200, user
            # Another tenant's campaign answers as absent, in the page and in its CSV.
            for path in (f"/ui/campaigns?campaign={OTHER_TENANT_CAMPAIGN}",
                         f"/ui/campaigns?campaign={OTHER_TENANT_CAMPAIGN}&format=csv"):
                r = await c.get(path)
                assert r.status_code == 404 and "Acme" not in r.text, (user, path)
    async with httpx.AsyncClient(base_url=site.url) as other:
        await login(other, "paul")
        page = await other.get("/ui/campaigns?lang=en")
        assert page.status_code == 200 and "Acme outbound" in page.text and "Chiến dịch" not in page.text
        assert table(page.text, "campaign-days") == [["No campaign activity in this range."]]
        for campaign in (1042, 1043, 999):
            assert (await other.get(f"/ui/campaigns?campaign={campaign}")).status_code == 404
        csv_text = (await other.get("/ui/campaigns?format=csv")).text
        assert csv_text.count("\n") == 1 and csv_text.startswith("tenant_id,campaign_id")


BAD = [
    ("from=yesterday", "from"), ("from=0001-01-01", "from"), ("to=2026-13-01", "to"),
    ("from=2026-12-05&to=2026-12-01", "to"), ("from=2026-12-01%00", "from"), ("campaign=x", "campaign"),
    ("campaign=%C2%B2", "campaign"), ("campaign=99999999999999999999", "campaign"), ("campaign=-3", "campaign"),
    ("campaign=" + "9" * 100, "campaign"), ("from=2000-01-01&to=2026-01-01", "to"),
]


async def test_bad_parameters_are_the_pages_400(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.url) as c:
        await login(c, "minh")
        for query, param in BAD:
            for fmt in ("", "&format=csv"):
                r = await c.get(f"/ui/campaigns?{query}{fmt}&lang=en")
                assert r.status_code == 400, (query, r.text[:300])
                assert r.headers["content-type"].startswith("text/html")
                message = re.search(r'<p class="error" role="alert">(.*?)</p>', r.text, re.S)
                assert message and html.unescape(message.group(1)).startswith(f"{param}:"), (query, r.text[-600:])
