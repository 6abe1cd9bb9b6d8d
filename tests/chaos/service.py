"""`python -m callstore serve` as a real subprocess, for tests that kill and restart it.

Only 127.0.0.1; every process is stopped by its PID (`stop()` in a finally).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServiceProcess:
    """One `callstore serve` process; its output goes to `log_path` (appended across restarts)."""

    def __init__(self, env: Mapping[str, str], workdir: Path, *, role: str = "all", port: int | None = None,
                 name: str = "service") -> None:
        self.port = port or free_port()
        self.role = role
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("CALLSTORE_", "ALOHUB_", "DATABASE_URL", "DATABASE_READ_URL"))}
        self.env = {**inherited, "CALLSTORE_HOST": "127.0.0.1", "CALLSTORE_PORT": str(self.port),
                    "CALLSTORE_LOG_FORMAT": "json", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = 60) -> None:
        """Start and wait until /healthz answers."""
        assert not self.running(), "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callstore", "serve", "--role", self.role],
                env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while loop.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        self.kill()
        raise RuntimeError(f"serve did not answer /healthz within {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """kill -9 by PID (no cleanup of any kind in the service)."""
        if self.running():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    async def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        if self.running():
            os.kill(self.proc.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.proc.poll() is None:
            if loop.time() > deadline:
                self.kill()
                raise RuntimeError(f"serve did not stop within {timeout} s after SIGTERM")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def restart(self) -> None:
        self.kill()
        await self.start()

    def stop(self) -> None:
        """For finally blocks: whatever state it is in, it is not running afterwards."""
        self.kill()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
