"""The command line as a user runs it: real processes, real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import serving, test_settings


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_", "DATABASE_URL"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "callstore", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def test_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run("migrate", env={"CALLSTORE_PORT": "abc"}, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["callstore: error: CALLSTORE_PORT: 'abc' is not a whole number"]


def test_bad_argument_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run("tokens", "create", "--role", "superuser", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--role" in r.stderr


def test_unreachable_database_is_exit_1_without_password(tmp_path: Path) -> None:
    r = run("migrate", env={"DATABASE_URL": "postgresql://u:s3cretpw@127.0.0.1:1/db"}, cwd=tmp_path)
    assert r.returncode == 1
    assert "s3cretpw" not in r.stderr and "cannot reach the database" in r.stderr
    assert "postgresql://u:***@127.0.0.1:1/db" in r.stderr  # which database, without its password
    assert len(r.stderr.strip().splitlines()) == 1


async def test_tokens_lifecycle_and_api_guard(db_url: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from receiver.app import create_app

    env = {"DATABASE_URL": db_url}
    created = run("tokens", "create", "--role", "reader", "--name", "grafana", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[0]
    assert token.startswith("cs_") and len(token) > 40
    listed = run("tokens", "list", env=env, cwd=tmp_path)
    assert "grafana" in listed.stdout and token not in listed.stdout and "active" in listed.stdout

    async with serving(create_app(test_settings(), engine)) as url, httpx.AsyncClient(base_url=url) as client:
        # The guard answers before any route: an unknown /api path with a good
        # token is a 404, without one a 401.
        assert (await client.get("/api/anything")).status_code == 401
        assert (await client.get("/api/anything", headers={"Authorization": "Bearer cs_wrong"})).status_code == 401
        assert (await client.get("/api/anything", headers={"Authorization": token})).status_code == 401
        ok = await client.get("/api/anything", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 404 and ok.json()["error"] == "not_found"

        token_id = listed.stdout.splitlines()[1].split()[0]
        assert run("tokens", "revoke", token_id, env=env, cwd=tmp_path).returncode == 0
        revoked = await client.get("/api/anything", headers={"Authorization": f"Bearer {token}"})
        assert revoked.status_code == 401 and revoked.json()["detail"] == "the token is unknown or revoked"
    again = run("tokens", "revoke", token_id, env=env, cwd=tmp_path)
    assert again.returncode == 2

    from sqlalchemy import text

    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT token_hash FROM callstore.api_tokens"))).scalar_one()
    assert token not in stored and len(stored) == 64


async def test_users_lifecycle(db_url: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    env = {"DATABASE_URL": db_url, "PW": "a long enough password", "PW2": "another long password"}
    made = run("users", "create", "--role", "compliance", "--name", "Lan.Nguyen", "--password-env", "PW", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "a long enough password" not in made.stdout + made.stderr
    again = run("users", "create", "--role", "reader", "--name", "lan.nguyen", "--password-env", "PW", env=env, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.startswith("callstore: error: --name:")
    short = run("users", "create", "--role", "reader", "--name", "x", "--password-env", "NOPE", env=env, cwd=tmp_path)
    assert short.returncode == 2 and "--password-env" in short.stderr and len(short.stderr.splitlines()) == 1
    listed = run("users", "list", env=env, cwd=tmp_path)
    assert "lan.nguyen" in listed.stdout and "compliance" in listed.stdout and "active" in listed.stdout
    assert run("users", "reset-password", "--name", "LAN.NGUYEN", "--password-env", "PW2", env=env, cwd=tmp_path).returncode == 0
    assert run("users", "disable", "--name", "lan.nguyen", env=env, cwd=tmp_path).returncode == 0
    assert "disabled" in run("users", "list", env=env, cwd=tmp_path).stdout
    assert run("users", "disable", "--name", "ghost", env=env, cwd=tmp_path).returncode == 2
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT password_hash FROM callstore.users"))).scalar_one()
    assert stored.startswith("scrypt$") and "another long password" not in stored
