"""Control and invisible characters in request text: what is removed, what is rejected. Pure.

The rule, applied after the request passed the v1 contract:

**prompt and negative_prompt** are cleaned, then re-checked against the contract:

1. Rejected (`invalid_field`, naming the field and the code point, never echoing the text) if they contain
   NUL (U+0000), a lone surrogate (U+D800-U+DFFF, which cannot be encoded as UTF-8), or any Unicode *format*
   character (category Cf) other than ZERO WIDTH NON-JOINER (U+200C) and ZERO WIDTH JOINER (U+200D). Cf covers
   the bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), LRM/RLM/ALM, zero-width
   space (U+200B), word joiner and invisible operators (U+2060-U+2064), the BOM (U+FEFF), soft hyphen (U+00AD)
   and the tag characters (U+E0000-U+E007F): characters that make text display differently from what it says
   ("Trojan Source"), hide words from filters, or smuggle invisible instructions to a text encoder. ZWJ and ZWNJ
   stay because emoji sequences and Persian and Indic spelling need them. Rejecting rather than silently
   stripping tells the producer its text is not what it looks like.
2. Every line boundary `str.splitlines()` knows (CR LF, CR, VT, FF, U+001C-U+001E, NEL U+0085, U+2028,
   U+2029) becomes LF (`\\n`).
3. Every other C0/C1 control character and DEL is removed; TAB and LF are kept. (An ANSI escape sequence loses
   its ESC and stays as harmless text such as `[31m`.)
4. The result is NFC-normalised, so canonically equal spellings ("é" as one or two code points) render, hash
   and cache identically.
5. The contract is checked again: surrounding whitespace trimmed, a prompt that became empty or longer than
   1000 characters is rejected (`invalid_field`).

**metadata keys and values** are echoed back unchanged in the result, so they are never rewritten: they are
rejected if they contain any control character (TAB and LF included), U+2028/U+2029, a lone surrogate, or any
Cf character other than ZWNJ/ZWJ. They are not NFC-normalised: producers match them byte for byte. A bad key is
reported as field `metadata` (the key itself is not echoed); a bad value as `metadata.<key>`, the key named as
below.

**Names a client chose** (unknown fields, metadata keys) are never echoed raw in errors: a short plain identifier
(`[A-Za-z0-9_.-]{1,64}`) is named as it is, anything else by its position and length, e.g.
`unknown field #2 (a 1048000-character name)` or `metadata.key #3 (a 9-character name)` (`name_safely`).

**Free text that reaches an event** (error messages built from exceptions, which may quote a URL or a host) has
every character the metadata rule rejects written out as its code point, e.g. `<U+202E>` (`visible`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import ValidationError

from consumer.errors import UnsafeText
from schemas.events import VideoRequest

__all__ = ["check_opaque_text", "clean_text", "name_safely", "sanitize_request", "visible"]

# Needed by emoji ZWJ sequences and by Persian, Indic and other scripts' ordinary spelling.
_ALLOWED_FORMAT = frozenset("\u200c\u200d")
_LINE_BREAKS = re.compile("\r\n|[\n\v\f\r\x1c-\x1e\x85\u2028\u2029]")
# C0 and C1 controls and DEL, minus TAB and LF (kept) and the line breaks mapped to LF above.
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
# Client-chosen names short and plain enough to quote in an error as they are.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def clean_text(value: str, field: str) -> str:
    """Apply steps 1-4 of the rule to one prompt-like string (trimming and length are the caller's)."""
    bad = _first_forbidden(value, opaque=False)
    if bad is not None:
        raise UnsafeText(f"{field}: {_describe(value, bad)}", field=field)
    value = _CONTROLS.sub("", _LINE_BREAKS.sub("\n", value))
    return unicodedata.normalize("NFC", value)


def check_opaque_text(value: str, field: str) -> None:
    """Reject a string that is echoed verbatim (metadata) if it holds any control or invisible format character."""
    bad = _first_forbidden(value, opaque=True)
    if bad is not None:
        raise UnsafeText(f"{field}: {_describe(value, bad)}", field=field)


def name_safely(name: str, *, kind: str, position: int | None) -> str:
    """How an error refers to a name the client chose (an unknown field, a metadata key): the name itself when it is
    a short plain identifier, else `kind`, its 1-based position among its siblings and its length."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    where = "" if position is None else f" #{position}"
    return f"{kind}{where} (a {len(name)}-character name)"


def visible(text: str) -> str:
    """`text` with each character the metadata rule rejects (controls, U+2028/U+2029, lone surrogates, invisible
    format characters) written out as `<U+XXXX>`: safe in an event or a log line, and still says what was there."""
    if _first_forbidden(text, opaque=True) is None:
        return text
    return "".join(f"<U+{ord(char):04X}>" if _forbidden(char, opaque=True) else char for char in text)


def sanitize_request(request: VideoRequest) -> VideoRequest:
    """The request with cleaned prompts; the same object when nothing changed. Raises `UnsafeText`.

    Metadata is checked first, so an error on a prompt means the metadata is safe to echo in the rejection."""
    for position, (key, value) in enumerate(request.metadata.items(), start=1):
        if _first_forbidden(key, opaque=True) is not None:
            # The key is the unsafe part: name the field, never echo the key.
            raise UnsafeText("metadata: a key contains a control or invisible format character", field="metadata")
        check_opaque_text(value, f"metadata.{name_safely(key, kind='key', position=position)}")
    updates: dict[str, Any] = {}
    prompt = clean_text(request.prompt, "prompt")
    if prompt != request.prompt:
        updates["prompt"] = prompt
    if request.negative_prompt is not None:
        negative = clean_text(request.negative_prompt, "negative_prompt")
        if negative != request.negative_prompt:
            updates["negative_prompt"] = negative
    if not updates:
        return request
    # model_copy(update=...) would skip validation: a prompt of nothing but controls would become "" and pass.
    try:
        return VideoRequest.model_validate({**request.model_dump(), **updates})
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or "prompt"
        raise UnsafeText(f"{field}: {error['msg']} (after removing control characters)", field=field) from None


def _first_forbidden(value: str, *, opaque: bool) -> int | None:
    """Index of the first character the rule rejects, or None."""
    for index, char in enumerate(value):
        if _forbidden(char, opaque=opaque):
            return index
    return None


def _forbidden(char: str, *, opaque: bool) -> bool:
    category = unicodedata.category(char)
    if char == "\x00" or category == "Cs" or (category == "Cf" and char not in _ALLOWED_FORMAT):
        return True
    return opaque and (category == "Cc" or char in "\u2028\u2029")


def _describe(value: str, index: int) -> str:
    char = value[index]
    name = unicodedata.name(char, "control character" if unicodedata.category(char) == "Cc" else "unnamed")
    return (
        f"contains U+{ord(char):04X} ({name}) at position {index}; "
        "control, bidirectional and invisible format characters are not allowed here"
    )
