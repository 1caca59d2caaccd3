"""The vidgen event contract (version 1)."""

from schemas.events import (
    ErrorInfo,
    ResultStatus,
    Timings,
    VideoControl,
    VideoInfo,
    VideoProgress,
    VideoRequest,
    VideoResult,
)

__all__ = [
    "ErrorInfo",
    "ResultStatus",
    "Timings",
    "VideoControl",
    "VideoInfo",
    "VideoProgress",
    "VideoRequest",
    "VideoResult",
]
