from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.raw_body import unpack
from tests.conftest import OTHER_TENANT_KEY, WEBHOOK_KEY, WEBHOOK_KEY_2

SAMPLE = {
    "call_id": "20240113150030xxxxxx",
    "call_status": "answered",
    "direction": "outbound",
    "caller_number": "03899xxx",
    "destination_number": "888",
    "starttime": "2024-01-13 15:00:30",
    "answertime": "2024-01-13 15:00:35",
    "endtime": "2024-01-13 15:05:30",
    "hangup_by": "customer",
    "hotline": "",
    "total_duration": "300",
    "holding_duration": "0",
    "recording_url": "https://domain:port/IPCCMedia/MP3Export.do?url=file.mp3&source=ipcc",
    "objectId": 1,
    "transactionID": "TRANSID_1111",
    "userName": "adminxxx",
    "eventType": "call",
}
PARTIAL = {**SAMPLE, **{k: "" for k in ("endtime", "hangup_by", "hotline", "total_duration", "holding_duration", "recording_url")}}


async def post(url: str, body: bytes | str | dict | list, key: str | None = WEBHOOK_KEY, **headers: str) -> httpx.Response:  # type: ignore[type-arg]
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    h = {"Content-Type": "application/json", **headers}
    if key is not None:
        h["Authorization"] = key
    async with httpx.AsyncClient() as client:
        return await client.post(f"{url}/webhooks/alohub", content=body, headers=h)


async def rows(engine: AsyncEngine, sql: str, **params: object) -> list[dict]:  # type: ignore[type-arg]
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def test_sample_and_partial_event(receiver: str, engine: AsyncEngine) -> None:
    r = await post(receiver, PARTIAL)
    assert r.status_code == 200 and r.json() == {"ok": True}
    [call] = await rows(engine, "SELECT * FROM analytics.calls")
    assert call["outcome"] == "answered" and call["ended_at"] is None and call["recording_status"] == "none"

    assert (await post(receiver, SAMPLE)).status_code == 200
    [call] = await rows(engine, "SELECT * FROM analytics.calls")
    assert call["tenant_id"] == "default"
    assert call["call_id"] == SAMPLE["call_id"]
    assert call["direction"] == "outbound"
    assert call["agent"] == "adminxxx" and call["transaction_id"] == "TRANSID_1111"
    assert call["started_at"].isoformat() == "2024-01-13T08:00:30+00:00"
    assert call["wait_seconds"] == 5 and call["talk_seconds"] == 295 and call["total_seconds"] == 300
    assert call["hold_seconds"] == 0 and call["hangup_by"] == "customer"
    assert call["outcome"] == "answered" and call["answered_within_sla"] is None  # outbound
    assert call["recording_status"] == "pending" and call["first_source"] == "webhook"
    assert call["flagged"] is False


async def test_duplicate_delivery_recorded_once(receiver: str, engine: AsyncEngine) -> None:
    for _ in range(3):
        assert (await post(receiver, SAMPLE)).status_code == 200
    # Same payload, other key order and spacing: still the same delivery.
    reordered = json.dumps(dict(reversed(list(SAMPLE.items()))), indent=2)
    assert (await post(receiver, reordered)).status_code == 200
    raw = await rows(engine, "SELECT deliveries FROM callstore.raw_events")
    assert len(raw) == 2  # the raw body differs (spacing), so it is kept raw...
    assert sum(r["deliveries"] for r in raw) == 4
    assert len(await rows(engine, "SELECT 1 FROM callstore.calls")) == 1


async def test_concurrent_duplicates_in_one_batch(receiver: str, engine: AsyncEngine) -> None:
    results = await asyncio.gather(*[post(receiver, SAMPLE) for _ in range(40)])
    assert {r.status_code for r in results} == {200}
    [raw] = await rows(engine, "SELECT deliveries FROM callstore.raw_events")
    assert raw["deliveries"] == 40


async def test_wrong_or_missing_key_is_401_and_nothing_stored(receiver: str, engine: AsyncEngine) -> None:
    for key in ("nope", f"Bearer {WEBHOOK_KEY}", WEBHOOK_KEY[:-1], WEBHOOK_KEY + "x", "", None):
        r = await post(receiver, SAMPLE, key=key)
        assert r.status_code == 401, key
        assert r.json()["error"] == "unauthorized"
    assert await rows(engine, "SELECT 1 FROM callstore.raw_events") == []
    assert await rows(engine, "SELECT 1 FROM callstore.dead_letters") == []


