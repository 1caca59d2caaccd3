"""A render checkpoint as bytes: a safetensors file (tensors only, no pickle) whose metadata holds one strict JSON
header: the format and its version, the binding (what the checkpoint may be applied to), the step reached, the
scheduler's attributes (each a stored tensor, a JSON scalar, or a list of those) and the trace that wrote it.

Reading one never runs code from the object: safetensors parses the tensors, pydantic the header, and every name is
checked; anything else, or a binding other than the one expected, raises `CheckpointRejected`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from consumer.errors import CheckpointRejected
from consumer.render.checkpointing import RenderState

__all__ = ["FORMAT", "FORMAT_VERSION", "StoredCheckpoint", "TraceLink", "decode", "encode"]

FORMAT = "vidgen-render-checkpoint"
FORMAT_VERSION = 1
_METADATA_KEY = "vidgen"
_MAX_HEADER_BYTES = 1 << 20
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Scalar = StrictBool | StrictInt | StrictFloat | str | None


class TraceLink(BaseModel):
    """The span that wrote a checkpoint, so the render that resumes it links to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trace_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    span_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tensor", "array"]  # a tensor, or a numpy array kept as one
    name: str


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["value"]
    value: Scalar


class _Items(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["items"]
    items: list[_Stored | _Value] = Field(max_length=64)


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["vidgen-render-checkpoint"]
    version: Literal[1]
    binding: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    steps_done: int = Field(ge=1)
    total_steps: int = Field(ge=2)
    generator: bool
    scheduler: dict[str, _Stored | _Value | _Items] = Field(max_length=128)
    extra: list[str] = Field(max_length=16)
    trace: TraceLink | None = None


@dataclass(frozen=True)
class StoredCheckpoint:
    """A decoded checkpoint: the state, and the span that wrote it."""

    state: RenderState
    trace: TraceLink | None


def encode(state: RenderState, *, binding: str, trace: TraceLink | None) -> bytes:
    """The checkpoint's bytes. Raises `CheckpointRejected` for a scheduler attribute it cannot store."""
    tensors: dict[str, torch.Tensor] = {"latents": state.latents.contiguous()}
    if state.generator is not None:
        tensors["generator"] = state.generator.contiguous()
    scheduler: dict[str, _Stored | _Value | _Items] = {}
    for key, value in state.scheduler.items():
        if not _NAME.match(key):
            raise CheckpointRejected(f"scheduler attribute {key!r} has no storable name")
        if isinstance(value, list):
            scheduler[key] = _Items(
                kind="items", items=[_entry(f"s.{key}.{i}", v, tensors) for i, v in enumerate(value)]
            )
        else:
            scheduler[key] = _entry(f"s.{key}", value, tensors)
    for key, tensor in state.extra.items():
        tensors[f"x.{key}"] = tensor.contiguous()
    header = _Header(
        format=FORMAT,
        version=FORMAT_VERSION,
        binding=binding,
        steps_done=state.steps_done,
        total_steps=state.total_steps,
        generator=state.generator is not None,
        scheduler=scheduler,
        extra=sorted(state.extra),
        trace=trace,
    )
    return save_tensors(tensors, metadata={_METADATA_KEY: json.dumps(header.model_dump(mode="json"))})


def _entry(name: str, value: Any, tensors: dict[str, torch.Tensor]) -> _Stored | _Value:
    if isinstance(value, torch.Tensor):
        tensors[name] = value.contiguous()
        return _Stored(kind="tensor", name=name)
    if isinstance(value, np.ndarray):
        tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
        return _Stored(kind="array", name=name)
    if value is None or isinstance(value, bool | int | float | str):
        return _Value(kind="value", value=value)
    raise CheckpointRejected(f"a scheduler attribute of type {type(value).__name__} cannot be stored")


def decode(data: bytes, *, binding: str) -> StoredCheckpoint:
    """The checkpoint in `data` if it is well-formed and bound to `binding`; else `CheckpointRejected`."""
    header = _header(data)
    if header.binding != binding:
        raise CheckpointRejected("the checkpoint belongs to another request, model or code version")
    try:
        tensors = load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointRejected(f"unreadable checkpoint tensors: {exc}") from exc
    latents = _take(tensors, "latents")
    if not latents.is_floating_point():
        raise CheckpointRejected("the checkpoint's latents are not floating point")
    generator = _take(tensors, "generator") if header.generator else None
    if generator is not None and (generator.dtype != torch.uint8 or generator.dim() != 1):
        raise CheckpointRejected("the checkpoint's generator state is malformed")
    scheduler: dict[str, Any] = {}
    for key, entry in header.scheduler.items():
        if not _NAME.match(key) or key.startswith("__"):
            raise CheckpointRejected("the checkpoint names a scheduler attribute it may not set")
        if isinstance(entry, _Items):
            scheduler[key] = [_value(item, tensors) for item in entry.items]
        else:
            scheduler[key] = _value(entry, tensors)
    extra = {}
    for key in header.extra:
        if not _NAME.match(key):
            raise CheckpointRejected("the checkpoint names an extra tensor it may not set")
        extra[key] = _take(tensors, f"x.{key}")
    if header.steps_done >= header.total_steps:
        raise CheckpointRejected("the checkpoint is past its last step")
    if tensors:
        raise CheckpointRejected("the checkpoint holds tensors its header does not name")
    state = RenderState(header.steps_done, header.total_steps, latents, scheduler, generator, extra)
    return StoredCheckpoint(state=state, trace=header.trace)


def _header(data: bytes) -> _Header:
    if len(data) < 8:
        raise CheckpointRejected("the checkpoint is truncated")
    size = int.from_bytes(data[:8], "little")
    if size > _MAX_HEADER_BYTES or 8 + size > len(data):
        raise CheckpointRejected("the checkpoint's header is too large or truncated")
    try:
        raw = json.loads(data[8 : 8 + size])
        metadata = raw.get("__metadata__") if isinstance(raw, dict) else None
        text = metadata.get(_METADATA_KEY) if isinstance(metadata, dict) else None
        if not isinstance(text, str):
            raise CheckpointRejected("the object is not a vidgen render checkpoint")
        return _Header.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointRejected(f"the checkpoint's header is malformed: {exc}") from exc


def _take(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    tensor = tensors.pop(name, None)
    if tensor is None:
        raise CheckpointRejected(f"the checkpoint lacks its {name} tensor")
    return tensor


def _value(entry: _Stored | _Value, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(entry, _Value):
        return entry.value
    tensor = _take(tensors, entry.name)
    return tensor.numpy() if entry.kind == "array" else tensor
