"""The schema can be distributed by tenant (docs/scale.md), checked on the
migrated database itself (pg_catalog), not on store/tables.py:

- every table of schema callstore is either distributed or reference
  (store.tables.DISTRIBUTED / REFERENCE), never both, never neither;
- a distributed table has tenant_id NOT NULL, first in its primary key and in
  every unique constraint or index (a partitioned table: its parent), and its
  identity columns are bigint; every distributed table's tenant_id has one type
  (so they can be co-located);
- no foreign key leads from a reference table to a distributed one, and one
  between distributed tables includes tenant_id on both sides;
- the SQL that reads or writes a distributed table names its tenant: every
  statement text in the service's code, every analytics view joining several
  tables and every callstore function compares the tenant_id of each
  distributed table it uses, with a value (one tenant) or with another
  table's tenant_id (a join within each tenant), except the statements listed
  in CROSS_TENANT, each with its reason. An INSERT writes tenant_id and picks
  its ON CONFLICT target by it.

What the statement check cannot see: SQL built with SQLAlchemy's expression
language (store/users.py, store/dead_letters.py), table names filled in at
run time (f"callstore.{table}"), and a comparison that does not restrict (a
join on tenant_id through callstore.tenants reads every tenant, which is
allowed: each server of a distributed database joins its own rows).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.tables import DISTRIBUTED, REFERENCE, SCHEMA

ROOT = Path(__file__).resolve().parents[2]
#: The service's code: every package that talks to the database.
PACKAGES = ("store", "sync", "receiver", "reports", "console", "callstore")

#: The partitioned layout of raw_events (another change) gives it its tenant-first key.
#: Tables not yet keyed by tenant, with the reason (none left).
PENDING: dict[str, str] = {}


async def _rows(engine: AsyncEngine, sql: str, **params: object) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def _tables(engine: AsyncEngine) -> set[str]:
    rows = await _rows(engine, """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = :s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname <> 'alembic_version'
    """, s=SCHEMA)
    return {str(r["relname"]) for r in rows}


async def test_every_table_is_distributed_or_reference(engine: AsyncEngine) -> None:
    live = await _tables(engine)
    assert not DISTRIBUTED & REFERENCE.keys()
    assert live - DISTRIBUTED - REFERENCE.keys() == set(), "classify these tables in store/tables.py"
    assert (DISTRIBUTED | REFERENCE.keys()) - live == set(), "these classified tables do not exist"
    assert all(len(reason) > 20 for reason in REFERENCE.values())


async def _key_problems(engine: AsyncEngine, table: str) -> list[str]:
    """Why `table` cannot be distributed by tenant_id as it is (empty: it can)."""
    qualified = f"{SCHEMA}.{table}"
    problems = []
    column = await _rows(engine, """
        SELECT a.attnotnull, format_type(a.atttypid, a.atttypmod) AS type
        FROM pg_attribute a WHERE a.attrelid = CAST(:t AS regclass) AND a.attname = 'tenant_id' AND NOT a.attisdropped
    """, t=qualified)
    if column != [{"attnotnull": True, "type": "text"}]:
        problems.append(f"tenant_id is {column or 'missing'}, not text NOT NULL")
    # Every unique index (the primary key's and the unique constraints' included), with its first column.
    unique = await _rows(engine, """
        SELECT i.indexrelid::regclass::text AS name, i.indisprimary AS primary,
               (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) AS first
        FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass) AND i.indisunique
    """, t=qualified)
    problems += [f"unique index {u['name']} starts with {u['first']}" for u in unique if u["first"] != "tenant_id"]
    identity = await _rows(engine, """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
        WHERE a.attrelid = CAST(:t AS regclass) AND a.attidentity <> '' AND NOT a.attisdropped
    """, t=qualified)
    # A distributed identity column must be bigint (each server takes its own range of it).
    problems += [f"identity column {c['attname']} is {c['type']}" for c in identity if c["type"] != "bigint"]
    if identity and not any(u["primary"] for u in unique):
        problems.append("an identity column but no primary key")
    return problems


async def test_distributed_tables_have_tenant_first_keys(engine: AsyncEngine) -> None:
    problems = {t: await _key_problems(engine, t) for t in sorted(DISTRIBUTED)}
    assert {t: p for t, p in problems.items() if p and t not in PENDING} == {}
    # Once a pending table is keyed by tenant, it leaves PENDING.
    assert [t for t in PENDING if not problems[t]] == []


async def test_no_foreign_key_crosses_the_layout(engine: AsyncEngine) -> None:
    keys = await _rows(engine, """
        SELECT k.conname, k.conrelid::regclass::text AS source, k.confrelid::regclass::text AS target,
               (SELECT array_agg(a.attname::text) FROM pg_attribute a
                 WHERE a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey)) AS source_columns,
               (SELECT array_agg(a.attname::text) FROM pg_attribute a
                 WHERE a.attrelid = k.confrelid AND a.attnum = ANY(k.confkey)) AS target_columns
        FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
        WHERE k.contype = 'f' AND n.nspname = :s
    """, s=SCHEMA)

    def name(qualified: object) -> str:
        return str(qualified).rpartition(".")[2]

    for k in keys:
        source, target = name(k["source"]), name(k["target"])
        assert not (source in REFERENCE and target in DISTRIBUTED), k["conname"]
        if source in DISTRIBUTED and target in DISTRIBUTED:
            assert "tenant_id" in k["source_columns"] and "tenant_id" in k["target_columns"], k["conname"]  # type: ignore[operator]


# --- the SQL names its tenant --------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    where: str
    sql: str


@dataclass(frozen=True)
class CrossTenant:
    """Allows the statements of `where` containing `snippet` (the first entry that matches counts)."""

    where: str
    snippet: str
    reason: str


_OPERATOR = "the tenant is optional: none is the operator (an all-tenants token, the CLI), who reads every tenant"
_REBUILD = "`callstore report rebuild` empties every tenant's rollup rows, then recomputes them"

#: Statements that read or change every tenant's rows on purpose. Under
#: Citus each is a query over every server, which is what it means.
CROSS_TENANT = (
    CrossTenant("function callstore.compile_thresholds", "FROM callstore.queue_thresholds",
                "rebuilds the one threshold function from every tenant's versions"),
    CrossTenant("store/audit.py", "FROM callstore.recording_access", _OPERATOR),
    CrossTenant("store/recordings.py", "WHERE call_id = :call_id", _OPERATOR),
    CrossTenant("store/recordings.py", "make_interval(days => :days)",
                "the retention job purges every tenant's recordings older than the deployment's limit"),
    CrossTenant("store/recordings.py", "WHERE status = 'stored'", _OPERATOR),
    CrossTenant("store/recordings.py", "SELECT 'status' AS kind",
                "/metrics reads every tenant's archive, grouped by tenant"),
    CrossTenant("sync/recordings.py", "FROM callstore.recording_scan",
                "the enqueuer reads every tenant's calls changed since its one cursor"),
    CrossTenant("sync/recordings.py", "WHERE claimed_by = :token",
                "a downloader run renews and releases the leases it took, whatever their tenant"),
    CrossTenant("reports/agent_rollups.py", "DELETE FROM callstore.agent_rollup_daily", _REBUILD),
    CrossTenant("reports/rollups.py", "DELETE FROM callstore.queue_rollup_", _REBUILD),
    CrossTenant("reports/campaigns.py", "DELETE FROM callstore.campaign_rollup_daily", _REBUILD),
    CrossTenant("reports/campaigns.py", "INSERT INTO callstore.campaign_dirty", _REBUILD),
    CrossTenant("reports/campaigns.py", "DELETE FROM callstore.campaign_dirty",
                "the campaign refresh takes every tenant's marked numbers, then works per tenant"),
)

#: Words that may follow a table name and are not its alias.
_KEYWORDS = frozenset("""
    where set on join left right inner cross full natural order group values using limit for select union
    returning with having window default do and or offset fetch except intersect tablesample as only
