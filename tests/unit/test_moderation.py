"""Content rules on request text: control-character sanitising (consumer.core.sanitize) and the banned-terms policy
(consumer.core.moderation). Both pure; no broker, no model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.moderation import AllOf, ContentPolicy, Moderator, fold
from consumer.core.sanitize import clean_text, sanitize_request
from consumer.errors import ContentPolicyViolation, InvalidRequest, UnsafeText, VidgenError
from schemas.events import VideoRequest


def _request(**changes: Any) -> VideoRequest:
    return VideoRequest.model_validate({"request_id": "r-1", "tenant_id": "acme", "prompt": "a shoe", **changes})


# --- Sanitising ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a\r\nb\rc\nd", "a\nb\nc\nd"),
        ("a\u2028b\u2029c\x85d\x0be\x0cf", "a\nb\nc\nd\ne\nf"),
        ("tab\tstays", "tab\tstays"),
        ("\x1b[31mred\x1b[0m", "[31mred[0m"),
        ("bell\x07 del\x7f c1\x9b", "bell del c1"),
        ("cafe\u0301", "caf\u00e9"),  # NFC
        ("emoji \U0001f469\u200d\U0001f52c and \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", None),  # ZWJ, ZWNJ
    ],
)
def test_clean_text_keeps_meaning_and_drops_controls(raw: str, clean: str | None) -> None:
    assert clean_text(raw, "prompt") == (raw if clean is None else clean)


@pytest.mark.parametrize(
    ("raw", "code_point"),
    [
        ("nul\x00here", "U+0000"),
        ("invoice \u202egnp.exe", "U+202E"),  # right-to-left override
        ("isolate \u2066x\u2069", "U+2066"),
        ("zero\u200bwidth", "U+200B"),
        ("soft\u00adhyphen", "U+00AD"),
        ("\ufeffbom", "U+FEFF"),
        ("tag \U000e0041\U000e0042 smuggled", "U+E0041"),
        ("lone \ud800 surrogate", "U+D800"),
    ],
)
def test_clean_text_rejects_disguising_characters_naming_field_and_code_point(raw: str, code_point: str) -> None:
    with pytest.raises(UnsafeText) as caught:
        clean_text(raw, "negative_prompt")
    error = caught.value
    assert isinstance(error, InvalidRequest)
    assert (error.code, error.field, error.rejects, error.retriable) == (
        "invalid_field",
        "negative_prompt",
        True,
        False,
    )
    assert error.message.startswith("negative_prompt: ")
    assert code_point in error.message
    assert raw not in error.message


def test_sanitize_request_cleans_prompts_and_returns_same_object_when_clean() -> None:
    clean = _request(negative_prompt="blur")
    assert sanitize_request(clean) is clean
    dirty = _request(prompt="a\r\nshoe\x1b", negative_prompt="e\u0301")
    cleaned = sanitize_request(dirty)
    assert (cleaned.prompt, cleaned.negative_prompt) == ("a\nshoe", "\u00e9")
    assert cleaned.request_id == dirty.request_id


def test_prompt_of_only_controls_is_rejected_after_cleaning() -> None:
    with pytest.raises(UnsafeText) as caught:
        sanitize_request(_request(prompt="\x1b\x07 x").model_copy(update={"prompt": "\x1b\x07"}))
    assert caught.value.field == "prompt"


@pytest.mark.parametrize("value", ["line\nbreak", "tab\there", "esc\x1b", "rlo\u202e", "ls\u2028"])
def test_metadata_values_with_controls_are_rejected_not_rewritten(value: str) -> None:
    with pytest.raises(UnsafeText) as caught:
        sanitize_request(_request(metadata={"order": value}))
    assert caught.value.field == "metadata.order"


def test_metadata_key_with_controls_is_rejected_without_echoing_the_key() -> None:
    with pytest.raises(UnsafeText) as caught:
        sanitize_request(_request(metadata={"evil\u202ekey": "v"}))
    assert caught.value.field == "metadata"
    assert "evil" not in caught.value.message


def test_metadata_is_checked_before_prompts_so_a_prompt_error_means_metadata_is_echoable() -> None:
    request = _request(metadata={"k": "bad\x1b"}).model_copy(update={"prompt": "also \u202e bad"})
    with pytest.raises(UnsafeText) as caught:
        sanitize_request(request)
    assert caught.value.field == "metadata.k"


def test_metadata_is_echoed_byte_for_byte_even_when_not_nfc() -> None:
    request = _request(metadata={"name": "cafe\u0301 \U0001f469\u200d\U0001f52c"})
    assert sanitize_request(request).metadata == request.metadata


# --- Banned terms ----------------------------------------------------------------------------------------


@pytest.fixture
def policy() -> ContentPolicy:
    return ContentPolicy(["nude", "gore video", "ass", "色情", "секс"])


@pytest.mark.parametrize(
    "text",
    [
        "a NUDE model",
        "Nudé on a beach",
        "nu\u0308de",  # combining diaeresis
        "\uff4e\uff55\uff44\uff45",  # fullwidth
        "\U0001d427\U0001d42e\U0001d41d\U0001d41e",  # mathematical bold
        "nud\u0435",  # Cyrillic e
        "nu\u200bde",  # zero-width space
        "n u d e",
        "n.u.d.e",
        "a n u d e shot",
        "(nude)",
        "GORE   video",
        "gore-video clip",
        "色情片",
        "\u0421\u0415\u041a\u0421",  # Cyrillic upper case
    ],
)
def test_disguised_terms_are_caught(policy: ContentPolicy, text: str) -> None:
    assert policy.find(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe",
        "a classic glass bass",
        "assassin's creed",
        "nudes",  # not a whole-word match without a prefix rule
        "gore",  # half a phrase
        "video gore",
        "nuuude",
        "n00de",
        "a red shoe",
    ],
)
def test_innocent_or_unlisted_text_passes(policy: ContentPolicy, text: str) -> None:
    assert policy.find(text) is None


def test_prefix_rule_catches_inflections() -> None:
    policy = ContentPolicy(["nud*"])
    assert [policy.find(t) for t in ("nudes", "nudity", "NUDE", "denude")] == [0, 0, 0, None]


def test_rule_index_is_position_in_the_list_and_blank_terms_are_ignored() -> None:
    policy = ContentPolicy(["", "***", "alpha", "beta gamma"])
    assert policy.size == 2
    assert policy.find("x beta.gamma y") == 3


def test_from_sources_combines_the_setting_and_a_file(tmp_path: Path) -> None:
    path = tmp_path / "banned.txt"
    path.write_text("# comments and blank lines are skipped\n\nfile term\n  # indented comment\n", encoding="utf-8")
    policy = ContentPolicy.from_sources(terms=["listed"], path=path)
    assert policy.size == 2
    assert policy.find("a FILE term") == 1
    assert policy.find("listed") == 0
    assert policy.find("comments") is None


async def test_check_names_the_field_but_not_the_term(policy: ContentPolicy) -> None:
    with pytest.raises(ContentPolicyViolation) as caught:
        await policy.check(_request(prompt="a nude model"))
    error = caught.value
    assert isinstance(error, VidgenError)
    assert (error.code, error.rejects, error.retriable, error.field, error.rule) == (
        "content_policy",
        True,
        False,
        "prompt",
        0,
    )
    assert error.message == "prompt: violates the content policy"
    assert "nude" not in error.message


async def test_negative_prompt_is_not_checked_by_default(policy: ContentPolicy) -> None:
    await policy.check(_request(negative_prompt="nude, blurry"))
    strict = ContentPolicy(["nude"], fields=("prompt", "negative_prompt"))
    with pytest.raises(ContentPolicyViolation) as caught:
        await strict.check(_request(negative_prompt="nude"))
    assert caught.value.field == "negative_prompt"


async def test_empty_policy_allows_everything() -> None:
    await ContentPolicy([]).check(_request(prompt="anything at all"))


async def test_all_of_runs_moderators_in_order_and_stops_at_the_first_violation(policy: ContentPolicy) -> None:
    seen: list[str] = []

    class Recorder:
        async def check(self, request: VideoRequest) -> None:
            seen.append(request.request_id)

    recorder: Moderator = Recorder()
    await AllOf(policy, recorder).check(_request())
    assert seen == ["r-1"]
    with pytest.raises(ContentPolicyViolation):
        await AllOf(policy, recorder).check(_request(prompt="nude"))
    assert seen == ["r-1"]


def test_fold_is_idempotent_on_examples() -> None:
    for text in ("Ǆemo ﬁne Straße", "Ñandú", "ΑΒΓ"):
        assert fold(fold(text)) == fold(text)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["nude", "gore video", "ass"]),
    st.text(max_size=20),
    st.text(max_size=20),
    st.lists(st.booleans(), min_size=12, max_size=12),
    st.sampled_from(["", "\u0301", "\u200b", "\u00ad"]),
)
def test_a_listed_term_is_found_in_any_case_with_marks_between_its_letters(
    term: str, before: str, after: str, upper: list[bool], between: str
) -> None:
    disguised = "".join(
        (char.upper() if flag else char) + (between if char != " " else "")
        for char, flag in zip(term, upper, strict=False)
    )
    policy = ContentPolicy(["nude", "gore video", "ass"])
    assert policy.find(f"{before} {disguised} {after}") is not None
