from __future__ import annotations

import logging

import orjson
import pytest

from store.errors import ConfigError
from store.logs import JsonFormatter, Redact, request_id


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("callstore.test", logging.INFO, __file__, 1, message, args, None)


def test_secrets_and_auth_values_are_replaced() -> None:
    f = Redact(["sekret-webhook-key", "pw12345"])
    r = record("key %s in postgresql://u:%s@h/db, Authorization: Bearer abc, token=xyz", "sekret-webhook-key", "pw12345")
    f.filter(r)
    out = r.getMessage()
    assert "sekret-webhook-key" not in out and "pw12345" not in out and "abc" not in out and "xyz" not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # HTTP credential headers, with or without a scheme, as text or in a dict.
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNz==", "Authorization: Basic ***"),
        ("authorization: Token t0k3n", "authorization: Token ***"),
        ("Authorization: rawkey123 sent", "Authorization: *** sent"),
        ("X-Api-Key: k123", "X-Api-Key: ***"),
        ("{'Authorization': 'Bearer a b', 'X-Api-Key': 'k123'}", "{'Authorization': 'Bearer ***', 'X-Api-Key': '***'}"),
        # JSON and dict values of credential-named keys.
        ('{"password": "hunter2", "token": "t0k", "api_key": "ak", "n": 1}',
         '{"password": "***", "token": "***", "api_key": "***", "n": 1}'),
        ('{"token": 12345}', '{"token": ***}'),
        # key=value with the value right after `=`, or quoted after `=` / `:`.
        ("password='hunter2' token=\"t0k\" api_key=ak123", "password='***' token=\"***\" api_key=***"),
        ("password: 'hunter2'", "password: '***'"),
        ("ALOHUB_API_KEY=sk_live_1 CALLSTORE_ALERT_WEBHOOK_SECRET=whsec_abc",
         "ALOHUB_API_KEY=*** CALLSTORE_ALERT_WEBHOOK_SECRET=***"),
        ("ALOHUB_WEBHOOK_KEYS=key-one-1,key-two-2 set", "ALOHUB_WEBHOOK_KEYS=*** set"),
        ("GET /x?access_token=abc&api_key=def&page=2", "GET /x?access_token=***&api_key=***&page=2"),
        ("connect(password=hunter2, host=db)", "connect(password=***, host=db)"),
        # Passwords in URLs; the rest of the URL stays.
        ("postgresql://user:PASSWORD@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql+asyncpg://cs:s3cr%40t@127.0.0.1/db?sslmode=require", "postgresql+asyncpg://cs:***@127.0.0.1/db?sslmode=require"),
        ("postgres://u:p@ss@h/d", "postgres://u:***@h/d"),
        ("redis://:pw12@h:6379", "redis://:***@h:6379"),
    ],
)
def test_credential_shaped_values_are_redacted(text: str, expected: str) -> None:
    assert Redact().clean(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        str(ConfigError("ALOHUB_API_KEY", "must be a string")),
        str(ConfigError("CALLSTORE_TENANTS_FILE [tenants.hanoi] api_key", "must be a string")),
        str(ConfigError("CALLSTORE_ALERT_WEBHOOK_SECRET", "must start with whsec_ followed by base64 (Standard Webhooks)")),
        str(ConfigError("ALOHUB_WEBHOOK_KEYS", "each key must be at least 8 characters")),
        str(ConfigError("sync-queues", "ALOHUB_API_KEY is not set; the queue catalogue needs it")),
        "CALLSTORE_ADMIN_TOKEN is not set",
        "tenant 'default': cannot backfill from searchCallV2: ALOHUB_API_KEY is not set",
        "--password-env: the environment variable PGPW is not set or empty",
        "password = see the docs",  # prose: a spaced `=` and an unquoted value
        "token_prefix=cs_abc tokens=3 storage_key=2024/01/abc.mp3",
        "fetching https://host:8080/IPCCMedia/MP3Export.do?url=a.mp3 for a@b",
    ],
)
def test_messages_that_name_a_setting_stay_readable(text: str) -> None:
    assert Redact(["sekret-webhook-key"]).clean(text) == text


def test_configured_secrets_are_replaced_wherever_they_stand() -> None:
    f = Redact(["sekret-webhook-key", "pw12345"])
    out = f.clean("got sekret-webhook-key; password is pw12345 (unquoted prose)")
    assert out == "got ***; password is *** (unquoted prose)"


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