async def test_rotated_key_and_tenant_from_key(receiver: str, engine: AsyncEngine) -> None:
    assert (await post(receiver, SAMPLE, key=WEBHOOK_KEY_2)).status_code == 200
    assert (await post(receiver, {**SAMPLE, "call_id": "paris-1"}, key=OTHER_TENANT_KEY)).status_code == 200
    got = await rows(engine, "SELECT tenant_id, call_id, started_at FROM callstore.calls ORDER BY tenant_id")
    assert [(r["tenant_id"], r["call_id"]) for r in got] == [("acme", "paris-1"), ("default", SAMPLE["call_id"])]
    # Naive times are read in the tenant's zone: Paris is UTC+1 in January.
    assert got[0]["started_at"].isoformat() == "2024-01-13T14:00:30+00:00"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b'{"call_id": "x"', 400, "invalid_json"),
        (b"\xff\xfe{}", 400, "invalid_json"),
        (b"[1, 2]", 400, "not_an_object"),
        (b'"call_id"', 400, "not_an_object"),
        (b"null", 400, "not_an_object"),
        (b'{"direction": "inbound"}', 400, "missing_call_id"),
        (b'{"call_id": ""}', 400, "missing_call_id"),
        (b'{"call_id": null}', 400, "missing_call_id"),
        (b'{"call_id": {"a": 1}}', 400, "missing_call_id"),
        (b'{"call_id": true}', 400, "missing_call_id"),
    ],
)
async def test_bad_structure_is_rejected_and_kept(receiver: str, engine: AsyncEngine, body: bytes, status: int, reason: str) -> None:
    r = await post(receiver, body)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == reason and r.json()["detail"]
    [dead] = await rows(engine, "SELECT reason, body, body_bytes, tenant_id FROM callstore.dead_letters")
    assert dead == {"reason": reason, "body": body, "body_bytes": len(body), "tenant_id": "default"}
    assert await rows(engine, "SELECT 1 FROM callstore.calls") == []
    [view] = await rows(engine, "SELECT reason, body_bytes FROM analytics.dead_letters")
    assert view["reason"] == reason


async def test_over_256_kib_is_413_and_kept(receiver: str, engine: AsyncEngine) -> None:
    body = json.dumps({"call_id": "big", "padding": "x" * (300 * 1024)}).encode()
    r = await post(receiver, body)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    [dead] = await rows(engine, "SELECT reason, length(body) AS kept, body_bytes FROM callstore.dead_letters")
    assert dead["reason"] == "too_large" and dead["body_bytes"] == len(body) and dead["kept"] == 256 * 1024
    # Exactly at the limit is accepted.
    at_limit = json.dumps({"call_id": "edge", "padding": ""}).encode()
    at_limit = at_limit[:-2] + b"x" * (256 * 1024 - len(at_limit)) + b'"}'
    assert len(at_limit) == 256 * 1024
    assert (await post(receiver, at_limit)).status_code == 200


async def test_bad_field_values_are_null_and_flagged(receiver: str, engine: AsyncEngine) -> None:
    event = {**SAMPLE, "starttime": "13/01/2024", "total_duration": "abc", "holding_duration": [1], "call_id": 12345}
    assert (await post(receiver, event)).status_code == 200
    [call] = await rows(engine, "SELECT * FROM analytics.calls")
    assert call["call_id"] == "12345"
    assert call["started_at"] is None and call["total_seconds"] is None and call["hold_seconds"] is None
    assert call["flagged"] is True
    [raw] = await rows(engine, "SELECT flags, body FROM callstore.raw_events")
    assert set(raw["flags"]) == {"starttime", "total_duration", "holding_duration"}
    assert json.loads(unpack(raw["body"])) == event  # the raw event keeps what was sent


async def test_nul_characters_are_stored_not_lost(receiver: str, engine: AsyncEngine) -> None:
    sent = json.dumps({**SAMPLE, "userName": "a\u0000b"}).encode()
    assert b"\\u0000" in sent
    assert (await post(receiver, sent)).status_code == 200
    [call] = await rows(engine, "SELECT agent, flagged FROM callstore.calls")
    assert call == {"agent": "a\ufffdb", "flagged": True}
    # The raw event keeps the body exactly as sent, U+0000 included.
    [raw] = await rows(engine, "SELECT flags, body FROM callstore.raw_events")
    assert unpack(raw["body"]) == sent and "nul_character" in raw["flags"]


async def test_partial_after_final_does_not_undo_it(receiver: str, engine: AsyncEngine) -> None:
    assert (await post(receiver, SAMPLE)).status_code == 200
    assert (await post(receiver, PARTIAL)).status_code == 200
    [call] = await rows(engine, "SELECT ended_at, recording_url, hangup_by FROM callstore.calls")
    assert call["ended_at"] is not None and call["recording_url"] and call["hangup_by"] == "customer"


async def test_health_and_unknown_routes(receiver: str) -> None:
    async with httpx.AsyncClient(base_url=receiver) as client:
        assert (await client.get("/healthz")).json() == {"ok": True}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        r = await client.get("/webhooks/alohub")
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        r = await client.get("/no/such/route")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        metrics = await client.get("/metrics")
        assert "callstore_webhook_requests" in metrics.text


async def test_openapi_lists_the_webhook(receiver: str) -> None:
    async with httpx.AsyncClient(base_url=receiver) as client:
        doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/webhooks/alohub" in doc["paths"]


async def test_a_scheduler_process_takes_no_webhooks(engine) -> None:  # type: ignore[no-untyped-def]
    """`serve --role scheduler` has no spool: it serves health and metrics only."""
    from callstore.composition import build_extensions
    from receiver.app import create_app
    from receiver.metrics import Metrics
    from tests.conftest import serving, test_settings

    from store.tokens import create_token

    settings = test_settings()
    metrics = Metrics()
    async with engine.begin() as conn:
        _, admin = await create_token(conn, "scheduler-test", "admin", "default")
    app = create_app(settings, engine, build_extensions(settings, engine, "scheduler", metrics), metrics)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.post("/webhooks/alohub", content=b'{"call_id": "s1"}', headers={"Authorization": WEBHOOK_KEY})
        assert r.status_code == 404 and r.json()["error"]
        # Past the token guard, the /api routes are not there either.
        assert (await client.get("/api/calls", headers={"Authorization": f"Bearer {admin}"})).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert "/webhooks/alohub" not in (await client.get("/openapi.json")).json()["paths"]
    assert not await rows(engine, "SELECT 1 FROM callstore.raw_events")
