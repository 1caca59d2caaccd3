"""Content policy: a hook for moderation, with a banned-terms list as the default. Pure apart from `from_sources`.

Matching rule of `ContentPolicy` (terms and text go through the same folding, so they compare like with like):

- **Folded**: NFKC (fullwidth, ligatures, math-styled and circled letters become plain letters), case-folded
  ("ß" = "ss"), a small table of Cyrillic and Greek look-alikes mapped to Latin ("nude" spelled with a
  Cyrillic U+0435 for the "e"), combining marks removed ("nudé", "ñ", stacked "Zalgo" marks), invisible format
  characters removed (zero-width space, soft hyphen, bidi controls).
- **Whole words**: the folded text is split into words at anything that is not a letter or digit, and a term
  matches whole words only, so a banned "cunt" does not flag "Scunthorpe" and "ass" does not flag "class". A
  multi-word term is a phrase: its words must follow each other, whatever separates them ("nude  photo",
  "nude-photo", "nude.photo"). A word ending in `*` in the list matches by prefix (`nud*` catches "nude",
  "nudes", "nudity"): the operator chooses, term by term, between catching inflections and risking Scunthorpe.
- **Letter spacing**: two or more single-character words in a row are also read joined, so "n u d e",
  "n.u.d.e" and "n-u-d-e" match "nude".
- **Scripts without spaces** (Chinese, Japanese, Thai, Lao, Khmer, Myanmar): a term containing them matches
  as a substring of the text with separators removed, since those scripts have no word boundaries to honour.

Not caught (a real moderation service is the answer): leetspeak ("nud3", "n00de"), repeated letters
("nuuude"), words glued together ("nudephoto") unless listed or prefixed, misspellings, look-alikes outside the
small table, meaning without banned words, and the start image. Only `prompt` is checked by default:
a `negative_prompt` names what to *avoid*, so banning terms there would reject the careful requests.

The violation message names the field but not the term: results go back to producers and end users and into
logs, and echoing the match would hand out the list one probe at a time and copy offensive text around.
Operators get the rule's index (its position in the configured list) on the exception as `rule`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from consumer.errors import ContentPolicyViolation
from schemas.events import VideoRequest

__all__ = ["AllOf", "ContentPolicy", "Moderator", "fold"]

CheckedField = Literal["prompt", "negative_prompt"]

# Lower-case Cyrillic and Greek letters that look like Latin ones; applied to terms and text alike.
_LOOKALIKES = str.maketrans(
    "аеорсухіјѕԁһԛԝӏвкмнт" + "αεικνορτυχ",
    "aeopcyxijsdhqwlbkmht" + "aeikvoptux",
)
_WORD = re.compile(r"[^\W_]+")
# Longest letter-spaced word looked for; bounds the work a prompt of single letters can cause.
_MAX_RUN = 24
_TERM_WORD = re.compile(r"([^\W_]+)(\*?)")
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
)


class Moderator(Protocol):
    """Decides whether a request may be rendered. Called once per request, before any image fetch or cache
    lookup (a cached video must not outlive a policy change).

    To plug a real moderation service, implement `check` as a coroutine that calls it with a timeout and:
    raises `ContentPolicyViolation(message, field=...)` on a "no" verdict (without echoing what matched);
    raises a `VidgenError` subclass with `retriable = True` (e.g. code `moderation_unavailable`) when the
    service cannot answer, so the request fails retryably instead of being rendered unmoderated (fail closed);
    and never blocks the event loop (use an async client or `asyncio.to_thread`). Combine it with the banned
    terms through `AllOf(policy, service)` so the cheap local check runs first.
    """

    async def check(self, request: VideoRequest) -> None: ...


class AllOf:
    """Runs moderators in order; the first violation wins."""

    def __init__(self, *moderators: Moderator) -> None:
        self._moderators = moderators

    async def check(self, request: VideoRequest) -> None:
        for moderator in self._moderators:
            await moderator.check(request)


@dataclass(frozen=True)
class _Rule:
    index: int
    words: tuple[tuple[str, bool], ...]  # (folded word, matches by prefix)


class ContentPolicy:
    """The default `Moderator`: banned terms and phrases, matched as described in the module docstring."""

    def __init__(self, terms: Iterable[str], *, fields: Sequence[CheckedField] = ("prompt",)) -> None:
        self._fields = tuple(fields)
        self._exact: dict[str, list[_Rule]] = {}  # rules by their first word
        self._prefix: dict[str, list[_Rule]] = {}  # rules whose first word ends in `*`, by that prefix
        self._unspaced: list[tuple[int, str]] = []
        self.size = 0
        for index, term in enumerate(terms):
            self._add(index, term)

    @classmethod
    def from_sources(
        cls, *, terms: Iterable[str] = (), path: str | Path | None = None, fields: Sequence[CheckedField] = ("prompt",)
    ) -> ContentPolicy:
        """Terms from a list setting, then from a UTF-8 file: one term per line, `#` starts a comment line."""
        combined = list(terms)
        if path is not None:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    combined.append(line)
        return cls(combined, fields=fields)

    def find(self, text: str) -> int | None:
        """Index of a rule the text breaks (its position in the terms given), or None."""
        words = _WORD.findall(fold(text))
        rule = self._find_words(words)
        if rule is None and any(len(word) == 1 for word in words):
            rule = self._find_words(_join_runs(words))  # "n u d e photo" as a phrase
        if rule is None and any(len(word) == 1 for word in words):
            # Every stretch of a run as one word too: in "a n u d e" the stray "a" must not hide "nude".
            stretches = (["".join(stretch)] for stretch in _stretches(words))
            rule = next((found for s in stretches if (found := self._find_words(s)) is not None), None)
        if rule is None and self._unspaced:
            joined = "".join(words)
            rule = next((index for index, needle in self._unspaced if needle in joined), None)
        return rule

    def violation(self, request: VideoRequest) -> ContentPolicyViolation | None:
        for field in self._fields:
            text = getattr(request, field)
            rule = self.find(text) if text else None
            if rule is not None:
                return ContentPolicyViolation(f"{field}: violates the content policy", field=field, rule=rule)
        return None

    async def check(self, request: VideoRequest) -> None:
        violation = self.violation(request)
        if violation is not None:
            raise violation

    def _add(self, index: int, term: str) -> None:
        folded = fold(term)
        words = tuple((word, star == "*") for word, star in _TERM_WORD.findall(folded))
        if not words:
            return  # nothing matchable ("***", punctuation): ignoring beats matching everything
        self.size += 1
        if _UNSPACED.search(folded):
            self._unspaced.append((index, "".join(word for word, _ in words)))
            return
        first, by_prefix = words[0]
        (self._prefix if by_prefix else self._exact).setdefault(first, []).append(_Rule(index, words))

    def _find_words(self, words: Sequence[str]) -> int | None:
        for start, word in enumerate(words):
            candidates = list(self._exact.get(word, ()))
            if self._prefix:
                for end in range(1, len(word) + 1):
                    candidates.extend(self._prefix.get(word[:end], ()))
            for rule in candidates:
                if _matches_at(rule, words, start):
                    return rule.index
        return None


def fold(text: str) -> str:
    """The comparison form of text: NFKC, case-folded, look-alikes mapped, marks and format characters removed."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_LOOKALIKES)
    return "".join(
        char for char in unicodedata.normalize("NFD", folded) if unicodedata.category(char) not in ("Mn", "Me", "Cf")
    )


def _matches_at(rule: _Rule, words: Sequence[str], start: int) -> bool:
    if start + len(rule.words) > len(words):
        return False
    for (want, by_prefix), got in zip(rule.words, words[start:], strict=False):
        if not (got.startswith(want) if by_prefix else got == want):
            return False
    return True


def _stretches(words: Sequence[str]) -> Iterator[Sequence[str]]:
    """Every stretch of 2 to `_MAX_RUN` consecutive one-character words."""
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        for i in range(len(run)):
            for j in range(i + 2, min(len(run), i + _MAX_RUN) + 1):
                yield run[i:j]
        run = []


def _join_runs(words: Sequence[str]) -> list[str]:
    """The words with each run of one-character words joined into one word."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        joined.extend(["".join(run)] if len(run) >= 2 else run)
        run = []
        if word:
            joined.append(word)
    return joined
