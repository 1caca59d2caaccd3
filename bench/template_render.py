"""The template renderer's cost next to its floor, the H.264 encoder, measured on the same frames in one run.

For each video size (default 512x512x25, 256x256x25, 1024x576x49) and both kinds of template video (a Ken Burns
move over a photo, a title card without one), it times what the worker's render thread would do: the template
pipeline's call and the renderer's conversion to 8 bits (`to_uint8`), excluding the start image's decode and fit
(done in the image sandbox, timed apart below) and `get_image_to_video_latent` (outside the render lock). Then it
encodes those very frames with the worker's encoder (`encode_mp4`, libx264 preset medium, CRF 18).

Figures per step: frames per second of wall time and per core (frames / CPU seconds of this process, all its
threads: libx264 runs several), best of `--repeats`, and the template's per-core rate over the encoder's
(> 1: rendering costs less CPU than encoding the result). `start_image_fit` compares the sandbox's fit of a 12 MP
photo to the frame (today) and to `source_size` (what the template pipeline resamples from).

    python -m bench.template_render [--size WxHxF ...] [--repeats 3] [--output F]

Prints one JSON report.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
from numpy.typing import NDArray
from PIL import Image

from bench.infra import machine_info
from consumer.images.decoding import fit_image
from consumer.render.render_spec import to_uint8
from consumer.render.template import TemplatePipeline, source_size
from consumer.worker.video_encoding import encode_mp4

__all__ = ["main", "measure"]

SIZES = ((512, 512, 25), (256, 256, 25), (1024, 576, 49))
PHOTO_SIZE = (4000, 3000)  # a 12 MP camera photo
FPS = 8
STEPS = 30  # the contract's default num_inference_steps: one step callback per group of frames


def photo(width: int, height: int) -> Image.Image:
    """Photo-like content (smooth shapes and grain): H.264's cost depends on it, the template's does not."""
    rng = np.random.default_rng(0)
    shapes = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    grain = rng.normal(0, 5, (height, width, 1))
    return Image.fromarray(np.uint8(np.clip(np.asarray(shapes) + grain, 0, 255)))


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
    """(result, best wall seconds, best CPU seconds of this process) over `repeats` calls."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, min(walls), min(cpus)


def render(size: tuple[int, int, int], original: Image.Image | None) -> Callable[[], NDArray[np.uint8]]:
    """One render as the worker's render thread runs it, inputs prepared beforehand as the worker does."""
    width, height, frames = size
    fitted = None if original is None else fit_image(original, width, height)
    source = None if original is None else fit_image(original, *source_size(width, height))
    video, mask = get_image_to_video_latent(fitted, None, frames, (height, width))
    pipeline = TemplatePipeline()

    def run() -> NDArray[np.uint8]:
        output = pipeline(
            prompt="A red sneaker slowly turning on a white studio table, soft light, product shot",
            num_frames=frames,
            height=height,
            width=width,
            num_inference_steps=STEPS,
            video=video,
            mask_video=mask,
            generator=torch.Generator(device="cpu").manual_seed(7),
            callback_on_step_end=lambda _pipe, _step, _t, tensors: tensors,
            source_image=source,
        )
        return to_uint8(output.frames[0])

    return run


def measure_size(size: tuple[int, int, int], original: Image.Image | None, repeats: int) -> dict[str, Any]:
    frames_count = size[2]
    frames, render_wall, render_cpu = timed(render(size, original), repeats)
    _, encode_wall, encode_cpu = timed(lambda: encode_mp4(frames, fps=FPS), repeats)
    template_per_core, encoder_per_core = frames_count / render_cpu, frames_count / encode_cpu
    return {
        "template": {
            "cpu_s_per_video": round(render_cpu, 4),
            "wall_s_per_video": round(render_wall, 4),
            "fps_per_core": round(template_per_core, 1),
            "fps_wall": round(frames_count / render_wall, 1),
        },
        "encoder": {
            "cpu_s_per_video": round(encode_cpu, 4),
            "wall_s_per_video": round(encode_wall, 4),
            "fps_per_core": round(encoder_per_core, 1),
            "fps_wall": round(frames_count / encode_wall, 1),
        },
        "template_over_encoder_per_core": round(template_per_core / encoder_per_core, 2),
    }


def measure(sizes: Sequence[tuple[int, int, int]] = SIZES, *, repeats: int = 3) -> dict[str, Any]:
    original = photo(*PHOTO_SIZE)
    runs = []
    for size in sizes:
        width, height, frames = size
        for kind, start in (("ken_burns", original), ("title_card", None)):
            runs.append({"width": width, "height": height, "num_frames": frames, "kind": kind})
            runs[-1].update(measure_size(size, start, repeats))
    fits = []
    for width, height, _ in sizes:
        _, _, today = timed(functools.partial(fit_image, original, width, height), repeats)
        _, _, larger = timed(functools.partial(fit_image, original, *source_size(width, height)), repeats)
        fits.append(
            {
                "width": width,
                "height": height,
                "source_size": list(source_size(width, height)),
                "cpu_s_fit_to_frame": round(today, 4),
                "cpu_s_fit_to_source_size": round(larger, 4),
            }
        )
    return {
        "benchmark": "template_render",
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "fps": FPS,
        "steps": STEPS,
        "runs": runs,
        "start_image_fit": {"photo": list(PHOTO_SIZE), "sizes": fits},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", action="append", help="WxHxF, repeatable (default: 512x512x25 256x256x25 1024x576x49)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is reported")
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    sizes = [_parse_size(text) for text in args.size] if args.size else SIZES
    report = measure(sizes, repeats=args.repeats)
    print(json.dumps(report, indent=2))
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _parse_size(text: str) -> tuple[int, int, int]:
    width, height, frames = (int(part) for part in text.lower().split("x"))
    return width, height, frames


if __name__ == "__main__":
    raise SystemExit(main())
