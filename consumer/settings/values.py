"""How settings values are read from the environment, shared by every settings model. Pure."""

from __future__ import annotations

__all__ = ["split_csv"]


def split_csv(value: object) -> object:
    """A comma-separated variable as a tuple of its non-empty, stripped parts; anything else unchanged."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value
