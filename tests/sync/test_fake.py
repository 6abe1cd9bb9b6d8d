"""The fake Alohub, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync.fake import (
    FakeCall,
    FakeState,
    build_state,
    events_for,
    generate_calls,
    recording_bytes,
    run_app,
    running_fake,
    send_events,
    webhook_events,
)
from sync.fake.command import add_arguments, run_from_args

ICT = ZoneInfo("Asia/Ho_Chi_Minh")
KEY = "test-key"
TENANT = "20260310"
SINCE = datetime(2024, 1, 13, tzinfo=ICT)
UNTIL = datetime(2024, 1, 14, tzinfo=ICT)
SEARCH = "/api/v1.0/base/searchCallV2"
CALL_LOGS = "/v1/reports/call-logs"
QUEUES = "/v1/queues/inbound"
MEDIA = "/IPCCMedia/MP3Export.do"
CALL_ID = re.compile(r"^\d{14}-[A-Z]{8}-\d{5}$")
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


@pytest.fixture
def state() -> FakeState:
    return build_state(calls=300, seed=7, since=SINCE, until=UNTIL, api_key=KEY, tenant_id=TENANT)


@pytest.fixture
def base_url(state: FakeState) -> Iterator[str]:
    with running_fake(state) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as http:
        yield http


def window(start: datetime, end: datetime, page: int = 1, limit: int = 100) -> dict[str, object]:
    return {"starttime": start.isoformat(), "endtime": end.isoformat(), "page": page, "limit": limit}


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ICT)


def recorded_path(state: FakeState) -> str:
    return next(str(r["recording_url"]) for r in state.calls.records if r["recording_url"])


# --- history -----------------------------------------------------------------


def test_generated_history_is_deterministic_and_realistic() -> None:
    calls = generate_calls(2000, seed=3, start=SINCE, end=UNTIL)
    assert calls == generate_calls(2000, seed=3, start=SINCE, end=UNTIL)
    assert calls != generate_calls(2000, seed=4, start=SINCE, end=UNTIL)
    assert len({c.call_id for c in calls}) == len(calls)
    assert calls == sorted(calls, key=lambda c: (c.starttime, c.call_id))
    inbound = [c for c in calls if c.direction == "INBOUND"]
    assert 0.65 < len(inbound) / len(calls) < 0.75
    assert {c.direction for c in calls} == {"INBOUND", "OUTBOUND"}
    abandoned = [c for c in inbound if not c.answered and c.hangup_by == "customer"]
    assert 0.10 < len(abandoned) / len(inbound) < 0.20
    waits = Counter(
        int((local(c.answertime or c.endtime) - local(c.starttime)).total_seconds()) for c in inbound
    )
    assert waits[5] > 0 and waits[20] > 0 and max(waits) <= 120
    assert any(c.hangup_by == "system" and not c.answered for c in inbound)
    assert any(int(c.total_duration) < 5 for c in abandoned)
    assert {"answered", "missed", "busy"} <= {c.call_status for c in calls}
    assert any(c.hotline == "" for c in inbound) and any(c.hotline == "19009999" for c in inbound)
    for call in calls:
        assert CALL_ID.match(call.call_id)
        assert call.source == "ipcc"
        assert LOCAL_TIME.match(call.starttime) and LOCAL_TIME.match(call.endtime)
        assert SINCE <= local(call.starttime) < UNTIL
        assert (call.answertime == "") == (call.call_status != "answered")
        assert int(call.total_duration) == (local(call.endtime) - local(call.starttime)).total_seconds()
        assert call.hangup_by in ("customer", "agent", "system")
        assert call.caller_number.lstrip("+").isdigit()
        if call.recording_url:
            assert call.answered
            assert call.recording_url == f"{call.starttime[:10].replace('-', '/')}/{call.call_id}.mp3"


def test_in_progress_calls_have_no_end() -> None:
    calls = generate_calls(200, seed=1, start=SINCE, end=UNTIL, in_progress=0.5)
    ongoing = [c for c in calls if not c.ended]
    assert ongoing
    assert all(c.total_duration == "" and c.hangup_by == "" and c.recording_url == "" for c in ongoing)


def test_webhook_events_follow_the_webhook_shape() -> None:
    calls = generate_calls(200, seed=2, start=SINCE, end=UNTIL)
    answered = next(c for c in calls if c.answered and c.recording_url and c.transactionId)
    partial, final = webhook_events(answered, "http://127.0.0.1:9")
    assert partial["call_status"] == "answered"
    for name in ("endtime", "hangup_by", "total_duration", "holding_duration", "recording_url"):
        assert partial[name] == ""
    assert final["recording_url"] == (
        f"http://127.0.0.1:9/IPCCMedia/MP3Export.do?url={answered.recording_url}&source=ipcc"
    )
    assert final["direction"] == answered.direction.lower()
    assert final["userName"] == answered.agent and final["transactionID"] == answered.transactionId
    assert final["objectId"] == 1 and final["eventType"] == "call"
    assert "agent" not in final and "transactionId" not in final and "source" not in final
    assert final["total_duration"] == answered.total_duration
    missed = next(c for c in calls if not c.answered)
    (only,) = webhook_events(missed, "http://127.0.0.1:9")
    assert only["call_status"] == missed.call_status and only["endtime"] == missed.endtime
    assert len(events_for(calls, "http://x")) == len(calls) + sum(c.answered for c in calls)


# --- searchCallV2 ----------------------------------------------------------------


async def test_search_pages_until_total_with_capped_limit(state: FakeState, client: httpx.AsyncClient) -> None:
    assert (await client.post("/_fake/settings", json={"max_limit": 7})).json()["max_limit"] == 7
    start, end = SINCE + timedelta(hours=8), SINCE + timedelta(hours=12)
    expected = [r for r in state.calls.records if start <= local(str(r["starttime"])) <= end]
    assert len(expected) > 20
    seen: list[dict[str, object]] = []
    page = 1
    while True:
        response = await client.post(SEARCH, json=window(start, end, page, 50), headers={"Authorization": KEY})
        body = response.json()
        assert response.status_code == 200
        assert body["success"] == "1" and body["error_code"] == "SUCCESS" and body["error_message"] == "SUCCESS"
        assert body["totalRecord"] == len(expected)
        assert len(body["data"]) <= 7
        seen.extend(body["data"])
        if len(seen) >= body["totalRecord"]:
            break
        page += 1
    assert page == -(-len(expected) // 7)
    assert seen == expected
    assert seen == sorted(seen, key=lambda r: (r["starttime"], r["call_id"]))
    assert set(seen[0]) >= {"call_id", "direction", "agent", "transactionId", "recording_url", "hotline"}
    beyond = await client.post(SEARCH, json=window(start, end, page + 1, 50), headers={"Authorization": KEY})
    assert beyond.json()["data"] == [] and beyond.json()["totalRecord"] == len(expected)


async def test_search_window_is_inclusive_on_both_ends(client: httpx.AsyncClient) -> None:
    records = [
        FakeCall.from_record({"call_id": f"c{i}", "starttime": f"2024-01-13 10:00:0{i}", "direction": "INBOUND"})
        for i in range(3)
    ]
    loaded = await client.post("/_fake/calls", json=[r.as_record() for r in records])
    assert loaded.json() == {"ok": True, "calls": 3}
    first = datetime(2024, 1, 13, 10, 0, 0, tzinfo=ICT)
    last = first + timedelta(seconds=2)

    async def ids(start: datetime, end: datetime) -> list[object]:
        response = await client.post(SEARCH, json=window(start, end), headers={"Authorization": KEY})
        return [r["call_id"] for r in response.json()["data"]]

    assert await ids(first, last) == ["c0", "c1", "c2"]
    assert await ids(first.astimezone(ZoneInfo("UTC")), last.astimezone(ZoneInfo("UTC"))) == ["c0", "c1", "c2"]
    assert await ids(first + timedelta(seconds=1), last - timedelta(seconds=1)) == ["c1"]
    assert await ids(last + timedelta(seconds=1), last + timedelta(hours=1)) == []


async def test_search_refuses_bad_bodies(client: httpx.AsyncClient) -> None:
    auth = {"Authorization": KEY}
    bad_bodies: list[bytes] = [
        b"not json",
        b"[]",
        orjson.dumps({"endtime": "2024-01-13T10:00:00+07:00"}),
        orjson.dumps({"starttime": "2024-01-13 10:00:00", "endtime": "2024-01-13T11:00:00+07:00"}),
        orjson.dumps({**window(SINCE, UNTIL), "page": 0}),
        orjson.dumps({**window(SINCE, UNTIL), "limit": "many"}),
    ]
    for content in bad_bodies:
        response = await client.post(SEARCH, content=content, headers=auth)
        assert response.status_code == 400, content
        assert response.json()["success"] == "0" and response.json()["error_code"] == "BAD_REQUEST"


async def test_auth_failures(state: FakeState, client: httpx.AsyncClient) -> None:
    body = window(SINCE, UNTIL)
    for headers in ({}, {"Authorization": f"Bearer {KEY}"}, {"Authorization": KEY + "x"}, {"X-Api-Key": KEY}):
        response = await client.post(SEARCH, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHORIZED" and response.json()["success"] == "0"
    assert (await client.get(QUEUES, headers={"Authorization": KEY})).status_code == 401
    assert (await client.get(QUEUES, headers={"X-Api-Key": "nope"})).status_code == 401
    assert (await client.get(QUEUES, headers={"X-Api-Key": KEY, "X-Tenant-ID": "999"})).status_code == 401
    assert (await client.get(QUEUES, headers={"X-Api-Key": KEY, "X-Tenant-ID": TENANT})).status_code == 200
    assert (await client.post(CALL_LOGS, json={}, headers={"X-Api-Key": KEY})).status_code == 200
    path = recorded_path(state)
    assert (await client.get(MEDIA, params={"url": path, "source": "ipcc"})).status_code == 401
    await client.post("/_fake/settings", json={"media_auth": False})
    assert (await client.get(MEDIA, params={"url": path, "source": "ipcc"})).status_code == 200


# --- gateway -----------------------------------------------------------------------


async def test_call_logs_filters_and_the_callEndtime_spelling(state: FakeState, client: httpx.AsyncClient) -> None:
    auth = {"X-Api-Key": KEY}
    start, end = SINCE + timedelta(hours=9), SINCE + timedelta(hours=10)
    everything_after = [r for r in state.calls.records if local(str(r["starttime"])) >= start]
    in_window = [r for r in everything_after if local(str(r["starttime"])) <= end]

    async def fetch(body: dict[str, object]) -> dict[str, Any]:
        response = await client.post(CALL_LOGS, json={"limit": 100, **body}, headers=auth)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    base = {"callStartTime": start.isoformat()}
    assert (await fetch({**base, "callEndtime": end.isoformat()}))["totalRecord"] == len(in_window)
    assert (await fetch({**base, "callEndTime": end.isoformat()}))["totalRecord"] == len(everything_after)
    inbound = await fetch({**base, "callEndtime": end.isoformat(), "callType": 0})
    assert inbound["totalRecord"] == sum(r["direction"] == "INBOUND" for r in in_window)
    assert {r["direction"] for r in inbound["data"]} == {"INBOUND"}
    outbound = await fetch({**base, "callEndtime": end.isoformat(), "callType": 1})
    assert {r["direction"] for r in outbound["data"]} == {"OUTBOUND"}
    number = str(in_window[0]["caller_number"])
    international = "+84" + number.lstrip("+")[-9:]
    by_phone = await fetch({"phoneNumber": international})
    assert by_phone["totalRecord"] >= 1
    assert all(str(r["caller_number"])[-9:] == number[-9:] for r in by_phone["data"])
    page2 = await fetch({**base, "callEndtime": end.isoformat(), "limit": 5, "page": 2})
    assert page2["data"] == in_window[5:10]
    bad = await client.post(CALL_LOGS, json={"callType": 2}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST"


async def test_queues_page_from_zero_and_are_replaceable(client: httpx.AsyncClient) -> None:
    auth = {"X-Api-Key": KEY}
    first = (await client.get(QUEUES, params={"page": 0, "size": 2}, headers=auth)).json()
    assert first["success"] == "1" and first["totalRecord"] == 5 and len(first["data"]) == 2
    assert list(first["data"][0]) == [
        "callinId", "callinName", "strategy", "musicinQueue", "timeWait", "agentSelector", "nguongRanhRoi",
        "callinNumber",
    ]
    assert first["data"][0]["callinId"] == 1001226 and first["data"][0]["timeWait"] == "120"
    last = (await client.get(QUEUES, params={"page": 2, "size": 2}, headers=auth)).json()
    assert len(last["data"]) == 1 and last["data"][0]["callinNumber"] is None
    replacement = [{"callinId": 7, "callinName": "Night", "callinNumber": "19007777", "timeWait": "30"}]
    assert (await client.post("/_fake/queues", json=replacement)).json() == {"ok": True, "queues": 1}
    now = (await client.get(QUEUES, headers=auth)).json()
    assert now["totalRecord"] == 1 and now["data"][0]["callinName"] == "Night"
    assert now["data"][0]["timeWait"] == "30" and now["data"][0]["strategy"] == 1
    assert (await client.post("/_fake/queues", json=[{"callinId": "x"}])).status_code == 400


# --- rate limits and faults ---------------------------------------------------------


async def test_rate_limits_like_kong(state: FakeState, client: httpx.AsyncClient) -> None:
    now = [1_700_000_002.5]  # 2.5 s into a 10 s window
    state.clock = lambda: now[0]
    await client.post("/_fake/settings", json={"tenant_limit": 5, "route_limit": 3})
    body, auth = window(SINCE, UNTIL, limit=1), {"Authorization": KEY}
    for remaining in (2, 1, 0):
        response = await client.post(SEARCH, json=body, headers=auth)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit-Route"] == "3"
        assert response.headers["X-RateLimit-Remaining-Route"] == str(remaining)
        assert response.headers["X-RateLimit-Limit-Tenant"] == "5"
        assert response.headers["X-RateLimit-Remaining-Tenant"] == str(remaining + 2)
    limited = await client.post(SEARCH, json=body, headers=auth)
    assert limited.status_code == 429
    assert limited.json()["error_code"] == "RATE_LIMIT_EXCEEDED" and limited.json()["success"] == "0"
    assert limited.headers["Retry-After"] == "8"
    assert limited.headers["X-RateLimit-Remaining-Route"] == "0"
    queue_auth = {"X-Api-Key": KEY}
    assert [(await client.get(QUEUES, headers=queue_auth)).status_code for _ in range(3)] == [200, 200, 429]
    stats = (await client.get("/_fake/stats")).json()
    assert stats["requests"] == {"searchCallV2": 4, "queues": 3}
    assert stats["responses_429"] == 2 and stats["exceeded"] == 2
    assert stats["max_window_route"] == {"searchCallV2": 4, "queues": 3} and stats["max_window_tenant"] == 7
    now[0] += 10
    fresh = await client.post(SEARCH, json=body, headers=auth)
    assert fresh.status_code == 200 and fresh.headers["X-RateLimit-Remaining-Route"] == "2"
    assert (await client.post("/_fake/reset-stats")).status_code == 200
    cleared = (await client.get("/_fake/stats")).json()
    assert cleared["exceeded"] == 0 and cleared["requests"] == {} and cleared["max_window_tenant"] == 0


async def test_unlimited_buckets_send_no_headers(client: httpx.AsyncClient) -> None:
    response = await client.post(SEARCH, json=window(SINCE, UNTIL, limit=1), headers={"Authorization": KEY})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.lower().startswith("x-ratelimit")]


async def test_faults_toggle_at_runtime(client: httpx.AsyncClient) -> None:
    body, auth = window(SINCE, UNTIL, limit=1), {"Authorization": KEY}
    await client.post("/_fake/faults", json={"error_rate": 1.0})
    failed = await client.post(SEARCH, json=body, headers=auth)
    assert failed.status_code == 500 and failed.json()["error_code"] == "FAIL" and failed.json()["success"] == "0"
    await client.post("/_fake/faults", json={"error_rate": 0, "rate429": 1})
    throttled = await client.get(QUEUES, headers={"X-Api-Key": KEY})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    settings = (await client.post("/_fake/faults", json={"rate429": 0, "latency_ms": 150})).json()
    assert settings["latency_ms"] == 150 and settings["rate429"] == 0
    started = time.monotonic()
    assert (await client.post(SEARCH, json=body, headers=auth)).status_code == 200
    assert time.monotonic() - started >= 0.15
    await client.post("/_fake/faults", json={"latency_ms": 0, "error_rate": 0.5, "seed": 11})
    statuses = Counter([(await client.post(SEARCH, json=body, headers=auth)).status_code for _ in range(40)])
    assert statuses[500] > 5 and statuses[200] > 5
    stats = (await client.get("/_fake/stats")).json()
    assert stats["responses_500"] == 1 + statuses[500] and stats["responses_429"] == 1
    assert stats["exceeded"] == 0
    refused = await client.post("/_fake/faults", json={"error_rate": 2})
    assert refused.status_code == 400 and "error_rate" in refused.json()["detail"]
    assert (await client.post("/_fake/faults", json={"media": {"a.mp3": "melt"}})).status_code == 400


# --- recordings ---------------------------------------------------------------------


async def test_media_bytes_are_deterministic_audio(state: FakeState, client: httpx.AsyncClient) -> None:
    auth = {"Authorization": KEY}
    paths = sorted({str(r["recording_url"]) for r in state.calls.records if r["recording_url"]})[:12]
    openings = set()
    for path in paths:
        response = await client.get(MEDIA, params={"url": path, "source": "ipcc"}, headers=auth)
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["content-length"] == str(64 * 1024) == str(len(response.content))
        assert response.content == recording_bytes(path, 64 * 1024)
        assert response.content[:3] == b"ID3" or response.content[:2] == b"\xff\xfb"
        openings.add(response.content[:3] == b"ID3")
        digest = (await client.get("/_fake/media-sha256", params={"url": path})).json()
        assert digest == {"url": path, "sha256": hashlib.sha256(response.content).hexdigest(), "size": 65536}
    assert openings == {True, False}
    again = await client.get(MEDIA, params={"url": paths[0], "source": "ipcc"}, headers=auth)
    assert again.content == recording_bytes(paths[0], 64 * 1024)
    assert recording_bytes(paths[0], 64 * 1024) != recording_bytes(paths[1], 64 * 1024)
    await client.post("/_fake/settings", json={"media_size": 1_000_000})
    big = await client.get(MEDIA, params={"url": paths[0], "source": "ipcc"}, headers=auth)
    assert len(big.content) == 1_000_000 and big.content[:4096] == again.content[:4096]
    unknown = await client.get(MEDIA, params={"url": "2024/01/13/nope.mp3", "source": "ipcc"}, headers=auth)
    assert unknown.status_code == 404
    assert (await client.get("/_fake/stats")).json()["requests"]["media"] == len(paths) + 3


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("html200", 200, "text/html"),
        ("json200", 200, "application/json"),
        ("404", 404, "text/html"),
        ("redirect_foreign", 302, None),
    ],
)
async def test_media_error_faults(
    state: FakeState, client: httpx.AsyncClient, fault: str, status: int, content_type: str | None
) -> None:
    path = recorded_path(state)
    await client.post("/_fake/faults", json={"media": {path: fault}})
    response = await client.get(MEDIA, params={"url": path, "source": "ipcc"}, headers={"Authorization": KEY})
    assert response.status_code == status
    if content_type is not None:
        assert response.headers["content-type"].startswith(content_type)
    else:
        assert response.headers["location"] == "http://evil.example.invalid/x.mp3"


async def test_media_truncated_500_then_ok_redirect_same_and_slow(
    state: FakeState, client: httpx.AsyncClient
) -> None:
    paths = sorted({str(r["recording_url"]) for r in state.calls.records if r["recording_url"]})
    truncated, flaky, moved, slow = paths[:4]
    faults = {truncated: "truncated", flaky: "500_then_ok:2", moved: "redirect_same", slow: "slow:300"}
    assert (await client.post("/_fake/faults", json={"media": faults})).status_code == 200
    auth = {"Authorization": KEY}

    def params(path: str) -> dict[str, str]:
        return {"url": path, "source": "ipcc"}

    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(MEDIA, params=params(truncated), headers=auth)
    statuses = [(await client.get(MEDIA, params=params(flaky), headers=auth)).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    redirect = await client.get(MEDIA, params=params(moved), headers=auth)
    assert redirect.status_code == 302 and redirect.headers["location"].startswith(str(client.base_url).rstrip("/"))
    followed = await client.get(MEDIA, params=params(moved), headers=auth, follow_redirects=True)
    assert followed.status_code == 200 and followed.content == recording_bytes(moved, 64 * 1024)
    started = time.monotonic()
    slowly = await client.get(MEDIA, params=params(slow), headers=auth)
    assert time.monotonic() - started >= 0.25 and slowly.content == recording_bytes(slow, 64 * 1024)
    cleared = await client.post("/_fake/faults", json={"media": {truncated: None}})
    assert truncated not in cleared.json()["media"]
    assert (await client.get(MEDIA, params=params(truncated), headers=auth)).status_code == 200


# --- ground truth admin ---------------------------------------------------------------


async def test_calls_can_be_dumped_replaced_and_extended(state: FakeState, client: httpx.AsyncClient) -> None:
    dumped = (await client.get("/_fake/calls")).json()
    assert dumped == state.calls.records and len(dumped) == 300
    extra = {"call_id": "x1", "starttime": "2024-01-13 23:59:59", "recording_url": "x/x1.mp3", "total_duration": "abc"}
    assert (await client.post("/_fake/calls?mode=extend", json=[extra])).json() == {"ok": True, "calls": 301}
    found = await client.post(
        SEARCH, json={**window(SINCE, UNTIL), "call_id": "x1"}, headers={"Authorization": KEY}
    )
    assert found.json()["data"] == [extra]
    media = await client.get(MEDIA, params={"url": "x/x1.mp3", "source": "ipcc"}, headers={"Authorization": KEY})
    assert media.status_code == 200
    bad = await client.post("/_fake/calls", json=[{"call_id": "y", "starttime": "yesterday"}])
    assert bad.status_code == 400 and "starttime" in bad.json()["detail"]
    assert (await client.post("/_fake/calls", json=[])).json() == {"ok": True, "calls": 0}


# --- webhook sender ----------------------------------------------------------------------


class Receiver:
    """A tiny webhook receiver: keeps what it got; answers 503 for chosen calls."""

    def __init__(self, key: str, unavailable_for: set[str]) -> None:
        self.key = key
        self.unavailable_for = unavailable_for
        self.received: list[dict[str, object]] = []

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            if request.headers.get("authorization") != self.key:
                return Response(status_code=401)
            assert request.headers["content-type"] == "application/json"
            event = orjson.loads(await request.body())
            if event["call_id"] in self.unavailable_for:
                return Response(status_code=503, headers={"Retry-After": "1"})
            self.received.append(event)
            return Response(b'{"ok":true}', media_type="application/json")

        return Starlette(routes=[Route("/webhooks/alohub", hook, methods=["POST"])])


async def test_sender_drops_duplicates_and_reorders() -> None:
    calls = generate_calls(150, seed=5, start=SINCE, end=UNTIL)
    events = events_for(calls, "http://127.0.0.1:9")
    refused_call = calls[0].call_id
    receiver = Receiver("hook-key", {refused_call})
    with run_app(receiver.app()) as server:
        report = await send_events(
            f"{server.base_url}/webhooks/alohub", "hook-key", events,
            concurrency=1, drop=0.1, duplicate=0.2, reorder=True, seed=9,
        )
    dropped = set(report.dropped_call_ids)
    assert 0 < len(dropped) < 40
    received_ids = [e["call_id"] for e in receiver.received]
    assert not dropped & set(received_ids)
    assert report.acknowledged == receiver.received
    assert report.duplicated > 10 and report.calls_out_of_order > 0
    kept = [e for e in events if e["call_id"] not in dropped]
    assert report.sent == len(kept) + report.duplicated
    assert report.unavailable == sum(e["call_id"] == refused_call for e in report.unacknowledged) > 0
    assert report.ok == len(receiver.received) and report.other == 0
    keys = Counter((e["call_id"], e["endtime"]) for e in receiver.received)
    refused_kept = sum(e["call_id"] == refused_call for e in kept)
    refused_duplicates = len(report.unacknowledged) - refused_kept
    assert sum(keys.values()) - len(keys) == report.duplicated - refused_duplicates
    assert {(e["call_id"], e["endtime"]) for e in receiver.received} == {
        (e["call_id"], e["endtime"]) for e in kept if e["call_id"] != refused_call
    }
    finals_first = 0
    for call_id in {c.call_id for c in calls if c.answered} - dropped - {refused_call}:
        order = [e["endtime"] != "" for e in receiver.received if e["call_id"] == call_id]
        finals_first += order[0]
    assert finals_first > 0
    assert report.connection_errors == 0 and not report.gave_up


async def test_sender_without_reorder_or_faults_keeps_order() -> None:
    calls = generate_calls(30, seed=6, start=SINCE, end=UNTIL)
    events = events_for(calls, "http://127.0.0.1:9")
    receiver = Receiver("k", set())
    with run_app(receiver.app()) as server:
        report = await send_events(f"{server.base_url}/webhooks/alohub", "k", events, concurrency=1, reorder=False)
    assert receiver.received == events
    assert report.calls_out_of_order == 0 and report.duplicated == 0 and report.dropped_call_ids == []


async def test_sender_retries_only_connection_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    events = events_for(generate_calls(3, seed=1, start=SINCE, end=UNTIL), "http://127.0.0.1:9")
    url = f"http://127.0.0.1:{closed_port}/webhooks/alohub"
    once = await send_events(url, "k", events, retry_connect_errors=False, reorder=False)
    assert once.connection_errors == len(events) and len(once.gave_up) == len(events) and once.sent == 0
    retried = await send_events(url, "k", events, max_attempts=3, concurrency=2, reorder=False)
    assert retried.connection_errors == 3 * len(events) and len(retried.gave_up) == len(events)
    bounded = await send_events(url, "k", events, max_attempts=50, deadline_s=0.3, reorder=False)
    assert bounded.elapsed_s < 2 and len(bounded.gave_up) == len(events)


# --- command line ------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="callstore fake-alohub")
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (("serve", "--error-rate", "2"), "--error-rate"),
        (("serve", "--calls", "lots"), "--calls"),
        (("serve", "--since", "2024-13-01"), "--since"),
        (("serve", "--tz", "Mars/Olympus"), "--tz"),
        (("serve", "--port", "70000"), "--port"),
        (("send", "--url", "ftp://x", "--key", "k"), "--url"),
        (("send", "--url", "http://127.0.0.1:9/", "--key", "k", "--drop", "-1"), "--drop"),
    ],
)
def test_command_rejects_bad_values_in_one_line(
    argv: tuple[str, ...], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_from_args(parse(*argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option in err


async def test_command_send_posts_events(capsys: pytest.CaptureFixture[str]) -> None:
    receiver = Receiver("k", set())
    with run_app(receiver.app()) as server:
        args = parse(
            "send", "--url", f"{server.base_url}/webhooks/alohub", "--key", "k", "--calls", "20",
            "--since", "2024-01-13", "--until", "2024-01-14",
        )
        # run_from_args runs its own event loop, so give it a thread of its own.
        status = await asyncio.to_thread(run_from_args, args)
    assert status == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["acknowledged"] == len(receiver.received) >= 20
