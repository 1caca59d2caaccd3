"""schemas/asyncapi.yaml: parses, is AsyncAPI 3.0.0, describes the topics, and agrees with the code.

No AsyncAPI 3 meta-schema ships in any installed package, so these are structural checks (the parts of the
specification the document relies on), plus the examples validated against the checked-in JSON Schemas.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from consumer.core.intake import DeadLetter, parse_request
from consumer.core.retries import ATTEMPT, NOT_BEFORE, ROUND
from consumer.crash_guard.counts import StartsValue, starts_key
from consumer.errors import VidgenError, WorkerCrashed
from consumer.kafka.clients import topic_configs
from consumer.settings import Settings
from schemas.events import ID_PATTERN, VideoControl, VideoRequest, VideoResult
from tests.support import REPO

SCHEMAS = REPO / "schemas"
DOC_PATH = SCHEMAS / "asyncapi.yaml"
DLQ_HEADERS = {
    "vidgen-error-code",
    "vidgen-error-message",
    "vidgen-original-topic",
    "vidgen-original-partition",
    "vidgen-original-offset",
    "vidgen-worker-id",
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _pointer(doc: dict[str, Any], fragment: str) -> Any:
    node: Any = doc
    for escaped in fragment.lstrip("/").split("/"):
        part = escaped.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"#{fragment} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    path, _, fragment = ref.partition("#")
    if path:
        target = (DOC_PATH.parent / path).resolve()
        assert target.is_file(), f"{ref} points to a missing file"
        loaded = json.loads(target.read_text(encoding="utf-8"))
        return _pointer(loaded, fragment) if fragment else loaded
    return _pointer(doc, fragment)


def _subclasses(cls: type[VidgenError]) -> list[type[VidgenError]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def _message(doc: dict[str, Any], name: str) -> dict[str, Any]:
    message = doc["components"]["messages"][name]
    assert isinstance(message, dict)
    return message


def test_is_asyncapi_3_with_info_and_servers(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"] == "1.0.0"
    assert doc["defaultContentType"] == "application/json"
    for server in doc["servers"].values():
        assert server["host"] and server["protocol"] in {"kafka", "kafka-secure"}


def test_channels_have_the_topic_addresses_and_their_messages(doc: dict[str, Any]) -> None:
    by_address = {channel["address"]: channel for channel in doc["channels"].values()}
    expected = {
        "video.requests": "VideoRequest",
        "video.results": "VideoResult",
        "video.requests.dlq": "DeadLetter",
    }
    for address, message in expected.items():
        messages = by_address[address]["messages"]
        assert [m["$ref"] for m in messages.values()] == [f"#/components/messages/{message}"]
    retry = by_address["video.requests.retry"]["messages"]
    assert [m["$ref"] for m in retry.values()] == ["#/components/messages/RetriedRequest"]
    progress = by_address["video.progress"]["description"]
    assert Settings.model_fields["progress_events"].default is True  # the worker publishes them by default
    said = " ".join(progress.split())
    assert "Published by the worker when VIDGEN_PROGRESS_EVENTS is on" in said
    assert "at most one `progress` event per request per VIDGEN_PROGRESS_INTERVAL_S" in said
    assert "consumers must not depend on them for correctness" in said


def test_every_ref_resolves_and_payloads_are_the_checked_in_schema_files(doc: dict[str, Any]) -> None:
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert _resolve(doc, ref) is not None
    assert _message(doc, "VideoRequest")["payload"] == {"$ref": "./json/video-request.v1.schema.json"}
    assert _message(doc, "VideoResult")["payload"] == {"$ref": "./json/video-result.v1.schema.json"}
    assert _message(doc, "Progress")["payload"] == {"$ref": "./json/video-progress.v1.schema.json"}
    for name in ("video-request.v1.schema.json", "video-result.v1.schema.json"):
        Draft202012Validator.check_schema(json.loads((SCHEMAS / "json" / name).read_text(encoding="utf-8")))


def test_operations_reference_their_channels_messages(doc: dict[str, Any]) -> None:
    operations = doc["operations"]
    assert {op["action"] for op in operations.values()} == {"send", "receive"}
    for op in operations.values():
        channel_ref = op["channel"]["$ref"]
        for message in op["messages"]:
            # AsyncAPI 3: an operation's messages must be messages of its channel.
            assert message["$ref"].startswith(channel_ref + "/messages/")
            _resolve(doc, message["$ref"])
    receive = operations["receiveVideoRequests"]
    assert receive["bindings"]["kafka"]["groupId"]["enum"] == ["video-renderers"]
    assert receive["reply"]["channel"]["$ref"] == "#/channels/videoResults"


def test_request_and_result_examples_match_the_contract(doc: dict[str, Any]) -> None:
    request_schema = _resolve(doc, _message(doc, "VideoRequest")["payload"]["$ref"])
    result_schema = _resolve(doc, _message(doc, "VideoResult")["payload"]["$ref"])
    request_examples = _message(doc, "VideoRequest")["examples"]
    result_examples = _message(doc, "VideoResult")["examples"]
    assert request_examples and result_examples
    for example in request_examples:
        Draft202012Validator(request_schema).validate(example["payload"])
        VideoRequest.model_validate(example["payload"])  # and the model the worker parses with agrees
    # The result schema is the serialization view: what consumers read.
    for example in result_examples:
        Draft202012Validator(result_schema).validate(json.loads(json.dumps(example["payload"], default=str)))
        VideoResult.model_validate(example["payload"])
    traceparent = _resolve(doc, "#/components/schemas/TraceHeaders")["properties"]["traceparent"]
    for example in request_examples + result_examples:
        if "headers" in example:
            Draft202012Validator(traceparent).validate(example["headers"]["traceparent"])


def test_keys_are_request_ids(doc: dict[str, Any]) -> None:
    assert _resolve(doc, "#/components/schemas/RequestKey")["pattern"] == ID_PATTERN
    for name in ("VideoRequest", "VideoResult"):
        assert _message(doc, name)["bindings"]["kafka"]["key"] == {"$ref": "#/components/schemas/RequestKey"}
        assert _message(doc, name)["correlationId"]["$ref"] == "#/components/correlationIds/requestId"


def test_dead_letter_headers_and_codes_are_what_the_worker_writes(doc: dict[str, Any]) -> None:
    headers = _message(doc, "DeadLetter")["headers"]
    assert set(headers["required"]) == DLQ_HEADERS
    unanswerable = set()
    for value in (None, b"x" * 2048, b"\xff\xfe", b"{", b"[1]", b"{}"):
        outcome = parse_request(value, max_bytes=1024)
        assert isinstance(outcome, DeadLetter)
        unanswerable.add(outcome.code)
    # Requests that exhaust their retries carry the code of a retriable error; those that kill workers, worker_crashed.
    retriable = {cls.code for cls in _subclasses(VidgenError) if cls.retriable} | {WorkerCrashed.code}
    code = headers["properties"]["vidgen-error-code"]
    examples = set(code["examples"])
    assert unanswerable <= examples and examples - unanswerable
    assert examples - unanswerable <= retriable, "every example is a code the worker can write"
    for example in code["examples"]:
        Draft202012Validator(code).validate(example)
    for example in _message(doc, "DeadLetter")["examples"]:
        Draft202012Validator(headers).validate(example["headers"])


def test_retry_topic_headers_are_what_the_worker_writes(doc: dict[str, Any]) -> None:
    message = _message(doc, "RetriedRequest")
    assert set(message["headers"]["required"]) == {ATTEMPT, ROUND, NOT_BEFORE}
    assert message["payload"] == _message(doc, "VideoRequest")["payload"]  # the request, unchanged


def test_control_and_attempts_channels_are_what_the_worker_reads_and_writes(doc: dict[str, Any]) -> None:
    by_address = {channel["address"]: channel for channel in doc["channels"].values()}
    settings = Settings()
    control = by_address[settings.control_topic]
    assert [m["$ref"] for m in control["messages"].values()] == ["#/components/messages/VideoControl"]
    attempts = by_address[settings.attempts_topic]
    assert [m["$ref"] for m in attempts["messages"].values()] == ["#/components/messages/AttemptCount"]
    for channel in (control, attempts):  # the configs the worker creates the topics with
        documented = channel["bindings"]["kafka"]["topicConfiguration"]
        created = topic_configs(settings)[channel["address"]]
        assert ",".join(documented["cleanup.policy"]) == created["cleanup.policy"]
        assert str(documented.get("retention.ms", "")) == created.get("retention.ms", "")
    operations = {(op["action"], op["channel"]["$ref"]) for op in doc["operations"].values()}
    assert ("receive", "#/channels/videoControl") in operations
    assert {("send", "#/channels/videoRequestsAttempts"), ("receive", "#/channels/videoRequestsAttempts")} <= operations

    command = _message(doc, "VideoControl")
    assert command["payload"] == {"$ref": "./json/video-control.v1.schema.json"}
    assert command["bindings"]["kafka"]["key"] == {"$ref": "#/components/schemas/RequestKey"}
    command_schema = _resolve(doc, command["payload"]["$ref"])
    for example in command["examples"]:
        Draft202012Validator(command_schema).validate(example["payload"])
        VideoControl.model_validate(example["payload"])

    count = _message(doc, "AttemptCount")
    assert set(count["payload"]["required"]) == set(count["payload"]["properties"]) == set(StartsValue.model_fields)
    for example in count["examples"]:
        Draft202012Validator(count["payload"]).validate(example["payload"])
        StartsValue.model_validate(example["payload"])
    key = count["bindings"]["kafka"]["key"]
    Draft202012Validator(key).validate(starts_key("video-renderers", "video.requests", 3, 1207).decode())
