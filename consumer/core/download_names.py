"""The file name a downloaded video is saved under, and the `Content-Disposition` that names it. Pure.

A readable name: the job's SKU (its metadata's `sku`) or else the start of its prompt, as a slug, then the job id:
`red-sneaker-vid_123.mp4`. Nothing a client sent goes into the header as it came: `filename` is an ASCII slug
(letters, digits, `-`), and `filename*` (RFC 6266, RFC 8187) the same words in Unicode, letters and digits only,
percent-encoded. A browser that reads `filename*` uses it; an older one, `filename`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from urllib.parse import quote

__all__ = ["content_disposition", "download_names"]

_MAX_WORDS = 48  # characters of the slug, before the id
_ASCII_RUNS = re.compile(r"[^a-z0-9]+")
_WORD_RUNS = re.compile(r"[^\w]+|_+")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str, *, ascii_only: bool) -> str:
    if ascii_only:
        plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
        slug = _ASCII_RUNS.sub("-", plain)
    else:
        slug = _WORD_RUNS.sub("-", unicodedata.normalize("NFC", text).lower())
    return slug[:_MAX_WORDS].strip("-")


def download_names(*, job_id: str, metadata: Mapping[str, str], prompt: str | None) -> tuple[str, str]:
    """(ASCII name, Unicode name) of the job's MP4: its SKU or prompt as a slug, then its id."""
    source = metadata.get("sku") or prompt or ""
    ident = _ID_UNSAFE.sub("-", job_id).strip(".-") or "video"  # ids are [A-Za-z0-9._:-]: no ':' in a file name
    names = []
    for ascii_only in (True, False):
        words = _slug(source, ascii_only=ascii_only)
        names.append(f"{words}-{ident}.mp4" if words else f"{ident}.mp4")
    return names[0], names[1]


def content_disposition(*, job_id: str, metadata: Mapping[str, str], prompt: str | None) -> str:
    """`attachment` with the job's readable file name, ASCII and Unicode (RFC 6266)."""
    plain, unicode_name = download_names(job_id=job_id, metadata=metadata, prompt=prompt)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(unicode_name, safe='')}"
