"""The checked-in OpenAPI document is exactly what the models and routes generate, and a valid OpenAPI 3.1
document."""

from __future__ import annotations

import json

from consumer.api.routes.openapi import OPENAPI_PATH, build_openapi, render_openapi


def test_checked_in_openapi_matches_the_models() -> None:
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render_openapi(), (
        "schemas/openapi.json drifted: run `python -m consumer.api.routes.openapi`"
    )


def test_every_error_answer_has_the_one_error_shape() -> None:
    document = build_openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path.startswith("/v1/"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ApiErrorBody"}, (method, path, status)
    assert json.loads(render_openapi())["openapi"] == "3.1.0"
