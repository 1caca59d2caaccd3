"""The official OpenAI Python SDK, unchanged, against `vidgen api`, a worker with the tiny model, tansu and moto:
`client.videos` creates with a photo, polls, lists two pages, downloads both variants (decoded here), deletes (a
cache-hit pair: deleting one keeps the other's video), and every error answer raises the SDK's own class with its
fields; `client.models` lists the deployment's models. (Wall times of these flows: `python -m bench.openai_sdk`.)"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import openai
import pytest
from openai import AsyncOpenAI
from PIL import Image

from consumer.core.keys import object_keys
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.integration.api_helpers import IdentityProvider, RunningApi, api_settings, new_key, png, running_api
from tests.support import KafkaClient, until, video_info

pytestmark = [
    pytest.mark.integration,
    # The SDK marks its video methods deprecated for OpenAI's own service; they work against any base_url.
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]
pytest_plugins = ["tests.integration.api_fixtures"]  # the identity provider fixture

PROMPT = "a red sneaker turning on a white table"
# vidgen's own fields, beside OpenAI's: the tiny model renders 256x256 in 2 steps in a second or so.
FAST = {"num_inference_steps": 2}


def _decode_mp4(data: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(video=0)), stream.width, stream.height


def _client(url: str, key: str, **options: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=key, **options)


@contextlib.asynccontextmanager
async def _sdk(
    settings: Settings, tmp_path: Path, identity: IdentityProvider, **overrides: Any
) -> AsyncIterator[tuple[RunningApi, AsyncOpenAI]]:
    """The API (ApiSettings `overrides`) and an SDK client with shop-1's key; retries off when overrides are given."""
    api = api_settings(tmp_path, identity.url, **overrides)
    key = new_key(api, "shop-1")
    options = {"max_retries": 0} if overrides else {}
    async with running_api(settings, api) as server, _client(server.url, key, **options) as client:
        yield server, client


async def test_the_sdk_creates_polls_lists_downloads_and_deletes(
    settings: Settings,
    start_worker: Callable[..., Any],
    store: ObjectStore,
    tmp_path: Path,
    identity: IdentityProvider,
) -> None:
    async with _sdk(settings, tmp_path, identity) as (server, client):
        await start_worker(settings)
        photo = ("shoe.png", png(), "image/png")
        metadata = {"metadata": {"sku": "42"}}

        first = await client.videos.create_and_poll(
            prompt=PROMPT, size="256x256", seconds="1", input_reference=photo, extra_body={**FAST, **metadata}
        )
        assert first.status == "completed", first.error
        assert first.object == "video" and first.model == "easyanimate-v5.1" and first.progress == 100
        assert first.prompt == PROMPT and first.size == "256x256"
        # 1 s at 8 fps is 8 frames; EasyAnimate renders 4k+1, so the smallest count lasting that long is 9.
        assert first.seconds == "1.125"
        assert isinstance(first.created_at, int) and isinstance(first.completed_at, int)
        assert first.expires_at is not None  # the view forgets it a retention after its last change
        retention_s = server.settings.retention_s
        assert retention_s - 5 <= first.expires_at - first.completed_at <= retention_s + 60
        extra = first.model_extra or {}
        assert extra["metadata"] == {"sku": "42"} and extra["request"]["num_frames"] == 9

        text_only = await client.videos.create(prompt="a blue mug", size="256x256", seconds="0.5", extra_body=FAST)
        assert text_only.status == "queued"
        text_only = await client.videos.poll(text_only.id)
        assert text_only.status == "completed" and text_only.seconds == "0.625"  # 4 frames asked, 5 rendered

        # The same request again: the worker answers it from its cache, with the first one's objects.
        twin = await client.videos.create_and_poll(
            prompt=PROMPT, size="256x256", seconds="1", input_reference=photo, extra_body={**FAST, **metadata}
        )
        assert (twin.model_extra or {})["cache_hit"] is True
        assert (twin.model_extra or {})["video"]["uri"] == extra["video"]["uri"]

        page = await client.videos.list(limit=2)
        assert [video.id for video in page.data] == [twin.id, text_only.id]
        assert page.has_more is True and page.last_id == text_only.id
        second = await page.get_next_page()
        assert [video.id for video in second.data] == [first.id] and second.has_more is False
        everything = [video.id async for video in client.videos.list(limit=2)]  # auto-pagination
        assert everything == [twin.id, text_only.id, first.id]
        oldest_first = await client.videos.list(limit=3, order="asc")
        assert [video.id for video in oldest_first.data] == [first.id, text_only.id, twin.id]

        mp4 = await client.videos.download_content(first.id)
        poster = await client.videos.download_content(first.id, variant="thumbnail")
        assert _decode_mp4(mp4.content) == (9, 256, 256)
        with Image.open(io.BytesIO(poster.content)) as image:
            assert image.size == (256, 256) and image.format == "JPEG"

        deleted = await client.videos.delete(first.id)
        assert (deleted.id, deleted.object, deleted.deleted) == (first.id, "video.deleted", True)
        with pytest.raises(openai.NotFoundError):
            await client.videos.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            await client.videos.download_content(first.id)
        # The twin shows the same objects: they stay, and its video still plays.
        assert _decode_mp4((await client.videos.download_content(twin.id)).content) == (9, 256, 256)
        video_key = store.key_of(extra["video"]["uri"])
        poster_key = store.key_of(extra["video"]["poster_uri"])
        assert video_key is not None and poster_key is not None

        await client.videos.delete(twin.id)
        assert await store.head(video_key) is None and await store.head(poster_key) is None
        assert [video.id async for video in client.videos.list()] == [text_only.id]


