"""Memory on a real CUDA device: the probe, mode switching, and the estimator against measured peaks.

Skipped without CUDA (tests/conftest.py). Uses the tiny pipeline, so it runs in seconds on any GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
from PIL import Image

from consumer.memory.estimate import estimate_bytes
from consumer.memory.modes import MODES, MemoryMode
from consumer.memory.probe import CudaProbe
from consumer.render.module_sizes import profile_pipeline
from consumer.render.offload import apply_mode, current_mode
from consumer.render.tiny import build_tiny_pipeline

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda", 0)


@pytest.fixture
def pipeline() -> Iterator[Any]:
    built = build_tiny_pipeline()
    built.set_progress_bar_config(disable=True)
    built.to(CUDA)
    yield built
    built.remove_all_hooks()
    del built
    torch.cuda.empty_cache()


def _render(pipeline: Any, width: int, height: int, frames: int) -> None:
    video, mask = get_image_to_video_latent(
        Image.new("RGB", (width, height), (200, 40, 40)), None, frames, (height, width)
    )
    with torch.inference_mode():
        pipeline(
            prompt="a red sneaker on a white table",
            negative_prompt="",
            num_frames=frames,
            video=video,
            mask_video=mask,
            height=height,
            width=width,
            num_inference_steps=2,
            guidance_scale=6.0,
            generator=torch.Generator(device="cpu").manual_seed(0),
            output_type="pt",
        )


def test_cuda_probe_reads_the_device() -> None:
    reading = CudaProbe(0).read()
    assert reading.device == "cuda:0"
    assert 0 < reading.free_bytes <= reading.total_bytes
    assert reading.total_bytes == torch.cuda.get_device_properties(0).total_memory


def test_cuda_probe_counts_blocks_torch_keeps_cached_as_free() -> None:
    """After a render its activations stay in torch's cache: used to the driver, yet free for the next render."""
    probe = CudaProbe(0)
    size = 256 << 20
    block = torch.empty(size, dtype=torch.uint8, device=CUDA)
    while_held = probe.read().free_bytes
    del block
    driver_free, _ = torch.cuda.mem_get_info(0)
    assert probe.read().free_bytes - while_held >= 0.9 * size
    assert probe.read().free_bytes > driver_free  # the driver alone still counts the cached block as used
    torch.cuda.empty_cache()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(256, 256, 9), (512, 512, 9), (768, 512, 5)])
def test_estimate_bounds_the_measured_peak(pipeline: Any, mode: MemoryMode, size: tuple[int, int, int]) -> None:
    """The estimate must not promise less than the render takes (admission trusts it) and should not waste more
    than 2x. Allocated bytes only: the caching allocator's slack is the safety margin's job."""
    profile = profile_pipeline(pipeline, name="tiny")
    apply_mode(pipeline, mode, CUDA)
    _render(pipeline, *size)  # warm-up: cuDNN picks its algorithms (and workspaces) on the first call
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    _render(pipeline, *size)
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated()
    estimate = estimate_bytes(*size, 6.0, mode, profile)
    assert measured <= 1.1 * estimate, (mode, size, measured, estimate)
    assert estimate <= 2 * measured, (mode, size, measured, estimate)


def test_modes_switch_back_and_forth_on_cuda(pipeline: Any) -> None:
    for mode in (*MODES, *reversed(MODES)):
        apply_mode(pipeline, mode, CUDA)
        assert current_mode(pipeline) == mode
        _render(pipeline, 128, 128, 5)
    assert {p.device.type for p in pipeline.transformer.parameters()} == {"cuda"}
