"""Item 6: an audit that cannot be misled.

Before: `client_addr` came from any `X-Forwarded-For` sent from 127.0.0.1
(uvicorn's default trust), and refused requests (401/403/404) on recording
routes left no audit row. Now forwarded headers count only from
CALLSTORE_TRUSTED_PROXIES, every refusal is a row with its status, and the
audit is readable per tenant (`GET /api/audit/recordings`, `callstore audit list`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.commands.serve import server_config
from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from store.settings import Settings
from tests.callstore.test_cli import run
from tests.security.world import SHARED_ID, World, make_tokens, populate, two_tenant_settings

SPOOFED = "203.0.113.9"


@contextlib.asynccontextmanager
async def served_as_in_production(settings: Settings, engine: AsyncEngine) -> AsyncIterator[str]:
    """The app under uvicorn with the settings `callstore serve` gives it."""
    app = create_app(settings, engine, build_extensions(settings, engine, "receiver", Metrics(), spool=False))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def audit_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(
            text("SELECT * FROM analytics.recording_access ORDER BY id"))]


async def test_forwarded_for_counts_only_from_trusted_proxies(engine: AsyncEngine, tmp_path: Path) -> None:
    settings = two_tenant_settings(data_dir=tmp_path)
    await populate(engine, settings)
    tokens = await make_tokens(engine)
    spoof = {**tokens.headers[("default", "compliance")], "X-Forwarded-For": SPOOFED}
    async with served_as_in_production(settings, engine) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get(f"/api/recordings/{SHARED_ID}", headers=spoof)).status_code == 200
    trusted = replace(settings, trusted_proxies=("127.0.0.0/8",))
    async with served_as_in_production(trusted, engine) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get(f"/api/recordings/{SHARED_ID}", headers=spoof)).status_code == 200
    rows = await audit_rows(engine)
    assert [r["client_addr"] for r in rows] == ["127.0.0.1", SPOOFED]


async def test_refused_requests_are_audited_with_their_status(world: World) -> None:
    c = world.client
    other_only = world.calls["acme"][1]
    await c.get(f"/api/recordings/{SHARED_ID}", params={"tenant": "acme"})  # 401, names a known tenant
    await c.get(f"/api/recordings/{SHARED_ID}", headers={"Authorization": "Bearer cs_guessed"})  # 401, no tenant
    await c.get(f"/api/recordings/{SHARED_ID}", headers=world.auth("default", "reader"))  # 403
    await c.get(f"/api/recordings/{other_only}", headers=world.auth("default", "compliance"))  # 404: acme's
    await c.get(f"/api/recordings/{SHARED_ID}", params={"tenant": "acme"},
                headers=world.auth("default", "compliance"))  # 404: acme's
    await c.get("/api/recordings/no-such-call", headers=world.auth("default", "compliance"))  # 404
    await c.get(f"/api/recordings/{SHARED_ID}", headers=world.auth("*", "admin"))  # 409: in both tenants
    await c.get("/api/calls", headers={"Authorization": "Bearer cs_guessed"})  # 401, not a recording route
    rows = await audit_rows(world.engine)
    got = [(r["status_code"], r["tenant_id"], r["call_id"], r["token_name"], r["bytes_sent"]) for r in rows]
    assert got == [
        (401, "acme", SHARED_ID, None, 0),
        (401, None, SHARED_ID, None, 0),
        (403, "default", SHARED_ID, "default-reader", 0),
        (404, "default", other_only, "default-compliance", 0),
        (404, "default", SHARED_ID, "default-compliance", 0),
        (404, "default", "no-such-call", "default-compliance", 0),
        (409, None, SHARED_ID, "operator", 0),
    ]
    assert all(r["client_addr"] == "127.0.0.1" and "user_name" in r for r in rows)


async def test_audit_route_is_tenant_scoped_filtered_and_paginated(world: World) -> None:
    c = world.client
    officer, other = world.auth("default", "compliance"), world.auth("acme", "compliance")
    for _ in range(3):
        assert (await c.get(f"/api/recordings/{SHARED_ID}", headers=officer)).status_code == 200
    assert (await c.get(f"/api/recordings/{world.calls['default'][1]}", headers=world.auth("default", "admin"))
            ).status_code == 200
    assert (await c.get(f"/api/recordings/{SHARED_ID}", headers=other)).status_code == 200
    async with world.engine.begin() as conn:  # a console user's play, as the console writes it
        await conn.execute(text("INSERT INTO callstore.recording_access (tenant_id, call_id, method, status_code,"
                                " bytes_planned, bytes_sent, complete, user_name) VALUES "
                                "('default', :c, 'GET', 200, 1, 1, true, 'lan.nguyen')"), {"c": SHARED_ID})

    async def page(params: dict[str, str], auth: dict[str, str] = officer) -> dict[str, Any]:
        r = await c.get("/api/audit/recordings", params=params, headers=auth)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    everything = (await page({}))["accesses"]
    assert len(everything) == 5 and {a["tenant_id"] for a in everything} == {"default"}
    assert [a["id"] for a in everything] == sorted((a["id"] for a in everything), reverse=True)
    assert len((await page({}, other))["accesses"]) == 1
    assert len((await page({"call": SHARED_ID}))["accesses"]) == 4
    token_id = str(world.token_ids[("default", "admin")])
    assert [a["token_name"] for a in (await page({"token": token_id}))["accesses"]] == ["default-admin"]
    assert [a["user_name"] for a in (await page({"user": "lan.nguyen"}))["accesses"]] == ["lan.nguyen"]
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert (await page({"from": later}))["accesses"] == []
    assert len((await page({"to": later}))["accesses"]) == 5

    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        body = await page({"limit": "2", **({"cursor": cursor} if cursor else {})})
        seen += [a["id"] for a in body["accesses"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["id"] for a in everything]

    assert (await c.get("/api/audit/recordings", headers=world.auth("default", "reader"))).status_code == 403
    for bad in ({"limit": "0"}, {"limit": "99999999999999"}, {"cursor": "abc"}, {"token": "x"},
                {"from": "0001-01-01"}, {"from": "2026-01-02", "to": "2026-01-01"}, {"call": "a\x00"}):
        r = await c.get("/api/audit/recordings", params=bad, headers=officer)
        assert r.status_code == 400 and r.json()["detail"].split(":")[0] in bad, (bad, r.text)


async def test_audit_list_command(world: World, db_url: str, tmp_path: Path) -> None:
    await world.client.get(f"/api/recordings/{SHARED_ID}", headers=world.auth("acme", "compliance"))
    await world.client.get(f"/api/recordings/{SHARED_ID}", headers=world.auth("default", "reader"))
    env = {"DATABASE_URL": db_url, "CALLSTORE_TENANTS_FILE": str(_tenants_file(tmp_path))}
    both = run("audit", "list", env=env, cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    assert len(both.stdout.splitlines()) == 3 and " 403 " in both.stdout and " 200 " in both.stdout
    acme = run("audit", "list", "--tenant", "acme", env=env, cwd=tmp_path)
    assert len(acme.stdout.splitlines()) == 2 and "acme-compliance" in acme.stdout
    bad = run("audit", "list", "--tenant", "nobody", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("callstore: error: --tenant")


def _tenants_file(tmp_path: Path) -> Path:
    f = tmp_path / "tenants.toml"
    f.write_text('[tenants.default]\nwebhook_keys = ["default-webhook-key-0001"]\n'
                 '[tenants.acme]\nwebhook_keys = ["acme-webhook-key-000001"]\n')
    return f
