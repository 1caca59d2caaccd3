"""FP8 matmuls are refused clearly where they cannot run (any CPU); the drift on a real GPU is in tests/gpu/."""

from __future__ import annotations

import pytest
import torch

from consumer.errors import ModelUnavailable
from consumer.render.fp8 import fp8_unsupported_reason
from consumer.render.loader import load_model
from consumer.render.renderer import Renderer
from consumer.render.standin import StandInPipeline

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    ("device", "capability", "dtype", "installed", "reason"),
    [
        (CPU, None, torch.bfloat16, True, "CUDA GPU with compute capability 8.9"),
        (CUDA, (8, 0), torch.bfloat16, True, "this GPU has 8.0"),
        (CUDA, (9, 0), torch.float16, True, "bfloat16 weights only"),
        (CUDA, (9, 0), torch.bfloat16, False, "`fp8` extra"),
    ],
)
def test_each_reason_fp8_cannot_run_is_named(
    device: torch.device, capability: tuple[int, int] | None, dtype: torch.dtype, installed: bool, reason: str
) -> None:
    found = fp8_unsupported_reason(device, capability, dtype, torchao_installed=installed)
    assert found is not None and reason in found and "VIDGEN_FP8" in found


@pytest.mark.parametrize("capability", [(8, 9), (9, 0), (10, 0)])
def test_ada_hopper_and_later_in_bfloat16_can(capability: tuple[int, int]) -> None:
    assert fp8_unsupported_reason(CUDA, capability, torch.bfloat16, torchao_installed=True) is None


async def test_fp8_on_a_cpu_fails_the_renderer_at_start_up() -> None:
    renderer = Renderer(lambda: load_model("tiny", device=CPU, dtype=torch.bfloat16, fp8=True))
    try:
        with pytest.raises(ModelUnavailable, match="VIDGEN_FP8 needs a CUDA GPU"):
            await renderer.start()
        assert renderer.state == "failed"
    finally:
        renderer.close()


def test_the_stand_in_ignores_fp8() -> None:
    model = load_model("standin", device=CPU, dtype=torch.float32, standin_render_s=0, fp8=True)
    assert isinstance(model.pipeline, StandInPipeline)
