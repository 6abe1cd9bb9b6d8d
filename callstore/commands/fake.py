"""`callstore fake-alohub serve|send`: the fake Alohub for tests, demos and benchmarks."""

from __future__ import annotations

import argparse

from store.settings import Settings
from sync.fake import command


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fake-alohub", help="run a fake Alohub (call history, queues, recordings, webhook sender)")
    command.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    return command.run_from_args(args)
