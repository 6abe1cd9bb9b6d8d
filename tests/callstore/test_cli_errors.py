"""The command line's footing, as a user meets it: the installed `callstore`
script in a subprocess, started from a directory that is not the project's.

Where the data is (one place per user), which commands may create a database,
and every failure as one line with a documented exit code.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from callstore import errors
from store.embedded import EmbeddedPostgres
from tests.conftest import server_dir

SCRIPT = str(Path(sys.executable).parent / "callstore")
ROOT = Path(__file__).resolve().parents[2]


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user of their own: home, config and data folders under `home`, no callstore setting inherited."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ALOHUB_", "CALLSTORE_", "DATABASE_URL", "DATABASE_READ_URL", "XDG_"))}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "share")})
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("callstore: error: "), r.stderr
    return lines[0].removeprefix("callstore: error: ")


@pytest.fixture
def home() -> Iterator[Path]:
    """A home whose data folder the embedded server's user can reach (tests run as root in CI)."""
    path = server_dir("callstore-test-home-")
    try:
        yield path
    finally:
        for data in path.rglob("postgres.json"):
            EmbeddedPostgres(data.parent).stop("immediate")
        shutil.rmtree(path, ignore_errors=True)


def test_commands_other_than_serve_and_migrate_never_create_a_database(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    data = tmp_path / "share" / "callstore"
    for command in (["tokens", "list"], ["report", "queues", "--from", "2026-01-01"], ["db", "status"],
                    ["db", "stop"]):
        r = run(*command, env=env, cwd=tmp_path / "elsewhere")
        assert r.returncode == 2, r.stderr
        assert one_error_line(r) == (f"no callstore database at {data}; start it with `callstore serve` "
                                     "or set DATABASE_URL")
        assert r.stdout == ""
    assert not data.exists()


def test_one_data_location_from_any_directory_and_the_per_user_dotenv(home: Path) -> None:
    data = home / "data"
    (home / "config" / "callstore").mkdir(parents=True)
    (home / "config" / "callstore" / ".env").write_text(f"CALLSTORE_DATA_DIR={data}\n")
    env = user_env(home)
    migrated = run("migrate", env=env, cwd=home / "a")
    assert migrated.returncode == 0, migrated.stderr
    created = run("tokens", "create", "--role", "reader", "--name", "from-a", env=env, cwd=home / "a")
    assert created.returncode == 0, created.stderr
    listed = run("tokens", "list", env=env, cwd=home / "b" / "deeper")
    assert listed.returncode == 0 and "from-a" in listed.stdout, listed.stderr
    assert not (home / "a" / ".callstore").exists() and not (home / "b" / "deeper" / ".callstore").exists()

    status = run("db", "status", env=env, cwd=home / "b")
    assert status.returncode == 0, status.stderr
    assert f"data:       {data} " in status.stdout and "not running" in status.stdout  # the commands stopped it
    assert "psql -h 127.0.0.1 -p " in status.stdout and "callstore_app" in status.stdout
    assert "app_password" in status.stdout and '"app_password": "' not in status.stdout  # how to, not the secret

    # Without the per-user .env, the per-user data folder: a different, absent database.
    (home / "config" / "callstore" / ".env").unlink()
    r = run("tokens", "list", env=env, cwd=home / "a")
    assert r.returncode == 2 and str(home / "share" / "callstore") in r.stderr


@pytest.mark.parametrize(
    ("setting", "value", "code", "expected"),
    [
        ("DATABASE_URL", "postgresql://u:s3cretpw@127.0.0.1:1/db", errors.FAILURE,
         "DATABASE_URL: cannot reach the database at postgresql://u:***@127.0.0.1:1/db: nothing is listening at "
         "127.0.0.1:1; start PostgreSQL there or correct DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u:s3cretpw@no-such-host.invalid:5432/db", errors.USAGE,
         "DATABASE_URL: unknown host no-such-host.invalid: the name does not resolve; correct it"),
        ("DATABASE_URL", "postgresql://u:s3cretpw@db.internal/callstore", errors.USAGE,
         "DATABASE_URL: must name a port, e.g. postgresql://user@db.internal:5432/..."),
        ("DATABASE_READ_URL", "postgresql://u:s3cretpw@db.internal/callstore", errors.USAGE,
         "DATABASE_READ_URL: must name a port, e.g. postgresql://user@db.internal:5432/..."),
        ("DATABASE_READ_URL", "postgresql://u:s3cretpw@[db.internal:5432/callstore", errors.USAGE,
         "DATABASE_READ_URL: is not a valid URL, e.g. postgresql://user:password@127.0.0.1:5432/callstore"),
        ("CALLSTORE_READ_MAX_LAG", "soon", errors.USAGE, "CALLSTORE_READ_MAX_LAG: 'soon' is not a whole number"),
        ("CALLSTORE_DATA_DIR", "/sys/callstore-nope", errors.USAGE,
         "CALLSTORE_DATA_DIR: permission denied creating /sys/callstore-nope; choose a directory this user may "
         "write, or create it and give it to this user"),
        ("CALLSTORE_DATA_DIR", "/proc/callstore-nope", errors.USAGE,
         "CALLSTORE_DATA_DIR: cannot create /proc/callstore-nope (No such file or directory); choose a writable "
         "directory"),
    ],
)
def test_errors_in_words(tmp_path: Path, setting: str, value: str, code: int, expected: str) -> None:
    r = run("migrate", env=user_env(tmp_path, **{setting: value}), cwd=tmp_path)
    assert (r.returncode, one_error_line(r)) == (code, expected)
    assert "s3cretpw" not in r.stderr


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    r = run("migrate", env=user_env(tmp_path, CALLSTORE_DATA_DIR=str(tmp_path / "file")), cwd=tmp_path)
    assert r.returncode == 2
    assert one_error_line(r) == f"CALLSTORE_DATA_DIR: {tmp_path / 'file'} exists and is not a directory; choose another path"


async def test_wrong_password_and_unknown_database_name_the_setting_not_the_driver(
    pg_server: str, tmp_path: Path
) -> None:
    parts = urlsplit(pg_server)
    wrong = urlunsplit((parts.scheme, f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}",
                        "/postgres", "", ""))
    r = run("migrate", env=user_env(tmp_path, DATABASE_URL=wrong), cwd=tmp_path)
    assert (r.returncode, one_error_line(r)) == (
        2, f"DATABASE_URL: the database refused the password of user {parts.username!r}; correct the password")
    assert "authentication failed" not in r.stderr and "not-the-password" not in r.stderr

    missing = urlunsplit((parts.scheme, parts.netloc, "/no_such_db", "", ""))
    r = run("migrate", env=user_env(tmp_path, DATABASE_URL=missing), cwd=tmp_path)
    assert (r.returncode, one_error_line(r)) == (
        2, f"DATABASE_URL: database 'no_such_db' does not exist on {parts.hostname}:{parts.port}; "
           "create it or correct the name")


