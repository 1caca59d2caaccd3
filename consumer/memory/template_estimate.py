"""Peak memory of one template-pool job (`VIDGEN_MODEL=template`), from its admission until it is answered. Pure.

A template job has no model and no device: its memory is its frames, in the worker's own RAM (and in its cgroup), and
they outlive the render: the 8-bit frames are encoded and the MP4 uploaded after the renderer is free. So the
template pool's gate reserves a job's peak from admission until its answer, and counts the start image's decode too
(P = width x height, F = frames):

    decode   only with a start image, and over before the frames exist: the sandbox child may add
             `VIDGEN_IMAGE_DECODE_MEMORY_BYTES` to its interpreter and Pillow (DECODE_CHILD_BYTES), while the worker
             holds the downloaded bytes (at most `VIDGEN_IMAGE_MAX_BYTES`) and hands them over a pipe
    render   the pipeline's float32 frames (12 F P), the start image at its source size (1.25^2 x 3 = 4.7 P) and its
             working copy, or the title card's float64 gradient at that size (~60 P, a moment)
    convert  the float32 frames and their 8-bit copy (15 F P), one frame's float32 temporary (12 P)
    encode   the 8-bit frames (3 F P), the encoder's frames in flight (x264's look-ahead: ~4.5 P per frame, at most
             ~48) and the MP4 (under 0.5 F P even for noise): always under the convert phase

    peak = max(decode, FRAME_BYTES x F x P + PIXEL_BYTES x P + JOB_BYTES)

Measured with psutil (RSS) over the renderer's own phases on a 2-core CPU: 12.0-12.4 bytes per pixel-frame while
rendering (a start image or a title card), 14.9-15.6 while converting; a 256x256x1 title card 44 bytes per pixel; the
encoder 67 bytes per pixel at 1024x1024x9, 220 at 1024x1024x49 (frames of noise, the MP4 included).
`bench/template_memory.py` measures a whole template worker process at full concurrency.
"""

from __future__ import annotations

__all__ = [
    "DECODE_CHILD_BYTES",
    "FRAME_BYTES",
    "JOB_BYTES",
    "PIXEL_BYTES",
    "decode_bytes",
    "frames_bytes",
    "template_job_bytes",
]

FRAME_BYTES = 15  # per pixel per frame: float32 frames beside their 8-bit copy while converting
PIXEL_BYTES = 128  # per pixel of one frame: start image at source size, its working copy, the title card, a temporary
JOB_BYTES = 16 << 20  # the encoder's own state, PyAV frames, the poster, the result's Python objects
DECODE_CHILD_BYTES = 64 << 20  # the sandbox child's interpreter and Pillow, besides what a decode may add


def frames_bytes(width: int, height: int, num_frames: int) -> int:
    """Peak of a job's render, conversion and encode."""
    pixels = width * height
    return FRAME_BYTES * num_frames * pixels + PIXEL_BYTES * pixels + JOB_BYTES


def decode_bytes(*, decode_memory_bytes: int, image_max_bytes: int) -> int:
    """Peak of one start-image decode: the sandbox child at its limit, and the download it decodes."""
    return decode_memory_bytes + DECODE_CHILD_BYTES + image_max_bytes


def template_job_bytes(width: int, height: int, num_frames: int, *, decode: int | None) -> int:
    """What admission reserves for a template job; `decode` is `decode_bytes(...)` for a job with a start image,
    None for a title card. The decode ends before the frames exist, so the larger of the two is the job's peak."""
    return max(frames_bytes(width, height, num_frames), decode or 0)
