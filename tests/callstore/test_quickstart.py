"""docs/quickstart.md, followed as written: `callstore demo` in one process,
then, from another directory, the report, the BI role and psql with the
page's own SQL. Only the ports differ (free ones, not 8080/8081)."""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from store.embedded import EmbeddedPostgres
from tests.callstore.test_cli_small import SCRIPT, callstore
from tests.conftest import server_dir

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
READY_WITHIN_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sql_of_quickstart() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", QUICKSTART.read_text(), flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def demo_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until_ready(lines: queue.Queue[str], proc: subprocess.Popen[str]) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + READY_WITHIN_S
    while not any(line.startswith("Stop with Ctrl-C") for line in seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0 and proc.poll() is None, "".join(seen)
        try:
            seen.append(lines.get(timeout=min(remaining, 1.0)))
        except queue.Empty:
            continue
    return seen


@pytest.mark.slow
def test_quickstart(tmp_path: Path) -> None:
    psql = shutil.which("psql")
    if psql is None:
        if os.environ.get("CI"):
            pytest.fail("psql is not installed; .ci/run installs it (postgresql-client)")
        pytest.skip("psql is not installed (.ci/run installs postgresql-client)")
    # Not under pytest's temp dirs: those are private to root, and the
    # embedded server runs as its own user when the tests run as root.
    data = server_dir("callstore-quickstart-") / "callstore-demo"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"CALLSTORE_DATA_DIR": str(data)}

    assert callstore("--version", cwd=elsewhere).returncode == 0
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_", "DATABASE_URL"))}
    full_env.update(env, CALLSTORE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([str(SCRIPT), "demo", "--port", str(free_port()), "--fake-port", str(free_port()),
                             "--calls", "800"],
                            cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        output = read_until_ready(demo_lines(proc), proc)
        text = "".join(output)
        assert "callstore demo ready: 806 calls" in text
        webhook = next(line for line in output if line.startswith("webhook: "))
        assert re.search(r"; [1-9]\d* calls never sent", webhook)
        assert re.search(r": ok\. Stored 806 records \(\d+ pages\)", text)
        commands = [line.strip() for line in output if line.startswith("  ") and "callstore report" in line
                    or line.strip().startswith("PGPASSWORD=")]
        report_cmd, role_cmd, psql_cmd = commands

        # 3. A queue report, from another directory.
        report = callstore(*shlex.split(report_cmd)[1:], cwd=elsewhere, env=env)
        assert report.returncode == 0, report.stderr
        rows = [line for line in report.stdout.splitlines()[1:] if re.match(r"\s*\d{4}-\d\d-\d\d \d\d:\d\d", line)]
        assert len(rows) >= 10, report.stdout

        # 4. The BI role, then psql with the quickstart's SQL.
        name, value = shlex.split(role_cmd)[0].split("=", 1)
        role = callstore(*shlex.split(role_cmd)[2:], cwd=elsewhere, env={**env, name: value})
        assert role.returncode == 0, role.stderr
        words = shlex.split(psql_cmd)
        pg_env = {**os.environ, "PGPASSWORD": words[0].split("=", 1)[1], "PGCONNECT_TIMEOUT": "10"}
        query = subprocess.run([psql, *words[2:], "-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1"],
                               input=sql_of_quickstart(), capture_output=True, text=True, env=pg_env,
                               cwd=elsewhere, timeout=60)
        assert query.returncode == 0, query.stderr
        hourly, waiting, latest = _result_sets(query.stdout)
        assert len(hourly) >= 10  # the busy hours of a day (nights are quiet in the fake)
        assert hourly[0][0] == "bucket_local" and re.match(r"\d{4}-\d\d-\d\d \d\d:00:00$", hourly[1][0])
        assert sum(int(row[1]) for row in waiting[1:]) > 0  # calls waiting now
        assert len(latest) == 11 and re.search(r"\+07$", latest[1][0])  # local times
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        server = EmbeddedPostgres(data)
        if (data / "postgres").exists() and server.is_running():
            server.stop("immediate")
        errors = proc.stderr.read() if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        shutil.rmtree(data.parent, ignore_errors=True)
    assert proc.returncode == 0, errors


def _result_sets(out: str) -> list[list[list[str]]]:
    """psql's unaligned output: each SELECT's header, rows, and "(N rows)"."""
    sets: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in out.splitlines():
        if line == "SET":
            continue
        if re.fullmatch(r"\(\d+ rows?\)", line):
            sets.append(current)
            current = []
        else:
            current.append(line.split("|"))
    return sets
