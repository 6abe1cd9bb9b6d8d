"""Test fixtures: a real PostgreSQL for every test that needs one.

The server is the embedded one (started once per session in a temporary
directory) or the one in TEST_DATABASE_URL. A template database is migrated
by Alembic once; each test gets its own copy (CREATE DATABASE ... TEMPLATE),
so tests never share rows and never need cleaning up.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from store import migrate
from store.embedded import EmbeddedPostgres
from store.engine import create_engine

TEMPLATE = "callstore_test_template"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A command run in-process (setup_logging) points the root logger at the
    test's captured stderr, which pytest closes afterwards: put the handlers back
    so that later tests do not log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def server_dir(prefix: str) -> Path:
    """A new directory for an embedded server's data, under the system temp dir.

    Run as root, the server runs as the system user callstore-pg, which must be
    able to pass through every parent: mkdtemp makes 0700, so it is opened to
    0711 here (the test made it), as an operator would choose such a directory.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a server on which the tests may create databases (maintenance DB `postgres`)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield with_database(external, "postgres")
        return
    # Not under pytest's numbered temp dirs: a concurrent pytest run prunes
    # those, and would delete this server's data while it runs.
    data = server_dir("callstore-test-pg-")
    server = EmbeddedPostgres(data, unsafe_fast=True)
    server.ensure_started()
    try:
        # The superuser: tests create databases and roles. The service's own
        # account (the app role) is tested in tests/security/test_db_embedded_privileges.py.
        yield server.superuser_url("postgres")
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_db(pg_server: str) -> str:
    conn = await asyncpg.connect(pg_server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await conn.close()
    url = with_database(pg_server, TEMPLATE)
    engine = create_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return url


async def new_database(pg_server: str, template: str | None) -> str:
    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_server)
    try:
        tpl = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{tpl}')
    finally:
        await conn.close()
    return with_database(pg_server, name)


async def drop_database(pg_server: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(pg_server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def db_url(pg_server: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for one test."""
    url = await new_database(pg_server, TEMPLATE)
    yield url
    await drop_database(pg_server, url)


@pytest.fixture
async def empty_db_url(pg_server: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all (migration tests)."""
    url = await new_database(pg_server, None)
    yield url
    await drop_database(pg_server, url)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url, pool_size=4)
    yield eng
    await eng.dispose()


# --- running the receiver on a real socket ----------------------------------

import asyncio  # noqa: E402
import socket  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from store.settings import Settings, TenantSettings  # noqa: E402
from store.tenants import sync_tenants  # noqa: E402

WEBHOOK_KEY = "test-webhook-key-1"
WEBHOOK_KEY_2 = "test-webhook-key-rotated"
OTHER_TENANT_KEY = "other-tenant-key-9"


def test_settings(**overrides: object) -> Settings:
    """Two tenants, and a data directory of their own (spool, recordings): never
    the working directory, where one test's spool could be adopted by another's drainer."""
    tenants = (
        TenantSettings("default", webhook_keys=(WEBHOOK_KEY, WEBHOOK_KEY_2)),
        TenantSettings("acme", webhook_keys=(OTHER_TENANT_KEY,), timezone="Europe/Paris"),
    )
    data_dir = Path(tempfile.mkdtemp(prefix="callstore-test-data-"))
    atexit.register(shutil.rmtree, data_dir, True)
    return replace(Settings(tenants=tenants, data_dir=data_dir), **overrides)  # type: ignore[arg-type]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test
make_settings = test_settings


@contextlib.asynccontextmanager
async def serving(app: Starlette, **config: Any) -> AsyncIterator[str]:
    """Run `app` under uvicorn on 127.0.0.1 (a free port) in this event loop (`config`: more uvicorn.Config keywords)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def settings() -> Settings:
    return test_settings()


@pytest.fixture
async def receiver(engine: AsyncEngine, settings: Settings) -> AsyncIterator[str]:
    """Base URL of the service's HTTP app on a real socket: the webhook, health,
    metrics and every /api route, composed as `callstore serve` composes them,
    without the spool (tests of the spool build their own app)."""
    from callstore.composition import build_extensions
    from receiver.app import create_app
    from receiver.metrics import Metrics

    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    metrics = Metrics()
    ext = build_extensions(settings, engine, "receiver", metrics, spool=False)
    async with serving(create_app(settings, engine, ext, metrics)) as url:
        yield url
