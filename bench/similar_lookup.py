"""Benchmark: how long the similar-video fallback's lookup in the job API's view takes
(`consumer.api.view.similar_index`), with `--jobs` completed jobs in the view, and whether an unmatched lookup's time
depends on another tenant's rows.

The view (a fresh SQLite file, filled through the store's own `apply` as the API fills it) holds `--jobs` completed,
non-degraded jobs with uploaded start images, spread over 100 tenants: each job's print is random (a random SHA-256,
a random informative perceptual hash and colours), except that tenant `shop-0` has `--copies` videos of one photo P
(re-encodes: hashes 0-2 bits from P's). Timed, each `--repeat` times:

- `matched`: shop-0 looks P up (finds its most recent video of P);
- `unmatched_other_tenant_has_it`: shop-1 looks P up (shop-0's rows share every key with it: never read);
- `unmatched_nobody_has_it`: shop-1 looks up a photo nobody has;
- `unmatched_new_tenant`: a tenant with no job looks P up.

With `--hook`, the product hook's index of product videos instead (`producer_examples.product_videos`): `--jobs`
completed results the size a worker publishes (presigned URLs included) of 100 shops, `shop-0` holding
`PER_PRODUCT` videos of product `p-0`, every other result a random shop's own product; timed: `matched` (shop-0
looks p-0 up), `unmatched_other_tenant_has_it` (shop-1 looks p-0 up), `unmatched_new_tenant`; and the memory the
index holds (tracemalloc, its results included).

    python -m bench.similar_lookup [--hook] [--jobs 100000] [--copies 200] [--repeat 2000] [--output F]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.infra import machine_info, print_report
from bench.watch_lookup import completed_result
from consumer.api.view.database import ViewDatabase
from consumer.api.view.job_state import Answered, Event, Submitted
from consumer.core.similar import ImagePrint
from producer_examples.product_videos import PER_PRODUCT, ProductVideos
from producer_examples.products import HOOK_SOURCE
from schemas.events import VideoRequest

__all__ = ["main", "measure", "measure_hook"]

_T0 = datetime(2026, 12, 1, tzinfo=UTC)
_TENANTS = 100
_BATCH = 500


def _random_print(rng: random.Random) -> ImagePrint:
    phash = 0
    while not 12 <= phash.bit_count() <= 52:
        phash = rng.getrandbits(64)
    return ImagePrint(f"{rng.getrandbits(256):064x}", phash, rng.randbytes(12))


def _copy(image: ImagePrint, rng: random.Random) -> ImagePrint:
    flipped = sum(1 << rng.randrange(64) for _ in range(rng.randint(0, 2)))
    return ImagePrint(f"{rng.getrandbits(256):064x}", image.phash ^ flipped, image.colors)


def _job(job_id: str, tenant: str, image: ImagePrint, at: datetime) -> list[Event]:
    request = VideoRequest(request_id=job_id, tenant_id=tenant, prompt="a product turning", width=512, height=512)
    result = completed_result(job_id, tenant)
    return [Submitted(request, at, image_print=image.text), Answered(result, result.timings.completed_at)]


def _fill(view: ViewDatabase, jobs: int, photo: ImagePrint, copies: int, rng: random.Random) -> float:
    started = time.perf_counter()
    events: list[Event] = []
    for n in range(jobs):
        at = _T0 + timedelta(seconds=n)
        if n % (jobs // copies) == 0 and n // (jobs // copies) < copies:
            events += _job(f"job-{n}", "shop-0", _copy(photo, rng), at)
        else:
            events += _job(f"job-{n}", f"shop-{rng.randrange(_TENANTS)}", _random_print(rng), at)
        if len(events) >= 2 * _BATCH:
            view.apply(events, {}, {})
            events = []
    view.apply(events, {}, {})
    return time.perf_counter() - started


def _timed(lookup: Callable[[], object], repeat: int) -> dict[str, float]:
    micros: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        lookup()
        micros.append((time.perf_counter_ns() - started) / 1000)
    micros.sort()
    return {"median_us": round(statistics.median(micros), 1), "p99_us": round(micros[len(micros) * 99 // 100], 1)}


def measure(jobs: int, copies: int, repeat: int) -> dict[str, object]:
    rng = random.Random(7)
    photo, nobody = _random_print(rng), _random_print(rng)
    with tempfile.TemporaryDirectory() as directory:
        view = ViewDatabase(str(Path(directory) / "view.sqlite"))
        fill_s = _fill(view, jobs, photo, copies, rng)
        found = view.similar("shop-0", photo, 512, 512)
        if found is None or view.similar("shop-1", photo, 512, 512) is not None:
            raise RuntimeError("the lookup's answers are wrong")
        rows = view._db.execute("SELECT COUNT(*) FROM image_keys").fetchone()[0]
        timings = {
            "matched": _timed(lambda: view.similar("shop-0", photo, 512, 512), repeat),
            "unmatched_other_tenant_has_it": _timed(lambda: view.similar("shop-1", photo, 512, 512), repeat),
            "unmatched_nobody_has_it": _timed(lambda: view.similar("shop-1", nobody, 512, 512), repeat),
            "unmatched_new_tenant": _timed(lambda: view.similar("shop-new", photo, 512, 512), repeat),
        }
    return {
        "jobs": jobs,
        "tenants": _TENANTS,
        "copies_of_the_photo": copies,
        "index_rows": rows,
        "fill_s": round(fill_s, 1),
        "matched_job": found.id,
        "repeat": repeat,
        **timings,
    }


def measure_hook(videos: int, repeat: int) -> dict[str, object]:
    rng = random.Random(7)
    tracemalloc.start()
    started = time.perf_counter()
    index = ProductVideos(videos)
    for n in range(videos):
        shop, product = ("shop-0", "p-0") if n < PER_PRODUCT else (f"shop-{rng.randrange(_TENANTS)}", f"p-{n}")
        result = completed_result(f"hook:{n:032x}", shop)
        index.add(result.model_copy(update={"metadata": {"product_id": product, "source": HOOK_SOURCE}}))
    fill_s = time.perf_counter() - started
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    found = index.latest("shop-0", "p-0", 512, 512)
    if found is None or index.latest("shop-1", "p-0", 512, 512) is not None or len(index) != videos:
        raise RuntimeError("the lookup's answers are wrong")
    return {
        "index": "product_hook",
        "videos": videos,
        "shops": _TENANTS,
        "fill_s": round(fill_s, 1),
        "index_mib": round(held / 2**20, 1),
        "bytes_per_video": round(held / videos),
        "repeat": repeat,
        "matched": _timed(lambda: index.latest("shop-0", "p-0", 512, 512), repeat),
        "unmatched_other_tenant_has_it": _timed(lambda: index.latest("shop-1", "p-0", 512, 512), repeat),
        "unmatched_new_tenant": _timed(lambda: index.latest("shop-new", "p-0", 512, 512), repeat),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.similar_lookup", description=__doc__)
    parser.add_argument("--hook", action="store_true", help="the product hook's index instead of the API's view")
    parser.add_argument("--jobs", type=int, default=100_000, help="completed jobs in the view (videos in the index)")
    parser.add_argument("--copies", type=int, default=200, help="shop-0's videos of the looked-up photo")
    parser.add_argument("--repeat", type=int, default=2000, help="lookups timed per case")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    report = {
        "benchmark": "similar_lookup",
        "machine": machine_info(),
        **(measure_hook(args.jobs, args.repeat) if args.hook else measure(args.jobs, args.copies, args.repeat)),
    }
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
