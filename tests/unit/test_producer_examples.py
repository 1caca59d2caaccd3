"""The producer examples' pure parts: signatures, token buckets, dedupe keys, prompt templates, request ids, the
progress line. The examples against the real broker and S3 server are in tests/integration/."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.keys import upload_key
from consumer.core.moderation import ContentPolicy
from consumer.core.rate_limit import TenantLimiter, TokenBucket
from consumer.errors import SignatureError
from producer_examples.dedupe import RecentKeys
from producer_examples.hook_settings import HookSettings
from producer_examples.products import (
    DEFAULT_TEMPLATE,
    ProductCreated,
    build_request,
    check_template,
    derive_request_id,
    render_prompt,
)
from producer_examples.signing import sign, verify
from producer_examples.waiting import render_progress
from schemas.events import ID_PATTERN

SECRET = "s3cret-for-tests-only"
ID_KEY = "request-id-key-for-tests-only-0123456789"
NOW = 1_800_000_000


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------- pure parts


def test_signature_round_trip_and_rotation() -> None:
    body = b'{"product_id": "p-1"}'
    header = sign(body, SECRET, timestamp=NOW)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify(header, body, [SECRET], now=NOW + 10, tolerance_s=300) == NOW
    assert verify(header, body, ["new-secret-xxxxxxxx", SECRET], now=NOW, tolerance_s=300) == NOW
    both = f"{header},v1={sign(body, 'other-secret-xxxxxxx', timestamp=NOW).split('v1=')[1]},v0=legacy"
    assert verify(both, body, ["other-secret-xxxxxxx"], now=NOW, tolerance_s=300) == NOW


@pytest.mark.parametrize(
    ("header", "body", "now", "reason"),
    [
        (None, b"{}", NOW, "missing"),
        ("", b"{}", NOW, "missing"),
        (sign(b"{}", "wrong-secret-xxxxxxx", timestamp=NOW), b"{}", NOW, "mismatch"),
        (sign(b"{}", SECRET, timestamp=NOW), b"{ }", NOW, "mismatch"),  # body changed after signing
        (sign(b"{}", SECRET, timestamp=NOW - 301), b"{}", NOW, "stale"),
        (sign(b"{}", SECRET, timestamp=NOW + 301), b"{}", NOW, "future"),
        ("v1=" + "0" * 64, b"{}", NOW, "malformed"),
        (f"t={NOW}", b"{}", NOW, "malformed"),
        (f"t=abc,v1={'0' * 64}", b"{}", NOW, "malformed"),
        (f"t={NOW},v1=XYZ", b"{}", NOW, "malformed"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", b"{}", NOW, "malformed"),
        ("garbage", b"{}", NOW, "malformed"),
        ("t=²,v1=" + "0" * 64, b"{}", NOW, "malformed"),
    ],
)
def test_signature_refusals(header: str | None, body: bytes, now: int, reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(header, body, [SECRET], now=now, tolerance_s=300)
    assert caught.value.reason == reason


@given(header=st.text(max_size=200), body=st.binary(max_size=64))
def test_verify_only_ever_raises_signature_error(header: str, body: bytes) -> None:
    with contextlib.suppress(SignatureError):
        verify(header, body, [SECRET], now=NOW, tolerance_s=300)


def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.try_take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take() == pytest.approx(0.5)
    clock.now = 0.5
    assert bucket.try_take() == 0.0
    clock.now = 100.0  # never more than the burst
    assert [bucket.try_take() == 0.0 for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, clock=clock)


def test_tenant_limiter_keeps_tenants_apart_and_bounded() -> None:
    clock = FakeClock()
    limiter = TenantLimiter(rate=1.0, burst=1, clock=clock, max_tenants=2)
    assert limiter.try_take("a") == 0.0
    assert limiter.try_take("a") > 0
    assert limiter.try_take("b") == 0.0  # a's bucket is a's alone
    limiter.try_take("c")
    assert len(limiter) == 2


def test_recent_keys_forget_the_oldest() -> None:
    recent = RecentKeys(2)
    for key in ("a", "b", "a", "c"):
        recent.add(key)
    assert "a" in recent and "c" in recent and "b" not in recent and len(recent) == 2


def _product(**overrides: Any) -> ProductCreated:
    fields: dict[str, Any] = {
        "product_id": "p-1",
        "shop_id": "shop-1",
        "title": "Red  Sneaker",
        "description": "Light,\n breathable.",
        "image_url": "https://cdn.example.com/p-1.png",
    }
    return ProductCreated.model_validate({**fields, **overrides})


def test_prompt_templates() -> None:
    product = _product()
    assert render_prompt("{title} by {shop_id}: {description}", product) == "Red Sneaker by shop-1: Light, breathable."
    assert render_prompt(DEFAULT_TEMPLATE, product).startswith("A short product video of Red Sneaker. Light,")
    long = render_prompt("{description}", _product(description="word " * 1000))
    assert len(long) <= 1000 and long.endswith("word")
    for bad in ("{price}", "{title.__class__}", "{title[0]}", "{title!r}", "{title:>30}"):
        with pytest.raises(ValueError, match="template field"):
            check_template(bad)
    with pytest.raises(ValueError, match="template field"):
        HookSettings(secret=SECRET, id_key=ID_KEY, templates={"shop-1": "{title.__init__}"})


def test_request_ids_are_deterministic_and_follow_the_contract() -> None:
    render = {"width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}
    rules: dict[str, Any] = {"id_key": ID_KEY.encode(), "policy": ContentPolicy(()), "max_record_bytes": 1 << 20}
    first = build_request(_product(), template=DEFAULT_TEMPLATE, render=render, **rules)
    again = build_request(_product(extra_field="ignored"), template=DEFAULT_TEMPLATE, render=render, **rules)
    edited = build_request(_product(title="Blue Sneaker"), template=DEFAULT_TEMPLATE, render=render, **rules)
    other_template = build_request(_product(), template="{title}", render=render, **rules)
    assert first.request_id == again.request_id
    assert len({first.request_id, edited.request_id, other_template.request_id}) == 3
    assert re.fullmatch(r"hook:[0-9a-f]{32}", first.request_id)
    assert (first.tenant_id, first.image_url, first.width) == ("shop-1", "https://cdn.example.com/p-1.png", 256)
    assert first.metadata == {"product_id": "p-1", "source": "product-created-hook"}
    longest = derive_request_id(ID_KEY.encode(), "s" * 64, "p" * 40, {"prompt": "x"})
    assert len(longest) <= 128 and re.fullmatch(ID_PATTERN, longest)


def test_progress_line_and_upload_keys() -> None:
    assert render_progress(3, 6, elapsed_s=1.5, tick=0).startswith("[############............] step 3/6")
    assert render_progress(None, None, elapsed_s=2.0, tick=1) == "/ waiting for the result    2.0s"
    key = upload_key(b"png-bytes", "Shoe.PNG", prefix="env-a/", tenant_id="shop-1")
    assert re.fullmatch(r"env-a/uploads/[0-9a-f]{32}/[0-9a-f]{32}\.png", key)
    assert key == upload_key(b"png-bytes", "other.png", prefix="env-a/", tenant_id="shop-1")
