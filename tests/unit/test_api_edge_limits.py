"""What one tenant may hold at once (consumer.core.tenant_slots) and the process's budget for request bodies in flight
(consumer.api.submission.body_budget): pure bookkeeping, no server."""

from __future__ import annotations

import pytest

from consumer.api.routes.error_answers import ApiFailure
from consumer.api.submission.body_budget import BodyBudget
from consumer.core.tenant_slots import TenantSlots


def test_each_tenant_holds_at_most_its_limit_and_only_holders_are_remembered() -> None:
    slots = TenantSlots(2)
    assert [slots.try_take("a") for _ in range(3)] == [True, True, False]
    assert slots.try_take("b")  # another tenant's slots are its own
    assert (slots.held("a"), slots.held("b"), slots.total) == (2, 1, 3)
    slots.give_back("a")
    assert slots.try_take("a") and not slots.try_take("a")
    for tenant in ("a", "a", "b"):
        slots.give_back(tenant)
    assert slots.total == 0 and slots.held("a") == 0
    with pytest.raises(ValueError, match="limit"):
        TenantSlots(0)


def test_bodies_reserve_the_budget_until_answered_and_past_it_get_503() -> None:
    budget = BodyBudget(100)
    with budget.reserve(60):
        with pytest.raises(ApiFailure) as refused, budget.reserve(41):
            pass  # pragma: no cover - never entered
        assert (refused.value.status, refused.value.code) == (503, "body_budget_full")
        assert refused.value.headers["Retry-After"] == "1" and refused.value.retriable
        with budget.reserve(40):
            assert budget.reserved_bytes == 100
    assert (budget.reserved_bytes, budget.refused) == (0, 1)
    with pytest.raises(RuntimeError), budget.reserve(100):
        raise RuntimeError  # a failure while reading gives the reservation back too
    assert budget.reserved_bytes == 0
