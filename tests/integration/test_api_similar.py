"""The similar-video fallback against the real API, broker, S3 server and workers: a tenant's photo is rendered by the
GPU pool (the tiny model); the GPU worker stops, the pool goes down, and the same photo again (re-encoded) completes
within a second as `similar_to` the first, its content the first video's frames. The same photo from another tenant,
and another photo, get template videos; `fallback: none` waits for a GPU worker; deleting either job keeps the
other's video."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from numpy.typing import NDArray

from bench.product_photos import jpeg_bytes, png_bytes, product_photo
from consumer.core.degrade import DEGRADED_REASON_HEADER
from consumer.core.similar import PRINT_HEADER, ImagePrint
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.integration.api_helpers import IdentityProvider, TenantSessions, api_settings, new_key, running_api
from tests.support import KafkaClient, until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]

FAST = {"num_inference_steps": "2", "num_frames": "5", "width": "256", "height": "256"}
PHOTO = product_photo(3, (256, 256))


class Api(TenantSessions):
    async def submit(self, tenant: str, photo: bytes, **fields: str) -> dict[str, Any]:
        form = aiohttp.FormData()
        for name, value in {"prompt": "a product turning", **FAST, **fields}.items():
            form.add_field(name, value)
        form.add_field("input_reference", photo, filename="photo", content_type="application/octet-stream")
        async with self.sessions[tenant].post(f"{self.url}/v1/videos", data=form) as response:
            body: dict[str, Any] = await response.json()
            assert response.status == 202, body
            return body

    async def get(self, job_id: str, tenant: str = "shop-1") -> dict[str, Any]:
        async with self.sessions[tenant].get(f"{self.url}/v1/videos/{job_id}") as response:
            body: dict[str, Any] = await response.json()
            return body

    async def done(self, job_id: str, tenant: str = "shop-1") -> dict[str, Any]:
        async def terminal() -> dict[str, Any] | None:
            job = await self.get(job_id, tenant)
            return job if job["status"] in ("completed", "failed") else None

        return await until(terminal, timeout_s=120, every_s=0.1)

    async def content(self, job_id: str, variant: str = "video") -> bytes:
        url = f"{self.url}/v1/videos/{job_id}/content?variant={variant}"
        async with self.sessions["shop-1"].get(url) as response:
            assert response.status == 200, await response.text()
            return await response.read()

    async def delete(self, job_id: str) -> None:
        async with self.sessions["shop-1"].delete(f"{self.url}/v1/videos/{job_id}") as response:
            assert response.status == 200, await response.text()


@pytest.fixture
async def api(settings: Settings, tmp_path: Path, identity: IdentityProvider) -> AsyncIterator[Api]:
    options = api_settings(tmp_path, identity.url, pool_down_s=1.0, tenant_fallback={"shop-2": "similar"})
    keys = {tenant: new_key(options, tenant) for tenant in ("shop-1", "shop-2")}
    async with running_api(settings, options) as server:
        client = Api(server.url, keys)
        yield client
        await client.close()


async def _records(settings: Settings, *topics: str) -> list[list[Any]]:
    """Every record on each of these topics, from the beginning."""
    client = KafkaClient(settings)
    await client.start()
    try:
        return [(await client.read_to_end(topic))[0] for topic in topics]
    finally:
        await client.stop()


def _frames(mp4: bytes) -> list[NDArray[np.uint8]]:
    with av.open(io.BytesIO(mp4)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


async def test_the_same_photo_gets_the_earlier_video_while_the_pool_is_down(
    settings: Settings, api: Api, start_worker: Any, template_pool_renderer: Renderer
) -> None:
    gpu = await start_worker(settings)
    await start_worker(settings.template_pool(), renderer=template_pool_renderer)
    first = await api.done((await api.submit("shop-1", png_bytes(PHOTO)))["id"])
    assert (first["status"], first["degraded"], first.get("similar_to")) == ("completed", False, None)
    await gpu.shutdown()  # the only GPU worker: once a job has waited a second, the pool is down

    waiting = await api.submit("shop-1", png_bytes(product_photo(4, (256, 256))), fallback="none")
    assert waiting["status"] == "queued"

    async def pool_down() -> bool:
        async with api.sessions["shop-1"].get(f"{api.url}/v1/queue") as response:
            return bool((await response.json())["pool_down"])

    await until(pool_down, timeout_s=60, every_s=0.1)

    started = time.monotonic()
    again = await api.submit("shop-1", jpeg_bytes(PHOTO, quality=70), fallback="similar")  # a re-encoded copy
    seconds = time.monotonic() - started
    assert (again["status"], again["degraded"], again["degraded_reason"]) == ("completed", True, "pool_down")
    assert again["similar_to"] == first["id"] and seconds < 1.0
    assert again["video"]["uri"] == first["video"]["uri"]
    first_frames = _frames(await api.content(first["id"]))
    again_frames = _frames(await api.content(again["id"]))
    assert len(again_frames) == len(first_frames) == 5
    assert all(np.array_equal(a, b) for a, b in zip(again_frames, first_frames, strict=True))
    assert await api.content(again["id"], "thumbnail") == await api.content(first["id"], "thumbnail")

    # Another tenant's same photo (its tenant default is `similar`) and another photo: template videos.
    theirs = await api.submit("shop-2", png_bytes(PHOTO))
    other = await api.submit("shop-1", png_bytes(product_photo(5, (256, 256))), fallback="similar")
    for job, tenant in ((theirs, "shop-2"), (other, "shop-1")):
        assert (job["degraded"], job["degraded_reason"], job.get("similar_to")) == (True, "pool_down", None)
        done = await api.done(job["id"], tenant)
        assert (done["status"], done.get("similar_to")) == ("completed", None)
        assert done["video"]["uri"] != first["video"]["uri"]
    # Without the fallback, as before: it waits for a GPU worker.
    assert (await api.submit("shop-1", png_bytes(PHOTO), fallback="none"))["status"] == "queued"

    # Deleting a similar job keeps the earlier one's video; deleting the earlier one keeps the similar one's.
    resized = await api.submit("shop-1", jpeg_bytes(PHOTO.resize((200, 200))), fallback="similar")
    assert resized["similar_to"] == first["id"]
    await api.delete(resized["id"])
    assert len(_frames(await api.content(first["id"]))) == 5
    await api.delete(first["id"])
    assert len(_frames(await api.content(again["id"]))) == 5
    assert (await api.get(again["id"]))["similar_to"] == first["id"]

    # On the topics: the first request carries its photo's print (every replica's view indexes it), and the
    # similar answer is a result record with `similar_to` and the degraded reason in its header.
    requests, results = await _records(settings, settings.requests_topic, settings.results_topic)
    (request,) = [record for record in requests if record.key == first["id"].encode()]
    assert ImagePrint.of_text(dict(request.headers)[PRINT_HEADER].decode()) is not None
    (answer,) = [record for record in results if record.key == again["id"].encode()]
    assert VideoResult.model_validate_json(answer.value).similar_to == first["id"]
    assert dict(answer.headers)[DEGRADED_REASON_HEADER] == b"pool_down"
