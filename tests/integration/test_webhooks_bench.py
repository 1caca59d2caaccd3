"""bench/webhooks.py runs tiny against the session's broker and reports its shape (never its timings)."""

from __future__ import annotations

from pathlib import Path

from bench import webhooks
from bench.infra import Infra


async def test_the_webhook_latency_benchmark_runs_tiny(broker: str, s3_endpoint: str, tmp_path: Path) -> None:
    report = await webhooks.measure(
        Infra(bootstrap=broker, s3_endpoint=s3_endpoint, log_dir=tmp_path), sequential=2, burst=3, fetch_max_wait_ms=50
    )
    assert report["deliveries_verified"] == 1 + 2 + 3  # the warm-up, then every one, each verified
    for phase, count in (("sequential", 2), ("burst", 3)):
        assert report[phase]["results"] == count
        latency = report[phase]["latency_ms"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
