"""The command line: the one place that knows every part (store, receiver,
sync, reports) and wires them together.

Exit codes: 0 success, 2 bad usage or configuration (one line naming the
setting or argument), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

from callstore.commands import (alerts, audit, backfill, campaigns, db, demo, fake, queues, recordings, report, serve,
                                tokens, users)
from callstore.runtime import UsageError, run_command

#: Each module adds its subcommands with `register(subparsers)`.
COMMANDS = [serve, db, tokens, users, audit, fake, backfill, queues, campaigns, recordings, report, alerts, demo]


class _Parser(argparse.ArgumentParser):
    _given: tuple[str, ...] = ()

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self._given = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse checks required arguments before unknown ones, so
        # `callstore --bogus` would blame the missing command: name the
        # option the user actually mistyped instead.
        if message.startswith("the following arguments are required"):
            for given in self._given:
                if given == "--":
                    break
                if given.startswith("-") and given.split("=", 1)[0] not in self._option_string_actions:
                    raise UsageError(f"{given}: unknown option; see `{self.prog} --help`")
            for action in self._actions:
                # A missing subcommand: say which ones exist rather than the internal dest name.
                if isinstance(action, argparse._SubParsersAction) and (
                        message.endswith(f": {action.dest}") or message.endswith(f": {action.metavar}")):
                    raise UsageError(f"choose a command: {', '.join(action.choices)}; see `{self.prog} --help`")
        raise UsageError(message)


def _version() -> str:
    try:
        return metadata.version("callstore")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="callstore", description="Alohub call history in PostgreSQL")
    parser.add_argument("--version", action="version", version=f"callstore {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"callstore: error: {exc}", file=sys.stderr)
        return 2
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
