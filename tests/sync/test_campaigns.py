"""Campaign sync against the fake's campaign routes: contents, changes, removal, bad input."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from store.settings import Settings
from sync.campaigns import add_campaign, sync_tenant_campaigns
from sync.client import AlohubClient, RetryPolicy, new_http_client
from sync.fake import FakeState, build_state, run_app, running_fake
from sync.fake.campaigns import generate_campaigns
from tests.sync.alohub import API_KEY, SINCE, UNTIL, tenant_for

PHONES = [f"09{n:08d}" for n in range(1, 31)]


@pytest.fixture
def state() -> FakeState:
    s = build_state(calls=1, seed=1, since=SINCE, until=UNTIL, api_key=API_KEY)
    s.campaigns = generate_campaigns(random.Random(7), PHONES, campaigns=2, lists_per_campaign=2)
    s.max_limit = 4  # the server caps `size`: paging must follow totalRecord, not the size asked for
    return s


@pytest.fixture
def fake(state: FakeState) -> Iterator[str]:
    with running_fake(state) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


async def follow(engine: AsyncEngine, *ids: int) -> None:
    async with engine.begin() as conn:
        for cid in ids:
            await add_campaign(conn, "default", cid, None)


async def stored(engine: AsyncEngine) -> dict[tuple[int, int], tuple[object, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT campaign_id, contact_id, list_id, phone_canonical, name, process_status, removed_at IS NOT NULL"
            " FROM callstore.campaign_contacts"))
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def truth(state: FakeState) -> dict[tuple[int, int], tuple[object, ...]]:
    out = {}
    for camp in state.campaigns.campaigns.values():
        for lst in camp.lists:
            for c in lst.contacts:
                out[(camp.campaign_id, c.contact_id)] = (lst.list_id, "+84" + c.phone_number[1:], None,
                                                         c.process_status, False)
    return out


async def test_sync_stores_every_contact_and_follows_changes(engine: AsyncEngine, state: FakeState, fake: str,
                                                            http: httpx.AsyncClient) -> None:
    await follow(engine, 1042, 1043)
    client = AlohubClient(http, tenant_for(fake))
    summary = await sync_tenant_campaigns(engine, client)
    assert not summary.failed
    assert sum(c.contacts for c in summary.synced) == len(PHONES)
    assert await stored(engine) == truth(state)
    assert state.stats.requests["campaigns"] > 4  # several pages per list

    # Alohub moves on: one contact is dialled, one pending contact deleted, one added through the API.
    camp = state.campaigns.campaigns[1042]
    dialled = camp.lists[0].contacts[0]
    doomed = camp.lists[1].contacts[0]
    headers = {"X-Api-Key": API_KEY}
    deleted = await http.delete(f"{fake}/v1/campaigns/1042/contacts/{doomed.contact_id}", headers=headers)
    assert deleted.status_code == 200
    dialled.process_status, dialled.call_status = 2, "ANSWERED"
    refused = await http.delete(f"{fake}/v1/campaigns/1042/contacts/{dialled.contact_id}", headers=headers)
    assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_STATE"
    added = await http.post(f"{fake}/v1/campaigns/1042/contacts", headers=headers,
                            json={"phoneNumber": "0912000999", "name": "Nguyễn Văn A"})
    assert added.status_code == 200

    later = datetime.now(timezone.utc) + timedelta(minutes=15)
    again = await sync_tenant_campaigns(engine, client, now=later)
    c1042 = next(c for c in again.synced if c.campaign_id == 1042)
    assert (c1042.added, c1042.changed, c1042.removed) == (1, 1, 1)
    rows = await stored(engine)
    assert rows[(1042, doomed.contact_id)][-1] is True  # marked removed, not deleted
    assert {k: v for k, v in rows.items() if not v[-1]} == truth(state)
    async with engine.connect() as conn:
        history = (await conn.execute(text(
            "SELECT process_status, call_status, removed FROM callstore.campaign_contact_changes"
            " WHERE contact_id = :c ORDER BY seen_at"), {"c": dialled.contact_id})).all()
        assert history == [(0, None, False), (2, "ANSWERED", False)]
        names = await conn.scalar(text("SELECT count(name) FROM callstore.campaign_contacts"))
        assert names == 0  # store_contact_names is off by default: no personal names kept


async def test_contact_names_are_kept_only_when_the_tenant_asks(engine: AsyncEngine, state: FakeState, fake: str,
                                                                http: httpx.AsyncClient) -> None:
    state.campaigns.campaigns[1042].lists[0].contacts[0].name = "Trần Thị B"
    await follow(engine, 1042)
    await sync_tenant_campaigns(engine, AlohubClient(http, tenant_for(fake, store_contact_names=True)))
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT name FROM callstore.campaign_contacts WHERE name IS NOT NULL")) \
            == "Trần Thị B"


async def test_bulk_import_finishes_after_polls_and_skips_duplicates(state: FakeState, fake: str,
                                                                     http: httpx.AsyncClient) -> None:
    headers = {"X-Api-Key": API_KEY}
    existing = state.campaigns.campaigns[1043].lists[0].contacts[0].phone_number
    started = await http.post(f"{fake}/v1/campaigns/1043/contacts/bulk", headers=headers, json={
        "listName": "DS thang 4", "contacts": [{"phoneNumber": "0901000001", "name": "KH 1"},
                                               {"phoneNumber": existing}, {"phoneNumber": "0901000002"}]})
    assert started.status_code == 200 and started.json()["total_rows"] == 3
    job = started.json()["job_id"]
    statuses = []
    for _ in range(5):
        polled = (await http.get(f"{fake}/v1/campaigns/1043/contacts/import/{job}", headers=headers)).json()
        statuses.append(polled["status"])
        if polled["status"] == "done":
            break
    assert statuses[0] != "done" and statuses[-1] == "done"
    assert (polled["processedRows"], polled["duplicateRows"]) == (3, 1)
    lists = (await http.get(f"{fake}/v1/campaigns/1043/contact-lists", headers=headers)).json()["data"]
    assert {"listName": "DS thang 4", "contactCount": 2} == {k: lists[-1][k] for k in ("listName", "contactCount")}
    bad = await http.post(f"{fake}/v1/campaigns/1043/contacts", headers=headers, json={"name": "no number"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_INPUT"
    missing = await http.get(f"{fake}/v1/campaigns/9/contact-lists", headers=headers)
    assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"


def bad_alohub(contacts_pages: list[dict[str, object]]) -> Starlette:
    """A gateway whose campaign 7 has one list answering `contacts_pages` in turn."""

    async def lists(request: Request) -> JSONResponse:
        return JSONResponse({"success": "1", "totalRecord": 1,
                             "data": [{"listId": 1, "listName": "L", "contactCount": 3}]})

    async def contacts(request: Request) -> JSONResponse:
        page = int(request.query_params.get("page", "0"))
        return JSONResponse(contacts_pages[min(page, len(contacts_pages) - 1)])

    return Starlette(routes=[Route("/v1/campaigns/7/contact-lists", lists),
                             Route("/v1/campaigns/7/contact-lists/1/contacts", contacts)])


GOOD = {"contactId": 1, "customerId": 1, "phoneNumber": "0901234567", "processStatus": 0, "callStatus": None}


@pytest.mark.parametrize(("pages", "reason"), [
    ([{"success": "1", "totalRecord": 1, "data": [{**GOOD, "contactId": "abc"}]}], "contactId 'abc'"),
    ([{"success": "1", "totalRecord": 1, "data": [{k: v for k, v in GOOD.items() if k != "phoneNumber"}]}],
     "phoneNumber is missing"),
    ([{"success": "1", "totalRecord": 3, "data": [GOOD]}, {"success": "1", "totalRecord": 3, "data": []}],
     "page 1 is empty after 1 of 3 contacts"),
    ([{"success": "1", "totalRecord": 1, "data": [{**GOOD, "processStatus": 9}]}], "processStatus 9"),
])
async def test_bad_answers_fail_the_campaign_and_keep_what_was_stored(
        engine: AsyncEngine, http: httpx.AsyncClient, pages: list[dict[str, object]], reason: str,
        caplog: pytest.LogCaptureFixture) -> None:
    await follow(engine, 7)
    good = [{"success": "1", "totalRecord": 1, "data": [{**GOOD, "contactId": 5}]}]
    with run_app(bad_alohub(good)) as server:
        client = AlohubClient(http, tenant_for(server.base_url))
        assert not (await sync_tenant_campaigns(engine, client)).failed
    before = await stored(engine)
    assert list(before) == [(7, 5)]
    with run_app(bad_alohub(pages)) as server:
        client = AlohubClient(http, tenant_for(server.base_url))
        summary = await sync_tenant_campaigns(engine, client)
    assert reason in summary.failed[7]
    assert await stored(engine) == before  # nothing half-written, nothing marked removed
    assert any(reason in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    async with engine.connect() as conn:
        assert reason in await conn.scalar(text("SELECT last_error FROM callstore.campaigns WHERE campaign_id = 7"))


async def test_a_429_storm_gives_up_cleanly(engine: AsyncEngine, state: FakeState, fake: str,
                                            http: httpx.AsyncClient) -> None:
    await follow(engine, 1042)
    state.faults.rate429 = 1.0
    client = AlohubClient(http, tenant_for(fake), retry=RetryPolicy(attempts=3, give_up_after_s=3))
    summary = await sync_tenant_campaigns(engine, client)
    assert "gave up" in summary.failed[1042] and API_KEY not in summary.failed[1042]
    assert await stored(engine) == {}


def test_campaign_settings_are_checked() -> None:
    from store.errors import ConfigError
    from store.settings import parse_settings

    s: Settings = parse_settings({"ALOHUB_CAMPAIGN_IDS": "1042,1043", "ALOHUB_BI_PHONE_NUMBERS": "FULL"})
    assert s.tenants[0].campaign_ids == (1042, 1043) and s.tenants[0].bi_phone_numbers == "full"
    with pytest.raises(ConfigError, match="ALOHUB_CAMPAIGN_IDS"):
        parse_settings({"ALOHUB_CAMPAIGN_IDS": "10x"})
    with pytest.raises(ConfigError, match="ALOHUB_BI_PHONE_NUMBERS"):
        parse_settings({"ALOHUB_BI_PHONE_NUMBERS": "sometimes"})
    assert replace(s.tenants[0], store_contact_names=True).store_contact_names


def test_the_fake_dials_its_campaigns() -> None:
    state = build_state(calls=10, seed=3, since=SINCE, until=UNTIL, api_key=API_KEY, campaigns=2,
                        contacts_per_campaign=30)
    contacts = [c for camp in state.campaigns.campaigns.values() for c in camp.contacts()]
    assert sorted(state.campaigns.campaigns) == [1042, 1043] and len(contacts) == 60
    numbers = {c.phone_number for c in contacts}
    dialled = [r for r in state.calls.window(None, None) if r["caller_number"] in numbers]
    assert all(r["direction"] == "OUTBOUND" for r in dialled)
    per_contact = {n: sum(1 for r in dialled if r["caller_number"] == n) for n in numbers}
    assert 0 in per_contact.values() and max(per_contact.values()) >= 2  # none for some, several for others
    for c in contacts:
        assert (c.process_status == 0) == (per_contact[c.phone_number] == 0)
