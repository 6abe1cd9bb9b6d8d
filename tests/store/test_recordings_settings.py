"""Settings of the recording archive: media origins, retention, the lease."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.errors import ConfigError
from store.settings import parse_settings


def test_media_hosts_may_name_ports_and_schemes() -> None:
    s = parse_settings({"ALOHUB_MEDIA_URL": "https://media.example",
                        "ALOHUB_MEDIA_HOSTS": "cdn.example, cdn.example:8443, http://old.example:8080"})
    assert {str(o) for o in s.tenants[0].media_origins} == {
        "https://media.example:443", "https://cdn.example:443", "https://cdn.example:8443",
        "http://old.example:8080"}


@pytest.mark.parametrize("value", ["cdn.example:port", "bü.example", "cdn .example", "ftp://cdn.example",
                                   "https://cdn.example/path", "user@cdn.example", "cdn.example:70000"])
def test_a_wrong_media_host_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"ALOHUB_MEDIA_HOSTS": value})
    assert str(info.value).startswith("ALOHUB_MEDIA_HOSTS")


def test_retention_days_from_the_environment_and_the_tenants_file(tmp_path: Path) -> None:
    assert parse_settings({}).tenants[0].recordings_retention_days is None  # kept forever
    assert parse_settings({"CALLSTORE_RECORDINGS_RETENTION_DAYS": "365"}).tenants[0].recordings_retention_days == 365
    for bad in ("0", "a year", "-1"):
        with pytest.raises(ConfigError) as info:
            parse_settings({"CALLSTORE_RECORDINGS_RETENTION_DAYS": bad})
        assert str(info.value).startswith("CALLSTORE_RECORDINGS_RETENTION_DAYS")
    file = tmp_path / "tenants.toml"
    file.write_text('[tenants.a]\nwebhook_keys = ["key-a-1234567890ab"]\nrecordings_retention_days = 90\n'
                    '[tenants.b]\nwebhook_keys = ["key-b-1234567890ab"]\n')
    a, b = parse_settings({"CALLSTORE_TENANTS_FILE": str(file)}).tenants
    assert (a.recordings_retention_days, b.recordings_retention_days) == (90, None)
    file.write_text('[tenants.a]\nrecordings_retention_days = "soon"\n')
    with pytest.raises(ConfigError) as info:
        parse_settings({"CALLSTORE_TENANTS_FILE": str(file)})
    assert "[tenants.a] recordings_retention_days" in str(info.value)


def test_a_lease_is_at_most_two_minutes() -> None:
    assert parse_settings({}).recordings_lease_s == 120
    assert parse_settings({"CALLSTORE_RECORDINGS_LEASE": "30"}).recordings_lease_s == 30
    with pytest.raises(ConfigError) as info:
        parse_settings({"CALLSTORE_RECORDINGS_LEASE": "900"})
    assert str(info.value).startswith("CALLSTORE_RECORDINGS_LEASE")
