"""The one Alohub client: auth, timeouts, retries, rate limits and the envelope.

Two of Alohub's API surfaces are used (api-facts.md section 1):

- the call API (`ALOHUB_API_URL`, searchCallV2): the raw key in `Authorization`;
- the gateway (`ALOHUB_XAPI_URL`, queues and call-logs): `X-Api-Key`, plus
  `X-Tenant-ID` when `ALOHUB_TENANT_ID` is set.

Every request goes through `AlohubClient.request`: it waits for rate-limit
quota (sync/ratelimit.py), sends with explicit timeouts, retries network
errors, timeouts and 5xx with exponential backoff and full jitter, waits as a
429's `Retry-After` says, and gives up with `AlohubUnavailable` once the
retry budget (attempts and seconds) is spent. A 2xx body must be the
envelope `{"success": "1", "error_code": "SUCCESS", "totalRecord", "data"}`;
anything else becomes a typed error (sync/errors.py).

The `httpx.AsyncClient` is created by the caller (`new_http_client`) and
shared by every tenant's client of the process; so is the `RateLimits`.
The API key lives only in request headers: not in reprs, logs or errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from store.settings import TenantSettings
from sync.errors import HINTS, AlohubError, AlohubProtocolError, AlohubRateLimited, AlohubUnavailable, refusal
from sync.ratelimit import RateLimits

log = logging.getLogger("callstore.sync.client")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=60.0)
USER_AGENT = "callstore/0.1 (+https://github.com/callstore)"


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying one request before giving up."""

    attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    #: Total time budget of one request, waits included.
    give_up_after_s: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Envelope:
    """A successful answer: `data` records and `totalRecord` (None if absent)."""

    total: int | None
    data: list[dict[str, Any]]


def new_http_client(*, timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 32) -> httpx.AsyncClient:
    """The process's HTTP client for Alohub (the caller owns and closes it)."""
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


_RETRYABLE = (httpx.TransportError,)  # connect/read/write errors, timeouts, protocol errors


