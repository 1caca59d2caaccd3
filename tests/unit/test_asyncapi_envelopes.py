"""schemas/asyncapi.yaml documents the CloudEvents headers the worker and the notifier write, and the tenant webhooks
topic as the API writes it: each checked against what the code produces."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from consumer.core.cloud_events import (
    NOTIFICATION_DEAD_LETTER_TYPE,
    dead_letter_event,
    progress_event,
    result_event,
)
from consumer.core.dlq import dead_letter_headers
from consumer.kafka.clients import topic_configs
from consumer.settings import Settings
from schemas.events import VideoProgress
from schemas.webhooks import WebhookEndpointRecord
from tests.support import REPO, consumed

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "schemas" / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """`schema` with the document's components beside it, so its local `$ref`s resolve."""
    return Draft202012Validator({**schema, "components": {"schemas": doc["components"]["schemas"]}})


def _text(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {name: value.decode() for name, value in headers}


def test_result_and_progress_headers_are_what_the_worker_writes(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    results = _validator(doc, messages["VideoResult"]["headers"])
    for status in ("completed", "failed", "rejected"):
        written = result_event(status=status, tenant_id="t", request_id="r-1", source="urn:vidgen", time=NOW)
        results.validate({**TRACE, **_text(written)})
    assert not results.is_valid({**TRACE, **_text(written), "ce_type": "io.vidgen.video.started"})
    examples = [example["headers"] for example in messages["VideoResult"]["examples"] if "headers" in example]
    assert examples
    for example in examples:
        results.validate(example)
    progress = _validator(doc, messages["Progress"]["headers"])
    for kind in ("started", "progress"):
        record = {"request_id": "r-1", "tenant_id": "t", "event": kind, "step": 2, "total": 4, "percent": 50}
        written = progress_event(VideoProgress.model_validate(record | {"worker_id": "w", "at": NOW}), source="urn:v")
        progress.validate({**TRACE, **_text(written)})


def _record() -> Any:
    return consumed("video.results", 0, 9, b"{}", key=b"r-1")


def test_dead_letter_headers_of_both_queues_are_documented(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    envelope = dict(
        topic="video.requests", partition=0, offset=9, code="not_json", value=b"{", request_id="r-1", time=NOW
    )
    provenance = dead_letter_headers(_record(), code="not_json", message="m", worker_id="w")
    request_dlq = _validator(doc, messages["DeadLetter"]["headers"])
    request_dlq.validate(_text([*provenance, *dead_letter_event(**envelope, source="urn:vidgen")]))  # type: ignore[arg-type]
    for name in ("ce_id", "ce_type", "ce_time", "content-type"):
        assert name in messages["DeadLetter"]["headers"]["properties"]
    notifier_dlq = _validator(doc, messages["NotifierDeadLetter"]["headers"])
    written = dead_letter_event(**envelope, source="urn:vidgen", event_type=NOTIFICATION_DEAD_LETTER_TYPE)  # type: ignore[arg-type]
    failed = dead_letter_headers(_record(), code="delivery_failed", message="m", worker_id="w")
    headers = [*failed, ("vidgen-delivery-attempts", b"5"), ("vidgen-webhook-endpoint", b"wh_" + b"a" * 32)]
    notifier_dlq.validate(_text([*headers, *written]))


def test_the_webhooks_channel_is_the_compacted_topic_the_api_writes(doc: dict[str, Any]) -> None:
    settings = Settings()
    [channel] = [c for c in doc["channels"].values() if c["address"] == settings.webhooks_topic]
    documented = channel["bindings"]["kafka"]["topicConfiguration"]
    assert ",".join(documented["cleanup.policy"]) == topic_configs(settings)[settings.webhooks_topic]["cleanup.policy"]
    message = doc["components"]["messages"]["WebhookEndpoint"]
    schema = json.loads((REPO / "schemas" / "json" / "webhook-endpoint.v1.schema.json").read_text(encoding="utf-8"))
    key = Draft202012Validator(message["bindings"]["kafka"]["key"])
    for example in message["examples"]:
        Draft202012Validator(schema).validate(example["payload"])
        record = WebhookEndpointRecord.model_validate(example["payload"])
        key.validate(record.id)
    operations = {(op["action"], op["channel"]["$ref"]) for op in doc["operations"].values()}
    assert {("send", "#/channels/videoWebhooks"), ("receive", "#/channels/videoWebhooks")} <= operations
