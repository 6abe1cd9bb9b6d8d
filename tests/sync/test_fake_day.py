"""The fake Alohub looks like a day in a contact center: a diurnal curve,
calls in progress when it runs, quiet about clients that go away, exit 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from sync.fake import generate_calls

ICT = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE = datetime(2024, 1, 13, tzinfo=ICT)
UNTIL = datetime(2024, 1, 14, tzinfo=ICT)
SCRIPT = Path(sys.executable).with_name("callstore")


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ICT)


def per_hour(curve: str) -> Counter[int]:
    calls = generate_calls(4000, seed=9, start=SINCE, end=UNTIL, curve=curve)
    return Counter(local(c.starttime).hour for c in calls)


def test_busy_mornings_and_afternoons_quiet_nights() -> None:
    hours = per_hour("diurnal")
    night = sum(hours[h] for h in range(6))
    peak = sum(hours[h] for h in (8, 9, 10, 14, 15, 16))
    assert peak > 10 * night
    assert hours[9] > 5 * hours[3] and hours[15] > 5 * hours[3]
    assert hours[12] < hours[10]  # the lunch dip
    assert sum(hours.values()) == 4000


def test_flat_curve_is_still_available() -> None:
    hours = per_hour("flat")
    assert max(hours.values()) < 2 * min(hours.values())


def test_calls_in_progress_at_now() -> None:
    now = UNTIL
    calls = generate_calls(500, seed=4, start=SINCE, end=UNTIL, now=now, live=6)
    assert calls == generate_calls(500, seed=4, start=SINCE, end=UNTIL, now=now, live=6)
    assert len(calls) == 506
    for call in calls:
        assert local(call.starttime) < now
        if call.answertime:
            assert local(call.answertime) <= now
        if call.endtime:
            assert local(call.endtime) <= now
        else:
            assert call.total_duration == "" and call.hangup_by == "" and call.recording_url == ""
    waiting = [c for c in calls if c.direction == "INBOUND" and not c.endtime and not c.answertime]
    talking = [c for c in calls if not c.endtime and c.answertime]
    assert len(waiting) >= 3 and len(talking) >= 3
    assert all(c.call_status == "ringing" and c.agent == "" and c.hotline for c in waiting)
    assert all(now - local(c.starttime) <= timedelta(minutes=5) for c in waiting)


def test_without_now_history_is_finished() -> None:
    calls = generate_calls(300, seed=4, start=SINCE, end=UNTIL)
    assert all(c.endtime for c in calls)


def test_live_needs_now() -> None:
    with pytest.raises(ValueError, match="live"):
        generate_calls(3, seed=1, start=SINCE, end=UNTIL, live=2)


def test_served_day_has_live_calls_no_traceback_and_exit_0_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_"))}
    proc = subprocess.Popen(
        [str(SCRIPT), "fake-alohub", "serve", "--port", "0", "--calls", "300"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert "fake Alohub serving 306 calls" in ready, ready
        base = ready.rsplit(" on ", 1)[1].strip()
        host, port = base.removeprefix("http://").split(":")

        calls = httpx.get(f"{base}/_fake/calls", timeout=10).json()
        assert any(c["call_status"] == "ringing" and c["endtime"] == "" for c in calls)

        # A client that announces a body and leaves halfway.
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /api/v1.0/base/searchCallV2 HTTP/1.1\r\nHost: x\r\nAuthorization: fake-api-key\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"page\"")
        # The server is still fine, and has seen the abandoned request by now.
        assert httpx.get(f"{base}/_fake/stats", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "ASGI callable" not in stderr and "ClientDisconnect" not in stderr
