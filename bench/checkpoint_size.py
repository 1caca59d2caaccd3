"""Benchmark: a render checkpoint's size and write time per model family, at full size.

For each family's typical full-size render, the state a checkpoint holds is built with the real shapes and dtypes
(the loop latents as the diffusers 0.42 pipeline allocates them, and the real scheduler class after
`set_timesteps`, its multistep history filled as it is mid-render) and written the way a worker writes one: copied to
the CPU, serialised (`consumer.render.checkpoint_format.encode`), uploaded to an S3 server on loopback (moto, in its
own process). Without a GPU the device-to-host copy is estimated from the bytes at `--d2h-gbps` (PCIe 5.0 x16 pinned
memory reaches ~50 GB/s, pageable copies ~10-25 GB/s); on a GPU run `--device cuda` to time it.

    python -m bench.checkpoint_size [--repeat 5] [--device cpu] [--d2h-gbps 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import (
    CogVideoXDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from bench.infra import embedded_infra, machine_info, new_run
from consumer.object_store import ObjectStore, open_s3_client
from consumer.render.checkpoint_format import encode
from consumer.render.checkpointing import RenderState

__all__ = ["FAMILIES", "main", "measure"]

STEPS = 50
BINDING = "0" * 64


@dataclass(frozen=True)
class Family:
    name: str
    size: str  # W x H x frames
    latents: tuple[int, ...]  # as the pipeline's denoising loop holds them
    dtype: torch.dtype
    scheduler: str  # "flow_match", "unipc" or "dpm"


FAMILIES = (
    # (F-1)/4+1 latent frames, H/8 x W/8, 16 channels; the pipeline allocates latents in the prompt's dtype (bf16).
    Family("easyanimate_v51", "1344x768x49", (1, 16, 13, 96, 168), torch.bfloat16, "flow_match"),
    # WanPipeline allocates float32 latents; UniPC keeps two model outputs and the last sample.
    Family("wan21_i2v_14b_480p", "832x480x81", (1, 16, 21, 60, 104), torch.float32, "unipc"),
    Family("wan21_i2v_14b_720p", "1280x720x81", (1, 16, 21, 90, 160), torch.float32, "unipc"),
    Family("wan22_ti2v_5b", "1280x704x121", (1, 48, 31, 44, 80), torch.float32, "unipc"),
    # LTX packs latents into tokens: (F-1)/8+1 x H/32 x W/32 tokens of 128 channels, float32.
    Family("ltx_2b_095", "704x512x161", (1, 21 * 16 * 22, 128), torch.float32, "flow_match"),
    Family("hunyuanvideo15_480p", "848x480x121", (1, 32, 31, 30, 53), torch.bfloat16, "flow_match"),
    Family("hunyuanvideo15_720p", "1280x720x121", (1, 32, 31, 45, 80), torch.bfloat16, "flow_match"),
    # Frame-major (B, F, C, H, W), F padded to even; DPM keeps the previous pred_original_sample and draws noise.
    Family("cogvideox15_5b", "1360x768x81", (1, 22, 16, 96, 170), torch.bfloat16, "dpm"),
)


def state_of(family: Family, *, device: torch.device, at_step: int = STEPS // 2) -> tuple[RenderState, torch.Tensor]:
    """The state mid-render (on `device`), and the latents to copy to the CPU as a capture does."""
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(family.latents, generator=generator).to(device, family.dtype)
    if family.scheduler == "unipc":
        scheduler: Any = UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        )
    elif family.scheduler == "dpm":
        scheduler = CogVideoXDPMScheduler()
    else:
        scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(STEPS)
    if family.scheduler == "unipc":
        scheduler.model_outputs = [latents.float().clone(), latents.float().clone()]
        scheduler.timestep_list = [scheduler.timesteps[at_step - 1], scheduler.timesteps[at_step]]
        scheduler.last_sample = latents.float().clone()
        scheduler.lower_order_nums, scheduler.this_order = 2, 2
    scheduler._step_index = at_step
    attributes = {key: value for key, value in vars(scheduler).items() if key != "_internal_dict"}
    state = RenderState(
        steps_done=at_step,
        total_steps=STEPS,
        latents=latents,
        scheduler=attributes,
        generator=generator.get_state() if family.scheduler == "dpm" else None,
        extra={"old_pred_original_sample": latents.clone()} if family.scheduler == "dpm" else {},
    )
    return state, latents


def _on_cpu(state: RenderState) -> RenderState:
    """What the render thread does at a capture: every tensor copied off the device."""

    def copied(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", copy=True)
        if isinstance(value, list):
            return [copied(item) for item in value]
        return value

    return RenderState(
        state.steps_done,
        state.total_steps,
        copied(state.latents),
        {key: copied(value) for key, value in state.scheduler.items()},
        state.generator,
        {key: copied(value) for key, value in state.extra.items()},
    )


async def measure(*, repeat: int, device: torch.device, d2h_gbps: float) -> dict[str, Any]:
    rows = []
    with embedded_infra() as infra:
        settings = new_run(infra, "ckpt-size")
        async with open_s3_client(settings) as client:
            store = ObjectStore(client, bucket=settings.s3_bucket, presign_ttl_s=3600)
            await store.ensure_bucket()
            for family in FAMILIES:
                rows.append(await _family(store, family, repeat=repeat, device=device, d2h_gbps=d2h_gbps))
    return {
        "benchmark": "checkpoint_size",
        "machine": machine_info(),
        "device": str(device),
        "repeat": repeat,
        "steps": STEPS,
        "d2h_copy": "measured" if device.type == "cuda" else f"estimated at {d2h_gbps} GB/s",
        "families": rows,
    }


async def _family(
    store: ObjectStore, family: Family, *, repeat: int, device: torch.device, d2h_gbps: float
) -> dict[str, Any]:
    state, latents = state_of(family, device=device)
    copies, encodes, uploads = [], [], []
    size = 0
    for index in range(repeat):
        started = time.perf_counter()
        on_cpu = _on_cpu(state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        copies.append(time.perf_counter() - started)
        started = time.perf_counter()
        data = await asyncio.to_thread(encode, on_cpu, binding=BINDING, trace=None)
        encodes.append(time.perf_counter() - started)
        size = len(data)
        started = time.perf_counter()
        await store.put(f"checkpoints/{family.name}-{index}.safetensors", data, content_type="x", metadata={})
        uploads.append(time.perf_counter() - started)
    latent_bytes = latents.numel() * latents.element_size()
    copy_s = statistics.median(copies) if device.type == "cuda" else size / (d2h_gbps * 1e9)
    return {
        "family": family.name,
        "size": family.size,
        "latents_shape": list(family.latents),
        "latents_dtype": str(family.dtype).removeprefix("torch."),
        "scheduler": family.scheduler,
        "latents_mb": round(latent_bytes / 1e6, 2),
        "checkpoint_mb": round(size / 1e6, 2),
        "render_thread_copy_ms": round(copy_s * 1000, 2),
        "serialise_ms": round(statistics.median(encodes) * 1000, 1),
        "upload_ms_loopback_s3": round(statistics.median(uploads) * 1000, 1),
        "write_ms_total": round((statistics.median(encodes) + statistics.median(uploads)) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--d2h-gbps", type=float, default=12.0, help="device-to-host copy rate assumed on a CPU run")
    args = parser.parse_args(argv)
    report = asyncio.run(measure(repeat=args.repeat, device=torch.device(args.device), d2h_gbps=args.d2h_gbps))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
