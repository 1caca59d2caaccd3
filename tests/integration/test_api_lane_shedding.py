"""A bulk backlog submitted through the job API (real broker and S3 server, no worker: jobs stay queued) fills only
the bulk lane's share of the queue: with `VIDGEN_API_MAX_QUEUED` bulk jobs queued, an interactive job is still
accepted for the GPU pool (not degraded, though the template is allowed), a bulk one is shed, and `GET /v1/queue`
says how many of the queued jobs are bulk."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consumer.dev.embedded import isolated_settings
from tests.integration.api_helpers import api_settings, bearer, new_key, running_api

pytestmark = pytest.mark.integration

_BODY = {"prompt": "a green kettle", "width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}


async def test_a_bulk_backlog_sheds_bulk_jobs_and_never_interactive_ones(
    broker: str, s3_endpoint: str, tmp_path: Path
) -> None:
    settings = isolated_settings(broker, s3_endpoint, "lanes" + uuid.uuid4().hex[:8], topic_partitions=1)
    api = api_settings(tmp_path, None, max_queued=2, fallback="template")
    async with (
        running_api(settings, api) as server,
        aiohttp.ClientSession(headers=bearer(new_key(api, "shop-1"))) as http,
    ):

        async def submit(**fields: Any) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{server.url}/v1/videos", json={**_BODY, **fields}) as response:
                return response.status, await response.json()

        for _ in range(2):
            status, job = await submit(priority="bulk")
            assert (status, job["degraded"]) == (202, False), job
        status, job = await submit(priority="bulk", fallback="none")
        assert (status, job["error"]["code"]) == (503, "queue_full"), job
        status, job = await submit(priority="bulk")  # allowed to degrade: the template pool takes it
        assert (status, job["degraded"], job.get("degraded_reason")) == (202, True, "busy"), job
        for _ in range(2):
            status, job = await submit()
            assert (status, job["degraded"]) == (202, False), job
        status, job = await submit(priority="interactive", fallback="none")  # now the interactive lane is full
        assert (status, job["error"]["code"]) == (503, "queue_full"), job
        async with http.get(f"{server.url}/v1/queue") as response:
            queue = await response.json()
        assert (queue["queued"], queue["bulk_queued"], queue["template_queued"]) == (4, 2, 1), queue