""".split())
_REF = re.compile(r"\bcallstore\.(\w+)(?:\s+(?:as\s+)?(\w+))?", re.IGNORECASE)
_COMPARED = r"(?:=|\bIN\b|\bIS\s+NOT\s+DISTINCT\s+FROM\b)"


def _scoped(sql: str, alias: str | None) -> bool:
    """True when the statement compares the tenant_id of `alias` (or of its one unaliased table)."""
    column = rf"\b{re.escape(alias)}\.tenant_id\b" if alias else r"(?<![\w.])tenant_id\b"
    return bool(re.search(rf"{column}\s*{_COMPARED}|{_COMPARED}\s*{column}", sql, re.IGNORECASE)
                or (alias is None and re.search(r"\busing\s*\([^)]*\btenant_id\b", sql, re.IGNORECASE)))


def unscoped_references(sql: str, distributed: frozenset[str], *, joins_only: bool = False) -> list[str]:
    """The distributed tables `sql` uses without comparing their tenant_id (or, as an
    INSERT target, without writing it or choosing its conflict target by it).
    `joins_only` (a view: its reader filters it): only a view of several tables is checked."""
    flat = re.sub(r"'(?:[^']|'')*'", "''", re.sub(r"--[^\n]*", " ", sql))
    if joins_only and len({m.group(1).lower() for m in _REF.finditer(flat)} & distributed) < 2:
        return []
    problems = []
    for m in _REF.finditer(flat):
        table, alias = m.group(1).lower(), m.group(2)
        if table not in distributed or flat[m.end(1):m.end(1) + 1] == ".":  # callstore.t.column: a column
            continue
        if alias is not None and alias.lower() in _KEYWORDS:
            alias = None
        if re.search(r"\binsert\s+into\s*$", flat[: m.start()], re.IGNORECASE):
            columns = re.match(r"\s*\(([^)]*)\)", flat[m.end():] if alias else flat[m.end(1):])
            conflict = re.search(r"\bon\s+conflict\s*\(([^)]*)\)", flat, re.IGNORECASE)
            if columns is None or "tenant_id" not in columns.group(1) or (
                    conflict is not None and "tenant_id" not in conflict.group(1)):
                problems.append(table)
        elif not _scoped(flat, alias):
            problems.append(table)
    return problems


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)  # type: ignore[misc]
    return None


_STATEMENT = re.compile(r"^\s*\(?\s*(select|insert|update|delete|with)\b", re.IGNORECASE)


def code_statements() -> Iterator[Statement]:
    """Every SQL statement text of the service's code that names a callstore table: a string
    literal (an f-string with its holes blank, `a + b` of literals joined) that starts like one.
    A statement assembled at run time from several variables is read in its parts."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
            parts |= {id(side) for node in ast.walk(tree)
                      if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) for side in (node.left, node.right)}
            for node in ast.walk(tree):
                if id(node) in parts:
                    continue
                value = _joined(node)
                if value and "callstore." in value and _STATEMENT.match(value):
                    yield Statement(str(path.relative_to(ROOT)), value)


