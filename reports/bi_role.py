"""A read-only login role for BI tools: schema `analytics` and nothing else.

The views run with their owner's rights, so the role needs no right on any
callstore table. It gets USAGE on schema callstore only because the planner
resolves the callstore.* functions the views inline under the caller's name;
USAGE lets it name objects, never read a row.

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
import unicodedata

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def ensure_bi_role(conn: AsyncConnection, name: str, password: str) -> bool:
    """Create (or update) the role and its grants; returns True when created."""
    if not valid_role_name(name):
        raise ValueError("name: a role name is lower-case letters, digits and _ (not pg_...)")
    if not password:
        raise ValueError("password: empty")
    verifier = scram_verifier(password)
    # The verifier is base64 and '$:' only: safe as a literal.
    exists = await conn.scalar(text("SELECT count(*) FROM pg_roles WHERE rolname = :n"), {"n": name})
    verb = "ALTER" if exists else "CREATE"
    db = await conn.scalar(text("SELECT current_database()"))
    db_ident = '"' + str(db).replace('"', '""') + '"'
    for sql in (
        # A non-superuser owner (the embedded server's app role) may not even
        # restate SUPERUSER or CREATEDB: set at creation, not on update.
        f"{verb} ROLE {name} LOGIN {'' if exists else 'NOSUPERUSER NOCREATEDB NOCREATEROLE '}NOINHERIT "
        f"PASSWORD '{verifier}'",
        f"ALTER ROLE {name} SET default_transaction_read_only = on",
        f"ALTER ROLE {name} SET search_path = analytics",
        f"GRANT CONNECT ON DATABASE {db_ident} TO {name}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA callstore FROM {name}",
        f"GRANT USAGE ON SCHEMA callstore TO {name}",
        f"GRANT USAGE ON SCHEMA analytics TO {name}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {name}",
        # Views added by later migrations (run by the owner) are granted too.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO {name}",
    ):
        await conn.exec_driver_sql(sql)
    return not exists
