"""Settings: read once from the environment (and `.env`), validated, frozen.

This is the only module that reads the environment. Everything else receives
a `Settings` object. A wrong value raises `ConfigError` naming the variable;
the command line turns it into one line and exit code 2.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from store.errors import ConfigError

DEFAULT_TENANT = "default"
DEFAULT_XAPI_URL = "https://xapi.alohub.vn"
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
DEFAULT_COUNTRY_CODE = "84"


@dataclass(frozen=True)
class TenantSettings:
    """One Alohub tenant: how its webhooks are recognised and its API reached."""

    tenant_id: str
    webhook_keys: tuple[str, ...] = ()
    api_url: str | None = None
    xapi_url: str = DEFAULT_XAPI_URL
    api_key: str | None = field(default=None, repr=False)
    alohub_tenant_id: str | None = None
    timezone: str = DEFAULT_TIMEZONE
    media_url: str | None = None
    media_hosts: tuple[str, ...] = ()
    country_code: str = DEFAULT_COUNTRY_CODE
    #: Outbound campaigns followed without `callstore campaigns add`.
    campaign_ids: tuple[int, ...] = ()
    #: Contact names are personal data: stored only when the tenant asks for it.
    store_contact_names: bool = False
    #: How the BI role sees campaign contacts' numbers: masked (last three digits), full or hidden.
    bi_phone_numbers: str = "masked"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def has_api(self) -> bool:
        return bool(self.api_key and self.api_url)

    def __repr__(self) -> str:  # never show keys, even by accident
        return f"TenantSettings(tenant_id={self.tenant_id!r}, timezone={self.timezone!r})"


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, repr=False)
    data_dir: Path = Path(".callstore")
    host: str = "127.0.0.1"
    port: int = 8080
    #: SO_REUSEPORT on the listening socket: several processes on one address.
    reuse_port: bool = False
    tenants: tuple[TenantSettings, ...] = (TenantSettings(DEFAULT_TENANT),)
    log_level: str = "INFO"
    log_format: str = "auto"
    mask_phone_numbers: bool = True
    batch_max: int = 500
    spool_max_bytes: int = 512 * 1024 * 1024
    backfill_interval_s: int = 600
    backfill_overlap_s: int = 7200
    history_source: str = "searchCallV2"
    #: Alert notifiers. URLs may embed tokens (Slack's do): never in repr or logs.
    alert_webhook_url: str | None = field(default=None, repr=False)
    alert_webhook_secret: str | None = field(default=None, repr=False)
    alert_slack_url: str | None = field(default=None, repr=False)
    alert_interval_s: int = 60
    # Recording archive (sync/recordings.py): parallel downloads, downloads
    # started per second (0 = unlimited), attempts before 'failed', job interval.
    recordings_concurrency: int = 4
    recordings_rate: float = 10.0
    recordings_max_attempts: int = 8
    recordings_interval_s: int = 60
    campaigns_interval_s: int = 900

    def tenant(self, tenant_id: str) -> TenantSettings:
        for t in self.tenants:
            if t.tenant_id == tenant_id:
                return t
        raise KeyError(tenant_id)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    def __repr__(self) -> str:
        return f"Settings(data_dir={str(self.data_dir)!r}, host={self.host!r}, port={self.port}, tenants={[t.tenant_id for t in self.tenants]})"


def load_settings(environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")) -> Settings:
    """Read settings from `environ` (default: the process environment) and `.env`.

    Values in the environment win over `.env`, as with docker and systemd.
    """
    env: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return parse_settings(env)


def parse_settings(env: Mapping[str, str]) -> Settings:
    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    database_url = get("DATABASE_URL")
    if database_url is not None:
        _check_database_url(database_url)

    tenants_file = get("CALLSTORE_TENANTS_FILE")
    if tenants_file is not None:
        tenants = _tenants_from_file(Path(tenants_file))
    else:
        tenants = (
            _tenant(
                "ALOHUB_",
                get("ALOHUB_TENANT_ID") or DEFAULT_TENANT,
                {
                    "webhook_keys": get("ALOHUB_WEBHOOK_KEYS"),
                    "api_url": get("ALOHUB_API_URL"),
                    "xapi_url": get("ALOHUB_XAPI_URL"),
                    "api_key": get("ALOHUB_API_KEY"),
                    "tenant_id": get("ALOHUB_TENANT_ID"),
                    "timezone": get("ALOHUB_TIMEZONE"),
                    "media_url": get("ALOHUB_MEDIA_URL"),
                    "media_hosts": get("ALOHUB_MEDIA_HOSTS"),
                    "country_code": get("ALOHUB_COUNTRY_CODE"),
                    "campaign_ids": get("ALOHUB_CAMPAIGN_IDS"),
                    "store_contact_names": get("ALOHUB_STORE_CONTACT_NAMES"),
                    "bi_phone_numbers": get("ALOHUB_BI_PHONE_NUMBERS"),
                },
            ),
        )

    log_format = (get("CALLSTORE_LOG_FORMAT") or "auto").lower()
    if log_format not in ("auto", "json", "text"):
        raise ConfigError("CALLSTORE_LOG_FORMAT", "must be auto, json or text")
    log_level = (get("CALLSTORE_LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("CALLSTORE_LOG_LEVEL", "must be DEBUG, INFO, WARNING or ERROR")
    history_source = get("CALLSTORE_HISTORY_SOURCE") or "searchCallV2"
    if history_source not in ("searchCallV2", "call-logs"):
        raise ConfigError("CALLSTORE_HISTORY_SOURCE", "must be searchCallV2 or call-logs")

    webhook_url = _url("CALLSTORE_ALERT_WEBHOOK_URL", get("CALLSTORE_ALERT_WEBHOOK_URL"))
    webhook_secret = get("CALLSTORE_ALERT_WEBHOOK_SECRET")
    if webhook_secret is not None:
        _check_webhook_secret(webhook_secret)
    if webhook_url is not None and webhook_secret is None:
        raise ConfigError("CALLSTORE_ALERT_WEBHOOK_SECRET",
                          "is required with CALLSTORE_ALERT_WEBHOOK_URL (whsec_ followed by base64)")
    if webhook_secret is not None and webhook_url is None:
        raise ConfigError("CALLSTORE_ALERT_WEBHOOK_URL", "is required with CALLSTORE_ALERT_WEBHOOK_SECRET")

    return Settings(
        database_url=database_url,
        data_dir=Path(get("CALLSTORE_DATA_DIR") or ".callstore"),
        host=_host(get("CALLSTORE_HOST") or "127.0.0.1"),
        port=_int("CALLSTORE_PORT", get("CALLSTORE_PORT"), 8080, lo=0, hi=65535),
        reuse_port=_bool("CALLSTORE_REUSE_PORT", get("CALLSTORE_REUSE_PORT"), False),
        tenants=tenants,
        log_level=log_level,
        log_format=log_format,
        mask_phone_numbers=_bool("CALLSTORE_MASK_PHONE_NUMBERS", get("CALLSTORE_MASK_PHONE_NUMBERS"), True),
        batch_max=_int("CALLSTORE_BATCH_MAX", get("CALLSTORE_BATCH_MAX"), 500, lo=1, hi=10000),
        spool_max_bytes=_int("CALLSTORE_SPOOL_MAX_BYTES", get("CALLSTORE_SPOOL_MAX_BYTES"), 512 * 1024 * 1024, lo=1024),
        backfill_interval_s=_int("CALLSTORE_BACKFILL_INTERVAL", get("CALLSTORE_BACKFILL_INTERVAL"), 600, lo=10),
        backfill_overlap_s=_int("CALLSTORE_BACKFILL_OVERLAP", get("CALLSTORE_BACKFILL_OVERLAP"), 7200, lo=0),
        history_source=history_source,
        alert_webhook_url=webhook_url,
        alert_webhook_secret=webhook_secret,
        alert_slack_url=_url("CALLSTORE_ALERT_SLACK_URL", get("CALLSTORE_ALERT_SLACK_URL")),
        alert_interval_s=_int("CALLSTORE_ALERT_INTERVAL", get("CALLSTORE_ALERT_INTERVAL"), 60, lo=10, hi=3600),
        recordings_concurrency=_int("CALLSTORE_RECORDINGS_CONCURRENCY", get("CALLSTORE_RECORDINGS_CONCURRENCY"), 4, lo=1, hi=64),
        recordings_rate=float(_int("CALLSTORE_RECORDINGS_RATE", get("CALLSTORE_RECORDINGS_RATE"), 10, lo=0, hi=10000)),
        recordings_max_attempts=_int("CALLSTORE_RECORDINGS_MAX_ATTEMPTS", get("CALLSTORE_RECORDINGS_MAX_ATTEMPTS"), 8, lo=1, hi=100),
        recordings_interval_s=_int("CALLSTORE_RECORDINGS_INTERVAL", get("CALLSTORE_RECORDINGS_INTERVAL"), 60, lo=5),
        campaigns_interval_s=_int("CALLSTORE_CAMPAIGNS_INTERVAL", get("CALLSTORE_CAMPAIGNS_INTERVAL"), 900, lo=60),
    )


def _check_webhook_secret(value: str) -> None:
    """A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes."""
    import base64
    import binascii

    name = "CALLSTORE_ALERT_WEBHOOK_SECRET"
    if not value.startswith("whsec_"):
        raise ConfigError(name, "must start with whsec_ followed by base64 (Standard Webhooks)")
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(name, "the part after whsec_ is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ConfigError(name, "must decode to 24-64 bytes, e.g. whsec_ + base64 of 32 random bytes")


def _tenants_from_file(path: Path) -> tuple[TenantSettings, ...]:
    name = "CALLSTORE_TENANTS_FILE"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(name, f"file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, f"cannot read {path}: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, f"{path} is not valid TOML: {exc}") from None
    table = data.get("tenants")
    if not isinstance(table, dict) or not table:
        raise ConfigError(name, f"{path} must contain at least one [tenants.<tenant_id>] table")
    tenants = []
    for tenant_id, values in table.items():
        if not isinstance(values, dict):
            raise ConfigError(name, f"[tenants.{tenant_id}] must be a table")
        unknown = set(values) - {
            "webhook_keys", "api_url", "xapi_url", "api_key", "tenant_id", "timezone",
            "media_url", "media_hosts", "country_code", "campaign_ids", "store_contact_names", "bi_phone_numbers",
        }
        if unknown:
            raise ConfigError(name, f"[tenants.{tenant_id}] has unknown key {sorted(unknown)[0]!r}")
        tenants.append(_tenant(f"{name} [tenants.{tenant_id}] ", tenant_id, values))
    _check_unique_keys(tenants)
    return tuple(tenants)


def _tenant(prefix: str, tenant_id: str, raw: Mapping[str, object]) -> TenantSettings:
    """Build one tenant; `prefix` names the setting in errors (env var prefix or file table)."""

    def name(key: str) -> str:
        return f"{prefix}{key.upper()}" if prefix == "ALOHUB_" else f"{prefix}{key}"

    if not tenant_id or any(c.isspace() for c in tenant_id) or len(tenant_id) > 64:
        raise ConfigError(name("tenant_id"), "must be 1-64 characters without spaces")

    keys = _list(name("webhook_keys"), raw.get("webhook_keys"))
    for k in keys:
        if len(k) < 8:
            raise ConfigError(name("webhook_keys"), "each key must be at least 8 characters")

    api_url = _url(name("api_url"), raw.get("api_url"))
    xapi_url = _url(name("xapi_url"), raw.get("xapi_url")) or DEFAULT_XAPI_URL
    media_url = _url(name("media_url"), raw.get("media_url"))
    if media_url is None and api_url is not None:
        parts = urlsplit(api_url)
        media_url = f"{parts.scheme}://{parts.netloc}"
    hosts = _list(name("media_hosts"), raw.get("media_hosts"))
    if not hosts:
        # The hosts of the call API and of the media URL. Not the
        # gateway's: it serves JSON, and with its default always present the
        # recordings job could never be off for want of a configured host
        # (it would mark every webhook recording failed instead).
        hosts = [h for h in (_hostname(api_url), _hostname(media_url)) if h]
    tz = str(raw.get("timezone") or DEFAULT_TIMEZONE)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(name("timezone"), f"{tz!r} is not an IANA time zone such as Asia/Ho_Chi_Minh") from None
    api_key = raw.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError(name("api_key"), "must be a string")
    cc = str(raw.get("country_code") or DEFAULT_COUNTRY_CODE)
    if not cc.isdigit() or not 1 <= len(cc) <= 3:
        raise ConfigError(name("country_code"), "must be 1-3 digits, e.g. 84")
    alohub_tenant = raw.get("tenant_id")
    campaign_ids = tuple(dict.fromkeys(_campaign_id(name("campaign_ids"), v)
                                       for v in _ids(name("campaign_ids"), raw.get("campaign_ids"))))
    store_names = raw.get("store_contact_names")
    if not isinstance(store_names, bool):
        store_names = _bool(name("store_contact_names"), store_names, False)  # type: ignore[arg-type]
    bi_phones = str(raw.get("bi_phone_numbers") or "masked").lower()
    if bi_phones not in ("masked", "full", "hidden"):
        raise ConfigError(name("bi_phone_numbers"), "must be masked, full or hidden")
    return TenantSettings(
        tenant_id=tenant_id,
        webhook_keys=tuple(keys),
        api_url=api_url,
        xapi_url=xapi_url,
        api_key=api_key or None,
        alohub_tenant_id=str(alohub_tenant) if alohub_tenant else None,
        timezone=tz,
        media_url=media_url,
        media_hosts=tuple(dict.fromkeys(h.lower() for h in hosts)),
        country_code=cc,
        campaign_ids=campaign_ids,
        store_contact_names=store_names,
        bi_phone_numbers=bi_phones,
    )


def _check_unique_keys(tenants: list[TenantSettings]) -> None:
    seen: dict[str, str] = {}
    for t in tenants:
        for k in t.webhook_keys:
            if k in seen:
                raise ConfigError(
                    "CALLSTORE_TENANTS_FILE",
                    f"tenants {seen[k]!r} and {t.tenant_id!r} share a webhook key; each key must name one tenant",
                )
            seen[k] = t.tenant_id


def _list(name: str, value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ConfigError(name, "must be a comma-separated string or a list of strings")
    return [v for v in items if v]


def _ids(name: str, value: object) -> list[object]:
    if isinstance(value, list):
        return value
    return list(_list(name, value))


def _campaign_id(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    raise ConfigError(name, f"{value!r} is not a campaign id (a positive whole number)")


def _url(name: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(name, "must be a URL string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, "must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ConfigError(name, "must not carry credentials; use ALOHUB_API_KEY")
    return value.rstrip("/")


def _hostname(url: str | None) -> str | None:
    return urlsplit(url).hostname if url else None


def _host(value: str) -> str:
    if value in ("localhost", "0.0.0.0", "::"):
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not all(part.isalnum() or "-" in part for part in value.split(".")):
            raise ConfigError("CALLSTORE_HOST", f"{value!r} is not an address or host name") from None
    return value


def _int(name: str, value: str | None, default: int, *, lo: int, hi: int | None = None) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a whole number") from None
    if n < lo or (hi is not None and n > hi):
        raise ConfigError(name, f"must be between {lo} and {hi}" if hi is not None else f"must be at least {lo}")
    return n


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"{value!r} is not true or false")


def _check_database_url(url: str) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL", "must start with postgresql://")
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError("DATABASE_URL", "must name a host, e.g. postgresql://user@127.0.0.1:5432/callstore")
    try:
        parts.port
    except ValueError:
        raise ConfigError("DATABASE_URL", "has a port that is not a number") from None


def secret_from_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret a command names by variable (e.g. `--password-env VAR`); None if unset or empty."""
    value = (os.environ if environ is None else environ).get(name)
    return value or None
