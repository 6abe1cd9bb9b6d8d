"""What every command shares: settings, logging, the database, error handling."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from store import migrate
from store.embedded import EmbeddedPostgres, ensure_database
from store.embedded import supervise as supervise_embedded
from store.engine import create_engine, is_unavailable
from store.errors import ConfigError
from store.logs import Redact, settings_secrets, setup_logging
from store.replica import PROBE_TIMEOUT_S, ReadRouting, masked_url
from store.settings import Settings, TenantSettings, load_settings, user_dotenv_path

log = logging.getLogger("callstore")

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on uvloop when it is installed, else on asyncio's loop.

    uvloop's sockets and callbacks are cheaper: in bench/ingest the receiver
    spent ~15 % of its CPU in asyncio's socket writes, and downloads in
    bench/recordings were ~15 % faster.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class UsageError(Exception):
    """A bad command-line argument: one line, exit code 2."""


def run_command(args: argparse.Namespace) -> int:
    """Run the command; every failure becomes one line `callstore: error: ...` and an exit code
    (the table is in callstore/errors.py and docs/configuration.md)."""
    from callstore.errors import explain

    try:
        settings = load_settings(user_dotenv=user_dotenv_path())
    except ConfigError as exc:
        print(f"callstore: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format, settings_secrets(settings), settings.mask_phone_numbers)
    redactor = Redact(settings_secrets(settings), settings.mask_phone_numbers)
    try:
        code: int = args.func(args, settings)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except (ConfigError, UsageError) as exc:
        print(f"callstore: error: {redactor.clean(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _reader_went_away()
    except KeyboardInterrupt:
        print("callstore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line, never a traceback with secrets
        code, message = explain(exc, settings)
        log.debug("failure", exc_info=True)
        print(f"callstore: error: {redactor.clean(message)}", file=sys.stderr)
        return code


def _reader_went_away() -> int:
    """`callstore tokens list | head -1`: the reader has what it wanted; end quietly.

    Python would report the closed pipe again when flushing stdout at exit:
    stdout is pointed at /dev/null first.
    """
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


@contextlib.asynccontextmanager
async def database(settings: Settings, *, upgrade: bool = True, pool_size: int = 10,
                   tolerate_outage: bool = False, create: bool = False,
                   supervise: bool = False, command_timeout: float | None = 60) -> AsyncIterator[AsyncEngine]:
    """An engine on DATABASE_URL or the embedded server, migrated to head.

    Only with `create` (serve, migrate) is a new embedded database initialised;
    any other command refuses to run where there is none, rather than answer
    from an empty one.

    An embedded server that this call started is stopped again at the end,
    so one-off commands leave nothing running; one already running is left.
    With `supervise` (serve), the server is also restarted when it dies and,
    unless another live serve supervises it, stopped at the end even when it
    was found running (the orphan of a killed serve).

    With `tolerate_outage` (a receiver: it has a spool), an external database
    that cannot be reached at start does not stop the process: the engine is
    handed out at once, and the migrations and the tenant rows are applied in
    the background as soon as the database answers.
    """
    server: EmbeddedPostgres | None = None
    started = owned = False
    url = settings.database_url
    if url is None:
        server = EmbeddedPostgres(settings.data_dir)
        if not create and not server.initialised:
            raise UsageError(f"no callstore database at {settings.data_dir.resolve()}; "
                             "start it with `callstore serve` or set DATABASE_URL")
        started = await asyncio.to_thread(server.ensure_started)
        await ensure_database(server)
        url = server.url()
        if supervise:
            owned = server.claim_supervision()
            if owned and not started:
                log.info("adopted the embedded PostgreSQL already running (pid %s): it is stopped when this "
                         "process stops", server.postmaster_pid())
    engine = create_engine(url, pool_size=pool_size, command_timeout=command_timeout)
    # Migrations run on a connection of their own without the statement time
    # limit: an upgrade that builds an index on a large table takes minutes.
    maintenance = create_engine(url, pool_size=1, command_timeout=None)
    pending: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    try:
        if server is not None and owned:
            watcher = asyncio.create_task(supervise_embedded(server), name="supervise-postgres")
        if upgrade:
            try:
                await _prepare(maintenance, settings)
            except Exception as exc:
                if not (tolerate_outage and is_unavailable(exc)):
                    raise
                log.warning("the database cannot be reached (%s): starting anyway; webhooks go to the spool, "
                            "and the schema is checked when the database answers", type(exc).__name__)
                pending = asyncio.create_task(_prepare_when_reachable(maintenance, settings),
                                              name="prepare-database")
        yield engine
    finally:
        for task in (pending, watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await engine.dispose()
        await maintenance.dispose()
        if server is not None and (started or owned):
            await asyncio.to_thread(server.stop)
        if server is not None and owned:
            server.release_supervision()


@contextlib.asynccontextmanager
async def read_routing(settings: Settings, engine: AsyncEngine, *, pool_size: int = 10) -> AsyncIterator[ReadRouting]:
    """Where reads go: DATABASE_READ_URL's replica while it is healthy, else `engine` (the primary).

    Nothing is connected here: an unreachable replica never stops a start, the
    probe (`ReadRouting.running`, in the app's lifespan) finds out and says so.
    """
    url = settings.database_read_url
    if url is None:
        yield ReadRouting(engine)
        return
    # Connections to the replica give up sooner than the primary's: reads
    # then go to the primary, which the request is waiting for.
    replica = create_engine(url, pool_size=pool_size, application_name="callstore-read", connect_timeout=3)
    probe = create_engine(url, pool_size=1, application_name="callstore-read-probe", connect_timeout=PROBE_TIMEOUT_S,
                          command_timeout=PROBE_TIMEOUT_S)
    try:
        yield ReadRouting(engine, replica, probe=probe, where=masked_url(url), max_lag_s=settings.read_max_lag_s)
    finally:
        await replica.dispose()
        await probe.dispose()


async def _prepare(engine: AsyncEngine, settings: Settings) -> None:
    """Migrations to head, then one row per configured tenant."""
    from store import raw_partitions
    from store.tenants import sync_tenants

    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    # Raw-event partitions of the configured tenants (the raw-partitions job
    # keeps them ahead). Not a reason to refuse to start: until they exist,
    # raw events wait in a DEFAULT partition.
    try:
        async with engine.begin() as conn:
            await raw_partitions.ensure(conn, [t.tenant_id for t in settings.tenants],
                                        datetime.now(timezone.utc), raw_partitions.Maintenance())
    except Exception as exc:  # noqa: BLE001 - e.g. a lock not granted in time; the job tries again
        if is_unavailable(exc):
            raise
        log.warning("raw events: partitions not prepared at start (%s); the raw-partitions job tries again",
                    type(exc).__name__)


async def _prepare_when_reachable(engine: AsyncEngine, settings: Settings, every: float = 2.0) -> None:
    while True:
        try:
            await _prepare(engine, settings)
        except Exception as exc:  # noqa: BLE001 - keep trying; the spool holds the webhooks meanwhile
            if is_unavailable(exc):
                await asyncio.sleep(every)
            else:
                log.error("the database answers but could not be prepared: %s", type(exc).__name__)
                await asyncio.sleep(15 * every)
            continue
        log.info("the database is reachable again: schema current, tenants recorded")
        return


def one_tenant(settings: Settings, name: str | None) -> TenantSettings:
    """The tenant `--tenant` names; without it, the only one configured (several: an error)."""
    ids = [t.tenant_id for t in settings.tenants]
    if name is None:
        if len(ids) > 1:
            raise UsageError(f"--tenant: required when several tenants are configured ({', '.join(ids)})")
        return settings.tenants[0]
    try:
        return settings.tenant(name)
    except KeyError:
        raise UsageError(f"--tenant: unknown tenant {name!r} (configured: {', '.join(ids)})") from None


def parse_when(value: str, zone_name: str, arg: str) -> datetime:
    """ISO 8601 date or date-time; without offset it is in the tenant's zone."""
    from zoneinfo import ZoneInfo

    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{arg}: {value!r} is not an ISO 8601 date or date-time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo(zone_name))
    return t
