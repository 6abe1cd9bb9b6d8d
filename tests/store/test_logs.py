from __future__ import annotations

import logging

import orjson

from store.logs import JsonFormatter, Redact, request_id


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("callstore.test", logging.INFO, __file__, 1, message, args, None)


def test_secrets_and_auth_values_are_replaced() -> None:
    f = Redact(["sekret-webhook-key", "pw12345"])
    r = record("key %s in postgresql://u:%s@h/db, Authorization: Bearer abc, token=xyz", "sekret-webhook-key", "pw12345")
    f.filter(r)
    out = r.getMessage()
    assert "sekret-webhook-key" not in out and "pw12345" not in out and "abc" not in out and "xyz" not in out


def test_phone_numbers_masked_unless_configured_otherwise() -> None:
    text = "caller +84912345678 / 0912345678 hotline 19001234 call 20240113150030xxxxxx took 0.0123456789 s"
    masked = Redact([], mask_phones=True).clean(text)
    assert "+84912345678" not in masked and "0912345678" not in masked and "*********678" in masked
    # Not phone numbers: kept.
    assert "20240113150030xxxxxx" in masked and "0.0123456789" in masked and "19001234" in masked
    assert Redact([], mask_phones=False).clean(text) == text


def test_json_lines_carry_the_request_id() -> None:
    token = request_id.set("rid-1")
    try:
        line = orjson.loads(JsonFormatter().format(record("hello %s", "world")))
    finally:
        request_id.reset(token)
    assert line["message"] == "hello world" and line["request_id"] == "rid-1" and line["level"] == "info"
    assert "request_id" not in orjson.loads(JsonFormatter().format(record("outside a request")))
