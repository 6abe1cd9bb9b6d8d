"""Where alert messages go: a generic webhook signed as Standard Webhooks
specifies (https://www.standardwebhooks.com), and a Slack incoming webhook.

Each send retries network errors, 429 and 5xx a bounded number of times with
backoff; the outbox retries across job runs after that. Error texts name the
notifier and the status, never the URL (Slack's carries its token).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from reports.alerts.message import slack_body
from store.settings import Settings

#: Pauses between the attempts of one send (so at most len + 1 attempts).
RETRY_DELAYS: tuple[float, ...] = (0.5, 2.0)
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class DeliveryError(Exception):
    """A message was not accepted. Carries no URL and no secret."""

    def __init__(self, reason: str, http_status: int | None = None) -> None:
        self.reason = reason
        self.http_status = http_status
        super().__init__(reason)


class Notifier(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, client: httpx.AsyncClient, message_id: str, payload: dict[str, Any]) -> None: ...


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks `webhook-signature`: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@dataclass(frozen=True)
class WebhookNotifier:
    url: str = field(repr=False)
    secret: str = field(repr=False)
    retry_delays: Sequence[float] = RETRY_DELAYS
    name: str = "webhook"

    async def send(self, client: httpx.AsyncClient, message_id: str, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)

        def headers() -> dict[str, str]:  # signed again per attempt: the timestamp must be fresh
            ts = int(time.time())
            return {"content-type": "application/json", "webhook-id": message_id,
                    "webhook-timestamp": str(ts), "webhook-signature": sign(self.secret, message_id, ts, body)}

        await post_with_retries(client, self.name, self.url, body, headers, self.retry_delays)


@dataclass(frozen=True)
class SlackNotifier:
    url: str = field(repr=False)
    retry_delays: Sequence[float] = RETRY_DELAYS
    name: str = "slack"

    async def send(self, client: httpx.AsyncClient, message_id: str, payload: dict[str, Any]) -> None:
        body = orjson.dumps(slack_body(payload))
        await post_with_retries(client, self.name, self.url, body, lambda: {"content-type": "application/json"},
                                self.retry_delays)


def build_notifiers(settings: Settings, retry_delays: Sequence[float] = RETRY_DELAYS) -> dict[str, Notifier]:
    out: dict[str, Notifier] = {}
    if settings.alert_webhook_url and settings.alert_webhook_secret:
        out["webhook"] = WebhookNotifier(settings.alert_webhook_url, settings.alert_webhook_secret, retry_delays)
    if settings.alert_slack_url:
        out["slack"] = SlackNotifier(settings.alert_slack_url, retry_delays)
    return out


async def post_with_retries(client: httpx.AsyncClient, name: str, url: str, body: bytes,
                            headers: Any, delays: Sequence[float]) -> None:
    last = DeliveryError(f"{name}: not attempted")
    for attempt in range(len(delays) + 1):
        if attempt:
            await asyncio.sleep(delays[attempt - 1])
        try:
            response = await client.post(url, content=body, headers=headers(), timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            last = DeliveryError(f"{name}: {type(exc).__name__}")
            continue
        if response.is_success:
            return
        last = DeliveryError(f"{name}: HTTP {response.status_code}", response.status_code)
        if response.status_code not in (408, 425, 429) and response.status_code < 500:
            break  # the receiver refuses this message; retrying will not change its mind
    raise last