def test_a_port_in_use_is_refused_before_listening_is_said(db_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("serve", env=user_env(tmp_path, DATABASE_URL=db_url, CALLSTORE_PORT=str(port),
                                      CALLSTORE_LOG_FORMAT="text"), cwd=tmp_path)
    assert r.returncode == errors.USAGE
    assert "listening" not in r.stderr + r.stdout
    assert one_error_line(r) == (f"CALLSTORE_PORT: 127.0.0.1:{port} is already in use by another process; stop it "
                                 "or choose another CALLSTORE_PORT")


def test_a_reader_that_closes_the_pipe_ends_it_quietly(db_url: str, tmp_path: Path) -> None:
    env = user_env(tmp_path, DATABASE_URL=db_url)
    assert run("tokens", "create", "--role", "reader", env=env, cwd=tmp_path).returncode == 0
    # As `callstore tokens list | head -0`: the reader is gone before the first line.
    proc = subprocess.Popen([SCRIPT, "tokens", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == errors.OK
    assert stderr == b""


def _ctrl_c_as_at_a_terminal() -> None:
    """The child's SIGINT as a terminal gives it: a test run started in the
    background of a non-interactive shell (`.ci/run &`) has SIGINT ignored, and
    that would be inherited, so Ctrl-C would never reach the command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_command_exits_130(tmp_path: Path) -> None:
    """Ctrl-C while the database does not answer (a socket that accepts and says nothing)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(60)
        port = silent.getsockname()[1]
        proc = subprocess.Popen([SCRIPT, "migrate"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=user_env(tmp_path, DATABASE_URL=f"postgresql://u:p@127.0.0.1:{port}/db"),
                                cwd=tmp_path, preexec_fn=_ctrl_c_as_at_a_terminal)
        try:
            conn, _ = silent.accept()  # the command is now waiting on the database
            os.kill(proc.pid, signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
            conn.close()
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == errors.INTERRUPTED, stderr
    assert stderr.strip().splitlines() == ["callstore: interrupted"]


def test_the_exit_code_table_is_documented_and_complete() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text[text.index("### Exit codes"):]
    documented = {int(code) for code in re.findall(r"^\| `(\d+)` \|", section, flags=re.M)}
    assert documented == {errors.OK, errors.FAILURE, errors.USAGE, errors.INTERRUPTED}
