"""Call search and detail over real HTTP, on calls from the fake's history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from store.tokens import create_token
from tests.conftest import serving
from tests.recording_fixtures import archive_settings, fake_state, load


@dataclass
class Api:
    client: httpx.AsyncClient
    reader: dict[str, str]
    records: list[dict[str, Any]]
    operator: dict[str, str]


@pytest.fixture
async def api(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Api]:
    state = fake_state(calls=120)
    records = list(state.calls.records)
    settings = archive_settings("http://127.0.0.1:9", tmp_path)
    await load(engine, settings, records)
    # The same call id in a second tenant makes the detail route ambiguous.
    await load(engine, settings, records[:1], tenant="acme")
    async with engine.begin() as conn:
        _, token = await create_token(conn, "t", "reader", "default")
        _, operator = await create_token(conn, "op", "admin", None)
    app = create_app(settings, engine, build_extensions(settings, engine, "all", Metrics()))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield Api(client, {"Authorization": f"Bearer {token}"}, records, {"Authorization": f"Bearer {operator}"})


async def search(api: Api, **params: object) -> httpx.Response:
    return await api.client.get("/api/calls", params=params, headers=api.reader)  # type: ignore[arg-type]


async def test_pages_cover_every_call_once_newest_first(api: Api) -> None:
    seen: list[tuple[str, str]] = []
    starts: list[str] = []
    cursor = None
    for _ in range(20):
        params: dict[str, object] = {"limit": 7, "tenant": "default"}
        if cursor:
            params["cursor"] = cursor
        body = (await search(api, **params)).json()
        seen += [(c["tenant_id"], c["call_id"]) for c in body["calls"]]
        starts += [c["started_at"] for c in body["calls"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(c for _, c in seen) == sorted(r["call_id"] for r in api.records)
    assert len(set(seen)) == len(seen)
    assert starts == sorted(starts, reverse=True)


async def test_filters(api: Api) -> None:
    r = api.records
    answered = [x for x in r if x["agent"]]
    agent = answered[0]["agent"]
    got = (await search(api, agent=agent, limit=500, tenant="default")).json()["calls"]
    assert {c["call_id"] for c in got} == {x["call_id"] for x in r if x["agent"] == agent}

    # Any common spelling of a number finds the same calls.
    number = next(x["caller_number"] for x in r if x["caller_number"].startswith("09"))
    expected = {c["call_id"] for c in (await search(api, phone=number, limit=500, tenant="default")).json()["calls"]}
    assert expected
    for spelling in ("+84" + number[1:], "84" + number[1:], f"{number[:4]} {number[4:7]} {number[7:]}"):
        got_ids = {c["call_id"] for c in (await search(api, phone=spelling, limit=500, tenant="default")).json()["calls"]}
        assert got_ids == expected, spelling

    # Local times (tenant zone, Asia/Ho_Chi_Minh) and offsets agree; `to` is exclusive.
    local = (await search(api, **{"from": "2024-01-13T06:00:00", "to": "2024-01-13T12:00:00", "limit": 500, "tenant": "default"})).json()["calls"]
    utc = (await search(api, **{"from": "2024-01-12T23:00:00Z", "to": "2024-01-13T05:00:00+00:00", "limit": 500, "tenant": "default"})).json()["calls"]
    want = {x["call_id"] for x in r if "2024-01-13 06:00:00" <= x["starttime"] < "2024-01-13 12:00:00"}
    assert {c["call_id"] for c in local} == {c["call_id"] for c in utc} == want

    tx = next(x["transactionId"] for x in r if x["transactionId"])
    assert [c["transaction_id"] for c in (await search(api, transaction_id=tx)).json()["calls"]] == [tx]
    abandoned = (await search(api, status="abandoned", limit=500)).json()["calls"]
    assert abandoned and all(c["outcome"] == "abandoned" for c in abandoned)
    busy = (await search(api, status="BUSY", limit=500)).json()["calls"]
    assert busy and all(c["call_status"] == "busy" for c in busy)
    unassigned = (await search(api, queue="unassigned", limit=500)).json()["calls"]
    assert all(c["queue_id"] is None and c["direction"] == "inbound" for c in unassigned)
    assert (await search(api, queue=1001226)).json()["calls"] == []  # no catalogue synced: nothing attributed
    # SQL metacharacters are only values.
    assert (await search(api, agent="x' OR '1'='1")).json()["calls"] == []
    assert (await search(api, transaction_id="'; DROP TABLE callstore.calls; --")).json()["calls"] == []


BAD = [
    ({"from": "yesterday"}, "from"),
    ({"to": "2024-13-01"}, "to"),
    ({"from": "0001-01-01T00:00:00+14:00"}, "from"),
    ({"from": "2024-01-14", "to": "2024-01-13"}, "to"),
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "9" * 40}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "WzEsMiwzXQ"}, "cursor"),  # [1,2,3]
    ({"phone": "abc"}, "phone"),
    ({"queue": "q1"}, "queue"),
    ({"agent": "a\x00b"}, "agent"),
    ({"status": "x" * 300}, "status"),
]


async def test_bad_parameters_are_400_naming_them(api: Api) -> None:
    for params, name in BAD:
        r = await search(api, **params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"] == "bad_request" and r.json()["detail"].startswith(f"{name}:"), params


async def test_detail_with_events_and_ambiguity(api: Api, engine: AsyncEngine) -> None:
    first = api.records[0]["call_id"]
    # Only the operator's token reads several tenants: for it the id is ambiguous.
    ambiguous = await api.client.get(f"/api/calls/{first}", headers=api.operator)
    assert ambiguous.status_code == 409 and "acme" in ambiguous.json()["detail"]
    mine = (await api.client.get(f"/api/calls/{first}", headers=api.reader)).json()
    assert mine["call"]["tenant_id"] == "default"
    one = (await api.client.get(f"/api/calls/{first}", params={"tenant": "acme"}, headers=api.operator)).json()
    assert one["call"]["tenant_id"] == "acme" and one["call"]["call_id"] == first
    assert [e["payload"]["call_id"] for e in one["events"]] == [first]
    assert one["events"][0]["source"] == "history"
    other = api.records[5]["call_id"]
    body = (await api.client.get(f"/api/calls/{other}", headers=api.reader)).json()
    assert body["call"]["outcome"] in ("answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress")
    assert (await api.client.get("/api/calls/nope", headers=api.reader)).status_code == 404
    assert (await api.client.get("/api/calls/a%00", headers=api.reader)).status_code == 400


async def test_openapi_lists_the_routes(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    assert {"/api/calls", "/api/calls/{call_id}", "/api/recordings/{call_id}"} <= set(doc["paths"])
    names = {p["name"] for p in doc["paths"]["/api/calls"]["get"]["parameters"]}
    assert names == {"from", "to", "phone", "agent", "queue", "status", "transaction_id", "tenant", "limit", "cursor"}
