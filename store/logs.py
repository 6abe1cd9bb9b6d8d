"""Logging: one JSON object per line when not on a terminal, plain text on one.

Secrets never reach a log line: the filter replaces every configured key,
token and password (and anything after `Authorization:`) before formatting.
Phone numbers are masked too, unless CALLSTORE_MASK_PHONE_NUMBERS is false.
Each line carries the id of the HTTP request being served (`request_id`, set
by the receiver's middleware in a context variable).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timezone

import orjson

from store.phone import mask_phone

#: The id of the HTTP request this code runs for (None outside requests).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# A number in canonical (+84912345678) or national (0912345678) form, not part
# of a longer word or a decimal.
_PHONE = re.compile(r"(?<![\w+.])(?:\+\d{8,15}|0\d{8,10})(?!\w)")

_AUTH = re.compile(r"(?i)(authorization|x-api-key|password|api_key|token)(\"?\s*[:=]\s*\"?)((?:bearer|basic|token)\s+)?([^\s\",}]+)")


class Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str] = (), mask_phones: bool = False) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.mask_phones = mask_phones

    def clean(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        text = _AUTH.sub(r"\1\2***", text)
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


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None) or request_id.get()
        return f"{line} [request {rid}]" if rid else line


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
    for noisy in ("uvicorn.access", "httpx", "httpcore", "apscheduler.executors.default", "sqlalchemy.engine",
                  "sqlalchemy.pool", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


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
    for secret in (settings.alert_webhook_secret, settings.alert_slack_url):
        if secret:
            out.append(secret)
    if settings.alert_webhook_url:
        out.append(settings.alert_webhook_url)
    if settings.database_url:
        pw = urlsplit(settings.database_url).password
        if pw:
            out.append(pw)
    return out
