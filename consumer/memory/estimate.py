"""Peak device memory of one image-to-video render, from first principles plus a few measured coefficients.

A render runs four phases one after the other; the peak is the largest phase (weights on the device during the
phase + that phase's activations + the full-size frame buffers the pipeline keeps alive throughout):

    text     W_text_on + A_text                    prompt through Qwen2-VL (fixed: 256 padded tokens)
    encode   W_encode_on + A_enc + B_frames        VAE encodes the masked start video (image-to-video)
    denoise  W_denoise_on + A_dit + B_frames       the transformer, once per step (the peak repeats, never grows)
    decode   W_decode_on + A_dec + B_frames        VAE decodes the latents

Activations (element size e = the profile's activation dtype, 2 for bf16):
    F_lat  = (F - 1) // 4 + 1                      MagVIT: 4x temporal compression, first frame alone
    N      = F_lat * (H // (8p)) * (W // (8p))     8x spatial compression, then p x p patches (p = 2)
    B      = 2 if guidance_scale > 1 else 1        classifier-free guidance runs cond + uncond as one batch
    A_dit  = 13 * B * (N + 256) * D * e            D = hidden size (3072); the 256 text tokens join the sequence
             + 3 * B * (N + 256) * D * e           with the step cache on: the residual, the previous step's
                                                   modulated input and the stack's input, kept across the block stack
    A_dec  = 21.5 * C * 4 * P * e                  C = VAE width (128); it decodes one latent frame (4 frames)
    A_enc  = 12 * C * 4 * P * e                    at a time, encodes 4 frames at a time
    P      = H * W, or min(H, 512) * min(W, 512) when the VAE tiles (every mode but `resident`)
    B_frames = 48 * F * H * W                      fp32 video, mask and masked video from preprocessing + output

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

Where the numbers come from:
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

DIT_FACTOR = 13.0
STEP_CACHE_FACTOR = 3.0  # step-cache tensors carried between denoising steps (consumer/render/step_cache.py)
VAE_DECODE_FACTOR = 21.5
VAE_ENCODE_FACTOR = 12.0
FRAME_BUFFER_BYTES = 48  # per pixel per frame


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
    return latent_frames * (height // cell) * (width // cell)


def estimate(  # noqa: PLR0917 - the agreed signature: the request's numbers, then mode and model
    width: int, height: int, num_frames: int, guidance_scale: float, mode: MemoryMode, model: ModelMemoryProfile
) -> MemoryEstimate:
    batch = 2 if guidance_scale > 1 else 1
    tokens = latent_tokens(width, height, num_frames, model) + model.text_tokens
    dit_factor = DIT_FACTOR + (STEP_CACHE_FACTOR if model.step_cache else 0.0)
    a_dit = int(dit_factor * batch * tokens * model.hidden_size * model.activation_bytes)
    pixels = width * height
    if mode != MemoryMode.RESIDENT:  # every other mode tiles the VAE
        pixels = min(width, model.vae_tile) * min(height, model.vae_tile)
    vae_unit = model.vae_channels * model.temporal_compression * pixels * model.activation_bytes
    a_enc = int(VAE_ENCODE_FACTOR * vae_unit)
    a_dec = int(VAE_DECODE_FACTOR * vae_unit)
    frames = FRAME_BUFFER_BYTES * num_frames * width * height
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
