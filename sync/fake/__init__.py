"""A fake Alohub: a real local HTTP server for tests, demos and benchmarks, and a webhook sender.

See docs/fake-alohub.md for what it serves and the assumptions it encodes.
"""

from sync.fake.history import (
    DEFAULT_QUEUES,
    FakeCall,
    FakeQueue,
    generate_calls,
    recording_link,
    webhook_events,
)
from sync.fake.mp3 import recording_bytes, recording_digest
from sync.fake.sender import SendReport, events_for, plan_deliveries, send_events
from sync.fake.server import RunningFake, create_app, run_app, run_server, running_fake, serve_forever
from sync.fake.state import FakeState, build_state, make_state

__all__ = [
    "DEFAULT_QUEUES",
    "FakeCall",
    "FakeQueue",
    "FakeState",
    "RunningFake",
    "SendReport",
    "build_state",
    "create_app",
    "events_for",
    "generate_calls",
    "make_state",
    "plan_deliveries",
    "recording_bytes",
    "recording_digest",
    "recording_link",
    "run_app",
    "run_server",
    "running_fake",
    "send_events",
    "serve_forever",
    "webhook_events",
]
