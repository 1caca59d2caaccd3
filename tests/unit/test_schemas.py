"""The checked-in JSON Schema files are exactly what the pydantic models generate, and they mean the same."""

from __future__ import annotations

import json

import jsonschema
import pytest

from schemas.generate import JSON_DIR, render_all


def test_checked_in_schemas_match_the_models() -> None:
    for name, text in render_all().items():
        path = JSON_DIR / name
        assert path.exists(), f"{name} missing: run `make schemas`"
        assert path.read_text(encoding="utf-8") == text, f"{name} drifted from schemas/events.py: run `make schemas`"


def _request_schema() -> dict[str, object]:
    return json.loads((JSON_DIR / "video-request.v1.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"request_id": "a:b.c-1_2", "tenant_id": "t", "prompt": "x"}, True),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "image_url": "s3://my-bucket/k.png"}, True),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "image_url": "http://insecure/x.png"}, False),
        ({"request_id": "a b", "tenant_id": "t", "prompt": "x"}, False),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "width": 500}, False),
        # The contract's bounds are the widest any model family takes; each model narrows them (test_model_families).
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "num_frames": 258}, False),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "width": 1376}, False),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "num_frames": 121, "width": 1280}, True),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "model": "wan2.2-ti2v-5b"}, True),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "model": "no spaces"}, False),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "seed": 2**32}, False),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "extra": 1}, False),
        ({"request_id": "a", "tenant_id": "t", "prompt": "x", "metadata": {str(i): "v" for i in range(33)}}, False),
        ({"request_id": "a", "tenant_id": "t"}, False),
    ],
)
def test_json_schema_alone_enforces_the_contract(body: dict[str, object], valid: bool) -> None:
    """A producer in another language, with only the JSON file, accepts and refuses what the worker does."""
    validator = jsonschema.Draft202012Validator(_request_schema())
    assert validator.is_valid(body) is valid
