"""Item 1, the tokens themselves: created for one tenant (or, for the operator,
`--role admin --all-tenants`), and existing tokens migrated explicitly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from receiver.app import create_app
from store import migrate
from store.engine import create_engine
from tests.callstore.test_cli import run
from tests.conftest import serving, test_settings

TENANTS_FILE = """
[tenants.default]
webhook_keys = ["default-webhook-key-0001"]
[tenants.acme]
webhook_keys = ["acme-webhook-key-000001"]
timezone = "Europe/Paris"
"""


@pytest.fixture
def two_tenants_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    f = tmp_path / "tenants.toml"
    f.write_text(TENANTS_FILE)
    return {"DATABASE_URL": db_url, "CALLSTORE_TENANTS_FILE": str(f)}


def test_create_prints_the_token_alone_and_needs_a_tenant(two_tenants_env: dict[str, str], tmp_path: Path) -> None:
    env = two_tenants_env
    missing = run("tokens", "create", "--role", "reader", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "callstore: error: --tenant: several tenants are configured; name one of default, acme"]
    unknown = run("tokens", "create", "--role", "reader", "--tenant", "nobody", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "--tenant" in unknown.stderr
    for role in ("reader", "compliance"):
        wide = run("tokens", "create", "--role", role, "--all-tenants", env=env, cwd=tmp_path)
        assert wide.returncode == 2 and "--all-tenants" in wide.stderr and "admin" in wide.stderr

    made = run("tokens", "create", "--role", "compliance", "--tenant", "acme", "--name", "officer", env=env,
               cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.count("\n") == 1 and made.stdout.startswith("cs_")  # the token alone
    op = run("tokens", "create", "--role", "admin", "--all-tenants", "--name", "ops", env=env, cwd=tmp_path)
    assert op.returncode == 0 and op.stdout.startswith("cs_")

    listed = run("tokens", "list", env=env, cwd=tmp_path).stdout.splitlines()
    officer = next(line for line in listed if line.endswith("officer"))
    ops = next(line for line in listed if line.endswith("ops"))
    assert " acme " in officer and "all tenants" in ops and "active" in ops
    assert made.stdout.strip() not in "\n".join(listed)


async def _tokens_before_tenants(empty_db_url: str, tenants: list[str]) -> list[str]:
    """A database at the revision before tenant-scoped tokens, with `tenants`
    recorded and one token of each role; then migrated to head."""
    engine = create_engine(empty_db_url, pool_size=1)
    plain = [f"cs_before-tenants-{role}-0123456789" for role in ("reader", "compliance", "admin")]
    try:
        await migrate.upgrade(engine, "0006")
        async with engine.begin() as conn:
            for t in tenants:
                await conn.execute(text("INSERT INTO callstore.tenants (tenant_id, timezone) VALUES (:t, 'UTC')"),
                                   {"t": t})
            for p, role in zip(plain, ("reader", "compliance", "admin"), strict=True):
                await conn.execute(text("INSERT INTO callstore.api_tokens (name, role, token_hash, token_prefix) "
                                        "VALUES (:n, :r, :h, :p)"),
                                   {"n": f"old-{role}", "r": role, "h": hashlib.sha256(p.encode()).hexdigest(),
                                    "p": p[:10]})
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return plain


async def test_existing_tokens_with_one_tenant_belong_to_it(empty_db_url: str) -> None:
    await _tokens_before_tenants(empty_db_url, ["default"])
    engine = create_engine(empty_db_url, pool_size=2)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT tenant_id, all_tenants FROM callstore.api_tokens"))).all()
        # Not the operator's: even the old admin token now reads its one tenant only.
        assert rows == [("default", False)] * 3
    finally:
        await engine.dispose()


async def test_existing_tokens_with_several_tenants_are_refused_until_reissued(
        empty_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        plain = await _tokens_before_tenants(empty_db_url, ["default", "acme"])
    assert "3 API token(s)" in caplog.text and "re-issued" in caplog.text
    engine = create_engine(empty_db_url, pool_size=2)
    try:
        async with serving(create_app(test_settings(), engine)) as url, httpx.AsyncClient(base_url=url) as client:
            for token in plain:
                r = await client.get("/api/calls", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 401 and "callstore tokens create --tenant" in r.json()["detail"]
    finally:
        await engine.dispose()
    listed = run("tokens", "list", env={"DATABASE_URL": empty_db_url}, cwd=tmp_path)
    assert listed.stdout.count("none: re-issue") == 3 and listed.stdout.count("re-issue ") >= 3
