"""A render stopped at a step boundary and resumed is the same render: the real EasyAnimate inpaint pipeline with tiny
weights (64x64, 9 frames, 6 steps), through the renderer, its state written to bytes and read back by a freshly built
pipeline as another worker would; the frames are identical to an uninterrupted render's, bit for bit, on a CPU."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler
from numpy.typing import NDArray

from consumer.errors import CheckpointRejected, RenderHandedBack, RenderPreempted
from consumer.render.checkpoint_format import decode, encode
from consumer.render.checkpointing import RenderState, supports_checkpoints
from consumer.render.loader import load_model
from consumer.render.render_spec import RenderSpec
from consumer.render.renderer import Renderer
from consumer.render.standin import StandInPipeline
from consumer.render.step_checkpoints import CheckpointSignals, StepCheckpoints
from consumer.render.tiny import build_tiny_pipeline

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

SPEC = RenderSpec(prompt="a red fox", negative_prompt="", width=64, height=64, num_frames=9, steps=6,
                  guidance_scale=5.0, seed=3)  # fmt: skip
BINDING = "0f" * 32


def _unipc() -> object:
    pipeline = build_tiny_pipeline()
    # A multistep solver (Wan's): its step history is part of the state.
    pipeline.scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return pipeline


@pytest.fixture(params=["flow_match_euler", "unipc"])
async def renderers(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Renderer]]:
    """Fresh renderers of the tiny model, each with its own pipeline (a worker that resumes builds its own)."""
    made: list[Renderer] = []

    def make() -> Renderer:
        renderer = Renderer(build_tiny_pipeline if request.param == "flow_match_euler" else _unipc)
        made.append(renderer)
        return renderer

    yield make
    for renderer in made:
        renderer.close()


def _session(
    *,
    resume: RenderState | None = None,
    hand_back_at: int = 0,
    pause_at: int = 0,
    saved: list[RenderState] | None = None,
) -> StepCheckpoints:
    steps = itertools.count(1)
    seen = {"step": 0}

    def after(limit: int) -> Callable[[], bool]:
        return lambda: 0 < limit <= seen["step"]

    def counting_hand_back() -> bool:
        seen["step"] = next(steps) + (resume.steps_done if resume else 0)
        return after(hand_back_at)()

    clock = itertools.count()  # every step is a full interval later
    return StepCheckpoints(
        resume=resume,
        interval_s=1.0 if saved is not None else 0.0,
        signals=CheckpointSignals(pause=after(pause_at), hand_back=counting_hand_back),
        saved=(saved.append if saved is not None else lambda _: None),
        clock=lambda: float(next(clock)),
    )


async def _render(
    renderer: Renderer,
    session: StepCheckpoints | None = None,
    steps: list[int] | None = None,
    *,
    spec: RenderSpec = SPEC,
) -> NDArray[np.float32]:
    await renderer.start()
    heard = steps if steps is not None else []
    rendered = await renderer.render_float(
        spec, None, timeout_s=120, checkpoints=session, on_progress=lambda step, _total: heard.append(step)
    )
    return rendered.frames


def _through_bytes(state: RenderState) -> RenderState:
    """As if stored in object storage and read back by another worker."""
    return decode(encode(state, binding=BINDING, trace=None), binding=BINDING).state


@pytest.mark.parametrize("at_step", [1, 3, 5])
async def test_a_render_handed_back_resumes_on_another_worker_bit_for_bit(
    renderers: Callable[[], Renderer], at_step: int
) -> None:
    first = renderers()
    uninterrupted = await _render(first)
    stopping = _session(hand_back_at=at_step)
    with pytest.raises(RenderHandedBack):
        await _render(first, stopping)
    assert stopping.interrupted is not None and stopping.interrupted.steps_done == at_step

    steps: list[int] = []
    resumed = await _render(renderers(), _session(resume=_through_bytes(stopping.interrupted)), steps)
    assert steps == list(range(at_step + 1, SPEC.steps + 1))  # only the steps left, counted from the first
    assert np.array_equal(resumed, uninterrupted)


async def test_a_paused_render_resumes_from_memory_bit_for_bit(renderers: Callable[[], Renderer]) -> None:
    renderer = renderers()
    uninterrupted = await _render(renderer)
    pausing = _session(pause_at=2)
    with pytest.raises(RenderPreempted):
        await _render(renderer, pausing)
    assert pausing.interrupted is not None
    assert np.array_equal(await _render(renderer, _session(resume=pausing.interrupted)), uninterrupted)


async def test_a_periodic_checkpoint_resumes_bit_for_bit_and_the_render_goes_on(
    renderers: Callable[[], Renderer],
) -> None:
    renderer = renderers()
    saved: list[RenderState] = []
    uninterrupted = await _render(renderer, _session(saved=saved))  # captures along the way change nothing
    assert [state.steps_done for state in saved] == [1, 2, 3, 4, 5]  # every step but the last
    assert np.array_equal(await _render(renderers(), _session(resume=_through_bytes(saved[3]))), uninterrupted)


async def test_a_checkpoint_of_another_render_is_refused_inside_the_call() -> None:
    renderer = Renderer(build_tiny_pipeline)
    try:
        stopping = _session(hand_back_at=2)
        with pytest.raises(RenderHandedBack):
            await _render(renderer, stopping)
        state = stopping.interrupted
        assert state is not None
        with pytest.raises(CheckpointRejected, match="schedule does not reach"):
            await _render(renderer, _session(resume=RenderState(2, 6, state.latents, {}, None)))
        state.latents = torch.zeros(1, 4, 5, 8, 8)  # a longer video's
        with pytest.raises(CheckpointRejected, match="latents"):
            await _render(renderer, _session(resume=state))
        assert renderer.state == "ready"  # refused, not broken
    finally:
        renderer.close()


async def test_the_stand_in_is_checkpointed_like_a_model_and_the_template_is_not() -> None:
    standin = Renderer(lambda: StandInPipeline(0.06))
    try:
        uninterrupted = await _render(standin)
        stopping = _session(hand_back_at=4)
        with pytest.raises(RenderHandedBack):
            await _render(standin, stopping)
        state = stopping.interrupted
        assert state is not None and state.latents.shape == (1, 16, 3, 8, 8)  # shaped as EasyAnimate's latents
        steps: list[int] = []
        assert np.array_equal(await _render(standin, _session(resume=_through_bytes(state)), steps), uninterrupted)
        assert steps == [5, 6]
    finally:
        standin.close()
    template = load_model("template", device=torch.device("cpu"), dtype=torch.float32).pipeline
    assert supports_checkpoints(StandInPipeline(0.1)) and not supports_checkpoints(template)
