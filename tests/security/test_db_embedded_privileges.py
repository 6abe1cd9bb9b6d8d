"""Item 4: least privilege in the embedded server.

Before: the service connected as a superuser (`COPY ... FROM PROGRAM 'id'`
worked as the app account), initdb's password file was world-readable while
initdb ran, and running as root made the data directory's parents `o+x`.
Now the service's account owns its database and nothing more, the password
file is 0600 from its first byte, and directories callstore did not create
are never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from store import migrate
from store.embedded import APP_USER, LEGACY_SUPERUSER, EmbeddedPostgres, _free_port, ensure_database
from store.engine import create_engine
from store.errors import ConfigError
from tests.conftest import server_dir

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only under root")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = server_dir("callstore-test-embedded-")
    server = EmbeddedPostgres(path, unsafe_fast=True)
    try:
        yield path
    finally:
        server.stop("immediate")
        shutil.rmtree(path, ignore_errors=True)


async def test_the_service_account_is_no_superuser_and_owns_its_database(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir, unsafe_fast=True)
    pwfile = data_dir / ".initdb-pw"
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:  # the initdb password file, as any local user could see it while initdb runs
        while not done.is_set():
            try:
                seen.add(stat.S_IMODE(pwfile.stat().st_mode))
            except FileNotFoundError:
                pass

    old_umask = os.umask(0)  # the most permissive umask: the mode must not depend on it
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        server.ensure_started()
    finally:
        done.set()
        watcher.join()
        os.umask(old_umask)
    assert seen == {0o600}
    assert not pwfile.exists()
    assert stat.S_IMODE((data_dir / "postgres.json").stat().st_mode) == 0o600

    await ensure_database(server)
    # Migrations run as the app role, as `callstore migrate` runs them.
    engine = create_engine(server.url(), pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(server.url())
    try:
        row = await conn.fetchrow(
            "SELECT current_user AS me, r.rolsuper, pg_get_userbyid(d.datdba) AS owner FROM pg_roles r, pg_database d "
            "WHERE r.rolname = current_user AND d.datname = current_database()")
        assert (row["me"], row["rolsuper"], row["owner"]) == (APP_USER, False, APP_USER)
        await conn.execute("CREATE TEMP TABLE out (line text)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("COPY out FROM PROGRAM 'id'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE ROLE sneaky SUPERUSER")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("GRANT pg_execute_server_program TO callstore_app")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SELECT pg_read_file('postgresql.auto.conf')")
    finally:
        await conn.close()

    # What it may do beyond its database: make the read-only BI role (`callstore report bi-role`).
    from reports.bi_role import ensure_bi_role

    engine = create_engine(server.url(), pool_size=1)
    try:
        async with engine.begin() as c:
            await ensure_bi_role(c, "bi_probe", "bi-probe-password")
        async with engine.begin() as c:
            assert await ensure_bi_role(c, "bi_probe", "bi-probe-password-2") is False  # updated again
    finally:
        await engine.dispose()
    bi = await asyncpg.connect(f"postgresql://bi_probe:bi-probe-password-2@127.0.0.1:{server.port}/callstore")
    try:
        assert await bi.fetchval("SELECT count(*) FROM analytics.calls") == 0
    finally:
        await bi.close()


@as_root
def test_a_data_dir_the_server_user_cannot_reach_is_refused_and_left_alone(tmp_path: Path) -> None:
    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    modes = {p: p.stat().st_mode for p in [parent, *parent.parents]}
    with pytest.raises(ConfigError) as err:
        EmbeddedPostgres(parent / "data").ensure_started()
    assert err.value.setting == "CALLSTORE_DATA_DIR" and "callstore-pg" in str(err.value)
    assert {p: p.stat().st_mode for p in modes} == modes  # no o+x added anywhere
    assert not (parent / "data").exists()  # refused before anything was created


async def test_a_data_dir_of_the_previous_version_is_upgraded_with_its_data(data_dir: Path) -> None:
    """Before: initdb's superuser `callstore` was the service's account and owned everything."""
    server = EmbeddedPostgres(data_dir, unsafe_fast=True)
    legacy_password = "legacy-password-123"
    server.pgdata.mkdir()
    pw = data_dir / ".initdb-pw"
    pw.write_text(legacy_password)
    server._prepare_ownership(pw)
    server._run("initdb", "-D", str(server.pgdata), "-U", LEGACY_SUPERUSER, f"--pwfile={pw}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "--encoding=UTF8", "--locale=C", timeout=180)
    pw.unlink()
    port = _free_port()
    (data_dir / "postgres.json").write_text(json.dumps({"port": port, "password": legacy_password,
                                                        "database": "callstore"}))
    server.ensure_started()
    legacy_url = f"postgresql://{LEGACY_SUPERUSER}:{legacy_password}@127.0.0.1:{port}"
    conn = await asyncpg.connect(f"{legacy_url}/postgres")
    await conn.execute("CREATE DATABASE callstore")
    await conn.close()
    engine = create_engine(f"{legacy_url}/callstore", pool_size=1)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as c:
            await c.execute(text("INSERT INTO callstore.tenants (tenant_id, timezone) VALUES ('default', 'UTC')"))
            await c.execute(text("CREATE ROLE legacy_bi LOGIN"))
            await c.execute(text("GRANT USAGE ON SCHEMA analytics TO legacy_bi"))
    finally:
        await engine.dispose()

    await ensure_database(server)

    conn = await asyncpg.connect(server.url())
    try:
        assert await conn.fetchval("SELECT tenant_id FROM callstore.tenants") == "default"
        left = await conn.fetch(
            "SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('callstore', 'analytics') AND pg_get_userbyid(c.relowner) <> current_user "
            "UNION ALL SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname IN ('callstore', 'analytics') AND pg_get_userbyid(p.proowner) <> current_user "
            "UNION ALL SELECT nspname FROM pg_namespace WHERE nspname IN ('callstore', 'analytics') "
            "AND pg_get_userbyid(nspowner) <> current_user")
        assert [r["name"] for r in left] == []
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        # It owns what it must change: a migration-like DDL and the roles it made before.
        await conn.execute("ALTER TABLE callstore.tenants ADD COLUMN probe int")
        await conn.execute("ALTER ROLE legacy_bi CONNECTION LIMIT 3")
        await conn.execute("CREATE TEMP TABLE out (line text)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("COPY out FROM PROGRAM 'id'")
    finally:
        await conn.close()
    state = json.loads((data_dir / "postgres.json").read_text())
    assert state["superuser"] == LEGACY_SUPERUSER and state["app_user"] == APP_USER
    # Idempotent: a second start changes nothing and fails on nothing.
    await ensure_database(server)
