"""Logging: one JSON object per line when not on a terminal, plain text on one.

Secrets never reach a log line: the filter replaces every configured key,
token and password, and anything shaped like a credential (see `redact_text`),
before formatting. Messages that only *name* a setting stay readable.
Phone numbers are masked too, unless CALLSTORE_MASK_PHONE_NUMBERS is false.
Each line carries the id of the HTTP request being served (`request_id`, set
by the receiver's middleware in a context variable).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

import orjson

from store.phone import mask_phone

#: The id of the HTTP request this code runs for (None outside requests).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# A number in canonical (+84912345678) or national (0912345678) form, not part
# of a longer word or a decimal.
_PHONE = re.compile(r"(?<![\w+.])(?:\+\d{8,15}|0\d{8,10})(?!\w)")

# A value that runs to the next space, quote or separator.
_BARE = r"[^\s\"',;&}\]]+"
# The same, or a comma-separated list of such values (`KEYS=a,b`); a comma
# followed by a space or the end is punctuation, not part of the value.
_LIST = r"[^\s\"';&}\]]+?(?=,?(?:[\s\"';&}\]]|$))"
_SCHEME = re.compile(r"(?i)((?:bearer|basic|token|digest)[ \t]+)?")

# The value of an HTTP credential header, however it is written:
# `Authorization: Bearer abc`, `'X-Api-Key': 'abc'`, `authorization=abc`.
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key)([\"']?[ \t]*[:=][ \t]*)"
    rf"(?:\"([^\"\n]*)\"|'([^'\n]*)'|((?:(?:bearer|basic|token|digest)[ \t]+)?{_BARE}))"
)

# A value assigned to a credential-named key: `password="x"`, `"token": "x"`,
# `api_key='x'`, `ALOHUB_API_KEY=x`, `?access_token=x&`, `{"token": x}`.
# Not `ALOHUB_API_KEY: must be a string` nor `password = ...` with spaces:
# an unquoted value after `:` or after a spaced `=` is prose that names the
# setting, and stays readable (a configured secret is still caught verbatim).
_KEY = r"(?:password|passwd|secret|token|api[_-]?key|webhook[_-]?keys?)"
_ASSIGN = re.compile(
    rf"(?i)(\b[\w.-]*?{_KEY})"
    r"(?:([\"']?[ \t]*[:=][ \t]*)(?:\"([^\"\n]*)\"|'([^'\n]*)')"  # any separator, quoted value
    rf"|(=)({_LIST})"  # `=` and the value right after it (a comma-separated list too)
    rf"|([\"'][ \t]*:[ \t]*)({_BARE}))"  # a quoted (JSON, dict) key, then a bare value
)

# The password of a URL: scheme://user:PASSWORD@host. Up to the last `@`
# before the path, as urlsplit reads it, so an unescaped `@` in it is hidden too.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@\"']*):([^\s/\"']+)@")


def _scheme(value: str) -> str:
    """`Bearer ` (or `Basic `, ...) when `value` starts with an auth scheme, else ''."""
    m = _SCHEME.match(value)
    return (m.group(1) or "") if m else ""


def _header(m: re.Match[str]) -> str:
    name, sep, dq, sq, bare = m.groups()
    if bare is not None:
        return f"{name}{sep}{_scheme(bare)}***"
    quote, value = ('"', dq) if dq is not None else ("'", sq)
    return f"{name}{sep}{quote}{_scheme(value)}***{quote}"


def _assign(m: re.Match[str]) -> str:
    name, sep, dq, sq, eq, _bare, json_sep, _json_bare = m.groups()
    if eq is not None:
        return f"{name}=***"
    if json_sep is not None:
        return f"{name}{json_sep}***"
    quote = '"' if dq is not None else "'"
    return f"{name}{sep}{quote}***{quote}"


def redact_text(text: str) -> str:
    """`text` with every credential-shaped value replaced by `***`: HTTP
    credential headers, values assigned to password/token/secret/api-key
    names, and passwords in URLs (`postgresql://user:***@host/db`)."""
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    text = _HEADER.sub(_header, text)
    return _ASSIGN.sub(_assign, text)


class Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str] = (), mask_phones: bool = False) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.mask_phones = mask_phones

    def clean(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        text = redact_text(text)
        if self.mask_phones:
            text = _PHONE.sub(lambda m: mask_phone(m.group(0)) or "", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.clean(message)
        record.args = None
        if record.exc_info:
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "tenant_id", "job"):
            value = getattr(record, key, None)
            if value is None and key == "request_id":
                value = request_id.get()
            if value is not None:
                out[key] = value
        if record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out).decode()


# Line breaks and other control characters (C0, DEL, C1, Unicode line and
# paragraph separators) that a value from a webhook could carry into a message.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_control(m: re.Match[str]) -> str:
    c = m.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


class TextFormatter(logging.Formatter):
    """One record, one line: control characters in the message are escaped
    (a call id with a line break cannot forge a log line); a traceback's own
    lines are indented, so that none of them looks like the start of a record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _CONTROL.sub(_escape_control, record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return self._indent(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_text:
            record.exc_text = self._indent(record.exc_text)
        line = super().format(record)
        rid = getattr(record, "request_id", None) or request_id.get()
        return f"{line} [request {rid}]" if rid else line

    @staticmethod
    def _indent(text: str) -> str:
        lines = [_CONTROL.sub(_escape_control, part) for part in text.split("\n")]
        return "\n".join(line if line.startswith("    ") else "    " + line for line in lines)


def setup_logging(level: str = "INFO", fmt: str = "auto", secrets: Iterable[str] = (),
                  mask_phones: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(Redact(secrets, mask_phones))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # sqlalchemy.engine at INFO or DEBUG would log every statement with its
    # parameters (call payloads, phone numbers): never, whatever the level.
    # APScheduler says "Adding job tentatively" and "Added job" for every job
    # at every start; the scheduler (callstore/scheduler.py) logs what matters.
    for noisy in ("uvicorn.access", "httpx", "httpcore", "apscheduler", "sqlalchemy.engine",
                  "sqlalchemy.pool", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic says which dialect and DDL mode it uses on every start of every
    # command; only the "Running upgrade ..." lines tell an operator anything.
    migration = logging.getLogger("alembic.runtime.migration")
    migration.filters[:] = [f for f in migration.filters if not isinstance(f, _AlembicPreamble)]
    migration.addFilter(_AlembicPreamble())


@contextlib.contextmanager
def lines_above(write: Callable[[str], None]) -> Iterator[None]:
    """While a progress bar is drawn: every log line goes through `write` (tqdm.write), which
    prints it above the bar instead of through it. Formatting and redaction stay the handler's."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.stream for h in handlers]
    for h in handlers:
        h.setStream(_Above(write))
    try:
        yield
    finally:
        for h, stream in zip(handlers, streams):
            h.setStream(stream)


class _Above:
    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def write(self, text: str) -> None:
        line = text.rstrip("\n")
        if line:
            self._write(line)

    def flush(self) -> None:
        pass


class _AlembicPreamble(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl", "Will assume"))


def settings_secrets(settings: object) -> list[str]:
    """Every secret in `settings`, for the redacting filter."""
    from urllib.parse import urlsplit

    from store.settings import Settings

    assert isinstance(settings, Settings)
    out: list[str] = []
    for t in settings.tenants:
        out.extend(t.webhook_keys)
        if t.api_key:
            out.append(t.api_key)
    for secret in (settings.alert_webhook_secret, settings.alert_slack_url, settings.metrics_token,
                   settings.session_secret):
        if secret:
            out.append(secret)
    if settings.alert_webhook_url:
        out.append(settings.alert_webhook_url)
    for url in (settings.database_url, settings.database_read_url):
        pw = urlsplit(url).password if url else None
        if pw:
            out.append(pw)
    return out
