"""Queue catalogue from the fake's GET /v1/queues/inbound, attribution and re-attribution."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.ingest import Delivery, ingest
from sync.client import AlohubClient, new_http_client
from sync.fake import FakeState, build_state, running_fake
from sync.queues import fetch_queues, list_mappings, remove_mapping, set_mapping, store_catalogue
from tests.sync.alohub import API_KEY, SINCE, UNTIL, tenant_for


@pytest.fixture
def fake() -> Iterator[str]:
    state: FakeState = build_state(calls=1, seed=1, since=SINCE, until=UNTIL, api_key=API_KEY)
    with running_fake(state) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


def call(call_id: str, hotline: str, direction: str = "inbound") -> Delivery:
    return Delivery("default", call_id, "webhook", {"call_id": call_id, "hotline": hotline, "direction": direction,
                                                    "starttime": "2024-01-13 10:00:00"}, datetime.now(timezone.utc))


async def queue_of(engine: AsyncEngine) -> dict[str, int | None]:
    async with engine.connect() as conn:
        return dict((await conn.execute(text("SELECT call_id, queue_id FROM callstore.calls"))).all())  # type: ignore[arg-type]


async def test_catalogue_attribution_and_reattribution(engine: AsyncEngine, fake: str, http: httpx.AsyncClient) -> None:
    tenant = tenant_for(fake)
    tenants = {"default": tenant}
    async with engine.begin() as conn:
        await ingest(conn, [call("a", "1900 1001"), call("b", "0909000111"), call("c", "19009999"),
                            call("d", "19001001", "outbound")], tenants)
    assert set((await queue_of(engine)).values()) == {None}

    client = AlohubClient(http, tenant)
    records = await fetch_queues(client, size=2)  # 0-based pages of 2: three requests for five queues
    assert [r["callinId"] for r in records] == [1001226, 1001227, 1001228, 1001229, 1001230]
    async with engine.begin() as conn:
        change = await store_catalogue(conn, tenant, records, datetime.now(timezone.utc))
    assert (change.listed, change.added, change.removed, change.reattributed) == (5, 5, 0, 2)
    assert await queue_of(engine) == {"a": 1001226, "b": 1001229, "c": None, "d": None}
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT callin_number_canonical FROM callstore.queues WHERE queue_id = 1001229")) \
            == "+84909000111"

    # A manual mapping for a number Alohub does not list; the catalogue wins where both apply.
    async with engine.begin() as conn:
        assert await set_mapping(conn, "default", "19009999", 1001227, "stray hotline") == 1
        assert await set_mapping(conn, "default", "19001001", 1001228) == 0
        maps = await list_mappings(conn, "default")
    assert [(m.hotline, m.queue_id, m.shadowed_by) for m in maps] == [("19001001", 1001228, 1001226),
                                                                      ("19009999", 1001227, None)]
    assert (await queue_of(engine))["c"] == 1001227

    # Alohub renumbers Sales and drops VIP: their calls move, VIP's to unassigned.
    new = [dict(r) for r in records if r["callinId"] != 1001229]
    new[0]["callinNumber"] = "19009999"
    async with engine.begin() as conn:
        change = await store_catalogue(conn, tenant, new, datetime.now(timezone.utc))
    assert (change.removed, change.renumbered) == (1, 1)
    # a: 19001001 is no longer Sales' number, but its manual mapping applies now.
    assert await queue_of(engine) == {"a": 1001228, "b": None, "c": 1001226, "d": None}
    async with engine.connect() as conn:
        removed = await conn.scalar(text("SELECT removed_at FROM callstore.queues WHERE queue_id = 1001229"))
    assert removed is not None

    async with engine.begin() as conn:
        assert await remove_mapping(conn, "default", "19001001") == (True, 1)
        assert await remove_mapping(conn, "default", "19001001") == (False, 0)
    assert (await queue_of(engine))["a"] is None
