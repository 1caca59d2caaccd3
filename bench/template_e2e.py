"""End-to-end seconds per template video: a request on the template pool's topic to its result on `video.results`,
through a real Kafka-protocol broker (tansu) and S3 server (moto), each in its own process, and one worker process
with `VIDGEN_MODEL=template` (`python -m consumer run`, as the template pool runs it).

Every request animates a start image (a 1600x1200 product photo uploaded to the tenant's folder, the common case)
with its own seed, so none is a cache hit. Two phases: `sequential` sends one request at a time and waits for its
result (what one degraded job costs end to end: consume, start-image download and decode in the sandbox, render,
encode, two uploads, presign, publish); `burst` sends them all at once (the pool's throughput with one worker).

    python -m bench.template_e2e [--count 10] [--size 512x512x25] [--output F]

Prints one JSON report. Latencies are from the producer's send to the collector's arrival, in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench.client import Client, make_requests
from bench.infra import Infra, embedded_infra, machine_info, new_run, print_report
from bench.stats import percentile
from bench.workers import running_workers
from consumer.core.keys import upload_key
from consumer.dev.demo import product_image
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings

__all__ = ["main", "measure", "upload_photo"]

_TENANT = "bench"  # make_requests' tenant
_TIMEOUT_S = 300.0


def latency_summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(percentile(seconds, 50), 3),
        "p95_s": round(percentile(seconds, 95), 3),
        "mean_s": round(sum(seconds) / len(seconds), 3),
        "max_s": round(max(seconds), 3),
    }


def phase_report(client: Client, request_ids: list[str]) -> dict[str, Any]:
    """Latencies, stage medians and how many answers were degraded completions (all of them, unless broken)."""
    arrivals = client.first_results(request_ids)
    latencies = [arrivals[rid].arrived_at - client.sent_at[rid] for rid in request_ids]
    degraded = sum(1 for a in arrivals.values() if a.result.degraded and a.result.status == "completed")
    return {"count": len(request_ids), "degraded_completed": degraded, **latency_summary(latencies)} | stage_medians(
        client, request_ids
    )


def stage_medians(client: Client, request_ids: list[str]) -> dict[str, float | None]:
    """Median render, encode and upload milliseconds the worker reported in the results."""
    arrivals = client.first_results(request_ids).values()
    medians: dict[str, float | None] = {}
    for stage in ("render_ms", "encode_ms", "upload_ms"):
        values = [float(value) for arrival in arrivals if (value := getattr(arrival.result.timings, stage)) is not None]
        medians[f"{stage}_p50"] = round(percentile(values, 50), 1) if values else None
    return medians


async def upload_photo(settings: Settings) -> str:
    """A 1600x1200 product photo in the benchmark tenant's upload folder; its `s3://` URL."""
    photo = product_image(1600, 1200)
    key = upload_key(photo, "product.png", prefix=settings.s3_key_prefix, tenant_id=_TENANT)
    async with open_s3_client(settings) as s3:
        store = ObjectStore(s3, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)
        await store.ensure_bucket()
        await store.put(key, photo, content_type="image/png", metadata={})
    return f"s3://{settings.s3_bucket}/{key}"


async def measure(infra: Infra, *, count: int, size: tuple[int, int, int]) -> dict[str, Any]:
    width, height, frames = size
    video = {"width": width, "height": height, "num_frames": frames}
    pool = new_run(infra, "template-e2e").template_pool()
    async with (
        running_workers(infra, pool, 1, render_s=0, extra={"VIDGEN_MODEL": "template"}),
        Client(pool) as client,
    ):
        image_url = await upload_photo(pool)
        warm = make_requests("warm-up", 1, video=video)
        await client.send([{**body, "image_url": image_url} for body in warm])
        if not await client.wait_for([warm[0]["request_id"]], timeout_s=_TIMEOUT_S):
            raise TimeoutError("the warm-up request was not answered")

        sequential = [{**body, "image_url": image_url} for body in make_requests("seq", count, video=video)]
        for body in sequential:
            await client.send([body])
            if not await client.wait_for([body["request_id"]], timeout_s=_TIMEOUT_S):
                raise TimeoutError(f"{body['request_id']} was not answered")

        burst = [{**body, "image_url": image_url} for body in make_requests("burst", count, video=video)]
        started = time.time()
        await client.send(burst)
        if not await client.wait_for([body["request_id"] for body in burst], timeout_s=_TIMEOUT_S):
            raise TimeoutError("the burst was not answered")
        burst_wall = max(a.arrived_at for a in client.first_results(b["request_id"] for b in burst).values())

        report: dict[str, Any] = {"machine": machine_info(), "video": {**video, "start_image": "1600x1200 PNG"}}
        for name, bodies in (("sequential", sequential), ("burst", burst)):
            report[name] = phase_report(client, [body["request_id"] for body in bodies])
        report["burst"]["wall_s"] = round(burst_wall - started, 3)
        report["burst"]["videos_per_s"] = round(count / (burst_wall - started), 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10, help="videos per phase")
    parser.add_argument("--size", default="512x512x25", help="WxHxF")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    width, height, frames = (int(part) for part in args.size.split("x"))
    with embedded_infra() as infra:
        report = asyncio.run(measure(infra, count=args.count, size=(width, height, frames)))
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
