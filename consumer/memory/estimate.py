"""Peak device memory of one render, from first principles plus a few measured coefficients per model family.

A render runs four phases one after the other; the peak is the largest phase (weights on the device during the
phase + that phase's activations + the full-size frame buffers the pipeline keeps alive throughout):

    text     W_text_on + A_text                    prompt through the text encoder (padded to a fixed length)
    encode   W_encode_on + A_enc + B_frames        VAE encodes the start image or masked start video
    denoise  W_denoise_on + A_dit + B_frames       the transformer, once per step (the peak repeats, never grows)
    decode   W_decode_on + A_dec + B_frames        VAE decodes the latents

Activations (element size e = the profile's activation dtype, 2 for bf16; k_* = the family's coefficients in
`consumer/memory/coefficients.py`, shown with EasyAnimate's values):
    F_lat  = (F - 1) // t + 1                      t = temporal compression (4; LTX-Video 8), first frame alone
    N      = ceil(F_lat / pt) * (H // (s p)) * (W // (s p))
                                                   s = spatial compression (8), p x p patches (2), pt latent frames
                                                   per token (1; CogVideoX 1.5: 2, padded)
    B      = 2 if guidance_scale > 1 and k_cfg_batched else 1
                                                   classifier-free guidance as one batch of cond + uncond
    A_dit  = k_dit (13) * B * (N + T) * D * e      D = hidden size (3072); T = the text tokens (256) when they join
                                                   the sequence (k_joint_text), else 0
             + 3 * B * (N + T) * D * e             with the step cache on: the residuals it keeps between steps
    A_dec  = k_decode (21.5) * C * f * P * e       C = VAE width (128); f = frames decoded at once: t x
    A_enc  = k_encode (12) * C * f * P * e         k_decode_chunk latent frames (4), or all F
    P      = H * W, or min(H, tile) * min(W, tile) when the VAE tiles (every mode but `resident`)
    B_frames = k_frame_buffer (48) * F * H * W     fp32 video, mask and masked video from preprocessing + output

Attention costs no N x N matrix: the transformer calls F.scaled_dot_product_attention without a mask, which
dispatches to flash / memory-efficient kernels (O(N) memory); 13 covers q, k, v, their text-joined copies, the
fp32 rotary and layer-norm temporaries and the 4x-wide feed-forward.

Weights on the device per phase (W_t, W_e, W_v = transformer, text encoder, VAE):
    resident, vae_tiling: all of them in every phase
    model_offload: text W_e; encode W_e + W_v (the offload chain text_encoder->transformer->vae only evicts the
        text encoder when the transformer runs, so it is still there while the VAE encodes); denoise W_t + W_v;
        decode W_v
    sequential_offload: one layer at a time, bounded by the largest (Qwen2-VL's 1.09 GB token embedding for
        V5.1-7B) and by the model-offload figure of the phase

Where the numbers come from (EasyAnimate's; the other families' in consumer/memory/coefficients.py):
    measured  13, 21.5, 12, 48: torch.profiler CPU allocation timelines (diffusers 0.42.1, torch 2.13): the
              transformer at D = 512 and 1024 (12.7-13.1 in fp32 and bf16), the full-size MagVIT VAE with random
              weights at 64-192 px (decode 21.3, encode 11.6; the tiny VAE gives 17.3 and 15), the whole tiny
              pipeline for the frame buffers (41-46 B per pixel-frame). CUDA adds cuDNN workspaces and allocator
              fragmentation; the admission safety margin covers those and the CUDA context.
    config    D, p, C, compressions, tile size, 256 tokens, and weight bytes (see profile.py).
Cross-check with the upstream EasyAnimate V5.1-7B table (tests/test_memory.py): everything it says fits with
model_cpu_offload fits here; it was measured with upstream's own code and no VAE tiling, and where it says a size
does *not* fit on 24 GB (576x1008x49, 768x1344x25) this estimate, which tiles, says it does.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.memory.modes import MemoryMode
from consumer.memory.profile import ModelMemoryProfile

__all__ = ["MemoryEstimate", "estimate", "estimate_bytes", "estimate_per_mode", "latent_tokens"]

STEP_CACHE_FACTOR = 3.0  # step-cache tensors carried between denoising steps (consumer/render/step_cache.py)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per phase (weights on the device included); `peak_bytes` is what admission reserves."""

    mode: MemoryMode
    text_bytes: int
    encode_bytes: int
    denoise_bytes: int
    decode_bytes: int
    transformer_activation_bytes: int
    frame_buffer_bytes: int

    @property
    def peak_bytes(self) -> int:
        return max(self.text_bytes, self.encode_bytes, self.denoise_bytes, self.decode_bytes)


