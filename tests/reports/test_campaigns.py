"""Campaign figures against the fake's own truth.

The fake runs two campaigns over four days: its outbound calls dial the
contacts (several attempts for some, none for others) and move their
`processStatus`. We sync the campaigns twice, backfill the fake's calls, and
compare every figure of `analytics.campaign_daily` and
`analytics.campaign_contacts` with a computation from the fake's contacts and
calls (never from our tables).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.campaigns import rebuild_campaigns, refresh_campaigns
from store.ingest import Delivery, ingest
from store.tenants import sync_tenants
from sync.backfill import Options, backfill
from sync.campaigns import add_campaign, ambiguous_attempts, sync_tenant_campaigns
from sync.client import AlohubClient, new_http_client
from sync.fake import FakeCall, generate_calls, make_state, running_fake
from sync.fake.campaigns import dial, generate_campaigns
from sync.sources import SearchCallV2, Window
from tests.sync.alohub import API_KEY, tenant_for

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE = datetime(2024, 3, 4, tzinfo=ZONE)
UNTIL = SINCE + timedelta(days=4)
FIRST_SYNC = SINCE + timedelta(days=1, hours=3)
SECOND_SYNC = UNTIL + timedelta(hours=2)
PHONES = [f"0977{n:06d}" for n in range(60)]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


def when(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=ZONE)


@dataclass
class Attempt:
    campaign_id: int
    contact_id: int
    started: datetime
    answered: bool
    talk: int | None


def truth_attempts(calls: list[FakeCall]) -> list[Attempt]:
    out = []
    for c in calls:
        if "-C" not in c.call_id:
            continue
        _, campaign, contact = c.call_id.rsplit("-", 2)
        answered = c.answertime != "" or c.call_status == "answered"
        talk = (int((when(c.endtime) - when(c.answertime)).total_seconds())
                if c.answertime and c.endtime else None)
        out.append(Attempt(int(campaign[1:]), int(contact), when(c.starttime), answered, talk))
    return out


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)


async def test_campaign_figures_match_the_fakes_truth(engine: AsyncEngine, http: httpx.AsyncClient) -> None:
    rng = random.Random(11)
    campaigns = generate_campaigns(rng, PHONES, campaigns=2, lists_per_campaign=2)
    dialled = dial(campaigns, rng, SINCE, UNTIL, "Asia/Ho_Chi_Minh")
    others = generate_calls(150, seed=5, start=SINCE, end=UNTIL)
    state = make_state(others + dialled, api_key=API_KEY)
    state.campaigns = campaigns
    final_status = {c.contact_id: (c.process_status, c.call_status)
                    for camp in campaigns.campaigns.values() for c in camp.contacts()}
    attempts = truth_attempts(dialled)
    assert attempts and any(s == 0 for s, _ in final_status.values())  # some contacts never dialled

    with running_fake(state) as url:
        tenant = tenant_for(url)
        async with engine.begin() as conn:
            await sync_tenants(conn, [tenant])
            for cid in campaigns.campaigns:
                await add_campaign(conn, tenant.tenant_id, cid, None)
        client = AlohubClient(http, tenant)
        # The first sync sees every contact pending; by the second Alohub has moved them on.
        for camp in campaigns.campaigns.values():
            for c in camp.contacts():
                c.process_status, c.call_status = 0, None
        assert not (await sync_tenant_campaigns(engine, client, now=FIRST_SYNC)).failed
        for camp in campaigns.campaigns.values():
            for c in camp.contacts():
                c.process_status, c.call_status = final_status[c.contact_id]
        # One pending contact is deleted in Alohub (only pending ones can be).
        gone = next(c for c in campaigns.campaigns[1043].contacts() if c.process_status == 0)
        deleted = await http.delete(f"{url}/v1/campaigns/1043/contacts/{gone.contact_id}",
                                    headers={"X-Api-Key": API_KEY})
        assert deleted.status_code == 200
        assert not (await sync_tenant_campaigns(engine, client, now=SECOND_SYNC)).failed
        run = await backfill(engine, tenant, SearchCallV2(client), Window(SINCE, UNTIL),
                             options=Options(limit=100, concurrency=4, batch_size=200))
        assert run.status == "ok"
    async with engine.begin() as conn:
        await refresh_campaigns(conn)

    await check_contacts(engine, campaigns, final_status, attempts, gone.contact_id)
    await check_daily(engine, campaigns, final_status, attempts, gone.contact_id)

    # A rebuild from scratch gives the same figures.
    async with engine.connect() as conn:
        before = (await conn.execute(text("SELECT * FROM analytics.campaign_daily ORDER BY 1, 2, 3"))).all()
    async with engine.begin() as conn:
        await rebuild_campaigns(conn)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT * FROM analytics.campaign_daily ORDER BY 1, 2, 3"))).all() == before


async def check_contacts(engine: AsyncEngine, campaigns: Any, final_status: dict[int, tuple[int, str | None]],
                         attempts: list[Attempt], gone: int) -> None:
    by_contact: dict[int, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_contact[a.contact_id].append(a)
    async with engine.connect() as conn:
        rows = {r.contact_id: r for r in await conn.execute(text("SELECT * FROM analytics.campaign_contacts"))}
    contacts = {c.contact_id: (camp.campaign_id, c) for camp in campaigns.campaigns.values() for c in camp.contacts()}
    assert set(rows) == set(contacts) | {gone}
    assert rows[gone].removed_at is not None and rows[gone].attempts == 0
    for contact_id, (campaign_id, c) in contacts.items():
        row, mine = rows[contact_id], by_contact[contact_id]
        assert (row.campaign_id, row.process_status, row.call_status) == (campaign_id, *final_status[contact_id])
        assert row.phone_number == "*********" + c.phone_number[-3:]  # masked by default: last three digits
        assert row.attempts == len(mine)
        assert row.first_attempt_at == (min(a.started for a in mine) if mine else None)
        assert row.last_attempt_at == (max(a.started for a in mine) if mine else None)
        assert row.connected == any(a.answered for a in mine)
        assert row.talk_seconds == sum(a.talk or 0 for a in mine if a.answered)
        assert row.removed_at is None


async def check_daily(engine: AsyncEngine, campaigns: Any, final_status: dict[int, tuple[int, str | None]],
                      attempts: list[Attempt], gone: int) -> None:
    async with engine.connect() as conn:
        rows = {(r.campaign_id, r.local_date): r
                for r in await conn.execute(text("SELECT * FROM analytics.campaign_daily"))}
    first_day, last_day = FIRST_SYNC.date(), SECOND_SYNC.date()
    for campaign_id, camp in campaigns.campaigns.items():
        mine = [a for a in attempts if a.campaign_id == campaign_id]
        days = [a.started.date() for a in mine]
        start, end = min([first_day, *days]), max([last_day, *days])
        expected_days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        assert sorted(d for c, d in rows if c == campaign_id) == expected_days
        contacts = [c.contact_id for c in camp.contacts()] + ([gone] if campaign_id == 1043 else [])
        first_attempt: dict[int, date] = {}
        for a in sorted(mine, key=lambda a: a.started):
            first_attempt.setdefault(a.contact_id, a.started.date())
        for day in expected_days:
            row = rows[(campaign_id, day)]
            today = [a for a in mine if a.started.date() == day]
            total = len(contacts) - (1 if campaign_id == 1043 and day >= last_day else 0)
            dialled = {a.contact_id for a in today}
            connected = {a.contact_id for a in today if a.answered}
            talks = [a.talk for a in today if a.answered and a.talk is not None]
            assert row.contacts_total == total, day
            assert row.attempts == len(today) and row.contacts_dialled == len(dialled)
            assert row.connected_contacts == len(connected)
            assert close(row.connect_rate, len(connected) / len(dialled) if dialled else None)
            assert close(row.attempts_per_connected, len(today) / len(connected) if connected else None)
            assert row.talk_seconds == sum(talks)
            assert close(row.aht_seconds, sum(talks) / len(talks) if talks else None)
            so_far = sum(1 for c, d in first_attempt.items() if d <= day)
            assert close(row.penetration, so_far / total)
            processed = sum(1 for c in contacts if c != gone and final_status[c][0] == 2)
            assert row.contacts_processed == (processed if day == last_day else 0)


async def test_ambiguous_numbers_follow_the_documented_rule(engine: AsyncEngine, http: httpx.AsyncClient) -> None:
    """A number in two campaigns: the contact seen most recently before the call owns it; calls are
    re-attributed when contacts change, whatever ran first."""
    from sync.campaigns import CampaignData, Contact, store_campaign

    tenant = tenant_for("http://127.0.0.1:9")
    async with engine.begin() as conn:
        await sync_tenants(conn, [tenant])
        for cid in (1, 2):
            await add_campaign(conn, tenant.tenant_id, cid, None)

    def contact(cid: int) -> Contact:
        return Contact(cid * 10, 1, None, "0912345678", "+84912345678", None, 0, None)

    def call(call_id: str, start: str, direction: str = "outbound") -> Delivery:
        return Delivery("default", call_id, "webhook", {"call_id": call_id, "direction": direction,
                                                        "caller_number": "84912345678", "starttime": start,
                                                        "answertime": start, "endtime": start},
                        datetime.now(ZONE))

    # Calls first, contacts later: a call before any contact was seen goes to the earliest seen.
    async with engine.begin() as conn:
        await ingest(conn, [call("early", "2024-03-01 09:00:00"), call("in", "2024-03-06 09:00:00", "inbound")],
                     {"default": tenant})
        await store_campaign(conn, tenant, CampaignData(2, [], [contact(2)]), when("2024-03-02 00:00:00"))
        await store_campaign(conn, tenant, CampaignData(1, [], [contact(1)]), when("2024-03-05 00:00:00"))
        await ingest(conn, [call("mid", "2024-03-03 09:00:00"), call("late", "2024-03-06 09:00:00")],
                     {"default": tenant})
    async with engine.begin() as conn:
        await refresh_campaigns(conn)
    async with engine.connect() as conn:
        owners = dict((await conn.execute(text(
            "SELECT call_id, campaign_id FROM callstore.campaign_attempts"))).all())
        assert owners == {"early": 2, "mid": 2, "late": 1}  # inbound "in" is never an attempt
        assert await ambiguous_attempts(conn, "default") == {1: 1, 2: 2}
    # Campaign 1 drops the contact: the later call goes back to campaign 2.
    async with engine.begin() as conn:
        await store_campaign(conn, tenant, CampaignData(1, [], []), when("2024-03-07 00:00:00"))
        await refresh_campaigns(conn)
    async with engine.connect() as conn:
        owners = dict((await conn.execute(text(
            "SELECT call_id, campaign_id FROM callstore.campaign_attempts"))).all())
    assert owners == {"early": 2, "mid": 2, "late": 1}  # "late" started before the removal: still campaign 1


async def test_campaign_report_api_and_parameters(engine: AsyncEngine, receiver: str) -> None:
    from store.tokens import create_token

    tenant = tenant_for("http://127.0.0.1:9")
    from sync.campaigns import CampaignData, Contact, store_campaign

    async with engine.begin() as conn:
        await add_campaign(conn, "default", 7, "Gia hạn")
        await store_campaign(conn, tenant, CampaignData(7, [], [
            Contact(70, 1, None, "0912345678", "+84912345678", None, 2, "answered"),
            Contact(71, 1, None, "0912345679", "+84912345679", None, 0, None)]), when("2024-03-04 08:00:00"))
        await ingest(conn, [Delivery("default", "x1", "webhook", {
            "call_id": "x1", "direction": "outbound", "caller_number": "0912345678",
            "starttime": "2024-03-04 09:00:00", "answertime": "2024-03-04 09:00:10",
            "endtime": "2024-03-04 09:02:10"}, datetime.now(ZONE))], {"default": tenant})
        await refresh_campaigns(conn)
        _, token = await create_token(conn, "t", "reader", "default")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=receiver, headers=headers) as client:
        ok = await client.get("/api/reports/campaigns", params={"from": "2024-03-04", "to": "2024-03-05"})
        assert ok.status_code == 200, ok.text
        [row] = ok.json()["rows"]
        assert (row["campaign_name"], row["local_date"], row["attempts"], row["connected_contacts"],
                row["talk_seconds"], row["penetration"]) == ("Gia hạn", "2024-03-04", 1, 1, 120, 0.5)
        csv_ = await client.get("/api/reports/campaigns", params={"from": "2024-03-04", "tenant": "default",
                                                                  "campaign": "7", "format": "csv"})
        assert csv_.text.splitlines()[0].startswith("tenant_id,campaign_id,campaign_name,local_date")
        async with engine.begin() as conn:
            await add_campaign(conn, "default", 7, '=HYPERLINK("http://x.invalid","open")')
        hostile = await client.get("/api/reports/campaigns", params={"from": "2024-03-04", "format": "csv"})
        assert hostile.text.splitlines()[1].split(",", 3)[2].startswith('"\'=HYPERLINK')  # text, not a formula
        for params, name in (({"from": "yesterday", "tenant": "default"}, "from"),
                             ({"from": "2024-03-04", "campaign": "x", "tenant": "default"}, "campaign"),
                             ({"from": "2024-03-04", "to": "2024-03-01", "tenant": "default"}, "to"),
                             ({"from": "0001-01-01", "tenant": "default"}, "from"),
                             ({"from": "2024-03-04", "tenant": "default", "bogus": "1"}, "bogus")):
            bad = await client.get("/api/reports/campaigns", params=params)
            assert bad.status_code == 400 and bad.json()["detail"].startswith(name + ":"), (params, bad.text)
