from __future__ import annotations

import base64

import pytest

from store.errors import ConfigError
from store.logs import settings_secrets
from store.settings import parse_settings

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"


def test_alert_notifiers_from_environment() -> None:
    s = parse_settings({"CALLSTORE_ALERT_WEBHOOK_URL": "https://ops.example/hooks/callstore",
                        "CALLSTORE_ALERT_WEBHOOK_SECRET": SECRET, "CALLSTORE_ALERT_SLACK_URL": SLACK,
                        "CALLSTORE_ALERT_INTERVAL": "120"})
    assert s.alert_webhook_url == "https://ops.example/hooks/callstore" and s.alert_webhook_secret == SECRET
    assert s.alert_slack_url == SLACK and s.alert_interval_s == 120
    assert SECRET not in repr(s) and "XXXXSECRETXXXX" not in repr(s)
    assert {SECRET, SLACK} <= set(settings_secrets(s))
    assert parse_settings({}).alert_interval_s == 60


@pytest.mark.parametrize(("env", "name"), [
    ({"CALLSTORE_ALERT_WEBHOOK_URL": "https://x.example/h"}, "CALLSTORE_ALERT_WEBHOOK_SECRET"),
    ({"CALLSTORE_ALERT_WEBHOOK_SECRET": SECRET}, "CALLSTORE_ALERT_WEBHOOK_URL"),
    ({"CALLSTORE_ALERT_WEBHOOK_URL": "https://x.example/h", "CALLSTORE_ALERT_WEBHOOK_SECRET": "hunter2hunter2"},
     "CALLSTORE_ALERT_WEBHOOK_SECRET"),
    ({"CALLSTORE_ALERT_WEBHOOK_URL": "https://x.example/h", "CALLSTORE_ALERT_WEBHOOK_SECRET": "whsec_not*base64"},
     "CALLSTORE_ALERT_WEBHOOK_SECRET"),
    ({"CALLSTORE_ALERT_WEBHOOK_URL": "https://x.example/h", "CALLSTORE_ALERT_WEBHOOK_SECRET": "whsec_c2hvcnQ="},
     "CALLSTORE_ALERT_WEBHOOK_SECRET"),
    ({"CALLSTORE_ALERT_SLACK_URL": "hooks.slack.com/services/x"}, "CALLSTORE_ALERT_SLACK_URL"),
    ({"CALLSTORE_ALERT_INTERVAL": "5"}, "CALLSTORE_ALERT_INTERVAL"),
])
def test_bad_alert_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(env)
    assert info.value.setting == name
    for value in env.values():
        if "whsec" in value or "hunter2" in value:
            assert value not in str(info.value)
