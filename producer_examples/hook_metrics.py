"""The product hook's Prometheus metrics (served at /metrics beside /healthz), on a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from producer_examples.pool_watch import PoolWatch

__all__ = ["HookMetrics"]


class HookMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.degraded = Counter(
            "vidgen_hook_degraded",
            "Requests sent to the template pool or answered with an earlier video, by reason: busy, pool_down.",
            ["reason"],
            registry=self.registry,
        )
        self.similar = Counter(
            "vidgen_hook_similar",
            "Requests answered at once with an earlier video of the shop's product (the fallback `similar`).",
            registry=self.registry,
        )
        self.gpu_queue = Gauge(
            "vidgen_hook_gpu_queue",
            "Requests on the GPU pool's topics not yet answered (its consumer group's lag), as last read.",
            registry=self.registry,
        )
        self.gpu_pool_down = Gauge(
            "vidgen_hook_gpu_pool_down", "1 while the GPU pool counts as down.", registry=self.registry
        )

        self.product_videos = Gauge(
            "vidgen_hook_product_videos",
            "Completed product videos in the hook's index for the fallback `similar` (0 when no shop uses it).",
            registry=self.registry,
        )

    def watch(
        self, pool: Callable[[], PoolWatch | None], product_videos: Callable[[], int], *, pool_down_s: float
    ) -> None:
        """Read the gauges at scrape time: the GPU pool's from the hook's current watch (`pool()`; None: not
        started), and how many product videos its index holds."""

        def lag() -> float:
            watch = pool()
            return float(watch.lag or 0) if watch is not None else 0.0

        def down() -> float:
            watch = pool()
            return float(watch is not None and watch.down(pool_down_s))

        self.gpu_queue.set_function(lag)
        self.gpu_pool_down.set_function(down)
        self.product_videos.set_function(lambda: float(product_videos()))
