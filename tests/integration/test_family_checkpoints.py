"""Checkpoints of the other families' renders: a text-to-video render of each family's tiny model handed back after a
step resumes, through the checkpoint file's bytes, on a fresh renderer to the same frames bit for bit; and a family
whose step hook shows no latents (HunyuanVideo-1.5) is not checkpointed at all, so its renders run as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from consumer.errors import RenderHandedBack
from consumer.render.loader import load_model
from consumer.render.renderer import Renderer
from tests.unit.test_render_checkpoints import SPEC, _render, _session, _through_bytes

pytestmark = pytest.mark.timeout(300)

CPU = torch.device("cpu")


@pytest.mark.parametrize(("family", "frames"), [("wan", 9), ("ltx", 9), ("cogvideox", 17)])
async def test_a_family_render_handed_back_resumes_bit_for_bit(family: str, frames: int) -> None:
    spec = dataclasses.replace(SPEC, num_frames=frames, steps=4)
    first = Renderer(lambda: load_model(f"tiny:{family}", device=CPU, dtype=torch.float32))
    resuming = Renderer(lambda: load_model(f"tiny:{family}", device=CPU, dtype=torch.float32))
    try:
        await first.start()
        assert first.checkpointable
        uninterrupted = await _render(first, spec=spec)
        stopping = _session(hand_back_at=2)
        with pytest.raises(RenderHandedBack):
            await _render(first, stopping, spec=spec)
        assert stopping.interrupted is not None and stopping.interrupted.steps_done == 2
        steps: list[int] = []
        resumed = await _render(resuming, _session(resume=_through_bytes(stopping.interrupted)), steps, spec=spec)
        assert steps == [3, 4]
        assert np.array_equal(resumed, uninterrupted)
    finally:
        first.close()
        resuming.close()


async def test_a_family_whose_hook_shows_no_latents_is_not_checkpointed() -> None:
    renderer = Renderer(lambda: load_model("tiny:hunyuanvideo15", device=CPU, dtype=torch.float32))
    try:
        await renderer.start()
        assert not renderer.checkpointable
    finally:
        renderer.close()
