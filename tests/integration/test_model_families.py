"""Every model family through the real worker: one worker per family (its tiny model, the real diffusers pipeline
classes) renders an image-to-video and a text-to-video request to playable MP4s, and rejects, naming field and rule,
what its model cannot render and a request routed to it for another model."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import av
import numpy as np
import openai
import pytest
import torch
from openai import AsyncOpenAI

from consumer.core.keys import upload_key
from consumer.dev.demo import product_image
from consumer.errors import ModelUnavailable
from consumer.object_store import ObjectStore
from consumer.render.loader import load_model
from consumer.render.render_spec import RenderSpec
from consumer.settings import Settings
from consumer.settings.messaging import ModelPool
from tests.integration.api_helpers import api_settings, new_key, running_api
from tests.support import KafkaClient, request_body

# Each family's smallest request on its own frame rule (4k+1; LTX-Video 8k+1; CogVideoX 1.5 16k+1 from 17).
FRAMES = {"easyanimate": 5, "wan": 5, "ltx": 9, "hunyuanvideo15": 5, "cogvideox": 17}
RULES = {"easyanimate": "4k+1", "wan": "4k+1", "ltx": "8k+1", "hunyuanvideo15": "4k+1", "cogvideox": "16k+1"}
MODEL_IDS = {
    "easyanimate": "easyanimate-v5.1",
    "wan": "wan-2",
    "ltx": "ltx-video",
    "hunyuanvideo15": "hunyuanvideo-1.5",
    "cogvideox": "cogvideox-1.5",
}
CPU = torch.device("cpu")
SIZE = 64  # tiny models render from 64 px; every family's size multiple divides it (and it is a tiny Hunyuan bucket)


async def _frames_of(url: str) -> tuple[int, int, int]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        mp4 = await response.read()
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(video=0)), stream.width, stream.height


@pytest.mark.parametrize("family", list(FRAMES))
async def test_a_family_worker_renders_both_kinds_and_refuses_what_its_model_cannot(
    family: str,
    settings: Settings,
    kafka: KafkaClient,
    store: ObjectStore,
    start_worker: Callable,
    make_renderer: Callable,
) -> None:
    settings = settings.model_copy(update={"model": f"tiny:{family}"})
    renderer = make_renderer(load_model(settings.model, device=CPU, dtype=torch.float32))
    await start_worker(settings, renderer=renderer)
    image = product_image(SIZE, SIZE)
    key = upload_key(image, "shoe.png", prefix=settings.s3_key_prefix, tenant_id="shop-1")
    await store.put(key, image, content_type="image/png", metadata={})
    frames = FRAMES[family]
    small = {"width": SIZE, "height": SIZE, "num_frames": frames, "fps": 12}
    i2v = request_body(f"{family}-i2v", image_url=f"s3://{settings.s3_bucket}/{key}", **small)
    t2v = request_body(f"{family}-t2v", model=MODEL_IDS[family], **small)
    off_rule = request_body(f"{family}-off-rule", **{**small, "num_frames": frames + 1})
    misrouted = request_body(f"{family}-misrouted", model="another-model", **small)
    for body in (i2v, t2v, off_rule, misrouted):
        await kafka.send(body)

    results = await kafka.results(4, timeout_s=180)

    for body in (i2v, t2v):
        result = results[body["request_id"]]
        assert result.status == "completed", result.error
        assert (result.model, result.model_id) == (f"tiny:{family}", MODEL_IDS[family])
        assert result.video is not None
        assert (result.video.num_frames, result.video.width, result.video.height) == (frames, SIZE, SIZE)
        assert await _frames_of(result.video.url) == (frames, SIZE, SIZE)
    rule = results[off_rule["request_id"]]
    assert rule.status == "rejected" and rule.error is not None
    assert (rule.error.code, rule.error.field) == ("invalid_field", "num_frames")
    assert rule.error.message == f"num_frames must be {RULES[family]} for {family}, got {frames + 1}"
    wrong = results[misrouted["request_id"]]
    assert wrong.status == "rejected" and wrong.error is not None
    assert (wrong.error.code, wrong.error.field, wrong.model_id) == ("model_not_served", "model", MODEL_IDS[family])
    assert wrong.timings.render_started_at is None  # never rendered on the wrong model


@pytest.mark.parametrize("family", ["wan", "ltx", "hunyuanvideo15", "cogvideox"])
async def test_a_saved_folder_is_read_as_its_family(family: str, tmp_path: Path, make_renderer: Callable) -> None:
    """What `save_pretrained` writes is a diffusers folder: its model_index.json names the pipeline class, which
    picks the family; the loaded checkpoint serves the kind its class names (both for Wan 2.2 TI2V and LTX-Video)."""
    tiny = load_model(f"tiny:{family}", device=CPU, dtype=torch.float32)
    main = tiny.pipelines.t2v
    main.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), device=CPU, dtype=torch.float32)
    assert loaded.adapter is tiny.adapter and loaded.model_id == MODEL_IDS[family]
    assert loaded.rules is not None and loaded.rules.text_to_video
    assert loaded.rules.start_image == (family in ("wan", "ltx"))  # one checkpoint, both kinds
    spec = RenderSpec("a red shoe", "", SIZE, SIZE, FRAMES[family], 2, 5.0, seed=1, fps=12)
    from_folder, built = make_renderer(loaded), make_renderer(tiny)
    for renderer in (from_folder, built):
        await renderer.start()
    saved, made = [(await r.render(spec, None, timeout_s=120)).frames.astype(np.int16) for r in (from_folder, built)]
    assert int(np.abs(saved - made).max()) <= 1  # the same weights (LTX-Video: 1e-6 of float round-off apart)


def test_an_unsupported_family_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelUnavailable) as raised:
        load_model(str(tmp_path), device=CPU, dtype=torch.float32)
    message = raised.value.message
    assert "\n" not in message and "StableDiffusionPipeline" in message
    for name in ("easyanimate", "wan", "ltx", "hunyuanvideo15", "cogvideox"):
        assert f"{name} (" in message
    with pytest.raises(ModelUnavailable, match="tiny:<family>, one of easyanimate, wan"):
        load_model("tiny:sora", device=CPU, dtype=torch.float32)


@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")  # the SDK's notice on `videos`, not ours
async def test_the_job_api_routes_a_job_to_its_models_pool(
    settings: Settings, kafka: KafkaClient, tmp_path: Path
) -> None:
    """The real job API with a Wan pool beside the default one: `GET /v1/models` lists it with its family's rules, a
    job breaking them is refused before anything is published, and a valid one lands on the pool's topic naming its
    model (which a Wan worker serving another id would refuse: the first test)."""
    pool_topic = f"{settings.requests_topic}.wan"
    settings = settings.model_copy(update={"model_pools": (ModelPool(id="wan-2", family="wan", topic=pool_topic),)})
    api = api_settings(tmp_path, None)
    key = new_key(api, "shop-1")
    async with (
        running_api(settings, api) as server,
        AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as client,
    ):
        assert [model.id async for model in client.models.list()] == ["easyanimate-v5.1", "wan-2", "template"]
        wan = (await client.models.retrieve("wan-2")).model_extra or {}
        assert (wan["family"], wan["frame_rule"], wan["fps"], wan["max_frames"]) == ("wan", "4k+1", 24, 121)
        with pytest.raises(openai.UnprocessableEntityError) as broken:
            await client.videos.create(prompt="a red shoe", model="wan-2", extra_body={"num_frames": 10})
        assert (broken.value.code, broken.value.param) == ("invalid_field", "num_frames")
        assert broken.value.message.endswith(" - num_frames must be 4k+1 for wan, got 10")  # the SDK adds its prefix
        with pytest.raises(openai.UnprocessableEntityError) as unknown:
            await client.videos.create(prompt="a red shoe", model="sora-2")
        assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")
        job = await client.videos.create(prompt="a red shoe", model="wan-2", size="256x256", seconds="1")
        assert job.model == "wan-2" and job.seconds == "1.042"  # 25 frames (4k+1) at 24 fps: never shorter

    [record] = await kafka.read(pool_topic, 1)
    published = json.loads(record.value)
    assert (published["model"], published["num_frames"], published["width"]) == ("wan-2", 25, 256)
    assert (await kafka.read_to_end(settings.requests_topic))[0] == []  # nothing went to the default pool
