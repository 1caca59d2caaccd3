"""Render the JSON Schema files of the contract from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from schemas.events import VideoControl, VideoProgress, VideoRequest, VideoResult
from schemas.webhooks import WebhookEndpointRecord, WebhookEvent

__all__ = ["JSON_DIR", "render_all", "write_all"]

JSON_DIR = Path(__file__).parent / "json"
_MODELS: dict[str, type[BaseModel]] = {
    "video-request.v1.schema.json": VideoRequest,
    "video-result.v1.schema.json": VideoResult,
    "video-progress.v1.schema.json": VideoProgress,
    "video-control.v1.schema.json": VideoControl,
    "webhook-endpoint.v1.schema.json": WebhookEndpointRecord,
    "webhook-event.v1.schema.json": WebhookEvent,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text, exactly as checked in."""
    out = {}
    for name, model in _MODELS.items():
        # Producers validate what they send; consumers read what the worker sends.
        mode: Literal["validation", "serialization"] = (
            "validation" if model in (VideoRequest, VideoControl) else "serialization"
        )
        schema = model.model_json_schema(mode=mode)
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": name, **schema}
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_all() -> list[Path]:
    JSON_DIR.mkdir(exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = JSON_DIR / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