class AlohubClient:
    """One tenant's view of Alohub over the shared HTTP client and rate limits."""

    def __init__(self, http: httpx.AsyncClient, tenant: TenantSettings, *, limits: RateLimits | None = None,
                 retry: RetryPolicy = RetryPolicy(), rng: random.Random | None = None) -> None:
        self._http = http
        self.tenant = tenant
        self.limits = limits or RateLimits()
        self.retry = retry
        self._rng = rng or random.Random()
        # The rate-limit bucket key: the tenant's key identifies its quota, but
        # only a digest of it is kept in memory next to names shown in logs.
        self._quota_key = hashlib.sha256((tenant.api_key or tenant.tenant_id).encode()).hexdigest()[:16]
        self.limits.configure(self._quota_key, per_second=tenant.max_requests_per_second,
                              concurrent=tenant.max_concurrent_requests)

    def _observe(self, outcome: str) -> None:
        if self.limits.observe is not None:
            self.limits.observe(self.tenant.tenant_id, outcome)

    def __repr__(self) -> str:
        return f"AlohubClient(tenant={self.tenant.tenant_id!r}, api_url={self.tenant.api_url!r}, xapi_url={self.tenant.xapi_url!r})"

    # -- the two surfaces ---------------------------------------------------

    async def call_api(self, route: str, path: str, body: Mapping[str, Any]) -> Envelope:
        """POST to the call API (`ALOHUB_API_URL`), raw key in `Authorization`."""
        if not self.tenant.api_url:
            raise AlohubError(f"{route}: ALOHUB_API_URL is not set for tenant {self.tenant.tenant_id!r}", route=route)
        headers = {"Authorization": self._key(route), "Content-Type": "application/json"}
        return await self.request("POST", route, self.tenant.api_url + path, headers, content=orjson.dumps(body))

    async def gateway(self, method: str, route: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Mapping[str, Any] | None = None) -> Envelope:
        """Call the xapi gateway (`ALOHUB_XAPI_URL`) with `X-Api-Key` (and `X-Tenant-ID`)."""
        headers = {"X-Api-Key": self._key(route)}
        if self.tenant.alohub_tenant_id:
            headers["X-Tenant-ID"] = self.tenant.alohub_tenant_id
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = orjson.dumps(body)
        return await self.request(method, route, self.tenant.xapi_url + path, headers, params=params, content=content)

    def _key(self, route: str) -> str:
        if not self.tenant.api_key:
            raise AlohubError(f"{route}: ALOHUB_API_KEY is not set for tenant {self.tenant.tenant_id!r}", route=route)
        return self.tenant.api_key

    # -- one request, with retries ------------------------------------------

    async def request(self, method: str, route: str, url: str, headers: Mapping[str, str], *,
                      params: Mapping[str, Any] | None = None, content: bytes | None = None) -> Envelope:
        where = f"{route} at {httpx.URL(url).host}"
        started = time.monotonic()
        deadline = started + self.retry.give_up_after_s
        attempt = 0
        last = "no answer"
        rate_limited = False
        while True:
            attempt += 1
            ticket = await self.limits.acquire(self._quota_key, route)
            try:
                response = await self._http.request(method, url, headers=headers, params=params, content=content)
            except _RETRYABLE as exc:
                self.limits.release(ticket, None)
                self._observe("network_error")
                last, rate_limited = f"{type(exc).__name__}", False
                delay = self.retry.backoff(attempt, self._rng)
            except BaseException:
                # Cancelled (e.g. the tenant's time budget ran out): the ticket
                # and its concurrency slot are given back.
                self.limits.release(ticket, None)
                raise
            else:
                status = response.status_code
                self._observe("ok" if 200 <= status < 300 else "rate_limited" if status == 429
                              else "server_error" if status >= 500 else "client_error")
                passed_auth = status != 401
                retry_after = _retry_after(response.headers.get("retry-after")) if status == 429 else None
                self.limits.release(ticket, response.headers if passed_auth else None, status=status,
                                    retry_after=retry_after)
                if 200 <= status < 300:
                    return self._envelope(where, route, status, response.content)
                code, message = self._error_of(response.content)
                last = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
                if status == 429:
                    rate_limited = True
                    delay = retry_after if retry_after is not None else self.limits.window_s
                    delay += self._rng.uniform(0, 0.1)  # spread the retries of concurrent callers
                elif status >= 500 or status == 408:
                    rate_limited = False
                    delay = self.retry.backoff(attempt, self._rng)
                else:
                    cls = refusal(status)
                    hint = HINTS.get(cls, "")
                    raise cls(f"{where}: {last}" + (f"; {hint}" if hint else ""), route=route, status=status,
                              error_code=code)
            elapsed = time.monotonic() - started
            if (attempt >= self.retry.attempts and not rate_limited) or time.monotonic() + delay > deadline:
                cls = AlohubRateLimited if rate_limited else AlohubUnavailable
                raise cls(f"{where}: gave up after {attempt} attempts in {elapsed:.1f} s; last answer: {last}",
                          route=route)
            log.info("%s: %s; retrying in %.2f s (attempt %d)", where, last, delay, attempt)
            await asyncio.sleep(delay)

    def _envelope(self, where: str, route: str, status: int, body: bytes) -> Envelope:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise AlohubProtocolError(f"{where}: HTTP {status} with a body that is not JSON ({len(body)} bytes)",
                                      route=route, status=status) from None
        if not isinstance(doc, dict):
            raise AlohubProtocolError(f"{where}: HTTP {status} with JSON that is not an object", route=route,
                                      status=status)
        success = doc.get("success")
        if success is not None and str(success) != "1":
            code, message = self._error_of(body)
            raise AlohubProtocolError(f"{where}: success={success!r} error_code={code!r}: {message}", route=route,
                                      status=status, error_code=code)
        data = doc.get("data", [])
        if data is None:
            data = []
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise AlohubProtocolError(f"{where}: `data` is not a list of objects", route=route, status=status)
        total = doc.get("totalRecord")
        if total is not None:
            try:
                total = int(total)
            except (TypeError, ValueError):
                raise AlohubProtocolError(f"{where}: totalRecord {total!r} is not a number", route=route,
                                          status=status) from None
        return Envelope(total=total, data=data)

    def _error_of(self, body: bytes) -> tuple[str | None, str]:
        """Alohub's `error_code` and `error_message` (scrubbed of the key, one short line)."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, ""
        if not isinstance(doc, dict):
            return None, ""
        code = doc.get("error_code")
        message = str(doc.get("error_message") or "")
        key = self.tenant.api_key
        if key and key in message:
            message = message.replace(key, "***")
        return (str(code) if code is not None else None), message.splitlines()[0][:200] if message else ""


def _retry_after(value: str | None) -> float | None:
    """Seconds from `Retry-After` (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
