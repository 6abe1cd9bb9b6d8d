"""A read-only login role for BI tools: schema `analytics` and nothing else.

The views run with their owner's rights, so the role needs no right on any
callstore table. It gets USAGE on schema callstore only because the planner
resolves the callstore.* functions the views call under the caller's name,
and EXECUTE on exactly those functions (VIEW_FUNCTIONS: pure expressions,
and callstore.recording_status, which runs with its owner's rights); every
other callstore function is refused to it. It has no write privilege
anywhere, so turning `default_transaction_read_only` off gains it nothing.
Whatever it locks cannot stall the service: jobs and refreshes coordinate on
rows only the service may lock (store/jobs.py, store/locks.py).

Limits: a connection limit (a role attribute: the role cannot change it),
and defaults for `statement_timeout` and `idle_in_transaction_session_timeout`
(which guard against a runaway dashboard, not against a hostile client: a
session may change its own timeouts), and the tenant's time zone as the
session's `timezone`, so BI tools show local times.

The password is sent as a SCRAM-SHA-256 verifier computed here, so the plain
password never reaches the server (nor its statement log) and never appears
in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shlex
import unicodedata

from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncConnection

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: What the analytics views call, so what the role must be able to EXECUTE.
#: A view calling another function fails for the role until it is listed here
#: (tests/security/test_db_bi_views.py reads every view as the role).
VIEW_FUNCTIONS = (
    "callstore.is_answered(timestamptz, text)",
    "callstore.wait_seconds(timestamptz, timestamptz, timestamptz, text)",
    "callstore.call_outcome(text, timestamptz, timestamptz, text, text, integer, integer)",
    "callstore.sla_seconds(text, bigint, timestamptz)",
    "callstore.short_abandon_seconds(text, bigint, timestamptz)",
    "callstore.recording_status(text, text, text)",
    "callstore.bucket_day(timestamptz, text)",
)

DEFAULT_STATEMENT_TIMEOUT_S = 60
DEFAULT_CONNECTION_LIMIT = 10


def valid_role_name(name: str) -> bool:
    return bool(_NAME.match(name)) and not name.startswith("pg_")


def scram_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """The value Postgres stores for `PASSWORD` under scram-sha-256 (RFC 5802/7677)."""
    salt = salt if salt is not None else os.urandom(16)
    # SASLprep is NFKC plus prohibitions; Postgres falls back to the raw bytes
    # for strings SASLprep rejects, and NFKC is the part that changes bytes.
    normalized = unicodedata.normalize("NFKC", password).encode()
    salted = hashlib.pbkdf2_hmac("sha256", normalized, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def ensure_bi_role(conn: AsyncConnection, name: str, password: str, *,
                         statement_timeout_s: int = DEFAULT_STATEMENT_TIMEOUT_S,
                         connection_limit: int = DEFAULT_CONNECTION_LIMIT,
                         timezone: str = "UTC") -> bool:
    """Create (or update) the role, its limits and its grants; returns True when created.

    Raises ValueError naming the argument that cannot be used.
    """
    if not valid_role_name(name):
        raise ValueError("name: a role name is lower-case letters, digits and _ (not pg_...)")
    if not password:
        raise ValueError("password: empty")
    if statement_timeout_s < 1:
        raise ValueError("statement timeout: whole seconds >= 1")
    if connection_limit < 1:
        raise ValueError("connection limit: at least 1")
    zone_ok = await conn.scalar(text("SELECT count(*) FROM pg_timezone_names WHERE name = :z"), {"z": timezone})
    if not zone_ok:
        raise ValueError(f"timezone: {timezone!r} is not a time zone this PostgreSQL server knows")
    verifier = scram_verifier(password)
    # The verifier is base64 and '$:' only: safe as a literal.
    row = (await conn.execute(text(
        """SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
                  OR r.rolname = current_user
                  OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid) AS privileged
           FROM pg_roles r WHERE r.rolname = :n"""), {"n": name})).first()
    if row is not None and row.privileged:
        # Making it read-only (or changing its password) would break whoever uses it.
        raise ValueError(f"name: role {name} exists and is not a plain login role "
                         "(the service's own role, a superuser or a member of other roles); choose another name")
    verb = "ALTER" if row is not None else "CREATE"
    db = await conn.scalar(text("SELECT current_database()"))
    db_ident = '"' + str(db).replace('"', '""') + '"'
    zone_literal = "'" + timezone.replace("'", "''") + "'"
    timeout = f"'{int(statement_timeout_s)}s'"
    for sql in (
        # A non-superuser owner (the embedded server's app role) may not even
        # restate SUPERUSER or CREATEDB: set at creation; an existing role was
        # checked above to have none of them.
        f"{verb} ROLE {name} LOGIN "
        f"{'' if row is not None else 'NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '}NOINHERIT "
        f"CONNECTION LIMIT {int(connection_limit)} PASSWORD '{verifier}'",
        f"ALTER ROLE {name} SET default_transaction_read_only = on",
        f"ALTER ROLE {name} SET search_path = analytics",
        f"ALTER ROLE {name} SET statement_timeout = {timeout}",
        f"ALTER ROLE {name} SET idle_in_transaction_session_timeout = {timeout}",
        f"ALTER ROLE {name} SET timezone = {zone_literal}",
        f"GRANT CONNECT ON DATABASE {db_ident} TO {name}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA callstore FROM {name}",
        f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA callstore FROM {name}",
        f"GRANT USAGE ON SCHEMA callstore TO {name}",
        f"GRANT USAGE ON SCHEMA analytics TO {name}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {name}",
        # Views added by later migrations (run by the owner) are granted too.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO {name}",
        *(f"GRANT EXECUTE ON FUNCTION {f} TO {name}" for f in VIEW_FUNCTIONS),
    ):
        await conn.exec_driver_sql(sql)
    return row is None


def psql_command(url: URL, role: str) -> str:
    """The psql command line that connects as `role` to the database of `url` (no password in it)."""
    parts = {"host": url.host or "localhost", "port": str(url.port or 5432), "dbname": url.database or "postgres",
             "user": role}
    return "psql " + shlex.quote(" ".join(f"{k}={_conninfo_value(v)}" for k, v in parts.items()))


def _conninfo_value(value: str) -> str:
    """A libpq connection-string value: quoted when it holds a space, quote or backslash."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
