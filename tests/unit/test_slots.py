"""Stage slots: render slots handed on at render end, finishing slots bounding uploads, the sequential design."""

from __future__ import annotations

import pytest

from consumer.core.slots import StageSlots


def test_a_finished_render_hands_its_slot_to_the_next_job() -> None:
    slots = StageSlots(rendering=1, finishing=2)
    first = slots.take()
    assert not slots.free
    assert slots.advance(first)
    assert (slots.rendering, slots.finishing, slots.free) == (0, 1, True)
    second = slots.take()
    slots.advance(second)
    assert slots.finishing == 2
    assert not slots.free  # two results still uploading: no new render starts
    assert slots.release(first)
    assert slots.free
    assert (slots.rendering, slots.finishing) == (0, 1)


def test_moves_are_idempotent() -> None:
    slots = StageSlots(rendering=2, finishing=2)
    slot = slots.take()
    assert slots.advance(slot)
    assert not slots.advance(slot)  # a retried job renders again
    assert slots.release(slot)
    assert not slots.release(slot)
    assert not slots.advance(slot)
    assert (slots.rendering, slots.finishing) == (0, 0)


def test_a_job_that_never_rendered_frees_its_render_slot() -> None:
    slots = StageSlots(rendering=1, finishing=1)
    slots.release(slots.take())  # rejected, failed before its render, abandoned
    assert (slots.rendering, slots.finishing, slots.free) == (0, 0, True)


def test_no_finishing_stage_is_the_sequential_design() -> None:
    slots = StageSlots(rendering=1, finishing=0)
    slot = slots.take()
    assert not slots.advance(slot)
    assert not slots.free  # still its slot until it is answered
    slots.release(slot)
    assert slots.free


def test_taking_without_a_free_slot_is_a_bug() -> None:
    slots = StageSlots(rendering=1, finishing=1)
    slots.take()
    with pytest.raises(RuntimeError, match="no free slot"):
        slots.take()


@pytest.mark.parametrize(("rendering", "finishing"), [(0, 1), (1, -1)])
def test_limits_are_checked(rendering: int, finishing: int) -> None:
    with pytest.raises(ValueError, match="need rendering"):
        StageSlots(rendering=rendering, finishing=finishing)