def _joined(node: ast.AST) -> str | None:
    """The text of a literal or of a sum of literals (other operands blank)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _joined(node.left), _joined(node.right)
        return None if left is None and right is None else (left or "{}") + (right or "{}")
    return _literal(node) if isinstance(node, ast.expr) else None


async def database_statements(engine: AsyncEngine) -> list[Statement]:
    """The analytics views' definitions and the bodies of callstore's functions, as stored."""
    views = await _rows(engine, """
        SELECT n.nspname || '.' || c.relname AS name, pg_get_viewdef(c.oid) AS sql
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND n.nspname IN ('analytics', :s)
    """, s=SCHEMA)
    functions = await _rows(engine, """
        SELECT 'callstore.' || p.proname AS name, p.prosrc AS sql
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = :s AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))
    """, s=SCHEMA)
    return ([Statement(f"view {v['name']}", str(v["sql"])) for v in views]
            + [Statement(f"function {f['name']}", str(f["sql"])) for f in functions])


def _allowed(s: Statement) -> CrossTenant | None:
    return next((c for c in CROSS_TENANT if c.where == s.where and c.snippet in s.sql), None)


async def test_every_statement_names_the_tenant(engine: AsyncEngine) -> None:
    # Not yet keyed by tenant (PENDING) is no reason to read it across tenants.
    statements = list(code_statements()) + await database_statements(engine)
    assert len(statements) > 100  # the extraction found the service's SQL
    unscoped, used = [], set()
    for s in statements:
        problems = unscoped_references(s.sql, frozenset(DISTRIBUTED), joins_only=s.where.startswith("view "))
        if not problems:
            continue
        allowed = _allowed(s)
        if allowed is None:
            unscoped.append(f"{s.where}: {sorted(set(problems))}: {' '.join(s.sql.split())[:160]}")
        else:
            used.add(allowed)
    assert unscoped == [], "\n".join(["statements that do not name their tenant:", *unscoped])
    assert set(CROSS_TENANT) - used == set(), "a listed cross-tenant statement no longer exists"


@pytest.mark.parametrize(("sql", "unscoped"), [
    ("SELECT * FROM callstore.alerts WHERE id = :id", ["alerts"]),
    ("SELECT * FROM callstore.alerts WHERE tenant_id = :t AND id = :id", []),
    ("SELECT tenant_id FROM callstore.alerts WHERE id = :id", ["alerts"]),
    ("SELECT 1 FROM callstore.ingest_ledger l JOIN callstore.ingest_runs r ON r.run_id = l.run_id "
     "WHERE l.tenant_id = :t", ["ingest_runs"]),
    ("SELECT 1 FROM callstore.ingest_ledger l JOIN callstore.ingest_runs r "
     "ON r.tenant_id = l.tenant_id AND r.run_id = l.run_id WHERE l.tenant_id = :t", []),
    ("UPDATE callstore.alert_outbox SET sent_at = now() WHERE id = :id", ["alert_outbox"]),
    ("INSERT INTO callstore.alert_delivery_failures (outbox_id, error) VALUES (:o, :e)", ["alert_delivery_failures"]),
    ("INSERT INTO callstore.ingest_ledger AS l (run_id, tenant_id, day) VALUES (1, 't', current_date) "
     "ON CONFLICT (run_id, day) DO NOTHING", ["ingest_ledger"]),
    ("INSERT INTO callstore.ingest_ledger AS l (run_id, tenant_id, day) VALUES (1, 't', current_date) "
     "ON CONFLICT (tenant_id, run_id, day) DO NOTHING", []),
    ("SELECT * FROM callstore.job_leases WHERE name = :n", []),
    ("DELETE FROM callstore.calls WHERE tenant_id = ANY(:ids)", []),
])
def test_the_scope_check_tells_scoped_from_unscoped(sql: str, unscoped: list[str]) -> None:
    assert unscoped_references(sql, frozenset(DISTRIBUTED)) == unscoped


def test_docs_give_the_layout_of_every_table() -> None:
    doc = (ROOT / "docs" / "scale.md").read_text()
    distributed = set(re.findall(r"create_distributed_table\('callstore\.(\w+)', 'tenant_id'", doc))
    reference = set(re.findall(r"create_reference_table\('callstore\.(\w+)'\)", doc))
    assert distributed == DISTRIBUTED
    assert reference == set(REFERENCE)
