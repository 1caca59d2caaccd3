"""How long `vidgen watch` takes to find a result that already exists: the cost of reading the request id's results
partition from its beginning (see `producer_examples.waiting`), on a real Kafka-protocol broker (tansu).

One partition holds `--count` completed results the size workers publish (presigned URLs included); the watched
request's result is the last of them, the worst case: every record before it is read first.

    python -m bench.watch_lookup [--count 20000] [--output F]

Prints one JSON report: records read, their bytes, seconds from the watcher's start to its answer, records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.infra import machine_info
from consumer.dev.embedded import isolated_settings, kafka_broker
from consumer.kafka.clients import client_options, ensure_topics
from consumer.settings import Settings
from producer_examples.waiting import ResultWatcher
from schemas.events import Timings, VideoInfo, VideoResult

__all__ = ["main", "measure"]


def _result(request_id: str) -> bytes:
    now = datetime.now(UTC)
    key = f"videos/{request_id}/{'c' * 64}"
    signed = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + "x" * 60 + "&X-Amz-Signature=" + "f" * 64
    video = VideoInfo(
        uri=f"s3://vidgen-videos/{key}.mp4",
        url=f"https://s3.example.com/vidgen-videos/{key}.mp4{signed}",
        url_expires_at=now + timedelta(hours=1),
        poster_uri=f"s3://vidgen-videos/{key}.poster.jpeg",
        poster_url=f"https://s3.example.com/vidgen-videos/{key}.poster.jpeg{signed}",
        bytes=1_234_567,
        sha256="0" * 64,
        width=512,
        height=512,
        num_frames=25,
        fps=8,
        duration_s=3.125,
    )
    result = VideoResult(
        request_id=request_id,
        tenant_id="shop-1",
        status="completed",
        video=video,
        timings=Timings(received_at=now, completed_at=now),
        worker_id="bench-worker",
        model="tiny",
    )
    return result.model_dump_json().encode()


async def measure(settings: Settings, count: int) -> dict[str, object]:
    await ensure_topics(settings, [settings.results_topic])
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=20)
    await producer.start()
    size = 0
    try:
        for n in range(count):
            value = _result(f"req-{n}")
            size += len(value)
            await producer.send(settings.results_topic, key=f"req-{n}".encode(), value=value, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    watcher = ResultWatcher(settings, f"req-{count - 1}", progress_topic=None, existing=True)
    started = time.perf_counter()
    try:
        await watcher.start()
        found = await watcher.wait(timeout_s=600)
    finally:
        await watcher.stop()
    seconds = time.perf_counter() - started
    if found is None:
        raise RuntimeError(f"no result for req-{count - 1} found")
    return {
        "records": count,
        "bytes_per_record": round(size / count),
        "megabytes": round(size / 1e6, 1),
        "seconds_to_answer": round(seconds, 2),
        "records_per_s": round(count / seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_lookup", description=__doc__)
    parser.add_argument("--count", type=int, default=20_000, help="results in the watched partition")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    with kafka_broker() as bootstrap:
        settings = isolated_settings(
            bootstrap, "http://127.0.0.1:9", f"watch-{uuid.uuid4().hex[:6]}", topic_partitions=1
        )
        report = {"benchmark": "watch_lookup", "machine": machine_info(), **asyncio.run(measure(settings, args.count))}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
