"""Stage slots: render slots handed on at render end, finishing slots bounding uploads, the sequential design."""

from __future__ import annotations

import pytest

from consumer.slots import StageSlots


def _slots(rendering: int, finishing: int) -> tuple[StageSlots, list[str]]:
    changes: list[str] = []
    return StageSlots(rendering=rendering, finishing=finishing, on_change=lambda: changes.append("change")), changes


def test_a_finished_render_hands_its_slot_to_the_next_job() -> None:
    slots, changes = _slots(1, 2)
    first = slots.take()
    assert not slots.free
    first.rendered()
    assert (slots.rendering, slots.finishing, slots.free) == (0, 1, True)
    assert changes == ["change"]
    second = slots.take()
    second.rendered()
    assert slots.finishing == 2
    assert not slots.free  # two results still uploading: no new render starts
    first.done()
    assert slots.free
    assert (slots.rendering, slots.finishing) == (0, 1)


def test_moves_are_idempotent() -> None:
    slots, changes = _slots(2, 2)
    slot = slots.take()
    slot.rendered()
    slot.rendered()  # a retried job renders again
    slot.done()
    slot.done()
    slot.rendered()
    assert (slots.rendering, slots.finishing) == (0, 0)
    assert changes == ["change", "change"]


def test_a_job_that_never_rendered_frees_its_render_slot() -> None:
    slots, _ = _slots(1, 1)
    slots.take().done()  # rejected, failed before its render, abandoned
    assert (slots.rendering, slots.finishing, slots.free) == (0, 0, True)


def test_no_finishing_stage_is_the_sequential_design() -> None:
    slots, changes = _slots(1, 0)
    slot = slots.take()
    slot.rendered()
    assert not slots.free  # still its slot until it is answered
    assert changes == []
    slot.done()
    assert slots.free


def test_taking_without_a_free_slot_is_a_bug() -> None:
    slots, _ = _slots(1, 1)
    slots.take()
    with pytest.raises(RuntimeError, match="no free slot"):
        slots.take()


@pytest.mark.parametrize(("rendering", "finishing"), [(0, 1), (1, -1)])
def test_limits_are_checked(rendering: int, finishing: int) -> None:
    with pytest.raises(ValueError, match="need rendering"):
        StageSlots(rendering=rendering, finishing=finishing, on_change=lambda: None)
