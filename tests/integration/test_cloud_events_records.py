"""What a real worker writes to the results, progress and DLQ topics of the real broker is read as CloudEvents by
the cloudevents SDK's Kafka bindings, unchanged: attributes from the `ce_` headers, data the unchanged JSON value;
a request answered twice gives two results with one `ce_id`. The job API's requests and cancel commands carry an
envelope too."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.v1 import kafka as ce_kafka_v1

from consumer.settings import Settings
from schemas.events import VideoProgress, VideoResult
from tests.integration.api_helpers import ApiStack, bearer
from tests.integration.webhook_helpers import topic_records
from tests.support import SMALL, KafkaClient, request_body

pytest_plugins = ["tests.integration.api_fixtures"]


def _event(record: Any) -> Any:
    message = ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return ce_kafka.from_binary_event(message)


async def test_results_progress_and_dead_letters_are_cloudevents(
    settings: Settings, kafka: KafkaClient, start_worker: Callable[..., Any]
) -> None:
    source = "urn:vidgen:ce-test"
    configured = settings.model_copy(update={"event_source": source, "progress_interval_s": 0.0})
    await start_worker(configured)
    await kafka.send(request_body("ce-1", tenant_id="shop-ce"))
    await kafka.send(b"\xff\xfe not json", key="junk-1")
    await kafka.send(request_body("ce-1", tenant_id="shop-ce"))  # the same request again: answered twice

    results = await kafka.read(settings.results_topic, 2)
    first, second = (_event(record) for record in results)
    assert first.get_type() == second.get_type() == "io.vidgen.video.completed"
    assert first.get_id() == second.get_id() and first.get_source() == source
    assert (first.get_subject(), first.get_datacontenttype()) == ("ce-1", "application/json")
    assert VideoResult.model_validate(first.get_data()) == VideoResult.model_validate_json(results[0].value)
    older = ce_kafka_v1.from_binary(
        ce_kafka_v1.KafkaMessage(dict(results[0].headers), results[0].key, results[0].value)
    )
    assert older["type"] == "io.vidgen.video.completed" and older.get_data() == json.loads(results[0].value)

    progress = await kafka.read(settings.progress_topic, 2)
    events = [_event(record) for record in progress]
    assert {event.get_type() for event in events} <= {"io.vidgen.video.started", "io.vidgen.video.progress"}
    assert events[0].get_type() == "io.vidgen.video.started" and events[0].get_subject() == "ce-1"
    assert VideoProgress.model_validate(events[0].get_data()).request_id == "ce-1"
    # One id per (request, attempt, kind, step): the same request rendered twice repeats ids, nothing else does.
    steps = {(event.get_id(), event.get_type(), event.get_data()["step"]) for event in events}
    assert len(steps) == len({event.get_id() for event in events})

    [dead] = await kafka.read(settings.dlq_topic, 1)
    event = _event(dead)
    assert (event.get_type(), event.get_source()) == ("io.vidgen.request.deadlettered", source)
    assert event.get_datacontenttype() == "application/octet-stream" and dead.value == b"\xff\xfe not json"
    assert dict(dead.headers)["vidgen-error-code"] == b"not_utf8"


async def test_the_apis_requests_cancels_and_deletes_carry_an_envelope(api_stack: ApiStack) -> None:
    async with aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-1"])) as http:
        async with http.post(f"{api_stack.url}/v1/videos", json={"prompt": "a blue mug", **SMALL}) as response:
            job = (await response.json())["id"]
        async with http.post(f"{api_stack.url}/v1/videos/{job}/cancel") as response:
            assert response.status == 202
        async with http.delete(f"{api_stack.url}/v1/videos/{job}") as response:
            assert response.status == 200
    settings = api_stack.settings
    [request] = [r for r in await topic_records(settings, settings.requests_topic) if r.key == job.encode()]
    cancel, delete = [r for r in await topic_records(settings, settings.control_topic) if r.key == job.encode()]
    events = [_event(record) for record in (request, cancel, delete)]
    kinds = ("requested", "cancel_requested", "delete_requested")
    for record, event, kind in zip((request, cancel, delete), events, kinds, strict=True):
        assert (event.get_type(), event.get_subject()) == (f"io.vidgen.video.{kind}", job)
        assert event.get_data() == json.loads(record.value)
    assert len({event.get_id() for event in events}) == 3  # a delete is not a repeat of the cancel
