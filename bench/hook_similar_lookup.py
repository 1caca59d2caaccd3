"""Benchmark: the product hook's index of product videos (`producer_examples.product_videos`) for its similar-video
fallback, filled with `--videos` completed results (each the size a worker publishes, presigned URLs included) of
100 shops: how long a lookup takes, and how much memory the index holds (tracemalloc, the results included).

Shop `shop-0` has `producer_examples.product_videos.PER_PRODUCT` videos of product `p-0`; every other result is a
random shop's own product. Timed, each `--repeat` times: `matched` (shop-0 looks p-0 up), `unmatched_other_shop_has_it`
(shop-1 looks p-0 up), `unmatched_new_shop`.

    python -m bench.hook_similar_lookup [--videos 100000] [--repeat 20000] [--output F]
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from pathlib import Path

from bench.infra import machine_info, print_report
from bench.similar_lookup import timed
from bench.watch_lookup import completed_result
from producer_examples.product_videos import PER_PRODUCT, ProductVideos
from producer_examples.products import HOOK_SOURCE

__all__ = ["main", "measure"]

_SHOPS = 100


def measure(videos: int, repeat: int) -> dict[str, object]:
    rng = random.Random(7)
    tracemalloc.start()
    started = time.perf_counter()
    index = ProductVideos(videos)
    for n in range(videos):
        shop, product = ("shop-0", "p-0") if n < PER_PRODUCT else (f"shop-{rng.randrange(_SHOPS)}", f"p-{n}")
        result = completed_result(f"hook:{n:032x}", shop)
        index.add(result.model_copy(update={"metadata": {"product_id": product, "source": HOOK_SOURCE}}))
    fill_s = time.perf_counter() - started
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    found = index.latest("shop-0", "p-0", 512, 512)
    if found is None or index.latest("shop-1", "p-0", 512, 512) is not None or len(index) != videos:
        raise RuntimeError("the lookup's answers are wrong")
    return {
        "videos": videos,
        "shops": _SHOPS,
        "fill_s": round(fill_s, 1),
        "index_mib": round(held / 2**20, 1),
        "bytes_per_video": round(held / videos),
        "repeat": repeat,
        "matched": timed(lambda: index.latest("shop-0", "p-0", 512, 512), repeat),
        "unmatched_other_shop_has_it": timed(lambda: index.latest("shop-1", "p-0", 512, 512), repeat),
        "unmatched_new_shop": timed(lambda: index.latest("shop-new", "p-0", 512, 512), repeat),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hook_similar_lookup", description=__doc__)
    parser.add_argument("--videos", type=int, default=100_000, help="completed product videos in the index")
    parser.add_argument("--repeat", type=int, default=20_000, help="lookups timed per case")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    report = {"benchmark": "hook_similar_lookup", "machine": machine_info(), **measure(args.videos, args.repeat)}
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
