"""The notifier's hardening, the parts that need no broker: tenant-scoped dedupe keys, breakers, per-tenant lanes,
signing with a previous secret, and start-up checks of the webhooks setting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from consumer.errors import SignatureError
from consumer.settings import describe_config_error
from producer_examples.breaker import CircuitBreaker
from producer_examples.dedupe import delivery_key
from producer_examples.notifier import main
from producer_examples.notifier_settings import NotifierSettings
from producer_examples.signing import sign, verify
from producer_examples.tenant_bounds import TenantBounds

SECRET_A = "shop-a-secret-0123456789abcdef-0123"
SECRET_B = "shop-b-secret-0123456789abcdef-new1"
SECRET_B_OLD = "shop-b-secret-0123456789abcdef-old0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------- pure parts


def test_delivery_keys_include_the_tenant_and_cannot_be_confused_by_separators() -> None:
    real = delivery_key("shop-a", "order-1", "completed")
    assert real == delivery_key("shop-a", "order-1", "completed")  # stable across redeliveries and replicas
    confusable = [
        delivery_key("attacker", "order-1", "completed"),
        delivery_key(None, "order-1", "completed"),
        delivery_key("shop-a", "order-1", "failed"),
        delivery_key("shop-a:order-1", "", "completed"),
        delivery_key("shop-a", ":order-1", "completed"),
        delivery_key("shop", "a:order-1", "completed"),
    ]
    assert len({real, *confusable}) == 1 + len(confusable)
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in confusable)


def test_breaker_opens_after_failures_in_a_row_and_lets_one_trial_through_per_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, open_s=10, clock=clock)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # a success resets the count
    breaker.failed()
    breaker.failed()
    assert breaker.allow() and not breaker.is_open
    breaker.failed()
    assert breaker.is_open and not breaker.allow()
    clock.now = 10.0
    assert not breaker.is_open
    assert breaker.allow()  # the trial call
    assert not breaker.allow()  # only one per period
    breaker.failed()
    clock.now = 19.9
    assert not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.allow() and breaker.allow() and not breaker.is_open


async def test_lanes_bound_each_tenant_and_all_tenants_together() -> None:
    lanes = TenantBounds(max_concurrency=2, tenant_concurrency=1, breaker_failures=1, breaker_open_s=1)
    release = asyncio.Event()
    inside: list[str] = []

    async def hold(tenant: str) -> None:
        async with lanes.slot(tenant):
            inside.append(tenant)
            await release.wait()

    tasks = [asyncio.create_task(hold(tenant)) for tenant in ("x", "x", "y", "z")]
    for _ in range(5):
        await asyncio.sleep(0)  # let every task run up to its wait
    assert sorted(inside) == ["x", "y"]  # x's second waits for x; z waits for the global bound
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(inside) == ["x", "x", "y", "z"]


def test_signing_with_a_previous_secret_adds_a_second_v1() -> None:
    body, now = b"{}", 1_800_000_000
    header = sign(body, SECRET_B, SECRET_B_OLD, timestamp=now)
    assert header.count("v1=") == 2
    for secrets in ([SECRET_B], [SECRET_B_OLD]):
        assert verify(header, body, secrets, now=now, tolerance_s=300) == now
    with pytest.raises(SignatureError):
        verify(header, body, [SECRET_A], now=now, tolerance_s=300)


@pytest.mark.parametrize(
    ("webhook", "problem"),
    [
        ({"url": "https://hooks.example.com/x"}, "secret"),
        ({"url": "https://hooks.example.com/x", "secret": "too-short"}, "at least 32 characters"),
        ({"url": "https://hooks.example.com/x", "secret": SECRET_A, "previous_secret": "short"}, "at least 32"),
        ({"url": "https://hooks.example.com/x", "secret": SECRET_A, "previous_secret": SECRET_A}, "must differ"),
        ({"url": "http://hooks.example.com/x", "secret": SECRET_A}, "must be https"),
        ({"url": "https://user:pw@hooks.example.com/x", "secret": SECRET_A}, "credentials"),
        ("https://hooks.example.com/x", "valid dictionary"),  # the old shape: a URL and one shared secret
    ],
)
def test_start_up_refuses_a_webhook_without_its_own_strong_secret(webhook: Any, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NotifierSettings(webhooks={"shop-a": webhook})
    described = describe_config_error(caught.value)
    assert problem in described and "webhooks.shop-a" in described
    assert "too-short" not in described and SECRET_A not in described and "pw@" not in described


def test_start_up_error_names_the_setting_but_never_the_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = {"shop-a": {"url": "https://hooks.example.com/a?token=tok-123", "secret": "short-but-secret"}}
    monkeypatch.setenv("VIDGEN_NOTIFIER_WEBHOOKS", json.dumps(hooks))
    assert main([]) == 2
    error = capsys.readouterr().err
    assert "webhooks.shop-a.secret" in error
    assert "short-but-secret" not in error and "tok-123" not in error


def test_webhooks_and_allowed_hosts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks = {"shop-a": {"url": "https://hooks.example.com/a", "secret": SECRET_A}}
    monkeypatch.setenv("VIDGEN_NOTIFIER_WEBHOOKS", json.dumps(hooks))
    monkeypatch.setenv("VIDGEN_NOTIFIER_ALLOW_HOSTS", "hooks.internal, .svc.cluster.local")
    loaded = NotifierSettings()
    assert loaded.allow_hosts == ("hooks.internal", ".svc.cluster.local")
    assert loaded.webhooks["shop-a"].secrets == (SECRET_A,)
    assert SECRET_A not in repr(loaded) and SECRET_A not in str(loaded.model_dump())
