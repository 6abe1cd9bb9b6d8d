"""Item 1: API tokens belong to one tenant.

Before: a reader token of tenant A listed and opened tenant B's calls
(`?tenant=B`), raw payloads included, and a compliance token played any
tenant's recordings. Now every route, for every role, answers another
tenant's data exactly as it answers data that does not exist (404), and a
token without `tenant=` reads its own tenant.
"""

from __future__ import annotations

import pytest

from store.tokens import ROLES
from tests.security.world import SHARED_ID, World

ROLE_OF_ROUTE = {"/api/calls": "reader", "/api/calls/{call_id}": "reader", "/api/reports/queues": "reader",
                 "/api/reports/agents": "reader", "/api/reports/campaigns": "reader",
                 "/api/recordings/{call_id}": "compliance", "/api/audit/recordings": "compliance"}
REPORT = {"from": "2026-11-19", "to": "2026-11-22", "interval": "day"}


def requests_for(world: World, other: str) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Per route: requests that ask for tenant `other`'s data."""
    theirs = world.calls[other][2]  # a call only `other` has
    return {
        "/api/calls": [("/api/calls", {"tenant": other})],
        "/api/calls/{call_id}": [(f"/api/calls/{theirs}", {}), (f"/api/calls/{theirs}", {"tenant": other}),
                                 (f"/api/calls/{SHARED_ID}", {"tenant": other})],
        "/api/reports/queues": [("/api/reports/queues", {**REPORT, "tenant": other})],
        "/api/reports/agents": [("/api/reports/agents", {"from": "2026-11-19", "to": "2026-11-22", "tenant": other})],
        "/api/reports/campaigns": [("/api/reports/campaigns", {"from": "2026-11-19", "tenant": other})],
        "/api/recordings/{call_id}": [(f"/api/recordings/{world.calls[other][1]}", {}),
                                      (f"/api/recordings/{SHARED_ID}", {"tenant": other})],
        "/api/audit/recordings": [("/api/audit/recordings", {"tenant": other})],
    }


async def test_every_route_covered(world: World) -> None:
    doc = (await world.client.get("/openapi.json")).json()
    assert {p for p in doc["paths"] if p.startswith("/api/")} == set(ROLE_OF_ROUTE)


@pytest.mark.parametrize("role", ROLES)
async def test_other_tenant_is_not_found_for_every_role_and_route(world: World, role: str) -> None:
    for mine, other in (("default", "acme"), ("acme", "default")):
        auth = world.auth(mine, role)
        for route, requests in requests_for(world, other).items():
            allowed = ROLES.index(role) >= ROLES.index(ROLE_OF_ROUTE[route])
            for path, params in requests:
                r = await world.client.get(path, params=params, headers=auth)
                if not allowed:
                    assert r.status_code == 403, (role, path, params, r.text)
                    continue
                assert r.status_code == 404, (role, path, params, r.text)
                # The answer is that of something absent: nothing confirms that it exists.
                def hide(s: str) -> str:
                    for real, fake in ((world.calls[other][2], "no-such-call"), (world.calls[other][1], "no-such-call"),
                                       (f"'{other}'", "'no-such-tenant'")):
                        s = s.replace(real, fake)
                    return s

                absent_params = {**params, "tenant": "no-such-tenant"} if "tenant" in params else params
                absent = await world.client.get(hide(path), params=absent_params, headers=auth)
                assert absent.status_code == 404
                assert hide(r.text) == absent.text, (path, params)


@pytest.mark.parametrize("role", ROLES)
async def test_without_tenant_a_token_reads_its_own(world: World, role: str) -> None:
    for mine in ("default", "acme"):
        auth = world.auth(mine, role)
        calls = (await world.client.get("/api/calls", params={"limit": 100}, headers=auth)).json()["calls"]
        assert {c["tenant_id"] for c in calls} == {mine}
        assert sorted(c["call_id"] for c in calls) == sorted(world.calls[mine])
        shared = (await world.client.get(f"/api/calls/{SHARED_ID}", headers=auth)).json()
        assert shared["call"]["tenant_id"] == mine  # not 409: the other tenant's call is invisible
        report = await world.client.get("/api/reports/queues", params=REPORT, headers=auth)
        assert report.status_code == 200 and report.json()["tenant_id"] == mine
        agents = await world.client.get("/api/reports/agents", params={"from": "2026-11-19"}, headers=auth)
        assert agents.status_code == 200 and agents.json()["tenant_id"] == mine
        campaigns = await world.client.get("/api/reports/campaigns", params={"from": "2026-11-19"}, headers=auth)
        assert campaigns.status_code == 200 and campaigns.json()["tenant_id"] == mine
        if role != "reader":
            played = await world.client.get(f"/api/recordings/{SHARED_ID}", headers=auth)
            assert played.status_code == 200
            audit = (await world.client.get("/api/audit/recordings", headers=auth)).json()["accesses"]
            assert audit and {a["tenant_id"] for a in audit} == {mine}


async def test_naming_its_own_tenant_is_fine(world: World) -> None:
    auth = world.auth("acme", "reader")
    r = await world.client.get("/api/calls", params={"tenant": "acme"}, headers=auth)
    assert r.status_code == 200 and {c["tenant_id"] for c in r.json()["calls"]} == {"acme"}


async def test_a_cursor_of_another_tenant_is_refused(world: World) -> None:
    op = world.auth("*", "admin")
    page = (await world.client.get("/api/calls", params={"tenant": "acme", "limit": 2}, headers=op)).json()
    r = await world.client.get("/api/calls", params={"cursor": page["next_cursor"]},
                               headers=world.auth("default", "admin"))
    assert r.status_code == 400 and r.json()["detail"].startswith("cursor:")


async def test_the_operator_token_reads_every_tenant_by_name(world: World) -> None:
    op = world.auth("*", "admin")
    for tenant in ("default", "acme"):
        calls = (await world.client.get("/api/calls", params={"tenant": tenant}, headers=op)).json()["calls"]
        assert {c["tenant_id"] for c in calls} == {tenant}
        played = await world.client.get(f"/api/recordings/{SHARED_ID}", params={"tenant": tenant}, headers=op)
        assert played.status_code == 200
    # Several tenants: a search names one; an id in both is ambiguous.
    r = await world.client.get("/api/calls", headers=op)
    assert r.status_code == 400 and r.json()["detail"].startswith("tenant:")
    assert (await world.client.get(f"/api/calls/{SHARED_ID}", headers=op)).status_code == 409
    audit = (await world.client.get("/api/audit/recordings", headers=op)).json()["accesses"]
    assert {a["tenant_id"] for a in audit} == {"default", "acme"}
    unknown = await world.client.get("/api/calls", params={"tenant": "nobody"}, headers=op)
    assert unknown.status_code == 404


async def test_readers_cannot_be_upgraded_by_parameters(world: World) -> None:
    # Neither an all-tenants flag nor a role in the query changes what a token may do.
    auth = world.auth("default", "reader")
    r = await world.client.get(f"/api/recordings/{SHARED_ID}", params={"role": "admin", "all_tenants": "1"},
                               headers=auth)
    assert r.status_code == 403
