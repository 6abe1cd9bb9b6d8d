"""What PUBLIC may do on a PostgreSQL server that callstore runs itself (the embedded one).

Every role gets some rights by default through PUBLIC: connecting to every
database, creating temporary tables in it, creating and writing large
objects. On the embedded server the only roles are callstore's: the service
uses none of these rights, and a BI role must not have them (they would let
a read-only role write to disk). Run as the superuser, connected to
callstore's database, at every start (idempotent), so an existing data
directory is brought to the same state.

On a server callstore does not own, its administrator decides; the
migrations revoke TEMP on callstore's database, and docs/operations.md lists
the rest.
"""

from __future__ import annotations

import asyncpg

# Every large-object function that creates, writes or reads one.
_LO_FUNCTIONS = """
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'pg_catalog'::regnamespace
      AND (p.proname LIKE 'lo\\_%' OR p.proname IN ('loread', 'lowrite'))
    ORDER BY 1
"""


async def restrict_public(conn: asyncpg.Connection) -> None:
    """Revoke from PUBLIC: CONNECT and TEMP on every other database, TEMP on
    this one, EXECUTE on the large-object functions (in this database)."""
    this, owner, owner_is_super = await conn.fetchrow(
        "SELECT d.datname, r.rolname, r.rolsuper FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
        "WHERE d.datname = current_database()")
    owner_ident = '"' + owner.replace('"', '""') + '"'
    for (name,) in await conn.fetch("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1"):
        ident = '"' + name.replace('"', '""') + '"'
        if name == this:
            await conn.execute(f"REVOKE TEMPORARY ON DATABASE {ident} FROM PUBLIC")
            continue
        await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident} FROM PUBLIC")
        if not owner_is_super:
            # The service's role (the owner of its database) keeps reaching the
            # maintenance database, as it did through PUBLIC.
            await conn.execute(f"GRANT CONNECT ON DATABASE {ident} TO {owner_ident}")
    for (function,) in await conn.fetch(_LO_FUNCTIONS):
        await conn.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
