"""Memory: estimator, admission decisions, probes, memory modes on the tiny pipeline, and the benchmark's smoke run."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
import torch
from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
from PIL import Image
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from consumer.errors import ModeUnsupported
from consumer.memory.admission import Admit, MemoryReading, Reject, SafetyMargin, Wait, decide, usable_bytes
from consumer.memory.estimate import STEP_CACHE_FACTOR, estimate, estimate_bytes, estimate_per_mode, latent_tokens
from consumer.memory.modes import MODES, MemoryMode, more_frugal, supported_modes
from consumer.memory.probe import CpuBudgetProbe, CudaProbe, ScriptedProbe, process_rss_bytes
from consumer.memory.profile import (
    EASYANIMATE_V51_7B,
    V51_7B_INP_TRANSFORMER_CONFIG,
    V51_VAE_CONFIG,
    ModelMemoryProfile,
)
from consumer.render.module_sizes import module_bytes, profile_pipeline
from consumer.render.offload import apply_mode, current_mode
from consumer.render.step_cache import StepCache
from consumer.render.tiny import build_tiny_pipeline

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

GIB = 1 << 30
MIB = 1 << 20
V51 = EASYANIMATE_V51_7B
CPU = torch.device("cpu")


# --- estimator -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_profile() -> ModelMemoryProfile:
    return profile_pipeline(build_tiny_pipeline(), name="tiny")


@pytest.mark.parametrize("mode", MODES)
def test_estimate_grows_with_width_height_and_frames(mode: MemoryMode, tiny_profile: ModelMemoryProfile) -> None:
    for profile in (V51, tiny_profile):
        widths = heights = range(256, 1025, 128)
        for frames in (1, 9, 25, 49):
            row = [estimate_bytes(w, 512, frames, 5.0, mode, profile) for w in widths]
            column = [estimate_bytes(512, h, frames, 5.0, mode, profile) for h in heights]
            assert row == sorted(row) and column == sorted(column)
        by_frames = [estimate_bytes(512, 512, f, 5.0, mode, profile) for f in range(1, 50, 4)]
        assert by_frames == sorted(by_frames)
        assert by_frames[-1] > by_frames[0]


def test_classifier_free_guidance_doubles_transformer_activations() -> None:
    with_cfg = estimate(672, 384, 49, 6.0, MemoryMode.MODEL_OFFLOAD, V51)
    without = estimate(672, 384, 49, 1.0, MemoryMode.MODEL_OFFLOAD, V51)
    assert abs(with_cfg.transformer_activation_bytes - 2 * without.transformer_activation_bytes) <= 1
    assert with_cfg.denoise_bytes - without.denoise_bytes == pytest.approx(without.transformer_activation_bytes, abs=1)
    assert with_cfg.decode_bytes == without.decode_bytes  # the VAE never sees the guidance batch


def test_the_step_cache_adds_what_it_carries_between_steps() -> None:
    cached_profile = dataclasses.replace(V51, step_cache=True)
    exact = estimate(672, 384, 49, 6.0, MemoryMode.RESIDENT, V51)
    cached = estimate(672, 384, 49, 6.0, MemoryMode.RESIDENT, cached_profile)
    tokens = latent_tokens(672, 384, 49, V51) + V51.text_tokens
    carried = STEP_CACHE_FACTOR * 2 * tokens * V51.hidden_size * V51.activation_bytes  # CFG: batch of 2
    assert cached.denoise_bytes - exact.denoise_bytes == pytest.approx(carried, abs=1)
    assert cached.decode_bytes == exact.decode_bytes  # freed after the last step, before the VAE decodes


def test_the_profile_knows_whether_the_step_cache_is_on() -> None:
    pipeline = build_tiny_pipeline()
    assert not profile_pipeline(pipeline).step_cache
    StepCache([pipeline.transformer], 0.1)
    assert profile_pipeline(pipeline).step_cache


def test_modes_are_ordered_by_memory(tiny_profile: ModelMemoryProfile) -> None:
    for profile, (w, h, f) in itertools.product(
        (V51, tiny_profile), itertools.product((256, 512, 768, 1024, 1344), (256, 384, 768, 1024), (1, 25, 49))
    ):
        estimates = [estimate_bytes(w, h, f, 6.0, mode, profile) for mode in MODES]
        assert estimates == sorted(estimates, reverse=True), (profile.name, w, h, f)
    big = estimate_per_mode(1024, 1024, 49, 6.0, V51)
    assert big[MemoryMode.RESIDENT] > big[MemoryMode.VAE_TILING] > big[MemoryMode.MODEL_OFFLOAD]
    assert big[MemoryMode.MODEL_OFFLOAD] > big[MemoryMode.SEQUENTIAL_OFFLOAD]


def test_vae_tiling_caps_the_vae_at_one_tile() -> None:
    small = estimate(512, 512, 25, 6.0, MemoryMode.VAE_TILING, V51)
    large = estimate(1024, 1024, 25, 6.0, MemoryMode.VAE_TILING, V51)
    untiled = estimate(1024, 1024, 25, 6.0, MemoryMode.RESIDENT, V51)
    # Only the full-size frame buffers grow once the VAE tiles; untiled, its activations grow 4x with the pixels.
    assert large.decode_bytes - small.decode_bytes == large.frame_buffer_bytes - small.frame_buffer_bytes
    assert untiled.decode_bytes > large.decode_bytes + 15 * GIB


# Total memory of the cards behind the upstream table, as nvidia-smi reports them (V100 16 GB, A10 24 GB,
# A100 40 GB SXM); the 80 GB row uses 80 * 10^9 bytes, below any 80 GB card.
CARD = {16: 16_160 * MIB, 24: 23_028 * MIB, 40: 40_536 * MIB, 80: 80 * 10**9}
UPSTREAM_SIZES = [(672, 384, 25), (672, 384, 49), (1008, 576, 25), (1008, 576, 49), (1344, 768, 25), (1344, 768, 49)]


def _fits(size: tuple[int, int, int], mode: MemoryMode, card_gb: int) -> bool:
    width, height, frames = size
    # Upstream runs at its default guidance (6.0), so classifier-free guidance doubles the transformer batch.
    return estimate_bytes(width, height, frames, 6.0, mode, V51) <= usable_bytes(CARD[card_gb], SafetyMargin())


def test_agrees_with_the_upstream_v51_7b_memory_table() -> None:
    """EasyAnimate's README table for V5.1-7B, with the default safety margin.

    Upstream marks what runs with model_cpu_offload (its fastest listed mode) on each card. Everything it says
    fits, fits here. Of what it says does not fit in model offload, the estimate agrees where no VAE tiling can
    rescue it (a 16 GB card cannot hold the 16.6 GB text encoder; 768x1344x49 on 24 GB); it disagrees on
    576x1008x49 and 768x1344x25 on 24 GB, which it calls fp8-only: upstream measured its own code without VAE tiling,
    our model_offload mode tiles.
    """
    fits_model_offload = {24: UPSTREAM_SIZES[:3], 40: UPSTREAM_SIZES, 80: UPSTREAM_SIZES}
    for card, sizes in fits_model_offload.items():
        for size in sizes:
            assert _fits(size, MemoryMode.MODEL_OFFLOAD, card), (card, size)
    for size in UPSTREAM_SIZES:
        assert not _fits(size, MemoryMode.MODEL_OFFLOAD, 16), size
    assert not _fits((1344, 768, 49), MemoryMode.MODEL_OFFLOAD, 24)
    # Sequential offload runs 576x1008 on 16 GB there; it does here too.
    for size in UPSTREAM_SIZES[:4]:
        assert _fits(size, MemoryMode.SEQUENTIAL_OFFLOAD, 16), size
    # Whole model resident (~30.7 GB of bf16 weights) needs the 80 GB card for everything.
    for size in UPSTREAM_SIZES:
        assert _fits(size, MemoryMode.RESIDENT, 80), size
        assert not _fits(size, MemoryMode.RESIDENT, 24), size


def test_v51_profile_matches_the_published_configs() -> None:
    """The hard-coded V5.1-7B weight bytes are the parameter counts of its configs, built on the meta device."""
    with torch.device("meta"):
        transformer = EasyAnimateTransformer3DModel(**V51_7B_INP_TRANSFORMER_CONFIG)
        vae = AutoencoderKLMagvit(**V51_VAE_CONFIG)
        text = Qwen2VLForConditionalGeneration(_qwen2_vl_7b_config())

    def params(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert V51.transformer_bytes == 2 * params(transformer)
    assert V51.vae_bytes == 2 * params(vae)
    assert V51.text_encoder_bytes == 2 * params(text) == 2 * 8_291_375_616  # Qwen2-VL-7B's published size
    assert V51.largest_layer_bytes == 2 * text.get_input_embeddings().weight.numel()
    assert V51.hidden_size == transformer.config.num_attention_heads * transformer.config.attention_head_dim


def _qwen2_vl_7b_config() -> Qwen2VLConfig:
    # Qwen/Qwen2-VL-7B-Instruct config.json, reduced to the fields that decide the parameter count.
    text = {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": False,
    }
    vision = {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "mlp_ratio": 4, "num_heads": 16, "patch_size": 14}
    return Qwen2VLConfig(text_config=text, vision_config=vision, vocab_size=152064, tie_word_embeddings=False)


def test_profile_for_pipeline_weighs_the_loaded_modules(tiny_profile: ModelMemoryProfile) -> None:
    pipeline = build_tiny_pipeline()
    assert tiny_profile.transformer_bytes == module_bytes(pipeline.transformer) > 0
    assert tiny_profile.text_encoder_bytes == module_bytes(pipeline.text_encoder) > 0
    assert tiny_profile.vae_bytes == module_bytes(pipeline.vae) > 0
    assert tiny_profile.hidden_size == 32 and tiny_profile.vae_channels == 4 and tiny_profile.activation_bytes == 4
    assert 0 < tiny_profile.largest_layer_bytes < tiny_profile.weights_bytes
    assert tiny_profile.text_activation_bytes > 0
    halved = profile_pipeline(pipeline.to(dtype=torch.bfloat16))
    assert halved.transformer_bytes == tiny_profile.transformer_bytes // 2
    assert halved.activation_bytes == 2


# --- admission -------------------------------------------------------------------------------------------------


def _reading(free_gib: float, total_gib: float = 80) -> MemoryReading:
    return MemoryReading(int(free_gib * GIB), int(total_gib * GIB), "cuda:0")


NO_MARGIN = SafetyMargin(bytes=0, fraction=0)
EST = {
    MemoryMode.RESIDENT: 40 * GIB,
    MemoryMode.VAE_TILING: 36 * GIB,
    MemoryMode.MODEL_OFFLOAD: 20 * GIB,
    MemoryMode.SEQUENTIAL_OFFLOAD: 8 * GIB,
}


def test_admits_the_fastest_mode_that_fits_the_device() -> None:
    assert decide(_reading(79), EST, margin=NO_MARGIN) == Admit(MemoryMode.RESIDENT, 40 * GIB)
    assert decide(_reading(24, 24), EST, margin=NO_MARGIN) == Admit(MemoryMode.MODEL_OFFLOAD, 20 * GIB)
    assert decide(_reading(16, 16), EST, margin=NO_MARGIN) == Admit(MemoryMode.SEQUENTIAL_OFFLOAD, 8 * GIB)


def test_waits_when_free_memory_is_short_but_the_device_is_big_enough() -> None:
    decision = decide(_reading(30), EST, margin=NO_MARGIN)  # another process holds 50 GiB
    assert isinstance(decision, Wait)
    assert decision.mode == MemoryMode.RESIDENT and decision.estimate == 40 * GIB  # no downgrade: wait for it
    assert "resident" in decision.reason


def test_reserved_renders_count_against_the_device() -> None:
    assert isinstance(decide(_reading(79), EST, reserved_bytes=50 * GIB, margin=NO_MARGIN), Wait)
    assert decide(_reading(79), EST, reserved_bytes=40 * GIB, margin=NO_MARGIN) == Admit(MemoryMode.RESIDENT, 40 * GIB)


def test_weights_the_worker_already_holds_are_not_counted_twice() -> None:
    # The idle resident pipeline (30 GiB) is out of `free`, and the 40 GiB estimate counts it again.
    assert isinstance(decide(_reading(20), EST, margin=NO_MARGIN), Wait)
    assert decide(_reading(20), EST, held_bytes=30 * GIB, margin=NO_MARGIN) == Admit(MemoryMode.RESIDENT, 40 * GIB)


def test_rejects_what_no_mode_fits_on_the_device() -> None:
    decision = decide(_reading(6, 6), EST, margin=NO_MARGIN)
    assert isinstance(decision, Reject)
    assert decision.code == "too_large_for_worker"
    assert "sequential_offload" in decision.message and "6.0 GiB" in decision.message


def test_forced_mode_is_respected() -> None:
    forced = MemoryMode.MODEL_OFFLOAD
    assert decide(_reading(79), EST, forced=forced, margin=NO_MARGIN) == Admit(forced, 20 * GIB)
    rejected = decide(_reading(24, 24), EST, forced=MemoryMode.RESIDENT, margin=NO_MARGIN)
    assert isinstance(rejected, Reject) and "'resident'" in rejected.message
    with pytest.raises(ValueError, match="no estimate"):
        decide(_reading(79), {MemoryMode.RESIDENT: GIB}, forced=forced)
    with pytest.raises(ModeUnsupported, match="cannot run it"):
        decide(_reading(79), EST, forced=forced, allowed=supported_modes("cpu"))


def test_only_allowed_modes_are_chosen() -> None:
    cpu_modes = supported_modes("cpu")
    assert decide(_reading(30, 30), EST, allowed=cpu_modes, margin=NO_MARGIN) == Reject(
        "needs 36.0 GiB in its most frugal mode (vae_tiling); this worker's cuda:0 has 30.0 GiB usable of 30.0 GiB"
    )
    assert decide(_reading(37, 37), EST, allowed=cpu_modes, margin=NO_MARGIN) == Admit(MemoryMode.VAE_TILING, 36 * GIB)


def test_safety_margin_bytes_and_fraction() -> None:
    margin = SafetyMargin(bytes=GIB, fraction=0.05)
    assert margin.of(20 * GIB) == 2 * GIB
    assert usable_bytes(20 * GIB, margin) == 18 * GIB
    exact = {MemoryMode.RESIDENT: 18 * GIB}
    assert decide(_reading(20, 20), exact, margin=margin) == Admit(MemoryMode.RESIDENT, 18 * GIB)
    assert isinstance(decide(_reading(20, 20), {MemoryMode.RESIDENT: 18 * GIB + 1}, margin=margin), Reject)
    # The margin also applies to what is free now: 19 GiB free leaves 17 usable, so the 18 GiB render waits.
    assert isinstance(decide(_reading(19, 20), exact, margin=margin), Wait)


def test_admission_over_a_cpu_budget_probe() -> None:
    reserved: list[int] = []
    probe = CpuBudgetProbe(10 * GIB, lambda: sum(reserved))
    estimates = {MemoryMode.RESIDENT: 4 * GIB, MemoryMode.VAE_TILING: 3 * GIB}

    def admit() -> Any:
        decision = decide(probe.read(), estimates, reserved_bytes=sum(reserved), margin=NO_MARGIN)
        if isinstance(decision, Admit):
            reserved.append(decision.estimate)
        return decision

    assert admit() == Admit(MemoryMode.RESIDENT, 4 * GIB)
    assert admit() == Admit(MemoryMode.RESIDENT, 4 * GIB)
    assert isinstance(admit(), Wait)  # 2 GiB left: no downgrade, the fastest mode is worth waiting for
    reserved.pop()
    assert admit() == Admit(MemoryMode.RESIDENT, 4 * GIB)


# --- probes ----------------------------------------------------------------------------------------------------


def test_cpu_budget_probe_accounts_for_reservations_and_rss() -> None:
    used = [0]
    probe = CpuBudgetProbe(8 * GIB, lambda: used[0])
    assert probe.read() == MemoryReading(8 * GIB, 8 * GIB, "cpu")
    used[0] = 3 * GIB
    assert probe.read().free_bytes == 5 * GIB
    used[0] = 9 * GIB
    assert probe.read().free_bytes == 0  # over budget reads as nothing free, never negative
    with_rss = CpuBudgetProbe(8 * GIB, lambda: GIB, rss_fn=lambda: 2 * GIB)
    assert with_rss.read().free_bytes == 5 * GIB
    with pytest.raises(ValueError, match="positive"):
        CpuBudgetProbe(0)


def test_process_rss_is_read_from_the_system() -> None:
    assert process_rss_bytes() > 10 * MIB  # this process has torch loaded


def test_scripted_probe_plays_back_then_repeats_and_can_be_set() -> None:
    probe = ScriptedProbe([_reading(1), _reading(2)])
    assert [probe.read().free_bytes // GIB for _ in range(3)] == [1, 2, 2]
    probe.set(free_bytes=5 * GIB)
    assert probe.read() == _reading(5)
    assert probe.reads == 4
    with pytest.raises(ValueError, match="at least one"):
        ScriptedProbe([])


def test_cuda_probe_rejects_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        CudaProbe(backend="rocm")


# --- modes -----------------------------------------------------------------------------------------------------


def test_more_frugal_walks_down_to_sequential_offload_then_stops() -> None:
    chain = [MemoryMode.RESIDENT]
    while (nxt := more_frugal(chain[-1])) is not None:
        chain.append(nxt)
    assert (
        chain
        == list(MODES)
        == [
            MemoryMode.RESIDENT,
            MemoryMode.VAE_TILING,
            MemoryMode.MODEL_OFFLOAD,
            MemoryMode.SEQUENTIAL_OFFLOAD,
        ]
    )
    assert MemoryMode("model_offload") is MemoryMode.MODEL_OFFLOAD  # settings parse the value


def test_supported_modes_per_device() -> None:
    assert supported_modes("cpu") == (MemoryMode.RESIDENT, MemoryMode.VAE_TILING)
    assert supported_modes(torch.device("cuda", 1).type) == MODES


def test_apply_mode_toggles_vae_tiling_on_the_tiny_pipeline() -> None:
    pipeline = build_tiny_pipeline()
    assert current_mode(pipeline) == MemoryMode.RESIDENT
    apply_mode(pipeline, MemoryMode.VAE_TILING, CPU)
    assert pipeline.vae.use_tiling and pipeline.vae.use_slicing
    assert current_mode(pipeline) == MemoryMode.VAE_TILING
    apply_mode(pipeline, MemoryMode.VAE_TILING, CPU)  # idempotent
    assert current_mode(pipeline) == MemoryMode.VAE_TILING
    apply_mode(pipeline, MemoryMode.RESIDENT, CPU)
    assert not pipeline.vae.use_tiling and not pipeline.vae.use_slicing
    assert current_mode(pipeline) == MemoryMode.RESIDENT


@pytest.mark.parametrize("mode", [MemoryMode.MODEL_OFFLOAD, MemoryMode.SEQUENTIAL_OFFLOAD])
def test_offload_modes_are_refused_on_cpu_before_touching_the_pipeline(mode: MemoryMode) -> None:
    pipeline = build_tiny_pipeline()
    with pytest.raises(ModeUnsupported, match="accelerator") as raised:
        apply_mode(pipeline, mode, "cpu")
    assert raised.value.code == "memory_mode_unsupported"
    assert current_mode(pipeline) == MemoryMode.RESIDENT
    assert not hasattr(pipeline.transformer, "_hf_hook")


def _render(pipeline: Any) -> torch.Tensor:
    video, mask = get_image_to_video_latent(Image.new("RGB", (64, 64), (200, 40, 40)), None, 5, (64, 64))
    pipeline.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        frames: torch.Tensor = pipeline(
            prompt="a red sneaker",
            negative_prompt="",
            num_frames=5,
            video=video,
            mask_video=mask,
            height=64,
            width=64,
            num_inference_steps=1,
            guidance_scale=5.0,
            generator=torch.Generator(device="cpu").manual_seed(0),
            output_type="pt",
        ).frames
    return frames


@pytest.mark.parametrize("offload", ["enable_model_cpu_offload", "enable_sequential_cpu_offload"])
def test_apply_mode_brings_an_offloaded_pipeline_back_to_resident(offload: str) -> None:
    """Offload hooks can be installed on a CPU when the device is passed explicitly; that is enough to check that
    leaving an offload mode removes every hook and restores the same weights (sequential offload parks them on
    the meta device)."""
    pipeline = build_tiny_pipeline()
    before = _render(pipeline)
    getattr(pipeline, offload)(device="cpu")
    expected = MemoryMode.MODEL_OFFLOAD if offload == "enable_model_cpu_offload" else MemoryMode.SEQUENTIAL_OFFLOAD
    assert current_mode(pipeline) == expected
    apply_mode(pipeline, MemoryMode.RESIDENT, CPU)
    assert current_mode(pipeline) == MemoryMode.RESIDENT
    assert all(not hasattr(m, "_hf_hook") for m in pipeline.transformer.modules())
    assert {p.device.type for p in pipeline.transformer.parameters()} == {"cpu"}
    assert torch.equal(_render(pipeline), before)


# --- benchmark -------------------------------------------------------------------------------------------------
