"""Benchmark: the official OpenAI Python SDK's `client.videos` flows against `vidgen api` (its own process), one
stand-in worker (its own process, renders held `--render-s`), the embedded broker and S3 server. Wall time of each
flow as a user's code sees it, median and max over `--repeats`:

- `create`: a multipart POST with a 64x48 PNG as `input_reference` (the SDK always sends a form), until the job;
- `create_and_poll`: create, then poll until completed, at the pace the API asks (`openai-poll-after-ms`,
  `VIDGEN_PROGRESS_INTERVAL_S`); `create_and_poll_100ms` the same with the SDK told to poll every 100 ms;
- `retrieve`: one GET of a completed job;
- `list_two_pages`: `list(limit=2)` and its next page;
- `download_both`: `download_content` of the MP4 and of the thumbnail (a 302 to S3, followed);
- `delete`: `delete` of a completed job (its objects deleted).

    python -m bench.openai_sdk [--repeats 5] [--render-s 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from PIL import Image

from bench.api import unthrottled_api
from bench.infra import Infra, embedded_infra, machine_info, new_run
from bench.workers import running_workers
from consumer.kafka.clients import ensure_topics, worker_topics

__all__ = ["main", "measure"]

_FIELDS = {"size": "256x256", "seconds": "1", "extra_body": {"num_inference_steps": 4}}


def _photo(index: int) -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (index % 256, 80, 160)).save(buffer, format="PNG")
    return "photo.png", buffer.getvalue(), "image/png"


async def _timed(flow: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await flow()
    return time.perf_counter() - started, value


def _summary(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(seconds) * 1000, 1), "max_ms": round(max(seconds) * 1000, 1)}


async def _flows(client: AsyncOpenAI, repeats: int) -> dict[str, dict[str, float]]:
    walls: dict[str, list[float]] = {}
    done = []
    for index in range(repeats):
        wall, job = await _timed(
            lambda index=index: client.videos.create(
                prompt=f"sneaker {index}", input_reference=_photo(index), **_FIELDS
            )
        )
        walls.setdefault("create", []).append(wall)
        await client.videos.poll(job.id)
        wall, job = await _timed(
            lambda index=index: client.videos.create_and_poll(
                prompt=f"mug {index}", input_reference=_photo(index), **_FIELDS
            )
        )
        walls.setdefault("create_and_poll", []).append(wall)
        wall, job = await _timed(
            lambda index=index: client.videos.create_and_poll(
                prompt=f"lamp {index}", input_reference=_photo(index), poll_interval_ms=100, **_FIELDS
            )
        )
        walls.setdefault("create_and_poll_100ms", []).append(wall)
        if job.status != "completed":
            raise RuntimeError(f"{job.id} ended {job.status}: {job.error}")
        done.append(job.id)
    for job_id in done:
        walls.setdefault("retrieve", []).append((await _timed(lambda job_id=job_id: client.videos.retrieve(job_id)))[0])

        async def two_pages() -> None:
            page = await client.videos.list(limit=2)
            await page.get_next_page()

        walls.setdefault("list_two_pages", []).append((await _timed(two_pages))[0])

        async def both(job_id: str = job_id) -> None:
            await client.videos.download_content(job_id)
            await client.videos.download_content(job_id, variant="thumbnail")

        walls.setdefault("download_both", []).append((await _timed(both))[0])
    for job_id in done:
        walls.setdefault("delete", []).append((await _timed(lambda job_id=job_id: client.videos.delete(job_id)))[0])
    return {flow: _summary(values) for flow, values in walls.items()}


async def measure(infra: Infra, *, repeats: int, render_s: float) -> dict[str, Any]:
    settings = new_run(infra, "openai-sdk")
    await ensure_topics(settings, worker_topics(settings))
    with tempfile.TemporaryDirectory(prefix="vidgen-openai-bench-") as tmp:
        async with (
            unthrottled_api(infra, settings, Path(tmp)) as (url, key, _),
            running_workers(infra, settings, 1, render_s=render_s),
            AsyncOpenAI(base_url=f"{url}/v1", api_key=key) as client,
        ):
            flows = await _flows(client, repeats)
    return {"machine": machine_info(), "repeats": repeats, "render_s": render_s, "wall": flows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openai_sdk", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--render-s", type=float, default=0.5, help="seconds the stand-in holds each render")
    args = parser.parse_args(argv)
    # The SDK marks its video methods deprecated for OpenAI's own service; they work against any base_url.
    warnings.filterwarnings("ignore", "The Sora API", DeprecationWarning)
    with embedded_infra() as infra:
        report = asyncio.run(measure(infra, repeats=args.repeats, render_s=args.render_s))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
