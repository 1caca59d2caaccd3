"""Hardening of the product-created hook, the parts that need no server: request ids nobody else can predict and no
two products can share, text checked with the worker's own rules, templates that leave the description room."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from producer_examples.hook_settings import HookSettings
from producer_examples.products import (
    DEFAULT_TEMPLATE,
    ProductCreated,
    check_template,
    derive_request_id,
    render_prompt,
)
from tests.support import REPO, product_payload

ID_KEY = "request-id-key-for-tests-only-0123456789abcdef"
OTHER_ID_KEY = "another-request-id-key-for-tests-0123456789ab"
SUFFIX = DEFAULT_TEMPLATE.split("{description}")[1].strip()  # the template's fixed text after the description


# ---------------------------------------------------------------------------------------------- pure parts


def _product(**overrides: Any) -> ProductCreated:
    return ProductCreated.model_validate(product_payload(**overrides))


def test_ids_depend_on_the_key_and_encode_shop_and_product_unambiguously() -> None:
    key, content = ID_KEY.encode(), {"prompt": "a red sneaker", "width": 256}
    first = derive_request_id(key, "acme", "shoes:42", content)
    assert derive_request_id(key, "acme", "shoes:42", dict(reversed(content.items()))) == first  # canonical
    assert derive_request_id(key, "acme:shoes", "42", content) != first
    assert derive_request_id(OTHER_ID_KEY.encode(), "acme", "shoes:42", content) != first
    assert re.fullmatch(r"hook:[0-9a-f]{32}", first)


def test_a_trimmed_description_keeps_the_template_and_never_splits_a_character_from_its_marks() -> None:
    # "x" has no precomposed form with an acute accent: under NFC each pair stays two code points.
    prompt = render_prompt(DEFAULT_TEMPLATE, _product(description="x\u0301" * 600))
    assert len(prompt) <= 1000 and unicodedata.is_normalized("NFC", prompt)
    kept = prompt.removeprefix("A short product video of Red sneaker. ").removesuffix(" " + SUFFIX)
    assert prompt.endswith(SUFFIX) and kept and kept == "x\u0301" * (len(kept) // 2)
    # With words, the cut falls between two of them.
    worded = render_prompt(DEFAULT_TEMPLATE, _product(description="breathable mesh " * 200))
    assert re.search(r"(breathable|mesh) " + re.escape(SUFFIX) + "$", worded) and len(worded) <= 1000


def test_titles_follow_the_worker_text_rule_and_count_after_normalisation() -> None:
    assert _product(title="Red\x1b[31m  sneaker\r\n").title == "Red[31m sneaker"  # controls removed, as the worker does
    for title in ("Red \u202esneaker", "\ufb2c" * 100):  # a bidi override; 100 characters that NFC makes 300
        with pytest.raises(ValidationError) as caught:
            _product(title=title)
        [error] = caught.value.errors(include_input=False)
        assert (error["loc"], error["type"]) == (("title",), "invalid_field")


def test_templates_must_leave_the_description_room_and_hold_only_visible_text() -> None:
    check_template("x" * 800 + "{title}")  # 800 + the longest title: exactly the prompt's 1000
    with pytest.raises(ValueError, match="takes 1001 of the prompt's 1000"):
        check_template("x" * 801 + "{title}")
    with pytest.raises(ValueError, match="U\\+202E"):
        check_template("Video of {title}\u202e")


def test_the_compose_hook_service_has_every_required_setting() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    environment = compose["services"]["product-hook"]["environment"]
    defaults = {
        name.removeprefix("VIDGEN_HOOK_").lower(): re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", str(value))
        for name, value in environment.items()
        if name.startswith("VIDGEN_HOOK_")
    }
    assert {"secret", "id_key"} <= defaults.keys()
    HookSettings(**defaults)
