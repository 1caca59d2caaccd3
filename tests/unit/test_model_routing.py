"""Routing by model id: the job API's registry holds every pool of `VIDGEN_MODEL_POOLS` with its family's rules and
topics, a submission is checked against the model it names before anything is published, and the product hook sends
its requests to the pool `VIDGEN_HOOK_MODEL` names."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from consumer.api.api_settings import ApiSettings
from consumer.api.submission.body import build_request
from consumer.core.model_families import EASYANIMATE, LTX, WAN
from consumer.core.moderation import ContentPolicy
from consumer.errors import ApiFailure, InvalidRequest
from consumer.settings import Settings
from producer_examples.hook_settings import HookSettings
from producer_examples.product_hook import pool_model
from producer_examples.products import DEFAULT_TEMPLATE, ProductCreated
from producer_examples.products import build_request as product_request

ID_KEY = "request-id-key-for-tests-only-0123456789"
POOLS = [
    {"id": "wan-2", "family": "wan", "topic": "video.requests.wan"},
    {"id": "ltx-video", "family": "ltx", "topic": "ltx", "bulk_topic": "ltx.later", "consumer_group": "ltx-gpus"},
]
POLICY = ContentPolicy([])


def _settings() -> Settings:
    return Settings(model_pools=POOLS)


def test_the_registry_holds_each_pool_with_its_family_and_topics() -> None:
    models = ApiSettings(id_key=ID_KEY, keys_file="k").models(_settings())
    assert [(m.id, m.family.name) for m in models] == [
        ("easyanimate-v5.1", "easyanimate"),
        ("wan-2", "wan"),
        ("ltx-video", "ltx"),
        ("template", "template"),
    ]
    wan, ltx = models.resolve("wan-2"), models.resolve("ltx-video")
    assert wan.family is WAN and ltx.family is LTX and models.default.family is EASYANIMATE
    assert (wan.topic_for("interactive"), wan.topic_for("bulk")) == ("video.requests.wan", "video.requests.wan.bulk")
    assert (ltx.topic_for(None), ltx.topic_for("bulk")) == ("ltx", "ltx.later")
    assert models.of_topic("ltx.later") is ltx
    with pytest.raises(InvalidRequest) as refused:
        models.resolve("sora-2")
    assert (refused.value.code, refused.value.field) == ("model_not_found", "model")


def test_the_pools_are_read_from_one_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_MODEL_POOLS", json.dumps(POOLS))
    [wan, ltx] = Settings().model_pools
    assert (wan.id, wan.family, wan.bulk) == ("wan-2", "wan", "video.requests.wan.bulk")
    assert wan.group == "video.requests.wan"
    assert (ltx.bulk, ltx.group) == ("ltx.later", "ltx-gpus")
    monkeypatch.setenv("VIDGEN_MODEL_POOLS", '[{"id": "sora-2", "family": "sora", "topic": "t"}]')
    with pytest.raises(ValidationError, match="family"):
        Settings()


def test_the_default_pool_may_be_of_another_family() -> None:
    models = ApiSettings(id_key=ID_KEY, keys_file="k", model_id="wan-2", model_family="wan").models(Settings())
    assert (models.default.id, models.default.family) == ("wan-2", WAN)


def test_two_pools_under_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        ApiSettings(id_key=ID_KEY, keys_file="k", model_id="wan-2").models(_settings())


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"num_frames": 10}, "num_frames", "num_frames must be 4k+1 for wan, got 10"),
        ({"num_frames": 125}, "num_frames", "num_frames must be 1-121 for wan, got 125"),
        ({"width": 1360}, "width", "width must be a multiple of 16 in 256-1280 for wan, got 1360"),
    ],
)
def test_a_submission_breaking_its_models_rules_is_refused_before_publishing(
    fields: dict[str, int], field: str, message: str
) -> None:
    wan = ApiSettings(id_key=ID_KEY, keys_file="k").models(_settings()).resolve("wan-2")
    body = {"prompt": "a red shoe", "width": 512, "height": 512, "num_frames": 25, **fields}
    with pytest.raises(ApiFailure) as refused:
        build_request(body, request_id="vid-1", tenant_id="shop-1", max_record_bytes=1 << 20, policy=POLICY, model=wan)
    assert (refused.value.status, refused.value.field, refused.value.message) == (422, field, message)


def test_a_published_submission_names_its_model_so_a_misrouted_record_is_refused() -> None:
    wan = ApiSettings(id_key=ID_KEY, keys_file="k").models(_settings()).resolve("wan-2")
    body = {"prompt": "a red shoe", "width": 512, "height": 512, "num_frames": 25}
    request = build_request(body, request_id="vid-1", tenant_id="t", max_record_bytes=1 << 20, policy=POLICY, model=wan)
    assert request.model == "wan-2"


def _hook(**fields: str) -> HookSettings:
    return HookSettings(secret="s3cret-for-tests-only", id_key=ID_KEY, **fields)


def test_the_hook_sends_to_the_pool_it_names_and_refuses_an_unknown_one_at_start() -> None:
    assert pool_model(_hook(), _settings()) is None  # the default GPU pool, as before
    ltx = pool_model(_hook(model="ltx-video"), _settings())
    assert ltx is not None and (ltx.family, ltx.topic_for("bulk")) == (LTX, "ltx.later")
    with pytest.raises(ValueError, match=r"VIDGEN_HOOK_MODEL .* \(served: wan-2, ltx-video\)"):
        pool_model(_hook(model="sora-2"), _settings())


def test_the_hooks_request_names_its_model_and_keeps_its_rules() -> None:
    ltx = pool_model(_hook(model="ltx-video"), _settings())
    product = ProductCreated(product_id="p-1", shop_id="shop-1", title="Red Sneaker", image_url="https://x.test/a.png")
    rules = {"template": DEFAULT_TEMPLATE, "id_key": ID_KEY.encode(), "policy": POLICY, "max_record_bytes": 1 << 20}
    request = product_request(product, render={"width": 512, "height": 512, "num_frames": 25}, model=ltx, **rules)
    assert (request.model, request.num_frames) == ("ltx-video", 25)
    with pytest.raises(InvalidRequest, match=r"num_frames must be 8k\+1 for ltx, got 21") as refused:
        product_request(product, render={"width": 512, "height": 512, "num_frames": 21}, model=ltx, **rules)
    assert refused.value.field == "num_frames"


def test_the_pools_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's child process (the supervisor) rebuilds `VIDGEN_MODEL_POOLS` from `as_environment`."""
    original = _settings()
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original
