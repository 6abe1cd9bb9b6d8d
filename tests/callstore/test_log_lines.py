"""Log lines a person reads: quiet at start, one sentence per event, each naming its job or call."""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.scheduler import Scheduler
from store.jobs import Job
from store.logs import setup_logging
from sync.fake import recording_link, running_fake
from tests.callstore.test_cli import run
from tests.callstore.test_recordings_cli import cli_env
from tests.conftest import test_settings
from tests.recording_fixtures import archive_settings, fake_state, load, with_recordings


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[Lines]:
    """The service's logging set up as `callstore serve` does, every record kept."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("INFO", "text")
    lines = Lines()
    root.addHandler(lines)
    try:
        yield lines
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_scheduler_is_quiet_at_start_and_names_a_skipped_job(engine: AsyncEngine, logged: Lines) -> None:
    runs: list[str] = []

    async def slow(engine: AsyncEngine, settings: object) -> None:
        runs.append("start")
        await asyncio.sleep(2.5)

    scheduler = Scheduler(engine, test_settings(), [Job("slow-job", slow, 1), Job("other", slow, 3600)])
    scheduler.start()
    try:
        for _ in range(100):  # the first run starts ~2 s after start; then runs every second are skipped
            await asyncio.sleep(0.1)
            if any("skipped a run" in r.getMessage() for r in logged.records):
                break
    finally:
        scheduler.shutdown()
    messages = [r.getMessage() for r in logged.records]
    assert not any(r.name.startswith("apscheduler") and r.levelno < logging.WARNING for r in logged.records)
    assert not any("Adding job" in m or "Added job" in m or "Execution of job" in m for m in messages), messages
    assert "Job slow-job skipped a run: its previous run is still going." in messages, messages


async def test_a_failed_recording_is_one_line(db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    """Refused recordings: one sentence each in the log, whether or not a progress bar is drawn."""
    state = fake_state(calls=20)
    data_dir = tmp_path / "data"
    with running_fake(state) as base:
        # The webhook names the fake by another host than the media URL's: not a configured origin.
        port = base.rsplit(":", 1)[1]
        records = [{**r, "recording_url": recording_link(f"http://localhost:{port}", str(r["recording_url"]))}
                   for r in with_recordings(state)[:3]]
        env = cli_env(db_url, data_dir, base, media_hosts="media.example.invalid")
        await load(engine, archive_settings(base, data_dir), records, source="webhook")
        plain = await asyncio.to_thread(run, "recordings", "fetch", env=env, cwd=tmp_path)
        assert plain.returncode == 1, plain.stderr
        for r in records:
            lines = [line for line in plain.stderr.splitlines() if r["call_id"] in line]
            assert len(lines) == 1 and "not stored (attempt 1)" in lines[0], lines

        # On a terminal: the same line once, printed above the bar, not through it.
        shown = await asyncio.to_thread(on_a_terminal, ["recordings", "fetch", "--retry-failed"], env, tmp_path)
    for r in records:
        lines = [line for line in shown.replace("\r", "\n").splitlines() if r["call_id"] in line]
        assert len(lines) == 1 and "not stored (attempt 2)" in lines[0], (lines, shown)


def on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run the CLI with stderr on a pseudo-terminal; return what the terminal showed."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_", "DATABASE_URL"))}
    full_env.update(env, CALLSTORE_LOG_FORMAT="text")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "callstore", *args], stdout=subprocess.DEVNULL,
                                stderr=slave, env=full_env, cwd=cwd)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=120)
    finally:
        os.close(master)
    return out.decode(errors="replace")
