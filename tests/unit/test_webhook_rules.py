"""Tenant webhooks without a broker: event bodies and ids, the progress throttle, Standard Webhooks signatures checked
by the `standardwebhooks` library unchanged, secret encryption and key rotation, the endpoint directory's tenant
isolation, what the planner sends where, and the settings' refusals (never echoing a key)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from consumer.core.webhook_events import ProgressThrottle, progress_webhook_event, result_webhook_event
from consumer.settings import Settings, describe_config_error
from consumer.webhooks.directory import EndpointDirectory
from consumer.webhooks.reseal import reseal_main
from consumer.webhooks.secret_box import SecretBox, SecretUnreadable, new_secret
from producer_examples.dispatches import DispatchPlanner
from producer_examples.notifier_settings import NotifierSettings
from producer_examples.standard_signing import standard_headers
from schemas.events import Timings, VideoProgress, VideoResult
from schemas.webhooks import StoredSecret, WebhookEndpointCreate, WebhookEndpointRecord

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
KEY_OLD, KEY_NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _result(**changes: Any) -> VideoResult:
    fields = {"request_id": "vid-1", "tenant_id": "shop-1", "status": "completed", "worker_id": "w", "model": "tiny"}
    return VideoResult.model_validate(fields | changes | {"timings": Timings(received_at=NOW, completed_at=NOW)})


def _progress(**changes: Any) -> VideoProgress:
    fields = {"request_id": "vid-1", "tenant_id": "shop-1", "event": "progress", "step": 3, "total": 8}
    return VideoProgress.model_validate(fields | {"percent": 37.5, "worker_id": "w", "at": NOW} | changes)


def test_a_result_becomes_openais_event_shape_with_a_stable_id_per_endpoint() -> None:
    def event(endpoint_id: str = "wh_1", **changes: Any) -> Any:
        return result_webhook_event(endpoint_id=endpoint_id, result=_result(**changes))

    body = json.loads(event().model_dump_json(exclude_none=True))
    assert body == {
        "id": body["id"],
        "object": "event",
        "type": "video.completed",
        "created_at": int(NOW.timestamp()),
        "data": {"id": "vid-1"},
    }
    assert body["id"].startswith("evt_") and event().id == body["id"]  # every retry and redelivery: one id
    assert event(status="failed").type == event(status="rejected").type == "video.failed"
    ids = {event(endpoint_id="wh_2").id, event(tenant_id="shop-2").id, event(request_id="vid-2").id, event().id}
    assert len(ids) == 4


def test_progress_events_carry_the_percent_and_are_throttled_per_endpoint_and_job() -> None:
    event = progress_webhook_event(endpoint_id="wh_1", progress=_progress())
    assert (event.type, event.data.progress) == ("video.progress", 37)
    assert progress_webhook_event(endpoint_id="wh_1", progress=_progress(attempt=2)).id != event.id
    throttle = ProgressThrottle(interval_s=1.0, capacity=2)
    assert [throttle.allow("wh_1", "vid-1", t) for t in (0.0, 0.5, 0.99, 1.0, 1.5, 2.1)] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    assert throttle.allow("wh_2", "vid-1", 2.2) and throttle.allow("wh_1", "vid-2", 2.2)  # apart per key
    assert throttle.allow("wh_1", "vid-1", 2.3)  # forgotten past its capacity: one extra event at most


def test_standard_webhooks_verifies_every_delivery_with_either_secret_during_a_rotation() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"id": "evt_1"}'
    headers = standard_headers("evt_1", int(datetime.now(UTC).timestamp()), body, [new, old])
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (new, old):
        assert StandardWebhook(secret).verify(body, headers) == {"id": "evt_1"}
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(new).verify(body + b" ", headers)


def test_an_operator_secret_that_is_not_whsec_verifies_as_its_utf8_bytes() -> None:
    secret = "operator-secret-0123456789abcdef-xyz"
    headers = standard_headers("k", int(datetime.now(UTC).timestamp()), b"{}", [secret])
    StandardWebhook(secret.encode()).verify(b"{}", headers)


def test_secrets_are_sealed_under_the_newest_key_and_open_under_any_listed_one() -> None:
    secret = new_secret()
    sealed_old = SecretBox(SecretStr(KEY_OLD)).seal(secret)
    assert secret not in sealed_old
    both = SecretBox(SecretStr(f"{KEY_NEW},{KEY_OLD}"))
    assert both.open(sealed_old) == secret
    resealed = both.reseal(sealed_old)
    assert SecretBox(SecretStr(KEY_NEW)).open(resealed) == secret
    with pytest.raises(SecretUnreadable) as refused:
        SecretBox(SecretStr(KEY_NEW)).open(sealed_old)  # the old key dropped before resealing
    assert secret not in str(refused.value) and KEY_OLD not in str(refused.value)
    assert new_secret(b"\x00" * 32) == "whsec_" + "A" * 43 + "="


def _record(endpoint_id: str, tenant: str, events: list[str], secrets: list[StoredSecret]) -> WebhookEndpointRecord:
    return WebhookEndpointRecord.model_validate(
        {
            "id": endpoint_id,
            "tenant_id": tenant,
            "url": "https://hooks.example.com/x",
            "events": events,
            "created_at": NOW,
            "secrets": secrets,
        }
    )


def test_the_directory_answers_a_tenant_only_with_its_own_endpoints() -> None:
    sealed = [StoredSecret(ciphertext="x")]
    mine, theirs = "wh_" + "a" * 32, "wh_" + "b" * 32
    directory = EndpointDirectory()
    directory.apply(mine.encode(), _record(mine, "shop-1", ["video.completed"], sealed).model_dump_json().encode())
    directory.apply(theirs.encode(), _record(theirs, "shop-2", ["video.failed"], sealed).model_dump_json().encode())
    directory.apply(b"wh_" + b"c" * 32, _record(mine, "shop-1", ["video.failed"], sealed).model_dump_json().encode())
    directory.apply(b"junk", b"{not json")
    assert directory.unreadable == 2  # a record whose id is not its key, and junk
    assert [r.id for r in directory.of_tenant("shop-1")] == [mine]
    assert directory.get("shop-1", theirs) is None and directory.get("shop-2", theirs) is not None
    assert directory.subscribed("shop-1", "video.failed") == [] and directory.subscribed(None, "video.failed") == []
    directory.apply(theirs.encode(), None)
    assert directory.get("shop-2", theirs) is None and len(directory) == 1


def test_the_planner_sends_a_result_to_the_operator_webhook_and_to_subscribed_endpoints() -> None:
    box = SecretBox(SecretStr(KEY_NEW))
    current, previous = new_secret(), new_secret()
    secrets = [
        StoredSecret(ciphertext=box.seal(current)),
        StoredSecret(ciphertext=box.seal(previous), expires_at=NOW + timedelta(hours=1)),
        StoredSecret(ciphertext=box.seal(new_secret()), expires_at=NOW - timedelta(seconds=1)),
    ]
    directory = EndpointDirectory()
    for endpoint_id, events in (("wh_" + "1" * 32, ["video.completed"]), ("wh_" + "2" * 32, ["video.progress"])):
        directory.put(_record(endpoint_id, "shop-1", events, secrets))
    operator = NotifierSettings(
        webhooks={"shop-1": {"url": "https://ops.example.com/h", "secret": "operator-secret-0123456789abcdef-xyz"}}
    ).webhooks
    planner = DispatchPlanner(
        operator_webhooks=operator,
        directory=directory,
        box=box,
        throttle=ProgressThrottle(interval_s=1.0),
        wall_clock=lambda: NOW,
        monotonic=lambda: 0.0,
    )
    legacy, endpoint = planner.for_result(_result(), b"{raw result}")
    assert (legacy.legacy, legacy.body, legacy.url) == (True, b"{raw result}", "https://ops.example.com/h")
    assert (endpoint.legacy, endpoint.destination, endpoint.secrets) == (False, "wh_" + "1" * 32, (current, previous))
    assert json.loads(endpoint.body)["type"] == "video.completed"
    progress = _progress()
    [sent] = planner.for_progress(progress)
    assert sent.best_effort and sent.destination == "wh_" + "2" * 32
    assert planner.for_progress(progress) == []  # within the same second


def test_endpoint_bodies_and_settings_refuse_what_they_must_without_echoing_it() -> None:
    with pytest.raises(ValidationError):
        WebhookEndpointCreate(url="http://hooks.example.com/x", events=["video.completed"])
    with pytest.raises(ValidationError):
        WebhookEndpointCreate.model_validate({"url": "https://h.example.com/", "events": ["video.failed"] * 2})
    with pytest.raises(ValidationError) as bad_key:
        Settings(webhook_secrets_key="not-a-fernet-key-but-a-secret")
    assert "not-a-fernet-key-but-a-secret" not in describe_config_error(bad_key.value)
    assert Settings(webhook_secrets_key="").webhook_secrets_key is None  # compose's ${VAR:-}: off
    with pytest.raises(ValidationError):
        NotifierSettings(webhooks={"t": {"url": "https://h.example.com/", "secret": "whsec_" + "!" * 40}})
    standard = NotifierSettings(webhooks={"t": {"url": "https://h.example.com/", "secret": new_secret()}})
    assert standard.webhooks["t"].secrets[0].startswith("whsec_")


def test_reseal_refuses_to_run_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VIDGEN_WEBHOOK_SECRETS_KEY", raising=False)
    assert reseal_main(["reseal"]) == 2
    assert "VIDGEN_WEBHOOK_SECRETS_KEY" in capsys.readouterr().err
    monkeypatch.setenv("VIDGEN_WEBHOOK_SECRETS_KEY", "a-secret-that-is-no-fernet-key")
    assert reseal_main(["reseal"]) == 2
    err = capsys.readouterr().err
    assert "a-secret-that-is-no-fernet-key" not in err
    assert "\n  VIDGEN_WEBHOOK_SECRETS_KEY: " in err  # named as the operator sets it, one line
