"""The docs that describe the database stay true to it: metrics.md quotes the
SQL that computes each figure, and bi.md documents every column of every view."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SOURCES = [*sorted((REPO / "migrations" / "versions").glob("*.py")), *sorted((REPO / "reports").glob("*.py"))]


def squeeze(sql: str) -> str:
    return " ".join(sql.split())


def test_metrics_quotes_the_sql_that_computes_each_figure() -> None:
    code = squeeze("\n".join(p.read_text() for p in SOURCES))
    blocks = re.findall(r"```sql\n(.*?)```", (DOCS / "metrics.md").read_text(), flags=re.S)
    quoted = [b for b in blocks if not b.startswith("-- an example")]
    assert len(quoted) >= 10
    for block in quoted:
        assert squeeze(block) in code, f"docs/metrics.md quotes SQL that is not in the code:\n{block}"


def test_new_docs_state_rules_without_citing_the_spec() -> None:
    for name in ("metrics.md", "quickstart.md"):
        assert not re.search(r"\bSPEC\b", (DOCS / name).read_text()), name


def sections(doc: str) -> dict[str, str]:
    """Every view named in a `## ` heading -> the text of that section."""
    out: dict[str, str] = {}
    for part in re.split(r"^## ", doc, flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        for view in re.findall(r"analytics\.(\w+)", heading):
            out[view] = body
    return out


async def test_bi_documents_every_view_and_column(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'analytics'"
            " ORDER BY table_name, ordinal_position"))).all()
    doc = (DOCS / "bi.md").read_text()
    documented = sections(doc)
    views = {view for view, _ in rows}
    assert {"calls", "dead_letters", "recordings", "recording_access", "alerts", "ingest_ledger",
            "queue_stats_15m", "agent_daily"} <= views
    missing_views = sorted(views - set(documented))
    assert not missing_views, f"docs/bi.md has no section for analytics.{missing_views}"
    missing = [f"{view}.{column}" for view, column in rows if not re.search(rf"\b{column}\b", documented[view])]
    assert not missing, f"docs/bi.md does not document {missing}"
    assert "placeholder" not in doc
