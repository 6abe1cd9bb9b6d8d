"""Errors of the shared package.

    CallstoreError
    ├── ConfigError        a setting is wrong: names it; exit code 2
    └── DatabaseUnavailable  Postgres cannot be reached (the spool takes over)
"""

from __future__ import annotations


class CallstoreError(Exception):
    """Base of callstore's own errors. Messages never contain secrets."""


class ConfigError(CallstoreError):
    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class DatabaseUnavailable(CallstoreError):
    """The database cannot be reached right now (refused, timed out, restarting)."""
