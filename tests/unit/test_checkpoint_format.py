"""A render checkpoint's bytes: everything a state holds comes back, and nothing but a well-formed checkpoint bound to
this render is ever accepted; no byte of it is unpickled or run."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_tensors

from consumer.errors import CheckpointRejected
from consumer.render.checkpoint_format import TraceLink, decode, encode
from consumer.render.checkpointing import RenderState

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

BINDING = "ab" * 32
OTHER = "cd" * 32
TRACE = TraceLink(trace_id="0" * 31 + "1", span_id="0" * 15 + "2")


def _state() -> RenderState:
    generator = torch.Generator().manual_seed(3)
    torch.randn(4, generator=generator)
    return RenderState(
        steps_done=3,
        total_steps=6,
        latents=torch.randn(1, 4, 2, 8, 8, generator=generator),
        scheduler={
            "timesteps": torch.linspace(1000, 0, 6),
            "_step_index": 3,
            "_begin_index": None,
            "_shift": 3.0,
            "predict_x0": True,
            "model_outputs": [None, torch.ones(2), torch.zeros(2)],  # UniPC's history: tensors and gaps
            "lower_order_nums": 2,
            "alphas_table": np.arange(4, dtype=np.float64),
        },
        generator=generator.get_state(),
        extra={"old_pred_original_sample": torch.full((2, 2), 0.5)},
    )


def test_a_state_comes_back_whole() -> None:
    state = _state()
    stored = decode(encode(state, binding=BINDING, trace=TRACE), binding=BINDING)
    back = stored.state
    assert (back.steps_done, back.total_steps, stored.trace) == (3, 6, TRACE)
    assert torch.equal(back.latents, state.latents)
    assert back.generator is not None and state.generator is not None and torch.equal(back.generator, state.generator)
    assert torch.equal(back.extra["old_pred_original_sample"], state.extra["old_pred_original_sample"])
    scheduler = back.scheduler
    assert torch.equal(scheduler["timesteps"], state.scheduler["timesteps"])
    assert (scheduler["_step_index"], scheduler["_begin_index"], scheduler["_shift"]) == (3, None, 3.0)
    assert scheduler["predict_x0"] is True and scheduler["lower_order_nums"] == 2
    outputs = scheduler["model_outputs"]
    assert outputs[0] is None and torch.equal(outputs[1], torch.ones(2)) and torch.equal(outputs[2], torch.zeros(2))
    assert isinstance(scheduler["alphas_table"], np.ndarray)
    assert np.array_equal(scheduler["alphas_table"], np.arange(4, dtype=np.float64))


def test_a_checkpoint_bound_to_another_render_is_refused() -> None:
    with pytest.raises(CheckpointRejected, match="another request"):
        decode(encode(_state(), binding=BINDING, trace=None), binding=OTHER)


def test_a_pickle_is_refused_without_being_unpickled() -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("unpickled!",))

    buffer = io.BytesIO()
    torch.save({"latents": torch.zeros(1), "payload": Boom()}, buffer)  # what torch.load would run
    for data in (buffer.getvalue(), pickle.dumps(Boom())):
        with pytest.raises(CheckpointRejected):
            decode(data, binding=BINDING)


def _with_header(header: dict[str, object], tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    tensors = tensors if tensors is not None else {"latents": torch.zeros(2)}
    return save_tensors(tensors, metadata={"vidgen": json.dumps(header)})


def _header(**changes: object) -> dict[str, object]:
    header: dict[str, object] = {
        "format": "vidgen-render-checkpoint",
        "version": 1,
        "binding": BINDING,
        "steps_done": 1,
        "total_steps": 4,
        "generator": False,
        "scheduler": {},
        "extra": [],
    }
    header.update(changes)
    return header


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (b"\xff" * 8 + b"{}", "header"),
        (save_tensors({"latents": torch.zeros(2)}), "not a vidgen"),
        (_with_header(_header(version=2)), "malformed"),
        (_with_header(_header(surprise=True)), "malformed"),
        (_with_header(_header(steps_done=4)), "past its last step"),
        (_with_header(_header(generator=True)), "lacks its generator"),
        (_with_header(_header(), {"latents": torch.zeros(2, dtype=torch.int64)}), "not floating point"),
        (_with_header(_header(), {"latents": torch.zeros(2), "stowaway": torch.zeros(1)}), "does not name"),
        (_with_header(_header(scheduler={"__class__": {"kind": "value", "value": 1}})), "may not set"),
        (_with_header(_header(scheduler={"x": {"kind": "value", "value": [1]}})), "malformed"),
        (_with_header(_header(extra=["../x"])), "may not set"),
    ],
)
def test_anything_but_a_well_formed_checkpoint_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(CheckpointRejected, match=why):
        decode(data, binding=BINDING)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_refused_and_nothing_else_is_raised(data: bytes) -> None:
    with pytest.raises(CheckpointRejected):
        decode(data, binding=BINDING)


def test_a_scheduler_attribute_that_cannot_be_stored_is_named() -> None:
    state = _state()
    state.scheduler["solver"] = object()
    with pytest.raises(CheckpointRejected, match="type object"):
        encode(state, binding=BINDING, trace=None)
