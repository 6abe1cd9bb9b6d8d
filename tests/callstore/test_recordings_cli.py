"""`callstore recordings fetch|verify|purge` as a user runs them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.recordings import Access, open_access
from sync.fake import recording_link, running_fake
from tests.callstore.test_cli import run
from tests.recording_fixtures import KEY, archive_settings, fake_state, load, with_recordings


def cli_env(db_url: str, data_dir: Path, base: str, media_hosts: str = "127.0.0.1") -> dict[str, str]:
    """What an operator sets to run the recordings commands against the fake."""
    return {"DATABASE_URL": db_url, "CALLSTORE_DATA_DIR": str(data_dir), "ALOHUB_API_KEY": KEY,
            "ALOHUB_MEDIA_URL": base, "ALOHUB_MEDIA_HOSTS": media_hosts}


async def test_fetch_verify_purge(db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=30)
    records = with_recordings(state)[:5]
    data_dir = tmp_path / "data"
    with running_fake(state) as base:
        env = cli_env(db_url, data_dir, base)
        await load(engine, archive_settings(base, data_dir), records)
        fetched = run("recordings", "fetch", "--concurrency", "2", env=env, cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr
        assert "5 stored" in fetched.stdout
        assert "5 recordings to go" in fetched.stderr  # log lines when not on a terminal

    ok = run("recordings", "verify", env=env, cwd=tmp_path)
    assert ok.returncode == 0 and "5 intact, 0 missing or altered" in ok.stdout, ok.stdout + ok.stderr

    async with engine.begin() as conn:
        keys = dict((await conn.execute(text("SELECT call_id, storage_key FROM callstore.recordings"))).all())
        await open_access(conn, Access(None, "t", "default", records[0]["call_id"], None, "GET", None, 200, 0, 9, 10, None))
    root = data_dir / "recordings"
    altered, missing = records[0]["call_id"], records[1]["call_id"]
    with open(root / keys[altered], "r+b") as f:  # one flipped byte, same size
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    (root / keys[missing]).unlink()
    bad = run("recordings", "verify", env=env, cwd=tmp_path)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert any(line.startswith(f"BAD default {altered}") and "sha256" in line for line in lines)
    assert any(line.startswith(f"MISSING default {missing}") for line in lines)
    assert "3 intact, 2 missing or altered" in bad.stdout

    assert run("recordings", "purge", "--older-than-days", "x", env=env, cwd=tmp_path).returncode == 2
    unknown = run("recordings", "purge", "--older-than-days", "1", "--tenant", "nope", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.strip() == "callstore: error: --tenant: unknown tenant 'nope'"
    recent = records[4]["call_id"]
    async with engine.begin() as conn:  # one call from yesterday: within retention
        await conn.execute(text("UPDATE callstore.recordings SET call_started_at = now() - interval '1 day' "
                                "WHERE call_id = :c"), {"c": recent})
    purged = run("recordings", "purge", "--older-than-days", "30", env=env, cwd=tmp_path)  # the rest is from 2024
    assert purged.returncode == 0 and "purged 4 recordings" in purged.stdout, purged.stderr
    assert [p.name for p in root.rglob("*.mp3")] == [f"{recent}.mp3"]
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT status, sha256 IS NOT NULL, purged_at IS NOT NULL "
                                        "FROM analytics.recordings WHERE call_id <> :c"), {"c": recent})).all()
        statuses = (await conn.execute(text("SELECT DISTINCT recording_status FROM analytics.calls WHERE call_id = ANY(:ids)"),
                                       {"ids": [r["call_id"] for r in records[:4]]})).scalars().all()
        audit = await conn.scalar(text("SELECT count(*) FROM analytics.recording_access"))
    assert rows == [("purged", True, True)] * 4 and statuses == ["purged"] and audit == 1


async def test_refused_recordings_heal_once_the_media_hosts_are_fixed(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    """Refused for their origin (a setting missing); failed stays failed while
    the settings stay, --retry-failed tries again now, and the first run after
    the setting is fixed fetches them without being asked."""
    state = fake_state(calls=20)
    data_dir = tmp_path / "data"
    with running_fake(state) as base:
        port = base.rsplit(":", 1)[1]
        # The webhook names the fake by another host than the media URL's.
        records = [{**r, "recording_url": recording_link(f"http://localhost:{port}", str(r["recording_url"]))}
                   for r in with_recordings(state)[:3]]
        env = cli_env(db_url, data_dir, base, media_hosts="media.example.invalid")
        await load(engine, archive_settings(base, data_dir), records, source="webhook")
        refused = run("recordings", "fetch", env=env, cwd=tmp_path)
        assert refused.returncode == 1 and "3 failed" in refused.stdout, refused.stdout + refused.stderr
        assert "refused: not a configured media origin" in refused.stderr
        nothing_due = run("recordings", "fetch", env=env, cwd=tmp_path)
        assert "nothing due" in nothing_due.stdout  # failed stays failed under the same settings
        retried = run("recordings", "fetch", "--retry-failed", env=env, cwd=tmp_path)
        assert "3 failed ones made due again" in retried.stdout and "3 failed" in retried.stdout, retried.stdout
        fixed = run("recordings", "fetch", env=cli_env(db_url, data_dir, base, media_hosts=f"localhost:{port}"),
                    cwd=tmp_path)
        assert fixed.returncode == 0 and "3 stored" in fixed.stdout, fixed.stdout + fixed.stderr
        assert "3 failed ones due again: the media settings changed" in fixed.stdout
    async with engine.connect() as conn:
        statuses = (await conn.execute(text("SELECT status FROM callstore.recordings"))).scalars().all()
    assert statuses == ["stored"] * 3
