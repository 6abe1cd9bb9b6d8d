"""Where call history comes from, and the request shapes Alohub has not published.

Two sources, chosen by `CALLSTORE_HISTORY_SOURCE`:

- `searchCallV2` (default): `POST {ALOHUB_API_URL}/v1.0/base/searchCallV2`;
- `call-logs`: `POST {ALOHUB_XAPI_URL}/v1/reports/call-logs` on the gateway.

Their request bodies are assumptions (docs/alohub-assumptions.md), each kept
in one function below: change the shape there and nowhere else. Both
answer with the envelope (`totalRecord`, `data`) and records of the
searchCallV2 shape, and both windows are inclusive at both ends on the call's
start time, in whole seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sync.client import AlohubClient, Envelope

SEARCH_CALL_V2 = "searchCallV2"
CALL_LOGS = "call-logs"
SOURCES = (SEARCH_CALL_V2, CALL_LOGS)


@dataclass(frozen=True)
class Window:
    """Calls that started in [start, end): aware datetimes, whole seconds."""

    start: datetime
    end: datetime

    def inclusive_bounds(self, zone: ZoneInfo) -> tuple[str, str]:
        """ISO 8601 with the tenant zone's offset; Alohub's windows include both
        ends and start times have whole seconds, so [start, end) is [start, end - 1 s]."""
        return _iso(self.start, zone), _iso(self.end - timedelta(seconds=1), zone)

    def split(self, step: timedelta) -> list[Window]:
        out: list[Window] = []
        t = self.start
        while t < self.end:
            out.append(Window(t, min(self.end, t + step)))
            t += step
        return out


def _iso(t: datetime, zone: ZoneInfo) -> str:
    return t.astimezone(zone).isoformat(timespec="seconds")


def search_call_v2_request(window: Window, page: int, limit: int, zone: ZoneInfo) -> dict[str, Any]:
    """ASSUMPTION: searchCallV2 takes its V1 sibling's body (the V1 call search):
    `starttime`/`endtime` ISO 8601 with offset, `page` from 1, `limit`."""
    start, end = window.inclusive_bounds(zone)
    return {"starttime": start, "endtime": end, "page": page, "limit": limit}


def call_logs_request(window: Window, page: int, limit: int, zone: ZoneInfo) -> dict[str, Any]:
    """Documented (api-facts 4.4): `callStartTime`, `callEndtime` (lower-case t:
    `callEndTime` is silently ignored), `page` from 1, `limit` (max 100 advised)."""
    start, end = window.inclusive_bounds(zone)
    return {"callStartTime": start, "callEndtime": end, "page": page, "limit": limit}


class HistorySource(Protocol):
    name: str

    async def page(self, window: Window, page: int, limit: int) -> Envelope: ...


@dataclass
class SearchCallV2:
    client: AlohubClient
    name: str = SEARCH_CALL_V2

    async def page(self, window: Window, page: int, limit: int) -> Envelope:
        body = search_call_v2_request(window, page, limit, self.client.tenant.zone)
        return await self.client.call_api(self.name, "/v1.0/base/searchCallV2", body)


@dataclass
class CallLogs:
    client: AlohubClient
    name: str = CALL_LOGS

    async def page(self, window: Window, page: int, limit: int) -> Envelope:
        body = call_logs_request(window, page, limit, self.client.tenant.zone)
        return await self.client.gateway("POST", self.name, "/v1/reports/call-logs", body=body)


def history_source(name: str, client: AlohubClient) -> HistorySource:
    if name == CALL_LOGS:
        return CallLogs(client)
    return SearchCallV2(client)


def missing_settings(name: str, has_api_url: bool, has_api_key: bool) -> str | None:
    """Why `name` cannot be used by a tenant (None: it can)."""
    if not has_api_key:
        return "ALOHUB_API_KEY is not set"
    if name == SEARCH_CALL_V2 and not has_api_url:
        return "ALOHUB_API_URL is not set (searchCallV2 lives on the call API; or set CALLSTORE_HISTORY_SOURCE=call-logs)"
    return None


def history_payload(record: dict[str, Any], media_url: str | None) -> dict[str, Any]:
    """The payload stored and merged for one history record.

    The record is kept as Alohub sent it, except that a bare `recording_url`
    path is resolved to the MP3Export URL the webhook sends for the same call
    (`{media_url}/IPCCMedia/MP3Export.do?url=<path>&source=ipcc`), so both
    sources agree; the path as sent is kept in `_recording_path`. Direction
    case, `agent`, `transactionId` and `source` are normalised by the merge.
    """
    url = record.get("recording_url")
    if not isinstance(url, str) or not url.strip() or media_url is None:
        return record
    path = url.strip()
    if "://" in path or path.startswith("/IPCCMedia/"):
        return record
    resolved = f"{media_url.rstrip('/')}/IPCCMedia/MP3Export.do?url={quote(path, safe='/')}&source=ipcc"
    return {**record, "recording_url": resolved, "_recording_path": url}
