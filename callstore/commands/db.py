"""`callstore db status|stop`: the embedded PostgreSQL of the current data dir."""

from __future__ import annotations

import argparse
import shlex
from urllib.parse import urlsplit

from callstore.runtime import UsageError
from store.embedded import APP_USER, DB_NAME, EmbeddedPostgres
from store.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="the embedded PostgreSQL: where it is, whether it runs, how to connect; stop it")
    db_sub = p.add_subparsers(dest="db_command", required=True, parser_class=type(p))
    status = db_sub.add_parser("status", help="data location, server state (pid, port) and the psql command")
    status.set_defaults(func=_status)
    stop = db_sub.add_parser("stop", help="stop the embedded server (refused while `callstore serve` supervises it)")
    stop.set_defaults(func=_stop)


def _server(settings: Settings) -> EmbeddedPostgres:
    server = EmbeddedPostgres(settings.data_dir)
    if not server.initialised:
        raise UsageError(f"no callstore database at {settings.data_dir.resolve()}; "
                         "start it with `callstore serve` or set DATABASE_URL")
    return server


def _status(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url is not None:
        parts = urlsplit(settings.database_url)
        print(f"database:   external, DATABASE_URL ({parts.hostname}:{parts.port}{parts.path}); "
              "callstore does not run or stop it")
        return 0
    server = _server(settings)
    state_file = server.data_dir.resolve() / "postgres.json"
    print(f"data:       {server.data_dir.resolve()} (PostgreSQL files in {server.pgdata})")
    if server.is_running():
        print(f"server:     running, pid {server.postmaster_pid()}, listening on 127.0.0.1:{server.port}")
    else:
        print(f"server:     not running (port {server.port} when it runs); `callstore serve` starts it")
    supervisor = server.supervisor_pid()
    print(f"supervisor: callstore serve, pid {supervisor}" if supervisor else
          "supervisor: none (no `callstore serve` looks after it now)")
    password = (f"$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[\"app_password\"])' "
                f"{shlex.quote(str(state_file))})")
    print(f"psql:       PGPASSWORD=\"{password}\" psql -h 127.0.0.1 -p {server.port} -U {APP_USER} -d {DB_NAME}")
    print("            (the service's own account; for BI tools create a read-only one: callstore report bi-role)")
    return 0


def _stop(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url is not None:
        raise UsageError("DATABASE_URL is set: that server is not callstore's to stop; stop it where it runs")
    server = _server(settings)
    supervisor = server.supervisor_pid()
    if supervisor is not None:
        raise UsageError(f"callstore serve (pid {supervisor}) supervises this server and would start it again; "
                         "stop serve (SIGTERM), which stops the server too")
    pid = server.postmaster_pid()
    if not server.is_running():
        print(f"the embedded PostgreSQL in {server.pgdata} is not running")
        return 0
    server.stop()
    print(f"stopped the embedded PostgreSQL (pid {pid}) in {server.pgdata}")
    return 0
