"""`/v1/webhooks` against the real broker: a tenant creates, lists, shows, rotates and deletes its own endpoints; the
secret is shown once and rests on the topic only encrypted; another tenant's ids answer 404 like unknown ones; URLs
the notifier would refuse are refused at creation, naming `url`; the per-tenant bound; a second API replica sees
the endpoints; webhooks off without the operator's key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook as StandardWebhook

from consumer.webhooks.reseal import reseal
from consumer.webhooks.secret_box import SecretBox
from schemas.webhooks import WebhookEndpointRecord
from tests.integration.api_helpers import ApiStack, api_settings, bearer, running_api
from tests.integration.webhook_helpers import topic_records

pytest_plugins = ["tests.integration.api_fixtures"]

KEY = Fernet.generate_key().decode()
SETTINGS_OVERRIDES = {
    "webhook_secrets_key": KEY,
    "webhook_allow_hosts": ("localhost",),
    "webhook_max_endpoints": 3,
    "webhook_rotation_overlap_s": 3600.0,
}
HOOK = "https://localhost:8443/hooks/shop"
EVENTS = ["video.completed", "video.failed"]


async def _call(stack: ApiStack, method: str, path: str, tenant: str = "shop-1", **options: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http,
        http.request(method, f"{stack.url}{path}", **options) as response,
    ):
        return response.status, await response.json()


async def _delete_all(stack: ApiStack, tenant: str) -> None:
    _, listed = await _call(stack, "GET", "/v1/webhooks", tenant)
    for endpoint in listed["data"]:
        await _call(stack, "DELETE", f"/v1/webhooks/{endpoint['id']}", tenant)


async def test_a_tenant_manages_its_endpoints_and_sees_the_secret_once(api_stack: ApiStack) -> None:
    status, created = await _call(api_stack, "POST", "/v1/webhooks", json={"url": HOOK, "events": EVENTS})
    assert status == 201, created
    secret, endpoint_id = created["secret"], created["id"]
    assert secret.startswith("whsec_") and StandardWebhook(secret)  # a secret the library takes as it is
    assert (created["object"], created["url"], created["events"]) == ("webhook_endpoint", HOOK, EVENTS)

    status, listed = await _call(api_stack, "GET", "/v1/webhooks")
    assert status == 200 and [e["id"] for e in listed["data"]] == [endpoint_id]
    assert "secret" not in listed["data"][0] and listed["has_more"] is False
    status, shown = await _call(api_stack, "GET", f"/v1/webhooks/{endpoint_id}")
    assert status == 200 and shown == {key: value for key, value in created.items() if key != "secret"}

    status, rotated = await _call(api_stack, "POST", f"/v1/webhooks/{endpoint_id}/rotate")
    assert status == 200 and rotated["secret"] not in (secret, None)
    assert rotated["previous_secret_expires_at"] - rotated["created_at"] >= 3600 - 60

    records = await topic_records(api_stack.settings, api_stack.settings.webhooks_topic)
    [*_, latest] = [r for r in records if r.key == endpoint_id.encode()]
    assert secret.encode() not in latest.value and rotated["secret"].encode() not in latest.value
    stored = WebhookEndpointRecord.model_validate_json(latest.value)
    box = SecretBox(SecretStr(KEY))
    assert [box.open(s.ciphertext) for s in stored.secrets] == [rotated["secret"], secret]

    status, deleted = await _call(api_stack, "DELETE", f"/v1/webhooks/{endpoint_id}")
    assert (status, deleted) == (200, {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True})
    assert (await _call(api_stack, "GET", f"/v1/webhooks/{endpoint_id}"))[0] == 404
    records = await topic_records(api_stack.settings, api_stack.settings.webhooks_topic)
    assert records[-1].key == endpoint_id.encode() and records[-1].value is None  # a tombstone


async def test_another_tenants_endpoint_answers_like_an_unknown_one(api_stack: ApiStack) -> None:
    _, created = await _call(api_stack, "POST", "/v1/webhooks", json={"url": HOOK, "events": EVENTS})
    unknown = "wh_" + "0" * 32
    for path, method in (("", "GET"), ("", "DELETE"), ("/rotate", "POST")):
        theirs = await _call(api_stack, method, f"/v1/webhooks/{created['id']}{path}", "shop-2")
        assert theirs == await _call(api_stack, method, f"/v1/webhooks/{unknown}{path}", "shop-2")
        assert theirs[0] == 404 and theirs[1]["error"]["code"] == "not_found"
    assert (await _call(api_stack, "GET", "/v1/webhooks", "shop-2"))[1]["data"] == []
    assert (await _call(api_stack, "GET", f"/v1/webhooks/{created['id']}"))[0] == 200  # still there for its tenant
    await _delete_all(api_stack, "shop-1")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://127.0.0.1/hook", "webhook_url_forbidden"),
        ("https://10.1.2.3/hook", "webhook_url_forbidden"),
        ("https://[::1]/hook", "webhook_url_forbidden"),
        ("https://2130706433/hook", "webhook_url_forbidden"),
        ("https://user:s3cr3t-pw@localhost/hook", "webhook_url_forbidden"),
        ("https://no-such-host.invalid/hook", "webhook_url_unresolved"),
        ("http://localhost/hook", "invalid_field"),
    ],
)
async def test_a_url_the_notifier_would_refuse_is_refused_at_creation(api_stack: ApiStack, url: str, code: str) -> None:
    status, answer = await _call(api_stack, "POST", "/v1/webhooks", json={"url": url, "events": EVENTS})
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (422, code, "url")
    assert "s3cr3t-pw" not in answer["error"]["message"]  # credentials are never echoed


async def test_bodies_are_checked_and_the_tenant_bound_holds(api_stack: ApiStack) -> None:
    bad = [
        ({"data": "x"}, 415, "unsupported_media_type", None),
        ({"data": b"{nope", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json", None),
        ({"json": [HOOK]}, 422, "invalid_body", None),
        ({"json": {"url": HOOK}}, 422, "missing_field", "events"),
        ({"json": {"url": HOOK, "events": ["video.created"]}}, 422, "invalid_field", "events"),
        ({"json": {"url": HOOK, "events": EVENTS, "se\ncret": 1}}, 422, "unknown_field", "unknown field #3"),
    ]
    for options, status, code, field in bad:
        got, answer = await _call(api_stack, "POST", "/v1/webhooks", **options)
        assert (got, answer["error"]["code"]) == (status, code), answer
        if field is not None:
            assert answer["error"]["field"].startswith(field)
    for _ in range(3):
        assert (await _call(api_stack, "POST", "/v1/webhooks", json={"url": HOOK, "events": EVENTS}))[0] == 201
    status, answer = await _call(api_stack, "POST", "/v1/webhooks", json={"url": HOOK, "events": EVENTS})
    assert (status, answer["error"]["code"]) == (409, "webhook_limit_reached")
    assert (await _call(api_stack, "POST", "/v1/webhooks", "shop-2", json={"url": HOOK, "events": EVENTS}))[0] == 201
    await _delete_all(api_stack, "shop-1")
    await _delete_all(api_stack, "shop-2")


async def test_a_second_replica_sees_the_endpoints_and_an_api_without_the_key_has_none(
    api_stack: ApiStack, tmp_path: Path
) -> None:
    _, created = await _call(api_stack, "POST", "/v1/webhooks", json={"url": HOOK, "events": EVENTS})
    other = api_settings(tmp_path, None, keys_file=api_stack.api.keys_file)
    credential = bearer(api_stack.keys["shop-1"])
    async with (
        running_api(api_stack.settings, other) as replica,
        aiohttp.ClientSession(headers=credential) as http,
        http.get(f"{replica.url}/v1/webhooks") as response,
    ):
        assert [e["id"] for e in (await response.json())["data"]] == [created["id"]]
    disabled = api_stack.settings.model_copy(update={"webhook_secrets_key": None})
    async with (
        running_api(disabled, api_settings(tmp_path, None, keys_file=api_stack.api.keys_file)) as off,
        aiohttp.ClientSession(headers=credential) as http,
        http.get(f"{off.url}/v1/webhooks") as response,
    ):
        assert response.status == 403 and (await response.json())["error"]["code"] == "webhooks_disabled"
    await _delete_all(api_stack, "shop-1")


async def test_reseal_moves_every_secret_to_the_newest_key(api_stack: ApiStack) -> None:
    _, created = await _call(api_stack, "POST", "/v1/webhooks", json={"url": HOOK, "events": EVENTS})
    newest = Fernet.generate_key().decode()
    both = api_stack.settings.model_copy(update={"webhook_secrets_key": SecretStr(f"{newest},{KEY}")})
    rewritten, unreadable = await reseal(both, SecretBox(SecretStr(f"{newest},{KEY}")))
    assert rewritten >= 1 and unreadable == []
    records = await topic_records(api_stack.settings, api_stack.settings.webhooks_topic)
    [*_, latest] = [r for r in records if r.key == created["id"].encode()]
    [stored] = WebhookEndpointRecord.model_validate_json(latest.value).secrets
    assert SecretBox(SecretStr(newest)).open(stored.ciphertext) == created["secret"]  # the old key is no longer needed
    await _delete_all(api_stack, "shop-1")
