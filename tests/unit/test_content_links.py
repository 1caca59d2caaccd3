"""Signed content links (consumer.api.auth.link_signing): a token opens one job of one tenant for a few minutes, and
nothing else; it names the API key that asked for it (so revoking the key cuts it off) or expires with the bearer
token that did; anything altered, expired or made without the key is refused."""

from __future__ import annotations

import pytest

from consumer.api.auth.link_signing import LINK_TTL_S, LinkGrant, sign_link, verify_link

KEY = b"k" * 32
NOW = 1_800_000_000.0
KEY_ID = "0123456789abcdef"
GRANT = LinkGrant(tenant_id="shop-1", key_id=KEY_ID)


def test_a_link_opens_its_job_for_its_tenant_until_it_expires() -> None:
    token, expires = sign_link(KEY, tenant_id="shop-1", job_id="vid-1", now=NOW, key_id=KEY_ID)
    assert expires == int(NOW) + LINK_TTL_S
    assert verify_link(KEY, token, job_id="vid-1", now=NOW) == GRANT
    assert verify_link(KEY, token, job_id="vid-1", now=expires) == GRANT
    assert verify_link(KEY, token, job_id="vid-1", now=expires + 1) is None
    assert verify_link(KEY, token, job_id="vid-2", now=NOW) is None  # another job
    assert verify_link(b"o" * 32, token, job_id="vid-1", now=NOW) is None  # another key (another deployment)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace(".shop-1", ".shop-2"),  # another tenant
        lambda t: str(int(t.split(".")[0]) + 60) + t[t.index(".") :],  # stretched
        lambda t: t[:-1],  # truncated tenant
        lambda t: t.split(".", 1)[1],  # no expiry
        lambda t: t.replace(t.split(".")[1], "A" * 43),  # forged MAC
        lambda t: t.replace(t.split(".")[1], t.split(".")[1][:-1] + "é"),  # non-ASCII MAC
        lambda t: "",
        lambda t: "..",
        lambda t: "9" * 40 + t[t.index(".") :],  # absurd expiry
        lambda t: t.replace(KEY_ID, "fedcba9876543210"),  # another key's id
        lambda t: t.replace(KEY_ID, "t"),  # passed off as a bearer token's (no key to check)
        lambda t: t.replace(KEY_ID + ".", ""),  # no credential
    ],
)
def test_an_altered_token_is_refused(tamper: object) -> None:
    token, _ = sign_link(KEY, tenant_id="shop-1", job_id="vid-1", now=NOW, key_id=KEY_ID)
    altered = tamper(token)  # type: ignore[operator]
    assert altered != token
    assert verify_link(KEY, altered, job_id="vid-1", now=NOW) is None


def test_a_token_minted_far_ahead_is_refused() -> None:
    """Only links the API itself would issue now: not one that lives longer than a link may."""
    token, _ = sign_link(KEY, tenant_id="shop-1", job_id="vid-1", now=NOW, key_id=KEY_ID, ttl_s=LINK_TTL_S * 10)
    assert verify_link(KEY, token, job_id="vid-1", now=NOW) is None


def test_a_bearer_tokens_link_names_no_key_and_expires_no_later_than_the_token() -> None:
    token, expires = sign_link(KEY, tenant_id="shop-1", job_id="vid-1", now=NOW, key_id=None, expires_by=NOW + 60)
    assert expires == int(NOW) + 60
    assert verify_link(KEY, token, job_id="vid-1", now=NOW) == LinkGrant(tenant_id="shop-1", key_id=None)
    assert verify_link(KEY, token, job_id="vid-1", now=NOW + 61) is None
    _, later = sign_link(KEY, tenant_id="shop-1", job_id="vid-1", now=NOW, key_id=None, expires_by=NOW + 3600)
    assert later == int(NOW) + LINK_TTL_S
