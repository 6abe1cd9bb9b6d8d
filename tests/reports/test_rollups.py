"""The rollups against an independent Python reference (tests/reports/reference.py).

Calls go in through store.ingest.ingest (the real write path), in batches with
refreshes in between, then change late (new events, a corrected start time,
re-attribution by SQL, deletion, new threshold versions); after every stage
the five queue views, the report totals and the agent rollup must equal the
reference exactly (ratios within 1e-9).
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.agent_rollups import rebuild_agent_rollups, refresh_agent_rollups
from reports.queries import totals
from reports.rollups import rebuild_rollups, refresh_rollups
from reports.thresholds import effective_thresholds, list_thresholds, set_thresholds
from store.ingest import Delivery, ingest
from store.settings import TenantSettings
from store.tenants import sync_tenants
from tests.reports.reference import Version, agent_reference, reference

TENANTS = {
    "default": TenantSettings("default", timezone="Asia/Ho_Chi_Minh"),
    "acme": TenantSettings("acme", timezone="Europe/Paris"),
    "kol": TenantSettings("kol", timezone="Asia/Kolkata"),
}
ZONES = {t: s.zone for t, s in TENANTS.items()}
# Paris changes clocks on 2026-03-29 (23 h day) and 2026-10-25 (25 h day).
DAYS = ["2026-03-28", "2026-03-29", "2026-10-24", "2026-10-25", "2026-10-26"]
QUEUES = {101: "19001001", 102: "19001002", 103: "19001003"}
UNKNOWN_HOTLINE = "19009999"
VIEWS = {"15m": "analytics.queue_stats_15m", "hour": "analytics.queue_stats_hourly", "day": "analytics.queue_stats_daily",
         "week": "analytics.queue_stats_weekly", "month": "analytics.queue_stats_monthly"}
COUNTS = ("offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress",
          "answered_within_sla", "abandoned_within_sla", "max_wait_seconds",
          "wait_answered_count", "wait_answered_sum", "talk_count", "talk_sum")
AGENTS = ("agent1", "agent2", "Nguyễn Thị Hoa", None)
RATIOS = ("service_level", "service_level_answered", "service_level_abandon_ok", "abandon_rate",
          "asa_seconds", "aht_seconds")


def fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def payload(call_id: str, started: datetime | None, *, kind: str, wait: int, talk: int, hotline: str,
            direction: str = "inbound") -> dict[str, Any]:
    p: dict[str, Any] = {"call_id": call_id, "direction": direction, "hotline": hotline,
                         "caller_number": "0912345678", "destination_number": hotline, "userName": "agent1"}
    if started is not None:
        p["starttime"] = fmt(started)
    if kind == "answered":
        p |= {"call_status": "answered", "answertime": fmt(started + timedelta(seconds=wait)),
              "endtime": fmt(started + timedelta(seconds=wait + talk)), "hangup_by": "customer"}
    elif kind == "answered_live":
        p |= {"call_status": "answered", "answertime": fmt(started + timedelta(seconds=wait))}
    elif kind == "status_only":  # answered by status, no answer time: wait unknown
        p |= {"call_status": "answered", "endtime": fmt(started + timedelta(seconds=wait + talk))}
    elif kind == "abandoned":
        p |= {"call_status": "noanswer", "endtime": fmt(started + timedelta(seconds=wait)), "hangup_by": "customer"}
    elif kind == "other":
        p |= {"call_status": "noanswer", "endtime": fmt(started + timedelta(seconds=wait)),
              "hangup_by": "agent" if wait % 2 else "system"}
    elif kind == "ringing":
        p |= {"call_status": "ringing"}
    return p


def generate(rng: random.Random, n: int) -> list[Delivery]:
    out = []
    for i in range(n):
        tenant = rng.choice(list(TENANTS))
        day = datetime.fromisoformat(rng.choice(DAYS))
        if rng.random() < 0.4:  # on a bucket edge, or across midnight
            minute = rng.choice([14, 15, 29, 30, 44, 45, 59, 0])
            started = day.replace(hour=rng.choice([0, 1, 2, 3, 9, 23]), minute=minute, second=rng.choice([0, 59]))
        else:
            started = day + timedelta(seconds=rng.randrange(86400))
        kind = rng.choice(["answered", "answered", "answered", "answered_live", "status_only", "abandoned",
                           "abandoned", "other", "ringing"])
        wait = rng.choice([0, 3, 4, 5, 6, 8, 19, 20, 21, 25, 60, rng.randrange(400)])
        hotline = rng.choice([*QUEUES.values(), UNKNOWN_HOTLINE])
        direction = "outbound" if rng.random() < 0.1 else "inbound"
        body = payload(f"c{i}", started, kind=kind, wait=wait, talk=rng.randrange(1, 900), hotline=hotline,
                       direction=direction)
        if rng.random() < 0.02:  # no start time: in no bucket
            del body["starttime"]
        agent = rng.choice(AGENTS)
        if agent is None:
            del body["userName"]
        else:
            body |= {"userName": agent, "holding_duration": rng.choice([0, 7, 45])}
        out.append(Delivery(tenant, f"c{i}", "webhook", body, datetime.now(timezone.utc)))
    # Fixed edge cases on the default tenant, queue 101.
    edge_day = datetime(2026, 10, 25, 23, 59, 50)
    fixed = [
        ("e_sla_eq", "answered", 20), ("e_sla_over", "answered", 21), ("e_short_eq", "abandoned", 5),
        ("e_short_under", "abandoned", 4), ("e_ab_sla_eq", "abandoned", 20), ("e_ab_sla_over", "abandoned", 21),
        ("e_midnight", "answered", 25), ("e_status", "status_only", 0), ("e_live", "answered_live", 7),
        ("e_ringing", "ringing", 0),
    ]
    for call_id, kind, wait in fixed:
        out.append(Delivery("default", call_id, "webhook",
                            payload(call_id, edge_day, kind=kind, wait=wait, talk=30, hotline=QUEUES[101]),
                            datetime.now(timezone.utc)))
    return out


async def setup(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await sync_tenants(conn, list(TENANTS.values()))
        for tenant in TENANTS:
            for queue_id, hotline in QUEUES.items():
                await conn.execute(
                    text("INSERT INTO callstore.queues (tenant_id, queue_id, name, callin_number, callin_number_canonical) "
                         "VALUES (:t, :q, :n, :h, :h)"),
                    {"t": tenant, "q": queue_id, "n": f"Queue {queue_id}", "h": hotline},
                )


async def load_calls(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT tenant_id, call_id, direction, call_status, queue_id, started_at, answered_at, ended_at, hangup_by, "
            "agent, hold_seconds FROM callstore.calls"))
        return [dict(r._mapping) for r in rows]


async def view_rows(engine: AsyncEngine, view: str) -> dict[tuple[str, int | None, datetime], dict[str, Any]]:
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(text(f"SELECT * FROM {view}"))]
    return {(r["tenant_id"], r["queue_id"], r["bucket_start"]): r for r in rows}


# The agent figures computed straight from the calls, as analytics.agent_daily did before its rollup.
_AGENTS_DIRECT = """
    SELECT c.tenant_id, c.agent, (c.started_at AT TIME ZONE t.timezone)::date AS day,
           callstore.bucket_day(c.started_at, t.timezone) AS day_start,
           count(*) FILTER (WHERE c.direction = 'inbound' AND c.outcome = 'answered') AS answered,
           count(*) FILTER (WHERE c.direction = 'outbound') AS outbound,
           coalesce(sum(c.talk_seconds) FILTER (WHERE c.outcome = 'answered'), 0) AS talk_seconds,
           coalesce(sum(c.hold_seconds), 0) AS hold_seconds,
           avg(c.talk_seconds) FILTER (WHERE c.outcome = 'answered')::float8 AS aht_seconds
    FROM analytics.calls c JOIN callstore.tenants t ON t.tenant_id = c.tenant_id
    WHERE c.agent IS NOT NULL AND c.started_at IS NOT NULL
    GROUP BY 1, 2, 3, 4"""
AGENT_FIGURES = ("day_start", "answered", "outbound", "talk_seconds", "hold_seconds", "aht_seconds")


async def assert_agents_match(engine: AsyncEngine, calls: list[dict[str, Any]]) -> None:
    async with engine.connect() as conn:
        got = {(r.tenant_id, r.agent, r.day): dict(r._mapping)
               for r in await conn.execute(text("SELECT * FROM analytics.agent_daily"))}
        direct = {(r.tenant_id, r.agent, r.day): dict(r._mapping) for r in await conn.execute(text(_AGENTS_DIRECT))}
    want = agent_reference(calls, ZONES)
    assert set(got) == set(want) == set(direct), set(got) ^ set(want)
    assert any(agent == "Nguyễn Thị Hoa" for _, agent, _ in got)
    for key, w in want.items():
        g = got[key]
        assert g["day_start"] == datetime.combine(key[2], datetime.min.time(), tzinfo=ZONES[key[0]]), key
        for c in AGENT_FIGURES[1:]:
            assert (g[c] is None) == (w[c] is None) == (direct[key][c] is None), (key, c)
            if w[c] is not None:
                assert math.isclose(g[c], w[c], abs_tol=1e-9) and math.isclose(direct[key][c], w[c], abs_tol=1e-9), \
                    (key, c, g[c], w[c], direct[key][c])


async def assert_matches(engine: AsyncEngine, versions: dict[tuple[str, int | None], list[Version]]) -> None:
    calls = await load_calls(engine)
    await assert_agents_match(engine, calls)
    whole = reference(calls, ZONES, versions, "all", all_queues=True)
    for interval, view in VIEWS.items():
        want = reference(calls, ZONES, versions, interval)
        got = await view_rows(engine, view)
        # The report's totals row over every row of a tenant equals the figures of all its calls at once.
        for tenant, zone in ZONES.items():
            total = totals([r for r in got.values() if r["tenant_id"] == tenant])
            w = whole[(tenant, "all", datetime.min.replace(tzinfo=zone))]
            for c in (*COUNTS[:9], *RATIOS):
                assert (total[c] is None) == (w[c] is None), (interval, tenant, c)
                assert total[c] is None or math.isclose(total[c], w[c], abs_tol=1e-9), (interval, tenant, c, total[c], w[c])
        assert set(got) == set(want), f"{interval}: bucket keys differ: {set(got) ^ set(want)}"
        for key, w in want.items():
            g = got[key]
            tenant, queue, start = key
            assert g["bucket_local"] == start.astimezone(ZONES[tenant]).replace(tzinfo=None), (interval, key)
            assert g["queue_name"] == (None if queue is None else f"Queue {queue}")
            for c in COUNTS:
                assert g[c] == w[c], (interval, key, c, g[c], w[c])
            for c in RATIOS:
                if w[c] is None:
                    assert g[c] is None, (interval, key, c, g[c])
                else:
                    assert g[c] is not None and math.isclose(g[c], w[c], rel_tol=0, abs_tol=1e-9), (interval, key, c)


async def refresh(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        await refresh_agent_rollups(conn)
        return (await refresh_rollups(conn)).buckets_15m


async def test_rollups_equal_reference_through_late_changes(engine: AsyncEngine) -> None:
    rng = random.Random(20261123)
    await setup(engine)
    deliveries = generate(rng, 900)
    versions: dict[tuple[str, int | None], list[Version]] = {}

    # Arrival in batches, with refreshes in between: incremental from the start.
    for i in range(0, len(deliveries), 250):
        async with engine.begin() as conn:
            await ingest(conn, deliveries[i:i + 250], TENANTS)
        await refresh(engine)
    await assert_matches(engine, versions)
    calls = {(c["tenant_id"], c["call_id"]): c for c in await load_calls(engine)}
    assert calls[("default", "e_sla_eq")]["queue_id"] == 101
    assert any(c["queue_id"] is None and c["direction"] == "inbound" for c in calls.values())
    assert any(c["started_at"] is None for c in calls.values())

    # Late events: ringing calls end (abandoned), live answered calls end, and
    # the call history corrects start times (moving calls between buckets).
    now = datetime.now(timezone.utc)
    late: list[Delivery] = []
    for d in deliveries:
        p = dict(d.payload)
        if "starttime" not in p:
            continue
        started = datetime.fromisoformat(p["starttime"])
        if p.get("call_status") == "ringing" and rng.random() < 0.6:
            late.append(Delivery(d.tenant_id, d.call_id, "webhook",
                                 p | {"call_status": "noanswer", "endtime": fmt(started + timedelta(seconds=rng.choice([4, 5, 30]))),
                                      "hangup_by": "customer"}, now))
        elif "answertime" in p and "endtime" not in p:
            late.append(Delivery(d.tenant_id, d.call_id, "webhook",
                                 p | {"endtime": fmt(datetime.fromisoformat(p["answertime"]) + timedelta(seconds=95))}, now))
        elif "endtime" in p and rng.random() < 0.08:
            shift = timedelta(seconds=rng.choice([-61, 59, 900, 3600, 86400]))
            moved = {k: fmt(datetime.fromisoformat(p[k]) + shift) for k in ("starttime", "answertime", "endtime") if k in p}
            late.append(Delivery(d.tenant_id, d.call_id, "history", p | moved, now))
    assert len(late) > 50
    async with engine.begin() as conn:
        result = await ingest(conn, late, TENANTS)
    assert len(result.changes) > 50
    # Re-attribution and deletion by SQL, as the queue catalogue sync would do.
    async with engine.begin() as conn:
        moved = await conn.execute(text(
            "UPDATE callstore.calls SET queue_id = 102 WHERE tenant_id = 'default' AND queue_id = 101 "
            "AND call_id NOT LIKE 'e_%' AND right(call_id, 1) IN ('1', '2', '3')"))
        assert moved.rowcount > 0
        await conn.execute(text(
            "UPDATE callstore.calls SET queue_id = NULL WHERE tenant_id = 'acme' AND queue_id = 103 AND right(call_id, 1) = '7'"))
        await conn.execute(text("DELETE FROM callstore.calls WHERE tenant_id = 'kol' AND right(call_id, 1) = '9'"))
    await refresh(engine)
    await assert_matches(engine, versions)

    # New threshold versions recompute history: for all time, and from a date.
    since = datetime(2026, 10, 25, 12, 0, tzinfo=ZONES["acme"])
    async with engine.begin() as conn:
        v1 = await set_thresholds(conn, "default", 101, sla_seconds=25, short_abandon_seconds=6)
        v2 = await set_thresholds(conn, "acme", 102, sla_seconds=10, short_abandon_seconds=3, valid_from=since)
        v3 = await set_thresholds(conn, "kol", None, sla_seconds=30, short_abandon_seconds=8)
        v4 = await set_thresholds(conn, "default", 101, sla_seconds=21, short_abandon_seconds=5, note="tuned")
    versions[("default", 101)] = [Version(v1, None, 25, 6), Version(v4, None, 21, 5)]
    versions[("acme", 102)] = [Version(v2, since, 10, 3)]
    versions[("kol", None)] = [Version(v3, None, 30, 8)]
    assert await refresh(engine) > 0
    await assert_matches(engine, versions)
    async with engine.connect() as conn:
        assert await effective_thresholds(conn, "acme", 102, since - timedelta(seconds=1)) == (20, 5)
        assert await effective_thresholds(conn, "acme", 102, since) == (10, 3)
        assert await effective_thresholds(conn, "default", 101, since) == (21, 5)
        assert [v.id for v in await list_thresholds(conn)] == sorted([v1, v2, v3, v4], key=lambda i: (
            {v1: "default", v2: "acme", v3: "kol", v4: "default"}[i], i))

    # Nothing dirty: a refresh does nothing; a rebuild gives the same rows.
    assert await refresh(engine) == 0
    before = {v: await view_rows(engine, v) for v in VIEWS.values()}
    async with engine.begin() as conn:
        await rebuild_rollups(conn)
        await rebuild_agent_rollups(conn)
    await assert_agents_match(engine, await load_calls(engine))
    for v in VIEWS.values():
        after = await view_rows(engine, v)
        assert after.keys() == before[v].keys()
        for k in after:
            assert {c: after[k][c] for c in COUNTS} == {c: before[v][k][c] for c in COUNTS}


async def test_tenant_zone_change_moves_buckets(engine: AsyncEngine) -> None:
    await setup(engine)
    started = "2026-10-26 09:40:00"
    async with engine.begin() as conn:
        await ingest(conn, [Delivery("kol", "z1", "webhook", payload("z1", datetime.fromisoformat(started), kind="answered",
                                                                     wait=3, talk=10, hotline=QUEUES[101]),
                                     datetime.now(timezone.utc))], TENANTS)
    await refresh(engine)
    async with engine.begin() as conn:
        await sync_tenants(conn, [TenantSettings("kol", timezone="Asia/Ho_Chi_Minh")])
    await refresh(engine)
    rows = await view_rows(engine, VIEWS["hour"])
    # 09:40 in Kolkata is 11:10 in Ho Chi Minh City: the hour starts at 11:00 there.
    [(key, row)] = rows.items()
    assert row["bucket_local"] == datetime(2026, 10, 26, 11, 0)
    assert key[2] == datetime(2026, 10, 26, 4, 0, tzinfo=timezone.utc)
    # The agent's day moves with the zone too (midnight in Ho Chi Minh City is 17:00 UTC).
    async with engine.connect() as conn:
        [agent_day] = (await conn.execute(text("SELECT agent, day, day_start, answered FROM analytics.agent_daily"))).all()
    assert tuple(agent_day) == ("agent1", date(2026, 10, 26), datetime(2026, 10, 25, 17, 0, tzinfo=timezone.utc), 1)


async def test_threshold_versions_are_append_only(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await set_thresholds(conn, "default", 5, sla_seconds=30, short_abandon_seconds=5)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE callstore.queue_thresholds SET sla_seconds = 1"))
    except Exception as exc:  # noqa: BLE001
        assert "append-only" in str(exc)
    else:
        raise AssertionError("an update of a threshold version must fail")


async def test_dirty_keys_are_written_with_the_call(engine: AsyncEngine) -> None:
    """The trigger writes keys in the writer's transaction: a rollback leaves none."""
    await setup(engine)
    d = Delivery("default", "t1", "webhook", payload("t1", datetime(2026, 10, 26, 9, 0), kind="ringing", wait=0,
                                                     talk=0, hotline=QUEUES[102]), datetime.now(timezone.utc))
    async with engine.connect() as conn:
        await ingest(conn, [d], TENANTS)
        assert await conn.scalar(text("SELECT count(*) FROM callstore.rollup_dirty")) == 1
        await conn.rollback()
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore.rollup_dirty")) == 0
    # An update that changes nothing a figure depends on marks nothing.
    async with engine.begin() as conn:
        await ingest(conn, [d], TENANTS)
    await refresh(engine)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE callstore.calls SET recording_url = 'x', agent = 'b'"))
        assert await conn.scalar(text("SELECT count(*) FROM callstore.rollup_dirty")) == 0
        await conn.execute(text("UPDATE callstore.calls SET ended_at = started_at + interval '9 s', hangup_by = 'customer'"))
        assert await conn.scalar(text("SELECT count(*) FROM callstore.rollup_dirty")) == 1


async def test_threshold_functions_stay_inlinable(engine: AsyncEngine) -> None:
    """The compiled thresholds must inline (a table lookup per row costs ~10 us: 100 s over 10M calls)."""
    async with engine.begin() as conn:
        await set_thresholds(conn, "default", 7, sla_seconds=30, short_abandon_seconds=5)
        await set_thresholds(conn, "acme", None, sla_seconds=15, short_abandon_seconds=4,
                             valid_from=datetime(2026, 1, 1, tzinfo=timezone.utc))
        plan = "\n".join(r[0] for r in await conn.execute(text(
            "EXPLAIN VERBOSE SELECT answered_within_sla, outcome FROM analytics.calls")))
    assert "sla_seconds" not in plan and "short_abandon_seconds" not in plan, plan
    assert "'acme'" in plan  # the compiled CASE is in the plan instead


def test_rollup_job_is_scheduled() -> None:
    from callstore.composition import build_jobs
    from tests.conftest import test_settings

    [job] = [j for j in build_jobs(test_settings()) if j.name == "rollups"]
    assert job.every_seconds <= 10 and job.disabled_reason is None
