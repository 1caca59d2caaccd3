"""Prometheus metrics of one worker, on a registry of its own so tests and embedded workers never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "resolution_label"]

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def resolution_label(width: int, height: int) -> str:
    """Bucket resolutions so the label stays low-cardinality whatever producers ask for."""
    pixels = width * height
    for name, limit in (("sd", 400_000), ("hd", 1_000_000)):
        if pixels <= limit:
            return name
    return "fhd"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            "vidgen_jobs",
            "Requests answered, by status and error code.",
            ["status", "error_code"],
            registry=r,
        )
        self.dead_letters = Counter("vidgen_dead_letters", "Records sent to the DLQ, by code.", ["code"], registry=r)
        self.render_seconds = Histogram(
            "vidgen_render_seconds",
            "Model render time.",
            ["resolution", "frames"],
            buckets=_SECONDS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            "vidgen_encode_seconds", "MP4 and poster encoding time.", buckets=_SECONDS, registry=r
        )
        self.upload_seconds = Histogram("vidgen_upload_seconds", "Object upload time.", buckets=_SECONDS, registry=r)
        self.queue_wait_seconds = Histogram(
            "vidgen_queue_wait_seconds", "Record timestamp to render start.", buckets=_SECONDS, registry=r
        )
        self.video_bytes = Histogram(
            "vidgen_video_bytes",
            "Size of the MP4s produced.",
            buckets=(1e4, 1e5, 5e5, 1e6, 5e6, 1e7, 5e7, 1e8),
            registry=r,
        )
        self.records_fetched = Counter("vidgen_records_fetched", "Records taken from Kafka.", registry=r)
        self.inflight = Gauge("vidgen_inflight_jobs", "Requests being processed.", registry=r)
        self.partitions_paused = Gauge("vidgen_partitions_paused", "Assigned partitions currently paused.", registry=r)
        self.cache_hits = Counter("vidgen_cache_hits", "Requests answered from an existing object.", registry=r)
        self.vram_free = Gauge("vidgen_vram_free_bytes", "Free device memory at the last probe.", registry=r)
        self.vram_total = Gauge("vidgen_vram_total_bytes", "Total device memory.", registry=r)
        self.job_estimate_bytes = Gauge(
            "vidgen_job_estimate_bytes", "Estimated peak memory reserved by admitted jobs.", registry=r
        )
        self.memory_waiting = Gauge(
            "vidgen_memory_waiting_jobs", "Jobs waiting for device memory (fetching is paused meanwhile).", registry=r
        )
        self.admission_wait_seconds = Counter(
            "vidgen_admission_wait_seconds", "Time jobs spent waiting for memory (partitions paused).", registry=r
        )
        self.renders = Counter("vidgen_renders", "Renders by memory mode.", ["memory_mode"], registry=r)
        self.rebalances = Counter(
            "vidgen_rebalances", "Partition assignments received (each rebalance counts once).", registry=r
        )
        self.consumer_lag = Gauge(
            "vidgen_consumer_lag",
            "Records not yet fetched, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.cancellations = Counter(
            "vidgen_cancellations",
            "Cancel commands that found their job: queued (answered without rendering), rendering (stopped at the "
            "next denoising step) or late (past its render, left to finish).",
            ["stage"],
            registry=r,
        )
        self.control_ignored = Counter(
            "vidgen_control_ignored",
            "Control commands ignored: invalid, key_mismatch (key is not the request id) or wrong_tenant.",
            ["reason"],
            registry=r,
        )
        self.checkpoints = Counter(
            "vidgen_checkpoints",
            "Render states saved at a step boundary: periodic and handed_back (to object storage), paused (in memory).",
            ["reason"],
            registry=r,
        )
        self.checkpoint_write_seconds = Histogram(
            "vidgen_checkpoint_write_seconds", "Serialising and uploading one checkpoint.", buckets=_SECONDS, registry=r
        )
        self.checkpoint_bytes = Histogram(
            "vidgen_checkpoint_bytes",
            "Size of the checkpoints stored.",
            buckets=(1e4, 1e5, 1e6, 4e6, 1.6e7, 6.4e7, 2.56e8),
            registry=r,
        )
        self.resumes = Counter(
            "vidgen_resumes",
            "Renders resumed from a checkpoint: from object storage or from memory.",
            ["source"],
            registry=r,
        )
        self.preemptions = Counter(
            "vidgen_preemptions", "Bulk renders asked to pause for a waiting interactive request.", registry=r
        )
        self.worker_crash_refusals = Counter(
            "vidgen_worker_crash_refusals",
            "Requests not started again because workers that started them died VIDGEN_MAX_WORKER_CRASHES times.",
            registry=r,
        )
