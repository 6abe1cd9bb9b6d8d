"""The database engine: SQLAlchemy 2 (async) on asyncpg, created by the caller."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# libpq options that asyncpg does not take as query parameters.
_DROP = {"sslmode", "connect_timeout", "application_name", "target_session_attrs"}


def async_url(url: str) -> str:
    """`postgresql://...` as given by operators, turned into SQLAlchemy's asyncpg URL."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _DROP]
    ssl = dict(parse_qsl(parts.query)).get("sslmode")
    if ssl in ("require", "verify-ca", "verify-full"):
        query.append(("ssl", ssl))
    return urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, urlencode(query), parts.fragment))


def create_engine(url: str, *, pool_size: int = 10, application_name: str = "callstore",
                  command_timeout: float | None = 60, connect_timeout: float = 10) -> AsyncEngine:
    # No pre-ping: it would cost a round trip per batch. A broken connection
    # fails its statement, SQLAlchemy drops it, and the caller retries or spools.
    # hide_parameters: an error's text (logged, or printed by the CLI) never
    # carries the statement's values (payloads, phone numbers, token hashes).
    return create_async_engine(
        async_url(url),
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"application_name": application_name},
            "timeout": connect_timeout,
            # A statement that does not answer in time is given up: the caller
            # sees the database as unavailable. Migrations and rebuilds, which
            # may run for minutes on a large store, pass None.
            "command_timeout": command_timeout,
        },
    )


def _driver_error(exc: BaseException) -> BaseException:
    """The asyncpg (or OS) error under SQLAlchemy's wrapper, or `exc` itself."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        return exc.orig.__cause__ or exc.orig
    return exc


def schema_missing(exc: BaseException) -> bool:
    """True when the database answers but callstore's schema is not there yet
    (a fresh database whose migrations have not run): undefined schema,
    table or function. A receiver spools such writes rather than refusing them."""
    import asyncpg

    return isinstance(_driver_error(exc), (asyncpg.InvalidSchemaNameError, asyncpg.UndefinedTableError,
                            asyncpg.UndefinedFunctionError))


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be reached (down, restarting,
    failing over, refusing connections), as opposed to a bad statement or value."""
    import asyncio

    import asyncpg
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    exc = _driver_error(exc)
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError)):
        return True
    if isinstance(
        exc,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            asyncpg.CrashShutdownError,
            asyncpg.TooManyConnectionsError,
        ),
    ):
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # pool exhausted while connections hang
        return True
    return False
