"""Step caching (TeaCache-style): the decision rule alone. The real tiny pipeline with the hooks in it is in
tests/integration/test_step_cache.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from consumer.render.loader import load_pipeline
from consumer.render.step_cache import (
    V51_7B_COEFFICIENTS,
    apply_step_cache,
    decide,
    rescale,
)

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

CPU = torch.device("cpu")


# The decision rule


@given(st.floats(min_value=0, max_value=2, allow_nan=False))
def test_rescale_is_the_upstream_polynomial(change: float) -> None:
    assert math.isclose(rescale(change), float(np.polyval(V51_7B_COEFFICIENTS, change)), abs_tol=1e-12)


def test_first_and_last_steps_are_always_computed() -> None:
    assert decide(0, 10, 0.0, None, threshold=1e9) == decide(0, 10, 0.5, 0.0, threshold=1e9)
    assert decide(0, 10, 0.0, None, threshold=1e9).compute
    last = decide(9, 10, 0.01, 0.0, threshold=1e9)
    assert last.compute and last.accumulated == 0.0


def test_no_previous_input_means_compute() -> None:
    assert decide(3, 10, 0.0, None, threshold=1e9).compute


def test_small_changes_accumulate_until_the_threshold_then_restart() -> None:
    coefficients = (1.0, 0.0)  # identity: the rescaled change is the change
    first = decide(1, 10, 0.0, 0.04, threshold=0.1, coefficients=coefficients)
    assert not first.compute and first.accumulated == pytest.approx(0.04)
    second = decide(2, 10, first.accumulated, 0.05, threshold=0.1, coefficients=coefficients)
    assert not second.compute and second.accumulated == pytest.approx(0.09)
    third = decide(3, 10, second.accumulated, 0.02, threshold=0.1, coefficients=coefficients)
    assert third.compute and third.accumulated == 0.0


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=60), st.floats(min_value=0, max_value=1))
def test_a_computed_step_follows_every_run_of_reuses_before_the_end(changes: list[float], threshold: float) -> None:
    """Whatever the changes, step 0 and the last step compute, and accumulated stays under the threshold while
    reusing."""
    total = len(changes) + 1
    accumulated = 0.0
    computed = []
    for step in range(total):
        change = None if step == 0 else changes[step - 1]
        decision = decide(step, total, accumulated, change, threshold=threshold)
        accumulated = decision.accumulated
        computed.append(decision.compute)
        if not decision.compute:
            assert accumulated < threshold
    assert computed[0] and computed[-1]


def test_threshold_must_be_positive() -> None:
    pipeline = load_pipeline("tiny", device=CPU, dtype=torch.float32)
    with pytest.raises(ValueError, match="positive"):
        apply_step_cache(pipeline, 0.0)


def test_the_stand_in_is_left_alone() -> None:
    pipeline = load_pipeline("standin", device=CPU, dtype=torch.float32, standin_render_s=0, step_cache_threshold=0.1)
    assert not hasattr(pipeline, "transformer")
