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
#: Shorter webhook keys could be guessed by a patient sender.
MIN_WEBHOOK_KEY = 16


@dataclass(frozen=True, order=True)
class Origin:
    """Scheme, host and port: what a browser would call an origin."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str | None) -> Origin | None:
    """The origin of an http(s) URL (default port filled in); None when it has none."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


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
    #: Extra media origins as configured: `host`, `host:port` or `scheme://host[:port]`.
    media_hosts: tuple[str, ...] = ()
    country_code: str = DEFAULT_COUNTRY_CODE
    #: Days a stored recording is kept (counted from the call's start); None = forever.
    recordings_retention_days: int | None = None
    #: Days raw events are kept (whole months dropped once older); None = forever.
    raw_events_retention_days: int | None = None
    #: Outbound campaigns followed without `callstore campaigns add`.
    campaign_ids: tuple[int, ...] = ()
    #: Contact names are personal data: stored only when the tenant asks for it.
    store_contact_names: bool = False
    #: How the BI role sees campaign contacts' numbers: masked (last three digits), full or hidden.
    bi_phone_numbers: str = "masked"
    #: This process's own limits on requests to this tenant's Alohub: requests
    #: started per second (None = only the gateway's limits) and requests in
    #: flight at once (None = no limit beyond each job's own).
    max_requests_per_second: float | None = None
    max_concurrent_requests: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def has_api(self) -> bool:
        return bool(self.api_key and self.api_url)

    @property
    def media_origins(self) -> frozenset[Origin]:
        """Where recordings may be fetched from (and the API key sent): the
        origins of the API and media URLs, and every `media_hosts` entry. An
        entry without a scheme takes the media URL's (else the API URL's, else
        https), so a tenant configured with https never fetches over http."""
        origins = {o for o in (origin_of(self.media_url), origin_of(self.api_url)) if o is not None}
        base = self.media_url or self.api_url
        scheme = urlsplit(base).scheme.lower() if base else "https"
        for entry in self.media_hosts:
            o = origin_of(entry if "://" in entry else f"{scheme}://{entry}")
            if o is not None:
                origins.add(o)
        return frozenset(origins)

    def __repr__(self) -> str:  # never show keys, even by accident
        return f"TenantSettings(tenant_id={self.tenant_id!r}, timezone={self.timezone!r})"


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, repr=False)
    #: A streaming replica for reads that may be a moment old (store/read_routing.py); None: all on the primary.
    database_read_url: str | None = field(default=None, repr=False)
    #: A replica further behind than this many seconds serves no reads until it catches up.
    read_max_lag_s: int = 30
    data_dir: Path = Path(".callstore")
    host: str = "127.0.0.1"
    port: int = 8080
    #: SO_REUSEPORT on the listening socket: several processes on one address.
    reuse_port: bool = False
    #: Connections (receiver/connections.py): seconds to send a request's
    #: headers, idle seconds between keep-alive requests, requests per
    #: connection, open connections at once.
    http_header_timeout_s: int = 10
    http_keepalive_timeout_s: int = 5
    http_keepalive_requests: int = 1000
    http_max_connections: int = 1000
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
    #: Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or networks; "*" all). None by default.
    trusted_proxies: tuple[str, ...] = ()
    #: Bearer token that /metrics requires; None: open, as Prometheus expects.
    metrics_token: str | None = field(default=None, repr=False)
    #: How long a claimed recording belongs to one run (renewed while it works):
    #: after a crash or an outage, claimed recordings are retried this soon.
    recordings_lease_s: int = 120
    #: Key that signs the console's session cookies; None: generated once and kept in the database.
    session_secret: str | None = field(default=None, repr=False)
    campaigns_interval_s: int = 900
    #: Tenants of one scheduled job that run at once, and the seconds one
    #: tenant's share of one run may take before it is cut (resumed next run).
    tenant_concurrency: int = 8
    tenant_run_budget_s: int = 600

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


