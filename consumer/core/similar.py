"""The similar-video fallback's rules: which earlier video of a tenant shows the same product as a new request's start
image. Pure: the hashes are computed at the edge (`consumer.api.submission.image_print`), stored by the view
(`consumer.api.view.similar_index`), and judged here.

A start image is known by its **print**: the SHA-256 of its bytes, its 64-bit perceptual hash (imagehash's `phash`:
the low frequencies of its DCT above or below their median, so a JPEG re-encode or a resize of one photo keeps nearly
every bit) and the mean colours of its four quarters (the hash sees grey levels only: a red and a green sneaker of
one shape have one hash). Two images are the same product photo when their SHA-256 are equal, or when their
perceptual hashes differ in at most `MAX_DISTANCE` bits, no quarter's colour channel differs by more than
`MAX_COLOR_DIFFERENCE`, and both hashes are `informative` (a flat image has a degenerate hash that would match every
other flat image: only its exact bytes match it).

The lookup is indexed by **bands** (multi-index hashing): the 64 bits cut into `MAX_DISTANCE + 1` slices, each
stored as a key of its own. Two hashes within `MAX_DISTANCE` bits agree on at least one whole slice (pigeonhole), so
the candidates are the rows sharing a key with the new print, a few rows however many the tenant has.

Among the matches of the tenant's completed, non-degraded videos, the answer is the most recent one whose aspect
ratio is the request's (a 9:16 video never answers a 16:9 request). The answer (`similar_answer`) is the new
request's result naming that video, published by the edge that found it (the job API, or the product hook, which
matches by shop and product id instead: `producer_examples.product_videos`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from schemas.events import Timings, VideoRequest, VideoResult

__all__ = [
    "BANDS",
    "COLOR_BYTES",
    "MAX_COLOR_DIFFERENCE",
    "MAX_DISTANCE",
    "PRINT_HEADER",
    "Candidate",
    "ImagePrint",
    "best_match",
    "index_keys",
    "same_aspect",
    "same_image",
    "similar_answer",
]

PRINT_HEADER = "vidgen-image-print"
"""Header of a request record the API published with an uploaded start image: its print (`ImagePrint.text`)."""
HASH_BITS = 64
MAX_DISTANCE = 4
"""The most bits two perceptual hashes may differ in and still be one photo. Of 300 generated product photos
(`python -m bench.similar_match`), a JPEG re-encode differs from its original in at most 2 bits and a downscale to
60 % in at most 6 (3 of 300 over 4: those get the template video instead, the safe side); 15 of the 44,850 pairs of
distinct photos differ in 2-4 bits, which the colours tell apart."""
MAX_COLOR_DIFFERENCE = 8
"""The most a quarter's mean colour channel (0-255) may differ between two copies of one photo: copies measured at
most 3; distinct photos within `MAX_DISTANCE` bits of each other at least 12."""
COLOR_BYTES = 12  # four quarters, RGB
BANDS = MAX_DISTANCE + 1
_MIN_BITS, _MAX_BITS = 12, HASH_BITS - 12  # an informative hash has at least this many bits set, and at most
_PRINT_TEXT = re.compile(rf"[0-9a-fA-F]{{64}}\.[0-9a-fA-F]{{{HASH_BITS // 4}}}\.[0-9a-fA-F]{{{COLOR_BYTES * 2}}}")


@dataclass(frozen=True)
class ImagePrint:
    sha256: str  # hex
    phash: int  # 64 bits, as imagehash's phash gives them (first bit most significant)
    colors: bytes  # the mean R, G, B of the top left, top right, bottom left and bottom right quarters

    @property
    def text(self) -> str:
        """`<sha256 hex>.<phash: 16 hex digits>.<colours: 24 hex digits>`: the header's value."""
        return f"{self.sha256}.{self.phash:016x}.{self.colors.hex()}"

    @classmethod
    def of_text(cls, text: str) -> ImagePrint | None:
        """The print a header names; None when it is not one (anything else is ignored)."""
        if _PRINT_TEXT.fullmatch(text) is None:
            return None
        sha256, phash, colors = text.split(".")
        return cls(sha256.lower(), int(phash, 16), bytes.fromhex(colors))

    @property
    def informative(self) -> bool:
        return _MIN_BITS <= self.phash.bit_count() <= _MAX_BITS


def _bands(phash: int) -> list[tuple[int, int]]:
    """(band, value) of each slice; the first `HASH_BITS % BANDS` slices are one bit longer."""
    slices: list[tuple[int, int]] = []
    shift = HASH_BITS
    for band in range(BANDS):
        width = HASH_BITS // BANDS + (1 if band < HASH_BITS % BANDS else 0)
        shift -= width
        slices.append((band, (phash >> shift) & ((1 << width) - 1)))
    return slices


def index_keys(image: ImagePrint) -> list[str]:
    """The keys a print is stored under and looked up by: its SHA-256, and its bands when the hash is informative."""
    keys = [f"s:{image.sha256}"]
    if image.informative:
        keys.extend(f"p{band}:{value:x}" for band, value in _bands(image.phash))
    return keys


def same_aspect(width: int, height: int, other_width: int, other_height: int) -> bool:
    """Whether a `width` x `height` video has the aspect ratio of `other_width` x `other_height`."""
    return width * other_height == height * other_width


def same_image(a: ImagePrint, b: ImagePrint) -> bool:
    if a.sha256 == b.sha256:
        return True
    if not (a.informative and b.informative) or (a.phash ^ b.phash).bit_count() > MAX_DISTANCE:
        return False
    return max(abs(x - y) for x, y in zip(a.colors, b.colors, strict=True)) <= MAX_COLOR_DIFFERENCE


@dataclass(frozen=True)
class Candidate:
    """A completed, non-degraded video of the tenant that shares an index key with the new print."""

    job_id: str
    image: ImagePrint
    width: int
    height: int
    completed_at: datetime


def best_match(image: ImagePrint, width: int, height: int, candidates: Iterable[Candidate]) -> Candidate | None:
    """The most recent candidate of the same image whose video has the aspect ratio `width`:`height`; None if none."""
    matches = [
        candidate
        for candidate in candidates
        if same_aspect(candidate.width, candidate.height, width, height) and same_image(image, candidate.image)
    ]
    return max(matches, key=lambda candidate: (candidate.completed_at, candidate.job_id), default=None)


def similar_answer(earlier: VideoResult, request: VideoRequest, *, now: datetime, worker_id: str) -> VideoResult:
    """The completed, degraded result of `request` showing the video of `earlier` (a completed result of its tenant):
    the same MP4 and poster (nothing is copied), the new request's metadata, `similar_to` the earlier request."""
    return VideoResult(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        status="completed",
        video=earlier.video,
        metadata=request.metadata,
        timings=Timings(received_at=now, completed_at=now),
        worker_id=worker_id,
        model=earlier.model,
        model_id=earlier.model_id,
        degraded=True,
        similar_to=earlier.request_id,
    )
