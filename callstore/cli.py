"""The command line: the one place that knows every part (store, receiver,
sync, reports) and wires them together.

Exit codes: 0 success, 2 bad usage or configuration (one line naming the
setting or argument), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from callstore.commands import alerts, backfill, campaigns, fake, queues, recordings, report, serve, tokens
from callstore.runtime import UsageError, run_command

#: Each module adds its subcommands with `register(subparsers)`.
COMMANDS = [serve, tokens, fake, backfill, queues, campaigns, recordings, report, alerts]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="callstore", description="Alohub call history in PostgreSQL")
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
