"""A pydantic `ValidationError` in people's words: one `name: message` line per field at fault, named the way the
reader sets it (an environment variable, a command-line option), never with the value, never with a link. Beside
the settings, which describe their own errors with it (`describe_config_error`); the client commands word their
options' errors with it too."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

__all__ = ["Location", "field_errors"]

Location = tuple[int | str, ...]
"""Where pydantic says an error is: the field's name first, then keys or indexes inside it."""

_PREFIXES = ("Value error, ", "Assertion failed, ")  # pydantic's wrapping of a validator's own message


def field_errors(error: ValidationError, name_of: Callable[[str], str] | None = None) -> list[str]:
    """One line per error: where, and pydantic's message; a rule about the whole model gives its message alone (it
    names the fields itself). With `name_of`, the field is named as the reader sets it and a place inside it follows
    in brackets (`VIDGEN_NOTIFIER_WEBHOOKS [shop-a.secret]`); without, the dotted location (`webhooks.shop-a.secret`).
    The input is never shown: it may be a secret or a URL with a token."""
    lines = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        message = str(item["msg"])
        for prefix in _PREFIXES:
            message = message.removeprefix(prefix)
        if item["type"] == "missing":
            message = "required, and not set"
        location = item["loc"]
        lines.append(f"{_name(location, name_of)}: {message}" if location else message)
    return lines


def _name(location: Location, name_of: Callable[[str], str] | None) -> str:
    if name_of is None:
        return ".".join(str(part) for part in location)
    field, *inside = location
    name = name_of(str(field))
    return f"{name} [{'.'.join(str(part) for part in inside)}]" if inside else name
