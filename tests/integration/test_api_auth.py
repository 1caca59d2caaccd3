"""Who may call the API: API keys and JWTs from a JWKS the test serves, every way a credential is refused, one
tenant never seeing another's jobs, and the per-tenant rate limit."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from consumer.dev.embedded import isolated_settings
from tests.integration.api_helpers import (
    AUDIENCE,
    ISSUER,
    ApiStack,
    IdentityProvider,
    api_settings,
    b64,
    bearer,
    new_key,
    running_api,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]

API_OVERRIDES = {"rate_per_s": 1.0, "burst": 40}
_BODY = {"prompt": "a blue mug", "width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}


async def _call(stack: ApiStack, method: str, path: str, headers: dict[str, str], **options: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{stack.url}{path}", headers=headers, **options) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else await response.text()
        if response.status == 401:
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        return response.status, body


def _hs256(secret: bytes, now: int) -> str:
    """The classic key-confusion token: HMAC-signed with the RSA public key, which a careless verifier would use
    as the HMAC secret. Made by hand, as an attacker would (PyJWT refuses to)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60, "tenant_id": "shop-1"}).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _refused(identity: IdentityProvider) -> dict[str, str]:
    """Every credential the API must refuse, by what is wrong with it."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = identity.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60, "tenant_id": "shop-1"}, None, "none")
    return {
        "missing": "",
        "not bearer": "Basic dXNlcjpwYXNz",
        "malformed": "Bearer not-a-credential",
        "garbage jwt": "Bearer aaa.bbb.ccc",
        "unknown api key": "Bearer vgk_" + "A" * 43,
        "expired": "Bearer " + identity.token(lifetime_s=-120),
        "not yet valid": "Bearer " + identity.token(nbf=now + 600),
        "wrong signature": "Bearer " + identity.token(key=other),
        "wrong audience": "Bearer " + identity.token(aud="someone-else"),
        "wrong issuer": "Bearer " + identity.token(iss="https://evil.test/"),
        "no exp": "Bearer " + identity.token(exp=None),
        "no aud": "Bearer " + identity.token(aud=None),
        "no iss": "Bearer " + identity.token(iss=None),
        "no tenant": "Bearer " + identity.token(tenant=None),
        "bad tenant": "Bearer " + identity.token(tenant="shop 1"),
        "alg none": "Bearer " + unsigned,
        "HS256 with the public key": "Bearer " + _hs256(public_pem, now),
        "alg not fitting the key": "Bearer " + identity.token(kid="ec-1", algorithm="RS256", key=identity.rsa),
        "unknown kid": "Bearer " + identity.token(kid="rsa-9"),
    }


async def test_every_bad_credential_is_refused_with_the_bearer_challenge(
    api_stack: ApiStack, identity: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused = _refused(identity)
    for what, authorization in refused.items():
        headers = {"Authorization": authorization} if authorization else {}
        status, body = await _call(api_stack, "GET", "/v1/queue", headers)
        assert status == 401, what
        assert body["error"]["code"] == "invalid_token", what
        secret = authorization.partition(" ")[2]
        assert not secret or secret not in body["error"]["message"], what
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for authorization in refused.values():
        assert not authorization or authorization.partition(" ")[2] not in logged


async def test_api_keys_and_tokens_of_both_key_types_are_accepted(
    api_stack: ApiStack, identity: IdentityProvider
) -> None:
    for credential in (api_stack.keys["shop-1"], identity.token(), identity.token(kid="ec-1", algorithm="ES256")):
        status, body = await _call(api_stack, "GET", "/v1/queue", bearer(credential))
        assert status == 200 and body["object"] == "queue"


async def test_an_unknown_kid_refetches_the_jwks_at_most_every_min_refresh(
    api_stack: ApiStack, identity: IdentityProvider
) -> None:
    await _call(api_stack, "GET", "/v1/queue", bearer(identity.token()))  # keys cached
    fetches = identity.fetches
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(3):  # unknown kid: one refetch, then none until min_refresh has passed
        status, _ = await _call(api_stack, "GET", "/v1/queue", bearer(identity.token(kid="rsa-2", key=rotated)))
        assert status == 401
    assert identity.fetches - fetches <= 1
    identity.published.append(IdentityProvider._jwk(rotated, "rsa-2"))  # the provider rotates its key
    time.sleep(api_stack.api.jwks_min_refresh_s)  # noqa: ASYNC251 - the refresh bound is wall time by design
    status, _ = await _call(api_stack, "GET", "/v1/queue", bearer(identity.token(kid="rsa-2", key=rotated)))
    assert status == 200


async def test_a_tenant_sees_only_its_own_jobs(api_stack: ApiStack, identity: IdentityProvider) -> None:
    own, other = bearer(api_stack.keys["shop-1"]), bearer(identity.token("shop-2"))
    status, job = await _call(api_stack, "POST", "/v1/videos", own, json=_BODY)
    assert status == 202
    _, unknown = await _call(api_stack, "GET", "/v1/videos/vid-00000000000000000000000000000000", other)
    for method, path in (
        ("GET", f"/v1/videos/{job['id']}"),
        ("DELETE", f"/v1/videos/{job['id']}"),
        ("GET", f"/v1/videos/{job['id']}/content"),
        ("GET", f"/v1/videos/{job['id']}/events"),
    ):
        assert await _call(api_stack, method, path, other) == (404, unknown), (method, path)
    _, listed = await _call(api_stack, "GET", "/v1/videos", other)
    assert job["id"] not in [item["id"] for item in listed["data"]]
    status, listed = await _call(api_stack, "GET", "/v1/videos", own)
    assert job["id"] in [item["id"] for item in listed["data"]]
    status, _ = await _call(api_stack, "GET", f"/v1/videos?after={job['id']}", other)
    assert status == 422  # a cursor of another tenant's job is no cursor


async def test_the_rate_limit_answers_429_with_retry_after(api_stack: ApiStack) -> None:
    key = new_key(api_stack.api, "shop-busy")
    time.sleep(1.1)  # noqa: ASYNC251 - the keys file is reread at most once a second
    statuses = []
    async with aiohttp.ClientSession(headers=bearer(key)) as http:
        for _ in range(api_stack.api.burst + 2):
            async with http.get(f"{api_stack.url}/v1/queue") as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["error"]["code"] == "rate_limited"
    assert statuses.count(200) == api_stack.api.burst and statuses[-1] == 429
    status, _ = await _call(api_stack, "GET", "/v1/queue", bearer(api_stack.keys["shop-2"]))
    assert status == 200  # other tenants are not held back


async def test_a_pem_public_key_instead_of_a_jwks(
    broker: str, s3_endpoint: str, tmp_path: Path, identity: IdentityProvider
) -> None:
    pem = tmp_path / "signer.pem"
    pem.write_bytes(
        identity.ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings = isolated_settings(broker, s3_endpoint, "pem" + uuid.uuid4().hex[:8], topic_partitions=1)
    api = api_settings(tmp_path, None, jwt_public_key_file=str(pem))
    async with running_api(settings, api) as server, aiohttp.ClientSession() as http:
        for token, expected in ((identity.token(kid="ec-1", algorithm="ES256"), 200), (identity.token(), 401)):
            async with http.get(f"{server.url}/v1/queue", headers=bearer(token)) as response:
                assert response.status == expected
