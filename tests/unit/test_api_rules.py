"""The API's other pure rules: shedding, ids, JWT claims, pagination, the keys file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consumer.api.auth.api_keys import ApiKeys, create_key, hash_key, parse_keys
from consumer.api.auth.jwt_claims import check_algorithms, check_header, tenant_from_claims
from consumer.api.submission.job_ids import idempotent_id, random_id
from consumer.api.submission.shedding import Limits, shed
from consumer.api.submission.wait_estimate import QueueStats, TenantQueue, estimated_wait_s
from consumer.api.view.pages import MAX_LIMIT, PageQuery, page, parse_page_query
from consumer.errors import ClaimError, QueryError


def _alone(queued: int, *, in_progress: int, workers_active: int, service_s: float) -> QueueStats:
    """`queued` interactive jobs, all of one tenant's (shop-1)."""
    return QueueStats(
        queued=queued,
        in_progress=in_progress,
        workers_active=workers_active,
        service_s=service_s,
        tenants={"shop-1": TenantQueue(queued=queued)},
    )


def _limits(max_queued: int, max_wait_s: float) -> Limits:
    return Limits(
        max_queued=max_queued, max_wait_s=max_wait_s, tenant_max_queued=max_queued, tenant_max_wait_s=max_wait_s
    )


def test_shedding_refuses_at_the_queue_limit_and_past_the_wait_limit() -> None:
    calm = _alone(3, in_progress=2, workers_active=2, service_s=10)
    assert estimated_wait_s(calm, "shop-1", "interactive", bulk_period=None) == 25.0
    assert shed(calm, tenant="shop-1", lane="interactive", limits=_limits(10, 60)) is None
    full = shed(
        _alone(10, in_progress=2, workers_active=2, service_s=10),
        tenant="shop-1",
        lane="interactive",
        limits=_limits(10, 1e9),
    )
    assert full is not None and full.reason == "queue_full" and full.retry_after_s == 5
    slow = shed(
        _alone(8, in_progress=2, workers_active=1, service_s=10),
        tenant="shop-1",
        lane="interactive",
        limits=_limits(100, 60),
    )
    assert slow is not None and slow.reason == "wait_too_long" and slow.retry_after_s == 40


def test_no_worker_seen_means_no_wait_estimate_and_only_the_queue_limit() -> None:
    idle = _alone(5, in_progress=0, workers_active=0, service_s=60)
    assert estimated_wait_s(idle, "shop-1", "interactive", bulk_period=None) is None
    assert shed(idle, tenant="shop-1", lane="interactive", limits=_limits(10, 1)) is None
    refused = shed(idle, tenant="shop-1", lane="interactive", limits=_limits(5, 1))
    assert refused is not None and refused.retry_after_s == 60


def test_ids_are_random_or_keyed_per_tenant_without_collisions() -> None:
    key = b"k" * 32
    assert random_id(bytes(16)) == "vid-" + "00" * 16
    assert idempotent_id(key, "shop-1", "order-7") == idempotent_id(key, "shop-1", "order-7")
    assert idempotent_id(key, "a", "b:c") != idempotent_id(key, "a:b", "c")
    assert idempotent_id(key, "shop-1", "x") != idempotent_id(key, "shop-2", "x")
    assert idempotent_id(key, "shop-1", "x") != idempotent_id(b"j" * 32, "shop-1", "x")
    with pytest.raises(ValueError, match="entropy"):
        random_id(b"short")


@pytest.mark.parametrize("algorithms", [("HS256",), ("none",), ("RS256", "HS512"), ()])
def test_only_asymmetric_algorithms_may_be_configured(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        check_algorithms(algorithms)


def test_header_and_tenant_claim_checks() -> None:
    assert check_header({"alg": "ES256", "kid": "k1"}, ["ES256"]) == "k1"
    assert check_header({"alg": "RS256"}, ["RS256"]) is None
    for header in ({"alg": "HS256"}, {"alg": "none"}, {}, {"alg": "RS256", "kid": 7}):
        with pytest.raises(ClaimError):
            check_header(header, ["RS256"])
    assert tenant_from_claims({"tenant_id": "shop-1"}, "tenant_id") == "shop-1"
    for payload in ({}, {"tenant_id": "no spaces allowed"}, {"tenant_id": 5}, {"org": "shop-1"}):
        with pytest.raises(ClaimError):
            tenant_from_claims(payload, "tenant_id")


def test_page_queries_and_pages() -> None:
    assert parse_page_query({}) == PageQuery(limit=20, after=None)
    assert parse_page_query({"limit": "5", "after": "vid-1"}) == PageQuery(limit=5, after="vid-1")
    assert parse_page_query({"order": "asc"}) == PageQuery(limit=20, after=None, order="asc")
    bad_queries = ({"limit": "0"}, {"limit": str(MAX_LIMIT + 1)}, {"limit": "x"}, {"limit": "٣"}, {"after": "a b"})
    for bad in (*bad_queries, {"order": "ASC"}, {"order": "newest"}):
        with pytest.raises(QueryError):
            parse_page_query(bad)
    query = PageQuery(limit=2, after=None)
    assert page([1, 2, 3], query) == ([1, 2], True)
    assert page([1, 2], query) == ([1, 2], False)


async def test_keys_file_round_trip_reload_and_revocation(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    now = [0.0]
    keys = ApiKeys(path, monotonic=lambda: now[0])
    assert await keys.tenant_for("vgk_nothing") is None  # no file yet: nothing accepted
    first = create_key(path, "shop-1")
    now[0] += 2
    assert first.startswith("vgk_") and len(first) == 47
    assert await keys.tenant_for(first) == "shop-1"
    assert first not in path.read_text() and hash_key(first) in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    second = create_key(path, "shop-2")
    path.write_text(path.read_text().replace(hash_key(first), "# revoked"))  # revoke the first
    now[0] += 2
    assert await keys.tenant_for(first) is None
    assert await keys.tenant_for(second) == "shop-2"
    with pytest.raises(ValueError, match="tenant"):
        create_key(path, "bad tenant")


def test_malformed_key_lines_are_skipped() -> None:
    text = f"# comment\n\n{'a' * 64} shop-1\nnot-a-hash shop-2\n{'b' * 64}\n{'c' * 64} bad tenant\n"
    assert parse_keys(text) == [("a" * 64, "shop-1")]


async def test_a_first_burst_of_calls_waits_for_the_keys_file(tmp_path: Path) -> None:
    """Found by bench/api.py: 50 concurrent first calls, and all but one were refused while the file was read."""
    path = tmp_path / "keys"
    key = create_key(path, "shop-1")
    keys = ApiKeys(path)
    assert await asyncio.gather(*(keys.tenant_for(key) for _ in range(20))) == ["shop-1"] * 20
