"""The Alohub client against the fake Alohub (a real HTTP server): retries,
backoff, 429 and Retry-After, pacing to the rate limit, typed errors, and the
key kept out of every message."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from sync.client import AlohubClient, RetryPolicy, new_http_client
from sync.errors import (
    AlohubAuthError,
    AlohubError,
    AlohubProtocolError,
    AlohubRateLimited,
    AlohubUnavailable,
)
from sync.fake import FakeState, build_state, running_fake
from sync.ratelimit import RateLimits
from sync.sources import SearchCallV2, Window
from tests.conftest import serving
from tests.sync.alohub import API_KEY, SINCE, UNTIL, scaled_clock, tenant_for

FAST = RetryPolicy(attempts=6, base_delay_s=0.01, max_delay_s=0.05, give_up_after_s=20)


@pytest.fixture
def state() -> FakeState:
    return build_state(calls=300, seed=3, since=SINCE, until=UNTIL, api_key=API_KEY, tenant_id="20260310")


@pytest.fixture
def base_url(state: FakeState) -> Iterator[str]:
    with running_fake(state) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


async def admin(base_url: str, path: str, body: object) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        (await c.post(path, json=body)).raise_for_status()


async def stats(base_url: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base_url) as c:
        return (await c.get("/_fake/stats")).json()  # type: ignore[no-any-return]


def page_one(client: AlohubClient):  # type: ignore[no-untyped-def]
    return SearchCallV2(client).page(Window(SINCE, UNTIL), 1, 50)


async def test_both_auth_styles_and_the_envelope(base_url: str, http: httpx.AsyncClient) -> None:
    client = AlohubClient(http, tenant_for(base_url, alohub_tenant_id="20260310"))
    env = await page_one(client)
    assert env.total == 300 and len(env.data) == 50
    queues = await client.gateway("GET", "queues", "/v1/queues/inbound", params={"page": 0, "size": 2})
    assert queues.total == 5 and len(queues.data) == 2


async def test_wrong_key_or_tenant_is_a_typed_error_without_the_key(
        base_url: str, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = tenant_for(base_url, api_key="sk_live_Wrong-Key-99")
    with pytest.raises(AlohubAuthError) as info:
        await page_one(AlohubClient(http, wrong, retry=FAST))
    assert info.value.status == 401 and info.value.error_code == "UNAUTHORIZED"
    assert "searchCallV2" in str(info.value) and "ALOHUB_API_KEY" in str(info.value)
    other_tenant = AlohubClient(http, tenant_for(base_url, alohub_tenant_id="999"), retry=FAST)
    with pytest.raises(AlohubAuthError) as info2:
        await other_tenant.gateway("GET", "queues", "/v1/queues/inbound")
    for text in (str(info.value), repr(info.value), str(info2.value), repr(info2.value),
                 repr(AlohubClient(http, wrong)), repr(wrong), caplog.text):
        assert "Wrong-Key-99" not in text and API_KEY not in text


async def test_5xx_is_retried_with_backoff_until_it_succeeds(
        base_url: str, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await admin(base_url, "/_fake/faults", {"error_rate": 0.5, "seed": 11})
    # Which request draws which fault depends on arrival order, which the
    # machine's load decides: with 14 attempts, one of 20 requests failing
    # them all is a 1-in-800 chance, not the 1-in-4 of 6 attempts.
    patient = RetryPolicy(attempts=14, base_delay_s=0.01, max_delay_s=0.05, give_up_after_s=20)
    client = AlohubClient(http, tenant_for(base_url), retry=patient, rng=random.Random(1))
    results = await asyncio.gather(*(page_one(client) for _ in range(20)))
    assert all(r.total == 300 for r in results)
    seen = await stats(base_url)
    assert seen["responses_500"] > 0 and seen["requests"]["searchCallV2"] == 20 + seen["responses_500"]  # type: ignore[index]
    assert "HTTP 500 FAIL: System error; retrying" in caplog.text and API_KEY not in caplog.text


async def test_gives_up_with_a_clear_error_after_the_budget(base_url: str, http: httpx.AsyncClient) -> None:
    await admin(base_url, "/_fake/faults", {"error_rate": 1.0})
    client = AlohubClient(http, tenant_for(base_url), retry=FAST)
    with pytest.raises(AlohubUnavailable) as info:
        await page_one(client)
    assert not isinstance(info.value, AlohubRateLimited)
    assert str(info.value).startswith("searchCallV2 at 127.0.0.1: gave up after 6 attempts")
    assert "HTTP 500 FAIL" in str(info.value) and API_KEY not in repr(info.value)
    assert (await stats(base_url))["requests"]["searchCallV2"] == 6  # type: ignore[index]


async def test_network_errors_are_retried_then_given_up(http: httpx.AsyncClient) -> None:
    client = AlohubClient(http, tenant_for("http://127.0.0.1:9"), retry=FAST)
    with pytest.raises(AlohubUnavailable, match="gave up after 6 attempts .* ConnectError"):
        await page_one(client)


async def test_429_waits_retry_after_and_is_bounded(
        base_url: str, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="callstore.sync.client")
    await admin(base_url, "/_fake/faults", {"rate429": 1.0})
    client = AlohubClient(http, tenant_for(base_url), retry=RetryPolicy(give_up_after_s=2.5))
    with pytest.raises(AlohubRateLimited, match="RATE_LIMIT_EXCEEDED"):
        await page_one(client)
    # Retry-After: 1 each time: two waits of at least one second fit in 2.5 s, a third does not.
    waits = [float(r.getMessage().split("retrying in ")[1].split(" s")[0]) for r in caplog.records
             if "retrying in" in r.getMessage()]
    assert len(waits) == 2 and all(1.0 <= w <= 1.1 for w in waits)
    assert (await stats(base_url))["requests"]["searchCallV2"] == 3  # type: ignore[index]


async def test_paces_to_the_route_and_tenant_limits_without_exceeding(
        state: FakeState, base_url: str, http: httpx.AsyncClient) -> None:
    state.clock = scaled_clock(10)  # 10 s windows last 1 s
    await admin(base_url, "/_fake/settings", {"route_limit": 4, "tenant_limit": 6})
    limits = RateLimits(window_s=1.0)
    client = AlohubClient(http, tenant_for(base_url), limits=limits, retry=FAST)
    calls = [page_one(client) for _ in range(10)]
    calls += [client.gateway("GET", "queues", "/v1/queues/inbound") for _ in range(4)]
    await asyncio.gather(*calls)
    seen = await stats(base_url)
    assert seen["exceeded"] == 0 and seen["responses_429"] == 0
    assert seen["max_window_route"]["searchCallV2"] <= 4 and seen["max_window_tenant"] <= 6  # type: ignore[index]
    # It used what the limit allows: 14 requests at 6 per window need at least 3 windows.
    assert seen["max_window_tenant"] == 6


async def test_a_body_that_is_not_the_envelope_is_a_protocol_error(http: httpx.AsyncClient) -> None:
    async def html(request: object) -> Response:
        return Response("<html>maintenance</html>", media_type="text/html")

    async def failed(request: object) -> Response:
        return Response(b'{"success":"0","error_code":"FAIL","error_message":"key sk_live_Secret-Key-42 bad"}',
                        media_type="application/json")

    app = Starlette(routes=[Route("/api/v1.0/base/searchCallV2", html, methods=["POST"]),
                            Route("/v1/queues/inbound", failed)])
    async with serving(app) as url:
        client = AlohubClient(http, tenant_for(url), retry=FAST)
        with pytest.raises(AlohubProtocolError, match="not JSON"):
            await page_one(client)
        with pytest.raises(AlohubProtocolError) as info:
            await client.gateway("GET", "queues", "/v1/queues/inbound")
    assert "error_code='FAIL'" in str(info.value) and API_KEY not in str(info.value)
    assert isinstance(info.value, AlohubError)
