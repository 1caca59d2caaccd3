"""Settings of what a render reads and writes: object storage (`StorageSettings`), start images
(`ImageSettings`), the model (`RenderSettings`) and device memory (`MemorySettings`)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consumer.settings.values import split_csv

__all__ = ["ImageSettings", "MemorySettings", "RenderSettings", "StorageSettings"]


class StorageSettings(BaseSettings):
    """Object storage: where videos and posters go, and where start images may come from."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    s3_endpoint_url: str = Field("", description="S3-compatible endpoint; empty means AWS.")
    s3_region: str = "us-east-1"
    s3_bucket: str = "vidgen-videos"
    s3_create_bucket: bool = Field(False, description="Create the bucket at start-up if it is missing.")
    s3_key_prefix: str = Field("", description="Prefix of every object key the worker writes.")
    s3_image_buckets: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Shared buckets start images may come from, readable by every tenant; from the output bucket a "
        "request reads only its tenant's upload folder.",
    )
    presign_ttl_s: int = Field(3_600, ge=60, le=604_800, description="Lifetime of presigned URLs.")

    @field_validator("s3_image_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        return split_csv(value)


class ImageSettings(BaseSettings):
    """Start images: download and decoding limits."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    image_max_bytes: int = Field(20 * 1024 * 1024, ge=1_024, description="Largest start image download.")
    image_max_pixels: int = Field(40_000_000, ge=1, description="Largest decoded start image (bomb guard).")
    image_max_decoded_bytes: int = Field(
        160_000_000,
        ge=1,
        description="Largest decoded start image in bytes (pixels x bands x bytes per sample), checked before "
        "decoding.",
    )
    image_decode_memory_bytes: int = Field(
        768 * 1024 * 1024,
        ge=64 * 1024 * 1024,
        description="Memory one start-image decode may add; decoding runs in a child process that is stopped past "
        "it (`image_too_large`).",
    )
    image_decode_cpu_s: int = Field(
        5,
        ge=1,
        description="CPU seconds one start-image decode may use (`image_too_large` past them); its wall-clock limit "
        "is twice this plus 1 s.",
    )
    image_timeout_s: float = Field(20.0, gt=0, description="Read timeout of start-image downloads.")
    image_max_redirects: int = Field(3, ge=0, le=10)
    image_host_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="If set, https start images only from these hosts (`.example.com` covers subdomains)."
    )

    @field_validator("image_host_allowlist", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return split_csv(value)


class RenderSettings(BaseSettings):
    """The model, its device and precision, and the speed levers."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    model: str = Field(
        "tiny",
        description="`tiny`, a local diffusers folder of EasyAnimate V5.1 InP, a Hugging Face id, `template` (no "
        "model: a Ken Burns move over the start image or a title card, on a CPU; results say `degraded: true`; reads "
        "the template pool's topics in its group unless they are set), or `standin`.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto`: CUDA when torch sees a GPU.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="`auto`: bfloat16 on CUDA, float32 on CPU."
    )
    render_timeout_s: float = Field(
        1_800.0, gt=0, description="A render running longer is stopped; also the cap of a request's own deadline."
    )
    torch_compile: bool = Field(False, description="torch.compile the transformer (GPU; pair with a warm-up).")
    torch_compile_backend: str = Field("inductor", description="torch.compile backend (`eager` only checks wiring).")
    step_cache_threshold: float = Field(
        0.0,
        ge=0,
        description="Step caching (TeaCache): skip the transformer on denoising steps whose accumulated input change "
        "stays under this; 0 = off. Upstream suggests 0.08-0.1 for V5.1-7B. Changes the output.",
    )
    fp8: bool = Field(
        False,
        description="FP8 matmuls (torchao float8 dynamic activations and weights, per row) in the transformer blocks. "
        "Needs a CUDA GPU of compute capability 8.9+ (Ada, Hopper), bfloat16 and the `fp8` extra. Changes the output.",
    )
    warmup: str = Field(
        "", description="`WxHxF`: render once at start-up (2 steps) so compilation and autotuning precede requests."
    )
    standin_render_s: float = Field(
        1.0, ge=0, description="Only with VIDGEN_MODEL=standin (benchmarks, fault tests): seconds each render holds."
    )
    poster_format: Literal["jpeg", "webp"] = Field("jpeg", description="Poster image (first frame) format.")

    @field_validator("warmup")
    @classmethod
    def _warmup_size(cls, value: str) -> str:
        if value and not re.fullmatch(r"\d+x\d+x\d+", value):
            raise ValueError("must look like 512x512x25 (width x height x frames)")
        return value


class MemorySettings(BaseSettings):
    """Device memory: modes, margins, the probe, and a CPU worker's budget."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    memory_mode: Literal["auto", "resident", "vae_tiling", "model_offload", "sequential_offload"] = Field(
        "auto", description="`auto`: per request, the fastest mode that fits the device's total memory."
    )
    memory_margin_bytes: int = Field(1 << 30, ge=0, description="Device memory never planned for (CUDA context).")
    memory_margin_fraction: float = Field(
        0.05, ge=0, lt=1, description="Plus this share of the device (fragmentation)."
    )
    memory_probe: Literal["torch", "nvml"] = Field("torch", description="How free GPU memory is read.")
    cpu_memory_budget_bytes: int | None = Field(
        None,
        ge=1,
        description="On a CPU-only worker, admit renders against this budget. Unset: the memory limit (cgroup, else "
        "total memory) less what the worker holds once its model is loaded and less the memory start-image decodes "
        "may take beside a render. A template worker admits whole jobs (frames, encoder, decode) against it.",
    )
    cgroup_root: str = Field("/sys/fs/cgroup", description="Where cgroups are mounted (the CPU memory budget's limit).")
    oom_downgrade: bool = Field(True, description="On CUDA out-of-memory, retry once in a more frugal memory mode.")
