"""What a failure means to the person at the terminal: one line and an exit code.

    0    success
    1    runtime failure: the work could not be done now (database down, ...)
    2    bad usage or configuration: an argument or a setting must change
    130  interrupted (Ctrl-C)

Driver and OS exceptions are turned into words that name the setting and say
what to do; their own text (which may quote a server's message) is not shown.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from store.engine import _driver_error as driver_error
from store.engine import is_unavailable
from store.errors import CallstoreError
from store.settings import Settings

OK, FAILURE, USAGE, INTERRUPTED = 0, 1, 2, 130


def explain(exc: BaseException, settings: Settings) -> tuple[int, str]:
    """The exit code and the message (without `callstore: error: `) for `exc`."""
    cause = driver_error(exc)
    database = _database(settings)
    if isinstance(cause, socket.gaierror):
        return USAGE, f"{database.setting}: unknown host {database.host}: the name does not resolve; correct it"
    auth = _authentication(cause, database)
    if auth is not None:
        return USAGE, auth
    if _refused(cause):
        return FAILURE, (f"{database.setting}: cannot reach the database at {database.where}: nothing is listening "
                         f"at {database.host}:{database.port}; start PostgreSQL there or correct {database.setting}")
    if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
        return FAILURE, (f"{database.setting}: cannot reach the database at {database.where}: "
                         f"{database.host}:{database.port} did not answer in time")
    if is_unavailable(exc):
        return FAILURE, f"{database.setting}: cannot reach the database at {database.where}: {_reason(cause)}"
    if isinstance(exc, PermissionError):
        return USAGE, (f"permission denied: {exc.filename or 'a file'}; give this user access, or set "
                       f"CALLSTORE_DATA_DIR to a directory it owns")
    if isinstance(exc, OSError) and exc.filename:
        return FAILURE, f"cannot use {exc.filename}: {exc.strerror or _reason(exc)}"
    if isinstance(exc, CallstoreError):
        return FAILURE, str(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return FAILURE, f"{type(exc).__name__}: {first}"


@dataclass(frozen=True)
class _Database:
    """The database a command used, as the message names it (never with its password)."""

    setting: str
    where: str
    host: str
    port: str
    user: str
    name: str


def _database(settings: Settings) -> _Database:
    if settings.database_url is None:
        from store.embedded import APP_USER, DB_NAME, EmbeddedError, EmbeddedPostgres

        try:
            port = str(EmbeddedPostgres(settings.data_dir).port)
        except EmbeddedError:
            port = "?"
        return _Database("CALLSTORE_DATA_DIR", f"the embedded PostgreSQL in {settings.data_dir}",
                         "127.0.0.1", port, APP_USER, DB_NAME)
    parts = urlsplit(settings.database_url)
    try:
        port = str(parts.port or 5432)
    except ValueError:
        port = "?"
    user = f"{parts.username}:***@" if parts.username else ""
    return _Database("DATABASE_URL", f"{parts.scheme}://{user}{parts.hostname or ''}:{port}{parts.path}",
                     parts.hostname or "?", port, parts.username or "", parts.path.lstrip("/"))


def _authentication(cause: BaseException, db: _Database) -> str | None:
    import asyncpg

    if isinstance(cause, asyncpg.InvalidPasswordError):
        return f"{db.setting}: the database refused the password of user {db.user!r}; correct the password"
    if isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError):
        return (f"{db.setting}: the database does not accept user {db.user!r} from this machine; "
                f"correct the user or the server's pg_hba.conf")
    if isinstance(cause, asyncpg.InvalidCatalogNameError):
        return f"{db.setting}: database {db.name!r} does not exist on {db.host}:{db.port}; create it or correct the name"
    return None


def _refused(cause: BaseException) -> bool:
    if isinstance(cause, ConnectionRefusedError):
        return True
    # asyncio joins the errors of every address tried into one OSError without errno.
    return isinstance(cause, OSError) and (cause.errno == errno.ECONNREFUSED or "Connect call failed" in str(cause))


def _reason(cause: BaseException) -> str:
    """A few words for an unavailable database: the class of problem, not the driver's text."""
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    names = {
        "CannotConnectNowError": "it is starting up or shutting down",
        "TooManyConnectionsError": "it has no free connection slot",
        "AdminShutdownError": "it was shut down",
        "CrashShutdownError": "it restarted after a crash",
        "ConnectionDoesNotExistError": "the connection was lost",
    }
    return names.get(type(cause).__name__, "the connection failed")