def latent_tokens(width: int, height: int, num_frames: int, model: ModelMemoryProfile) -> int:
    latent_frames = (num_frames - 1) // model.temporal_compression + 1
    cell = model.spatial_compression * model.patch_size
    return -(-latent_frames // model.patch_size_t) * (height // cell) * (width // cell)


def estimate(  # noqa: PLR0917 - the agreed signature: the request's numbers, then mode and model
    width: int, height: int, num_frames: int, guidance_scale: float, mode: MemoryMode, model: ModelMemoryProfile
) -> MemoryEstimate:
    k = model.activations
    batch = 2 if guidance_scale > 1 and k.cfg_batched else 1
    tokens = latent_tokens(width, height, num_frames, model) + (model.text_tokens if k.joint_text else 0)
    dit_factor = k.dit + (STEP_CACHE_FACTOR if model.step_cache else 0.0)
    a_dit = int(dit_factor * batch * tokens * model.hidden_size * model.activation_bytes)
    pixels = width * height
    if mode != MemoryMode.RESIDENT:  # every other mode tiles the VAE
        pixels = min(width, model.vae_tile) * min(height, model.vae_tile)
    at_once = num_frames if k.decode_chunk is None else k.decode_chunk * model.temporal_compression
    vae_unit = model.vae_channels * at_once * pixels * model.activation_bytes
    a_enc = int(k.vae_encode * vae_unit)
    a_dec = int(k.vae_decode * vae_unit)
    frames = k.frame_buffer * num_frames * width * height
    w_text, w_enc, w_dit, w_dec = _weights_on_device(mode, model)
    return MemoryEstimate(
        mode=mode,
        text_bytes=w_text + model.text_activation_bytes,
        encode_bytes=w_enc + a_enc + frames,
        denoise_bytes=w_dit + a_dit + frames,
        decode_bytes=w_dec + a_dec + frames,
        transformer_activation_bytes=a_dit,
        frame_buffer_bytes=frames,
    )


def estimate_bytes(  # noqa: PLR0917 - the agreed signature, positional like estimate()
    width: int, height: int, num_frames: int, guidance_scale: float, mode: MemoryMode, model: ModelMemoryProfile
) -> int:
    """Peak device bytes of one render in `mode`."""
    return estimate(width, height, num_frames, guidance_scale, mode, model).peak_bytes


def estimate_per_mode(
    width: int, height: int, num_frames: int, guidance_scale: float, model: ModelMemoryProfile
) -> dict[MemoryMode, int]:
    """The input admission wants: the peak of this request in every mode."""
    return {mode: estimate_bytes(width, height, num_frames, guidance_scale, mode, model) for mode in MemoryMode}


def _weights_on_device(mode: MemoryMode, model: ModelMemoryProfile) -> tuple[int, int, int, int]:
    """Weight bytes on the device during (text, encode, denoise, decode)."""
    if mode in (MemoryMode.RESIDENT, MemoryMode.VAE_TILING):
        return (model.weights_bytes,) * 4
    text, dit, vae = model.text_encoder_bytes, model.transformer_bytes, model.vae_bytes
    if mode == MemoryMode.MODEL_OFFLOAD:
        return text, text + vae, dit + vae, vae
    # One layer of the running component at a time, which is never more than that component.
    layer = model.largest_layer_bytes
    return min(layer, text), min(layer, text + vae), min(layer, dit + vae), min(layer, vae)
