"""A primary and its streaming replica, both real PostgreSQL servers of the test's own.

The primary is the embedded server in a directory of its own (its pg_hba
lets the superuser replicate over 127.0.0.1); the replica is made from it
with `pg_basebackup -R` into another directory and started with `pg_ctl` on
another free port. The replica is stopped, killed and restarted by the PID
in its postmaster.pid; `close()` (in a finally) stops both and removes them.
As root, both run as the embedded server's system user, as in production.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from store.embedded import SYSTEM_USER, EmbeddedPostgres, _free_port, bin_dir, ensure_database, process_alive
from tests.conftest import server_dir


def on_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class StreamingPair:
    def __init__(self) -> None:
        self.dir = server_dir("callstore-replica-pg-")
        self.primary = EmbeddedPostgres(self.dir)
        self.replica_dir = self.dir / "replica"
        self.replica_port = _free_port()

    # -- the primary ---------------------------------------------------------

    async def start_primary(self) -> None:
        await asyncio.to_thread(self.primary.ensure_started)
        await ensure_database(self.primary)

    @property
    def primary_url(self) -> str:
        """The service's account on the primary (database callstore)."""
        return self.primary.url()

    @property
    def replica_url(self) -> str:
        """The same account on the replica: physical replication copies roles and passwords."""
        return on_port(self.primary.url(), self.replica_port)

    @property
    def replica_superuser_url(self) -> str:
        return on_port(self.primary.superuser_url("callstore"), self.replica_port)

    # -- the replica ---------------------------------------------------------

    def make_replica(self) -> None:
        """`pg_basebackup -R` from the primary, then start it (waits until it accepts connections)."""
        self.replica_dir.mkdir(mode=0o700)
        self._chown(self.replica_dir)
        state = self.primary._state()
        env = {**os.environ, "PGPASSWORD": str(state["password"])}
        self._run("pg_basebackup", "-D", str(self.replica_dir), "-R", "-X", "stream", "-c", "fast",
                  "-h", "127.0.0.1", "-p", str(state["port"]), "-U", str(state["superuser"]), env=env)
        # The copy carries the primary's configuration: only the port differs (the last line wins).
        # Every statement is logged with its connection's application_name: the tests see which reads
        # the service sent here.
        with open(self.replica_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {self.replica_port}\nlog_statement = 'all'\nlog_line_prefix = '@@%a@@ '\n")
        self.start_replica()

    def start_replica(self) -> None:
        self._run("pg_ctl", "-D", str(self.replica_dir), "-l", str(self.replica_dir / "server.log"),
                  "-w", "-t", "60", "start")

    def replica_pid(self) -> int | None:
        try:
            return int((self.replica_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill_replica(self, sig: int = signal.SIGQUIT) -> None:
        """Signal the replica's postmaster by PID (SIGQUIT: every connection dropped at once, no
        shutdown checkpoint, as when its machine goes away) and wait until it is gone."""
        pid = self.replica_pid()
        if pid is None or not process_alive(pid):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while process_alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 30
            time.sleep(0.05)

    def close(self) -> None:
        """For finally blocks: both servers stopped (the replica by PID), their data removed."""
        try:
            self.kill_replica(signal.SIGINT)  # fast shutdown
        finally:
            try:
                self.primary.stop("immediate")
            finally:
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- replication ---------------------------------------------------------

    async def replayed(self) -> bool:
        """Has the replica replayed everything the primary has written so far?"""
        primary = await asyncpg.connect(self.primary_url)
        try:
            position = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
        finally:
            await primary.close()
        replica = await asyncpg.connect(self.replica_url)
        try:
            return bool(await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", str(position)))
        finally:
            await replica.close()

    async def wait_replayed(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not await self.replayed():
            assert time.monotonic() < deadline, f"the replica did not catch up within {within} s"
            await asyncio.sleep(0.1)

    async def replay(self, run: bool) -> None:
        """Pause (False) or resume (True) the replica's replay of the primary's changes."""
        conn = await asyncpg.connect(self.replica_superuser_url)
        try:
            await conn.execute("SELECT pg_wal_replay_resume()" if run else "SELECT pg_wal_replay_pause()")
        finally:
            await conn.close()

    def replica_log_size(self) -> int:
        try:
            return (self.replica_dir / "server.log").stat().st_size
        except OSError:
            return 0

    def replica_statements(self, application_name: str, since: int = 0) -> list[str]:
        """The statements the replica ran for connections named `application_name` (log entries after
        byte `since` of its log; an entry goes on over the lines of a statement that has several)."""
        with open(self.replica_dir / "server.log", "rb") as f:
            f.seek(since)
            log = f.read().decode(errors="replace")
        prefix = f"@@{application_name}@@ "
        return [entry for entry in re.split(r"\n(?=@@)", log) if entry.startswith(prefix)]

    # -- internals -------------------------------------------------------------

    @staticmethod
    def _chown(path: Path) -> None:
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str, env: dict[str, str] | None = None) -> None:
        as_user: dict[str, Any] = ({"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []}
                                   if os.geteuid() == 0 else {})
        result = subprocess.run([str(bin_dir() / program), *args], capture_output=True, text=True, timeout=120,
                                cwd=str(self.dir), env=env, **as_user)
        if result.returncode != 0:
            log = self.replica_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")
