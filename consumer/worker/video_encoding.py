"""8-bit frames to H.264 MP4 and a poster image. CPU-bound: callers run these in a thread."""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from typing import Literal

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["POSTER_TYPES", "encode_mp4", "encode_poster"]

POSTER_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp"}


def encode_mp4(frames: NDArray[np.uint8], *, fps: int, crf: int = 18) -> bytes:
    """H.264 High, yuv420p (plays everywhere), moov atom first (faststart) so browsers stream it at once."""
    # faststart rewrites the file after the last frame, which FFmpeg can only do on a real file.
    with tempfile.TemporaryDirectory(prefix="vidgen-") as folder:
        path = f"{folder}/video.mp4"
        _write_mp4(path, frames, fps=fps, crf=crf)
        with open(path, "rb") as file:
            return file.read()


def _write_mp4(path: str, frames: NDArray[np.uint8], *, fps: int, crf: int) -> None:
    count, height, width, _ = frames.shape
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(frames[index], format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def encode_poster(frame: NDArray[np.uint8], *, fmt: Literal["jpeg", "webp"]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buffer, format=fmt.upper(), quality=90)
    return buffer.getvalue()
