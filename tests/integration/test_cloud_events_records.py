"""What a real worker writes to the results, progress and DLQ topics of the real broker is read as CloudEvents by
the cloudevents SDK's Kafka bindings, unchanged: attributes from the `ce_` headers, data the unchanged JSON value;
a request answered twice gives two results with one `ce_id`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.v1 import kafka as ce_kafka_v1

from consumer.settings import Settings
from schemas.events import VideoProgress, VideoResult
from tests.support import KafkaClient, request_body


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
