"""The API's OpenAPI 3.1 document, built from the pydantic models in `schemas/job_api.py` (and `schemas/links.py`).
Served at `/openapi.json` and checked in as `schemas/openapi.json` (`python -m consumer.api.routes.openapi` rewrites it;
a test fails on drift)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from consumer.api.routes.webhook_openapi import WEBHOOK_MODELS, delivery_webhooks, webhook_paths
from consumer.api.view.pages import LIST_FILTER_PARAMETERS
from schemas.events import ID_PATTERN
from schemas.job_api import (
    ApiErrorBody,
    VideoDeleted,
    VideoJob,
    VideoJobList,
    VideoSubmission,
)
from schemas.links import ContentLinks
from schemas.serving import ModelInfo, ModelList, QueueInfo

__all__ = ["OPENAPI_PATH", "build_openapi", "render_openapi"]

OPENAPI_PATH = Path(__file__).resolve().parents[3] / "schemas" / "openapi.json"
_REF = "#/components/schemas/{model}"

_ERRORS = {
    400: "The body is not valid JSON or multipart.",
    401: "Missing, malformed, expired, wrongly signed or wrong-audience credential (`WWW-Authenticate: Bearer`).",
    403: "Tenant webhooks are not enabled on this service (`webhooks_disabled`).",
    404: "No such job, model or webhook endpoint for this tenant (another tenant's id and a deleted job answer the "
    "same).",
    409: "The job is not in a state that allows this, or the tenant has all the webhook endpoints it may have.",
    413: "The body (its declared length refused before it is read), the image or the resulting record is too large.",
    415: "Not JSON or multipart, or the image is not an allowed image type.",
    422: "A field, header or query parameter breaks a rule, or is not one this operation takes; `field` names it.",
    429: "The tenant's rate limit (`rate_limited`), or its calls in progress fill its share of the connections "
    "(`too_many_connections`); see `Retry-After`.",
    503: "Starting, busy (load shedding), receiving as many bodies as it may hold (`body_budget_full`) or a dependency "
    "is down; see `Retry-After`.",
}


def _schema(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _schema(name)}}


def _responses(success: dict[int, dict[str, Any]], *errors: int) -> dict[str, Any]:
    answers = {str(status): response for status, response in success.items()}
    for status in (401, 422, 429, 503, *errors):
        answers[str(status)] = {"description": _ERRORS[status], "content": _json("ApiErrorBody")}
    return dict(sorted(answers.items()))


def _job_id() -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": ID_PATTERN},
    }


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "security": [{"bearer": []}], "responses": responses, **extra}


def build_openapi() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [
            (VideoSubmission, "validation"),
            (VideoJob, "serialization"),
            (VideoJobList, "serialization"),
            (VideoDeleted, "serialization"),
            (ModelInfo, "serialization"),
            (ModelList, "serialization"),
            (QueueInfo, "serialization"),
            (ContentLinks, "serialization"),
            (ApiErrorBody, "serialization"),
            *WEBHOOK_MODELS,
        ],
        ref_template=_REF,
    )
    schemas = definitions["$defs"]
    submission = schemas["VideoSubmission"]
    multipart = {
        "type": "object",
        "properties": {
            **submission["properties"],
            "input_reference": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "The start image (JPEG, PNG, WebP, GIF, BMP or TIFF, sniffed from its bytes).",
            },
        },
        "required": submission.get("required", []),
        "additionalProperties": False,
    }
    poll_after = {
        "openai-poll-after-ms": {
            "description": "While the job has not ended: how long to wait before asking again (OpenAI's SDKs obey).",
            "schema": {"type": "integer"},
        }
    }
    job_created = {
        "description": "Accepted (or, with the same Idempotency-Key, the job accepted before).",
        "headers": {"Location": {"schema": {"type": "string"}}, **poll_after},
        "content": _json("VideoJob"),
    }
    job = {"description": "The job.", "headers": poll_after, "content": _json("VideoJob")}
    paths = {
        "/v1/videos": {
            "post": _operation(
                "Submit a video job",
                _responses({202: job_created}, 400, 409, 413, 415, 422),
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
                    }
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": _schema("VideoSubmission")},
                        "multipart/form-data": {"schema": multipart},
                    },
                },
            ),
            "get": _operation(
                "List your jobs, newest first",
                _responses({200: {"description": "A page of jobs.", "content": _json("VideoJobList")}}, 422),
                parameters=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "after", "in": "query", "schema": {"type": "string", "pattern": ID_PATTERN}},
                    {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
                    *LIST_FILTER_PARAMETERS,
                ],
            ),
        },
        "/v1/videos/{id}": {
            "get": _operation("A job", _responses({200: job}, 404), parameters=[_job_id()]),
            "delete": _operation(
                "Delete a job: cancel it if it runs, forget it (404 afterwards) and delete its video and poster unless "
                "another job of yours shows them",
                _responses({200: {"description": "Deleted.", "content": _json("VideoDeleted")}}, 404),
                parameters=[_job_id()],
            ),
        },
        "/v1/videos/{id}/cancel": {
            "post": _operation(
                "Cancel a job that has not ended; it stays, `failed` with `error.code: cancelled`",
                _responses({202: {"description": "Cancel requested.", "content": _json("VideoJob")}}, 404, 409),
                parameters=[_job_id()],
            )
        },
        "/v1/videos/{id}/content": {
            "get": _operation(
                "Redirect to the video (saved as an attachment under a readable name), its poster "
                "(`variant=thumbnail`) or its start image (`variant=start_image`) through a fresh presigned URL",
                _responses(
                    {302: {"description": "To the object.", "headers": {"Location": {"schema": {"type": "string"}}}}},
                    404,
                    409,
                    422,
                ),
                parameters=[
                    _job_id(),
                    {
                        "name": "variant",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["video", "thumbnail", "start_image"]},
                    },
                    {
                        "name": "token",
                        "in": "query",
                        "description": "A content link's token (`POST /v1/videos/{id}/links`), for clients that "
                        "cannot send the header (a browser's <video>); stands in for the credential on this route.",
                        "schema": {"type": "string", "maxLength": 200},
                    },
                ],
            )
        },
        "/v1/videos/{id}/links": {
            "post": _operation(
                "Content links a <video> or <img> can load without a credential header: this job only, a few minutes",
                _responses({200: {"description": "The links.", "content": _json("ContentLinks")}}, 404, 409),
                parameters=[_job_id()],
            )
        },
        "/v1/videos/{id}/events": {
            "get": _operation(
                "The job's changes as server-sent events (`event: status`, `id:` version, `data:` the job). Ends when "
                "the job ends, after a while without a change (reconnect with `Last-Event-ID`) or when the credential "
                "is revoked or expires; 429 `too_many_streams` past the tenant's open streams",
                _responses(
                    {
                        200: {
                            "description": "Event stream.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        }
                    },
                    404,
                ),
                parameters=[
                    _job_id(),
                    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                ],
            )
        },
        "/v1/queue": {
            "get": _operation(
                "The queue: queued, in progress, workers active, estimated wait",
                _responses({200: {"description": "The queue.", "content": _json("QueueInfo")}}),
            )
        },
        "/v1/models": {
            "get": _operation(
                "The models this deployment serves, and what each can render",
                _responses({200: {"description": "The models.", "content": _json("ModelList")}}),
            )
        },
        "/v1/models/{model}": {
            "get": _operation(
                "One model",
                _responses({200: {"description": "The model.", "content": _json("ModelInfo")}}, 404),
                parameters=[{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        **webhook_paths(_operation, _responses, _json),
        "/openapi.json": {"get": _plain("This document", "application/json")},
    }
    content = paths["/v1/videos/{id}/content"]
    content["head"] = {**content["get"], "summary": "The same answer as GET (the redirect), without a body"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vidgen job API",
            "version": "1",
            "description": "Submit product videos, follow them and fetch the result, in the shape of OpenAI's video "
            "API: its SDKs' `client.videos` and `client.models` work against it. Every error is "
            '`{"error": {"message", "type", "param", "code", "field"}}`. Probes and metrics (`/healthz`, `/readyz`, '
            "`/metrics`) are served on the operator port (`VIDGEN_API_OPERATOR_PORT`), not here.",
        },
        "paths": paths,
        "webhooks": delivery_webhooks(_json),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`vgk_...`) or a JWT from the shop platform's identity provider.",
                }
            },
        },
    }


def _plain(summary: str, content_type: str) -> dict[str, Any]:
    answer = {"description": "OK", "content": {content_type: {"schema": {}}}}
    return {"summary": summary, "security": [], "responses": {"200": answer}}


def render_openapi() -> str:
    return json.dumps(build_openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render_openapi(), encoding="utf-8")
    sys.stdout.write(f"wrote {OPENAPI_PATH}\n")
