"""`callstore serve` looks after its embedded PostgreSQL: real processes, real signals.

The postmaster is killed by its PID while serve runs and /readyz comes back;
a server orphaned by a `kill -9` of serve is adopted and stopped with it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from store.embedded import EmbeddedPostgres
from tests.chaos.service import ServiceProcess
from tests.conftest import WEBHOOK_KEY, server_dir

pytestmark = pytest.mark.slow
SCRIPT = str(Path(sys.executable).parent / "callstore")


@pytest.fixture
async def data_dir() -> AsyncIterator[Path]:
    path = server_dir("callstore-test-supervised-")
    try:
        yield path
    finally:
        EmbeddedPostgres(path).stop("immediate")
        shutil.rmtree(path, ignore_errors=True)


def db_command(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, "db", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


async def ready(url: str, *, within: float = 90) -> None:
    """Until /readyz answers 200 (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while loop.time() < deadline:
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz not 200 within {within} s")


async def test_serve_restarts_a_dead_server_and_stops_one_it_adopted(data_dir: Path, tmp_path: Path) -> None:
    env = {"CALLSTORE_DATA_DIR": str(data_dir), "ALOHUB_WEBHOOK_KEYS": WEBHOOK_KEY}
    svc = ServiceProcess(env, tmp_path)
    server = EmbeddedPostgres(data_dir)
    try:
        await svc.start(timeout=180)
        await ready(svc.url)
        first = server.postmaster_pid()
        assert first is not None and svc.pid is not None

        os.kill(first, signal.SIGKILL)
        for _ in range(900):  # bounded: 90 s
            if server.postmaster_pid() != first and server.postmaster_alive():
                break
            await asyncio.sleep(0.1)
        assert server.postmaster_pid() != first and server.postmaster_alive(), svc.log_tail()
        await ready(svc.url)  # without supervision: 503 until someone restarts serve
        assert "starting it again" in svc.log_text() and "is running again" in svc.log_text()

        status = db_command("status", env=svc.env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert f"running, pid {server.postmaster_pid()}, listening on 127.0.0.1:{server.port}" in status.stdout
        assert f"supervisor: callstore serve, pid {svc.pid}" in status.stdout
        refused = db_command("stop", env=svc.env, cwd=tmp_path)
        assert refused.returncode == 2 and f"(pid {svc.pid})" in refused.stderr and server.is_running()

        svc.kill()  # kill -9: the server is orphaned, still running
        assert server.postmaster_alive()
        await svc.start(timeout=180)
        assert "adopted the embedded PostgreSQL already running" in svc.log_text()
        assert await svc.terminate() == 0
        assert not server.is_running()  # stopped with the serve that adopted it

        # Orphaned again, and nobody supervises: `db stop` stops it.
        await svc.start(timeout=180)
        svc.kill()
        stopped = db_command("stop", env=svc.env, cwd=tmp_path)
        assert stopped.returncode == 0 and "stopped the embedded PostgreSQL" in stopped.stdout, stopped.stderr
        assert not server.is_running()
    finally:
        svc.stop()