async def test_deleting_queued_jobs_cancels_them_and_a_video_that_comes_anyway_is_deleted(
    settings: Settings,
    start_worker: Callable[..., Any],
    kafka: KafkaClient,
    store: ObjectStore,
    tmp_path: Path,
    identity: IdentityProvider,
) -> None:
    async with _sdk(settings, tmp_path, identity) as (_, client):
        queued = await client.videos.create(prompt=PROMPT, size="256x256", seconds="1", extra_body=FAST)
        late = await client.videos.create(prompt="a green lamp", size="256x256", seconds="1", extra_body=FAST)
        assert queued.status == late.status == "queued"
        for job in (queued, late):
            assert (await client.videos.delete(job.id)).deleted is True
            with pytest.raises(openai.NotFoundError):
                await client.videos.retrieve(job.id)

        # A worker had finished `late` just before the delete reached it: its video and result come all the same.
        keys = object_keys(prefix=settings.s3_key_prefix, tenant_id="shop-1", key="f" * 64, poster_ext="jpeg")
        await store.put(keys.poster, b"poster", content_type="image/jpeg", metadata={})
        await store.put(keys.video, b"video", content_type="video/mp4", metadata={})
        now = datetime.now(UTC)
        video = video_info().model_copy(update={"uri": store.uri(keys.video), "poster_uri": store.uri(keys.poster)})
        result = VideoResult(
            request_id=late.id,
            tenant_id="shop-1",
            status="completed",
            video=video,
            timings={"received_at": now, "completed_at": now},
            worker_id="test-worker",
            model="tiny",
        )
        await kafka.producer.send_and_wait(
            settings.results_topic, key=late.id.encode(), value=result.model_dump_json().encode()
        )

        async def deleted_from_the_bucket() -> bool:
            return await store.head(keys.video) is None and await store.head(keys.poster) is None

        await until(deleted_from_the_bucket)

        # The worker answers both deleted requests `cancelled`, without rendering them.
        await start_worker(settings)
        records = await kafka.read(settings.results_topic, 3)
        answers = [VideoResult.model_validate_json(record.value) for record in records]
        cancelled = {answer.request_id for answer in answers if answer.error and answer.error.code == "cancelled"}
        assert cancelled == {queued.id, late.id}
        assert [video.id async for video in client.videos.list()] == []


async def test_errors_raise_the_sdk_classes_with_code_and_param(
    settings: Settings, tmp_path: Path, identity: IdentityProvider
) -> None:
    async with (
        _sdk(settings, tmp_path, identity, rate_per_s=0.01, burst=12, tenant_max_queued=1) as (server, client),
        _client(server.url, "vgk_not-a-key", max_retries=0) as stranger,
    ):
        with pytest.raises(openai.AuthenticationError) as auth:
            await stranger.videos.list()
        assert auth.value.code == "invalid_token" and auth.value.type == "authentication_error"

        with pytest.raises(openai.NotFoundError) as missing:
            await client.videos.retrieve("vid-" + "0" * 32)
        assert missing.value.code == "not_found"

        cases = [
            ({"model": "sora-2"}, "model", "model_not_found"),
            ({"size": "250x250"}, "size", "invalid_field"),
            ({"seconds": "12"}, "seconds", "invalid_field"),
        ]
        for arguments, param, code in cases:
            with pytest.raises(openai.UnprocessableEntityError) as refused:
                await client.videos.create(prompt=PROMPT, **arguments)
            assert (refused.value.param, refused.value.code, refused.value.type) == (
                param,
                code,
                "invalid_request_error",
            )
            assert (refused.value.body or {}).get("field") == param  # vidgen's own name for it, kept

        with pytest.raises(openai.BadRequestError) as unreadable:
            await client.post(
                "/videos", cast_to=object, content=b"{", options={"headers": {"Content-Type": "application/json"}}
            )
        assert unreadable.value.code == "invalid_json"

        first = await client.videos.create(prompt=PROMPT, extra_headers={"Idempotency-Key": "order-1"})
        with pytest.raises(openai.ConflictError) as reused:
            await client.videos.create(prompt="another prompt", extra_headers={"Idempotency-Key": "order-1"})
        assert reused.value.code == "idempotency_key_reused" and reused.value.param == "Idempotency-Key"
        assert reused.value.response.headers["x-should-retry"] == "false"

        with pytest.raises(openai.InternalServerError) as full:  # the SDK's class for every 5xx
            await client.videos.create(prompt="one more than the tenant may queue")
        assert full.value.status_code == 503 and full.value.code == "queue_full"

        assert first.status == "queued"
        with pytest.raises(openai.RateLimitError) as limited:
            for _ in range(20):
                await client.videos.retrieve(first.id)
        assert limited.value.code == "rate_limited" and limited.value.type == "rate_limit_error"
        assert limited.value.response.headers["x-should-retry"] == "true"


async def test_models_list_the_deployment(settings: Settings, tmp_path: Path, identity: IdentityProvider) -> None:
    async with _sdk(settings, tmp_path, identity, model_id="easyanimate-v5.1-7b") as (_, client):
        models = [model async for model in client.models.list()]
        assert [(model.id, model.object, model.owned_by) for model in models] == [
            ("easyanimate-v5.1-7b", "model", "alibaba-pai"),
            ("template", "model", "vidgen"),
        ]
        details = models[0].model_extra or {}
        assert details["frame_rule"] == "4k+1" and details["max_frames"] == 49 and details["fps"] == 8
        assert details["max_seconds"] == "6.125" and details["sizes"] == {"min": 256, "max": 1024, "multiple": 16}
        assert details["start_image"] is True and details["default"] is True
        assert (await client.models.retrieve("template")).owned_by == "vidgen"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("sora-2")
        job = await client.videos.create(prompt=PROMPT)
        assert job.model == "easyanimate-v5.1-7b" and job.seconds == "3.125" and job.size == "512x512"
