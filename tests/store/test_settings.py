from __future__ import annotations

from pathlib import Path

import pytest

from store.errors import ConfigError
from store.settings import load_settings, parse_settings


def test_defaults() -> None:
    s = parse_settings({})
    assert s.database_url is None and s.port == 8080 and s.host == "127.0.0.1"
    [t] = s.tenants
    assert t.tenant_id == "default" and t.timezone == "Asia/Ho_Chi_Minh" and t.webhook_keys == ()
    assert t.xapi_url == "https://xapi.alohub.vn" and not t.has_api


def test_single_tenant_from_environment() -> None:
    s = parse_settings({
        "ALOHUB_WEBHOOK_KEYS": "key-one-1234567890, key-two-4567890123",
        "ALOHUB_API_URL": "https://2.alohub.vn:9909/api",
        "ALOHUB_API_KEY": "sk_live_secret",
        "ALOHUB_TENANT_ID": "20260310",
    })
    [t] = s.tenants
    assert t.tenant_id == "20260310" and t.webhook_keys == ("key-one-1234567890", "key-two-4567890123")
    assert t.media_url == "https://2.alohub.vn:9909"
    # The origin of the API and media URLs, not the gateway's.
    assert {str(o) for o in t.media_origins} == {"https://2.alohub.vn:9909"}
    assert "sk_live_secret" not in repr(s) and "key-one" not in repr(s) and "sk_live_secret" not in repr(t)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"CALLSTORE_PORT": "eighty"}, "CALLSTORE_PORT"),
        ({"CALLSTORE_PORT": "70000"}, "CALLSTORE_PORT"),
        ({"ALOHUB_TIMEZONE": "Mars/Olympus"}, "ALOHUB_TIMEZONE"),
        ({"ALOHUB_API_URL": "ftp://x"}, "ALOHUB_API_URL"),
        ({"ALOHUB_API_URL": "https://user:pw@host/api"}, "ALOHUB_API_URL"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:p@h:port/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:pw@[h:5432/db"}, "DATABASE_URL"),
        ({"DATABASE_READ_URL": "mysql://x/y"}, "DATABASE_READ_URL"),
        ({"DATABASE_READ_URL": "postgresql://u:pw@h:port/db"}, "DATABASE_READ_URL"),
        ({"DATABASE_READ_URL": "postgresql://u:pw@h/db"}, "DATABASE_READ_URL"),
        ({"CALLSTORE_READ_MAX_LAG": "0"}, "CALLSTORE_READ_MAX_LAG"),
        ({"ALOHUB_WEBHOOK_KEYS": "short"}, "ALOHUB_WEBHOOK_KEYS"),
        ({"CALLSTORE_LOG_LEVEL": "LOUD"}, "CALLSTORE_LOG_LEVEL"),
        ({"CALLSTORE_MASK_PHONE_NUMBERS": "maybe"}, "CALLSTORE_MASK_PHONE_NUMBERS"),
        ({"CALLSTORE_TENANTS_FILE": "/nonexistent/tenants.toml"}, "CALLSTORE_TENANTS_FILE"),
        ({"CALLSTORE_HISTORY_SOURCE": "ftp"}, "CALLSTORE_HISTORY_SOURCE"),
    ],
)
def test_a_wrong_value_names_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(env)
    assert info.value.setting.startswith(name)
    assert str(info.value).startswith(name)
    assert "\n" not in str(info.value)
    assert "pw" not in str(info.value).replace("password", "")


def test_database_url_password_not_in_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"DATABASE_URL": "mysql://admin:hunter2secret@h/db"})
    assert "hunter2secret" not in str(info.value)


def test_read_replica_settings() -> None:
    s = parse_settings({"DATABASE_URL": "postgresql://cs:primarypw@db1:5432/callstore",
                        "DATABASE_READ_URL": "postgresql://cs:replicapw@db2:5432/callstore",
                        "CALLSTORE_READ_MAX_LAG": "12"})
    assert s.database_read_url == "postgresql://cs:replicapw@db2:5432/callstore" and s.read_max_lag_s == 12
    assert "replicapw" not in repr(s)
    # Both passwords are masked in every log line.
    from store.logs import settings_secrets

    assert {"primarypw", "replicapw"} <= set(settings_secrets(s))
    assert parse_settings({}).database_read_url is None and parse_settings({}).read_max_lag_s == 30