def user_dotenv_path() -> Path:
    """The per-user `.env`: `~/.config/callstore/.env` on Linux (`$XDG_CONFIG_HOME/callstore/.env`)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("callstore", appauthor=False)) / ".env"


def default_data_dir(env: Mapping[str, str]) -> Path:
    """Where the data lives without CALLSTORE_DATA_DIR: one place per user, whatever the working directory.

    The per-user data folder (`~/.local/share/callstore` on Linux, honouring
    XDG_DATA_HOME). As root without XDG_DATA_HOME, `/var/lib/callstore`: root's
    home is closed to the system user that runs the embedded PostgreSQL.
    """
    import platformdirs

    if hasattr(os, "geteuid") and os.geteuid() == 0 and not env.get("XDG_DATA_HOME"):
        return Path("/var/lib/callstore")
    return Path(platformdirs.user_data_dir("callstore", appauthor=False))


def load_settings(environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env"),
                  user_dotenv: Path | None = None) -> Settings:
    """Read settings from `environ` (default: the process environment), `.env`
    in the working directory, and the per-user `user_dotenv` (`user_dotenv_path()`).

    The environment wins over `.env`, as with docker and systemd; the working
    directory's `.env` wins over the per-user one.
    """
    env: dict[str, str] = {}
    for path in (user_dotenv, dotenv):
        if path is not None and path.is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
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
    database_read_url = get("DATABASE_READ_URL")
    if database_read_url is not None:
        _check_database_url(database_read_url, "DATABASE_READ_URL")

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
                    "recordings_retention_days": get("CALLSTORE_RECORDINGS_RETENTION_DAYS"),
                    "raw_events_retention_days": get("CALLSTORE_RAW_EVENTS_RETENTION_DAYS"),
                    "campaign_ids": get("ALOHUB_CAMPAIGN_IDS"),
                    "store_contact_names": get("ALOHUB_STORE_CONTACT_NAMES"),
                    "bi_phone_numbers": get("ALOHUB_BI_PHONE_NUMBERS"),
                    "max_requests_per_second": get("ALOHUB_MAX_REQUESTS_PER_SECOND"),
                    "max_concurrent_requests": get("ALOHUB_MAX_CONCURRENT_REQUESTS"),
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
        database_read_url=database_read_url,
        read_max_lag_s=_int("CALLSTORE_READ_MAX_LAG", get("CALLSTORE_READ_MAX_LAG"), 30, lo=1, hi=3600),
        data_dir=Path(data_dir) if (data_dir := get("CALLSTORE_DATA_DIR")) else default_data_dir(env),
        host=_host(get("CALLSTORE_HOST") or "127.0.0.1"),
        port=_int("CALLSTORE_PORT", get("CALLSTORE_PORT"), 8080, lo=0, hi=65535),
        reuse_port=_bool("CALLSTORE_REUSE_PORT", get("CALLSTORE_REUSE_PORT"), False),
        http_header_timeout_s=_int("CALLSTORE_HTTP_HEADER_TIMEOUT", get("CALLSTORE_HTTP_HEADER_TIMEOUT"), 10, lo=1, hi=300),
        http_keepalive_timeout_s=_int("CALLSTORE_HTTP_KEEPALIVE_TIMEOUT", get("CALLSTORE_HTTP_KEEPALIVE_TIMEOUT"), 5,
                                      lo=1, hi=300),
        http_keepalive_requests=_int("CALLSTORE_HTTP_KEEPALIVE_REQUESTS", get("CALLSTORE_HTTP_KEEPALIVE_REQUESTS"), 1000,
                                     lo=1),
        http_max_connections=_int("CALLSTORE_HTTP_MAX_CONNECTIONS", get("CALLSTORE_HTTP_MAX_CONNECTIONS"), 1000, lo=1),
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
        trusted_proxies=_proxies(get("CALLSTORE_TRUSTED_PROXIES")),
        metrics_token=_secret("CALLSTORE_METRICS_TOKEN", get("CALLSTORE_METRICS_TOKEN")),
        recordings_lease_s=_int("CALLSTORE_RECORDINGS_LEASE", get("CALLSTORE_RECORDINGS_LEASE"), 120, lo=3, hi=120),
        session_secret=_session_secret(get("CALLSTORE_SESSION_SECRET")),
        campaigns_interval_s=_int("CALLSTORE_CAMPAIGNS_INTERVAL", get("CALLSTORE_CAMPAIGNS_INTERVAL"), 900, lo=60),
        tenant_concurrency=_int("CALLSTORE_TENANT_CONCURRENCY", get("CALLSTORE_TENANT_CONCURRENCY"), 8, lo=1, hi=256),
        tenant_run_budget_s=_int("CALLSTORE_TENANT_RUN_BUDGET", get("CALLSTORE_TENANT_RUN_BUDGET"), 600, lo=1,
                                 hi=86400),
    )


def _proxies(value: str | None) -> tuple[str, ...]:
    name = "CALLSTORE_TRUSTED_PROXIES"
    items = _list(name, value)
    if "*" in items:
        if len(items) > 1:
            raise ConfigError(name, "'*' (every peer) cannot be combined with addresses")
        return ("*",)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(name, f"{item!r} is not an IP address or network such as 10.0.0.0/8") from None
    return tuple(items)


def _secret(name: str, value: str | None) -> str | None:
    if value is not None and (len(value) < 16 or any(c.isspace() for c in value)):
        raise ConfigError(name, "must be at least 16 characters without spaces, e.g. from `openssl rand -hex 32`")
    return value


def _session_secret(value: str | None) -> str | None:
    if value is not None and len(value) < 32:
        raise ConfigError("CALLSTORE_SESSION_SECRET", "must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    return value


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
            "media_url", "media_hosts", "country_code", "recordings_retention_days", "raw_events_retention_days",
            "media_url", "media_hosts", "country_code", "campaign_ids", "store_contact_names", "bi_phone_numbers",
            "max_requests_per_second", "max_concurrent_requests",
        }
        if unknown:
            raise ConfigError(name, f"[tenants.{tenant_id}] has unknown key {sorted(unknown)[0]!r}")
        tenants.append(_tenant(f"{name} [tenants.{tenant_id}] ", tenant_id, values))
    _check_unique_keys(tenants)
    return tuple(tenants)


def _tenant(prefix: str, tenant_id: str, raw: Mapping[str, object]) -> TenantSettings:
    """Build one tenant; `prefix` names the setting in errors (env var prefix or file table)."""

    def name(key: str) -> str:
        if prefix == "ALOHUB_" and key in ("recordings_retention_days", "raw_events_retention_days"):
            return f"CALLSTORE_{key.upper()}"  # a callstore setting, not an Alohub one
        return f"{prefix}{key.upper()}" if prefix == "ALOHUB_" else f"{prefix}{key}"

    if not tenant_id or any(c.isspace() for c in tenant_id) or len(tenant_id) > 64:
        raise ConfigError(name("tenant_id"), "must be 1-64 characters without spaces")

    keys = _list(name("webhook_keys"), raw.get("webhook_keys"))
    for k in keys:
        if len(k) < MIN_WEBHOOK_KEY:
            raise ConfigError(name("webhook_keys"), f"each key must be at least {MIN_WEBHOOK_KEY} characters, "
                                                    "e.g. from `openssl rand -hex 24`")

    api_url = _url(name("api_url"), raw.get("api_url"))
    xapi_url = _url(name("xapi_url"), raw.get("xapi_url")) or DEFAULT_XAPI_URL
    media_url = _url(name("media_url"), raw.get("media_url"))
    if media_url is None and api_url is not None:
        parts = urlsplit(api_url)
        media_url = f"{parts.scheme}://{parts.netloc}"
    # The origins of the call API and of the media URL are always media
    # origins (see TenantSettings.media_origins); these are extra ones. Not
    # the gateway's: it serves JSON, and with its default always present the
    # recordings job could never be off for want of a configured origin.
    hosts = [_media_host(name("media_hosts"), h) for h in _list(name("media_hosts"), raw.get("media_hosts"))]
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
    retention = _retention(name("recordings_retention_days"), raw.get("recordings_retention_days"))
    raw_retention = _retention(name("raw_events_retention_days"), raw.get("raw_events_retention_days"),
                               "raw events")
    campaign_ids = tuple(dict.fromkeys(_campaign_id(name("campaign_ids"), v)
                                       for v in _ids(name("campaign_ids"), raw.get("campaign_ids"))))
    store_names = raw.get("store_contact_names")
    if not isinstance(store_names, bool):
        store_names = _bool(name("store_contact_names"), store_names, False)  # type: ignore[arg-type]
    bi_phones = str(raw.get("bi_phone_numbers") or "masked").lower()
    if bi_phones not in ("masked", "full", "hidden"):
        raise ConfigError(name("bi_phone_numbers"), "must be masked, full or hidden")
    rps = _positive_number(name("max_requests_per_second"), raw.get("max_requests_per_second"), hi=10000)
    concurrent = _positive_number(name("max_concurrent_requests"), raw.get("max_concurrent_requests"), hi=1000,
                                  whole=True)
    return TenantSettings(
        tenant_id=tenant_id,
        webhook_keys=tuple(keys),
        api_url=api_url,
        xapi_url=xapi_url,
        api_key=api_key or None,
        alohub_tenant_id=str(alohub_tenant) if alohub_tenant else None,
        timezone=tz,
        media_url=media_url,
        media_hosts=tuple(dict.fromkeys(hosts)),
        country_code=cc,
        recordings_retention_days=retention,
        raw_events_retention_days=raw_retention,
        campaign_ids=campaign_ids,
        store_contact_names=store_names,
        bi_phone_numbers=bi_phones,
        max_requests_per_second=rps,
        max_concurrent_requests=int(concurrent) if concurrent is not None else None,
    )


def _positive_number(name: str, value: object, *, hi: float, whole: bool = False) -> float | None:
    """An optional number > 0 (a whole one with `whole`), from a string (environment) or TOML."""
    if value is None or value == "":
        return None
    what = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(name, f"must be {what}")
    try:
        n = int(value) if whole and not isinstance(value, float) else float(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not {what}") from None
    if whole and n != int(n):
        raise ConfigError(name, f"{value!r} is not {what}")
    if not 0 < n <= hi or n != n:
        raise ConfigError(name, f"must be more than 0 and at most {hi:g} (unset: no limit)")
    return float(n)


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


def _media_host(name: str, value: str) -> str:
    """One ALOHUB_MEDIA_HOSTS entry, checked: `host`, `host:port` or `http(s)://host[:port]`."""
    entry = value.lower()
    if not entry.isascii() or any(c.isspace() or not c.isprintable() for c in entry):
        raise ConfigError(name, f"{value!r} must be ASCII without spaces (write an international name in its xn-- form)")
    url = entry if "://" in entry else f"https://{entry}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(name, f"{value!r} has a port that is not a number from 0 to 65535") from None
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password
            or parts.path.strip("/") or parts.query or parts.fragment):
        raise ConfigError(name, f"{value!r} is not a host, host:port or http(s)://host[:port]")
    return entry.rstrip("/")


def _retention(name: str, value: object, what: str = "recordings") -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(name, "must be a whole number of days")
    try:
        days = int(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a whole number of days") from None
    if not 1 <= days <= 36500:
        raise ConfigError(name, f"must be between 1 and 36500 days (unset keeps {what} forever)")
    return days


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


def _check_database_url(url: str, name: str = "DATABASE_URL") -> None:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address; the URL itself is not repeated (password)
        raise ConfigError(name, "is not a valid URL, e.g. postgresql://user:password@127.0.0.1:5432/callstore") from None
    scheme = parts.scheme.split("+")[0]
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(name, "must start with postgresql://")
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(name, "must name a host, e.g. postgresql://user@127.0.0.1:5432/callstore")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(name, "has a port that is not a number") from None
    if port is None and parts.hostname and "port=" not in parts.query:
        raise ConfigError(name, f"must name a port, e.g. postgresql://user@{parts.hostname}:5432/...")


def secret_from_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret a command names by variable (e.g. `--password-env VAR`); None if unset or empty."""
    value = (os.environ if environ is None else environ).get(name)
    return value or None
