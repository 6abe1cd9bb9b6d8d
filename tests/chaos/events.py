"""A stream of webhook events for chaos tests: calls with their lifecycle and duplicates."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta


def call_events(calls: int, *, seed: int = 1, duplicates: float = 0.1) -> list[bytes]:
    """Bodies as Alohub would send them: per call a started event, often an
    answered one, then the ended one; a share of them sent again verbatim."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 23, 8, 0, 0)
    bodies: list[bytes] = []
    for i in range(calls):
        t0 = start + timedelta(seconds=7 * i)
        answered = rng.random() < 0.7
        base = {
            "call_id": f"chaos-{i:05d}", "direction": "inbound", "caller_number": f"09{rng.randrange(10**8):08d}",
            "destination_number": "19001234", "hotline": "19001234", "starttime": f"{t0:%Y-%m-%d %H:%M:%S}",
            "eventType": "call", "objectId": i,
        }
        bodies.append(json.dumps({**base, "call_status": "ringing"}).encode())
        if answered:
            bodies.append(json.dumps({**base, "call_status": "answered",
                                      "answertime": f"{t0 + timedelta(seconds=9):%Y-%m-%d %H:%M:%S}"}).encode())
        end = {**base, "call_status": "answered" if answered else "noanswer",
               "endtime": f"{t0 + timedelta(seconds=95):%Y-%m-%d %H:%M:%S}",
               "hangup_by": rng.choice(["customer", "agent"]), "total_duration": "95"}
        if answered:
            end["answertime"] = f"{t0 + timedelta(seconds=9):%Y-%m-%d %H:%M:%S}"
        bodies.append(json.dumps(end).encode())
    for body in rng.sample(bodies, int(len(bodies) * duplicates)):
        bodies.insert(rng.randrange(len(bodies)), body)
    return bodies