def test_tenants_file(tmp_path: Path) -> None:
    f = tmp_path / "tenants.toml"
    f.write_text(
        '[tenants.hanoi]\nwebhook_keys = ["hanoi-key-000000001"]\napi_url = "https://a.example:9909/api"\napi_key = "k1"\n'
        '[tenants.paris]\nwebhook_keys = ["paris-key-000000001"]\ntimezone = "Europe/Paris"\n'
    )
    s = parse_settings({"CALLSTORE_TENANTS_FILE": str(f)})
    assert [t.tenant_id for t in s.tenants] == ["hanoi", "paris"]
    assert s.tenant("paris").timezone == "Europe/Paris" and s.tenant("hanoi").has_api

    f.write_text('[tenants.a]\nwebhook_keys = ["same-key-000000001"]\n[tenants.b]\nwebhook_keys = ["same-key-000000001"]\n')
    with pytest.raises(ConfigError, match="share a webhook key"):
        parse_settings({"CALLSTORE_TENANTS_FILE": str(f)})
    f.write_text('[tenants.a]\nwebhok_keys = ["typo-key-0001"]\n')
    with pytest.raises(ConfigError, match="unknown key 'webhok_keys'"):
        parse_settings({"CALLSTORE_TENANTS_FILE": str(f)})
    f.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_settings({"CALLSTORE_TENANTS_FILE": str(f)})


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CALLSTORE_PORT=9000\nALOHUB_TIMEZONE=Europe/Paris\n")
    s = load_settings({"CALLSTORE_PORT": "9100"}, dotenv=env_file)
    assert s.port == 9100 and s.tenants[0].timezone == "Europe/Paris"


def test_database_url_without_a_port_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings({"DATABASE_URL": "postgresql://u:p@db.internal/callstore"})
    assert err.value.setting == "DATABASE_URL" and "port" in err.value.problem and "p@" not in str(err.value)
    # A Unix socket in the query needs none.
    assert parse_settings({"DATABASE_URL": "postgresql:///callstore?host=/run/postgresql"}).database_url


def test_the_data_dir_is_per_user_not_per_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.chdir(tmp_path)
    env = {"XDG_DATA_HOME": str(tmp_path / "share")}
    assert parse_settings(env).data_dir == tmp_path / "share" / "callstore"
    assert parse_settings({**env, "CALLSTORE_DATA_DIR": "/srv/cs"}).data_dir == Path("/srv/cs")


def test_the_per_user_dotenv_is_read_and_the_working_directory_wins(tmp_path: Path) -> None:
    user = tmp_path / "user.env"
    user.write_text("CALLSTORE_PORT=9001\nCALLSTORE_LOG_LEVEL=debug\n")
    here = tmp_path / "here.env"
    here.write_text("CALLSTORE_PORT=9002\n")
    s = load_settings({}, dotenv=here, user_dotenv=user)
    assert (s.port, s.log_level) == (9002, "DEBUG")
    assert load_settings({"CALLSTORE_PORT": "9003"}, dotenv=here, user_dotenv=user).port == 9003


def test_tenant_fairness_settings(tmp_path: Path) -> None:
    s = parse_settings({"CALLSTORE_TENANT_CONCURRENCY": "3", "CALLSTORE_TENANT_RUN_BUDGET": "90",
                        "ALOHUB_MAX_REQUESTS_PER_SECOND": "0.5", "ALOHUB_MAX_CONCURRENT_REQUESTS": "2"})
    assert (s.tenant_concurrency, s.tenant_run_budget_s) == (3, 90)
    assert (s.tenants[0].max_requests_per_second, s.tenants[0].max_concurrent_requests) == (0.5, 2)
    default = parse_settings({})
    assert (default.tenant_concurrency, default.tenant_run_budget_s) == (8, 600)
    assert (default.tenants[0].max_requests_per_second, default.tenants[0].max_concurrent_requests) == (None, None)
    f = tmp_path / "tenants.toml"
    f.write_text('[tenants.a]\nmax_requests_per_second = 5\nmax_concurrent_requests = 4\n[tenants.b]\n')
    a, b = parse_settings({"CALLSTORE_TENANTS_FILE": str(f)}).tenants
    assert (a.max_requests_per_second, a.max_concurrent_requests, b.max_concurrent_requests) == (5.0, 4, None)


@pytest.mark.parametrize(("env", "name"), [
    ({"CALLSTORE_TENANT_CONCURRENCY": "0"}, "CALLSTORE_TENANT_CONCURRENCY"),
    ({"CALLSTORE_TENANT_RUN_BUDGET": "soon"}, "CALLSTORE_TENANT_RUN_BUDGET"),
    ({"ALOHUB_MAX_REQUESTS_PER_SECOND": "0"}, "ALOHUB_MAX_REQUESTS_PER_SECOND"),
    ({"ALOHUB_MAX_REQUESTS_PER_SECOND": "nan"}, "ALOHUB_MAX_REQUESTS_PER_SECOND"),
    ({"ALOHUB_MAX_REQUESTS_PER_SECOND": "fast"}, "ALOHUB_MAX_REQUESTS_PER_SECOND"),
    ({"ALOHUB_MAX_CONCURRENT_REQUESTS": "2.5"}, "ALOHUB_MAX_CONCURRENT_REQUESTS"),
    ({"ALOHUB_MAX_CONCURRENT_REQUESTS": "-1"}, "ALOHUB_MAX_CONCURRENT_REQUESTS"),
])
def test_a_wrong_fairness_value_names_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(env)
    assert err.value.setting == name


def test_a_wrong_fairness_value_in_a_tenants_file_names_the_key(tmp_path: Path) -> None:
    f = tmp_path / "tenants.toml"
    f.write_text('[tenants.a]\nmax_concurrent_requests = true\n')
    with pytest.raises(ConfigError) as err:
        parse_settings({"CALLSTORE_TENANTS_FILE": str(f)})
    assert "[tenants.a] max_concurrent_requests" in str(err.value)
