"""A settings class's validation error names the field and the rule, never the value: values may be secrets or URLs
carrying tokens. The entry points' start-up refusals are checked as subprocesses in
tests/integration/test_settings_secrets.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from consumer.settings import Settings
from producer_examples.hook_settings import HookSettings
from producer_examples.notifier_settings import NotifierSettings

SECRET = "s3cr3t-Zq8Xw1-pq"  # short: pydantic shortens long values in the middle, which would hide a leak
TOKEN_URL = f"http://h.example/?token={SECRET}"  # http: refused, so the whole URL is in error


@pytest.mark.parametrize(
    ("settings_class", "values"),
    [
        (Settings, {"kafka_sasl_mechanism": SECRET}),
        (HookSettings, {"previous_secret": SECRET}),
        (NotifierSettings, {"webhooks": {"shop-1": {"url": TOKEN_URL, "secret": SECRET}}}),
    ],
    ids=["Settings", "HookSettings", "NotifierSettings"],
)
def test_every_settings_class_hides_input_in_its_errors(
    settings_class: type[BaseSettings], values: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings_class(**values)

    assert SECRET not in str(caught.value)
    assert "token=" not in str(caught.value)
