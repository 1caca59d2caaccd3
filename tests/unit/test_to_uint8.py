"""Pure conversions of consumer/render/renderer.py: pipeline floats to 8-bit frames."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.render.render_spec import to_uint8

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared


def test_to_uint8_rounds_to_nearest_and_clips_out_of_range_values() -> None:
    frames = np.array([[-0.2, 0.0, 0.5 / 255, 1.4 / 255, 1.6 / 255, 0.5, 1.0, 1.3]], dtype=np.float32)
    # rint rounds halves to even, like the previous chained version; below 0 and above 1 clip.
    assert to_uint8(frames).tolist() == [[0, 0, 0, 1, 2, 128, 255, 255]]


def test_to_uint8_keeps_the_shape_and_leaves_its_input_alone() -> None:
    frames = np.random.default_rng(0).uniform(0, 1, (3, 8, 12, 3)).astype(np.float32)
    original = frames.copy()
    converted = to_uint8(frames)
    assert converted.dtype == np.uint8 and converted.shape == frames.shape
    assert np.array_equal(frames, original)
    assert np.array_equal(converted, np.clip(np.rint(original * 255.0), 0, 255).astype(np.uint8))
