"""Item 5: readers see no secrets.

Before: a reader token got the raw webhook payloads, including a signed
`recording_url` with its credentials and query string. Now raw payloads are
for compliance and admin; a reader sees the URL without them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from receiver.calls_api import public_url
from tests.security.world import SHARED_ID, SIGNED_URL, World


async def test_a_reader_gets_no_payload_and_a_bare_recording_url(world: World) -> None:
    r = await world.client.get(f"/api/calls/{SHARED_ID}", headers=world.auth("default", "reader"))
    assert r.status_code == 200
    body = r.text
    for secret in ("SECRET-SIG", "media-pass", "media-user", "secret note", "signature"):
        assert secret not in body
    event = r.json()["events"][0]
    assert event["payload"] is None
    assert event["recording_url"] == "https://media.example/IPCCMedia/MP3Export.do"


@pytest.mark.parametrize("role", ["compliance", "admin"])
async def test_compliance_and_admin_get_the_raw_payload(world: World, role: str) -> None:
    r = await world.client.get(f"/api/calls/{SHARED_ID}", headers=world.auth("acme", role))
    event = r.json()["events"][0]
    assert event["payload"]["recording_url"] == SIGNED_URL and event["payload"]["note"] == "acme secret note"


async def test_a_reader_sees_download_errors_without_the_signature(world: World) -> None:
    async with world.engine.begin() as conn:
        await conn.execute(text("UPDATE callstore.recordings SET status = 'pending', storage_key = NULL, "
                                "last_error = :e WHERE tenant_id = 'default' AND call_id = :c"),
                           {"e": f"ConnectError: cannot reach {SIGNED_URL}", "c": SHARED_ID})
    reader = await world.client.get(f"/api/calls/{SHARED_ID}", headers=world.auth("default", "reader"))
    error = reader.json()["recording"]["last_error"]
    assert error == "ConnectError: cannot reach https://media.example/IPCCMedia/MP3Export.do"
    officer = await world.client.get(f"/api/calls/{SHARED_ID}", headers=world.auth("default", "compliance"))
    assert SIGNED_URL in officer.json()["recording"]["last_error"]


async def test_a_reader_search_carries_no_url(world: World) -> None:
    r = await world.client.get("/api/calls", params={"limit": 100}, headers=world.auth("default", "reader"))
    assert r.status_code == 200 and "SECRET-SIG" not in r.text and "media-pass" not in r.text


@pytest.mark.parametrize(("url", "bare"), [
    ("https://u:p@h.example:8443/a/b.mp3?sig=1#x", "https://h.example:8443/a/b.mp3"),
    ("http://[::1]:9/x?y", "http://[::1]:9/x"),
    ("/IPCCMedia/x.mp3?token=abc", "/IPCCMedia/x.mp3"),
    ("https://h.example/a.mp3", "https://h.example/a.mp3"),
    ("http://[not-an-address/x?sig=1", None),
    ("https://h.example:99999/x?sig=1", "https://h.example/x"),
])
def test_public_url(url: str, bare: str | None) -> None:
    assert public_url(url) == bare
