"""Benchmark: how well the similar-video fallback's print (`consumer.core.similar`) tells one product photo from
another. `--photos` distinct generated product photos (`bench.product_photos`: distinct products on near-identical
studio backgrounds, the hard case) are printed as the job API prints an upload, and so are copies of each: a JPEG
re-encode at quality 70 and a downscale to 60 % saved as JPEG.

Reported: the pairs of distinct photos the rules call the same (false matches: each would answer one product's
request with another product's video) and the pairs within the hash distance that only the colours tell apart; the
copies the rules match (true matches); the bit distances of copies and of distinct photos; and the rows a lookup
would touch per band key (distinct photos sharing at least one index key with a given one).

    python -m bench.similar_match [--photos 300] [--size 512] [--output F]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

from PIL import Image

from bench.infra import machine_info, print_report
from bench.product_photos import jpeg_bytes, png_bytes, print_of, product_photo
from consumer.core.similar import MAX_DISTANCE, ImagePrint, index_keys, same_image

__all__ = ["main", "measure"]


def _distance(a: ImagePrint, b: ImagePrint) -> int:
    return (a.phash ^ b.phash).bit_count()


def measure(photos: int, size: int) -> dict[str, object]:
    started = time.perf_counter()
    originals: list[ImagePrint] = []
    copies: list[tuple[ImagePrint, ImagePrint]] = []
    for seed in range(photos):
        photo = product_photo(seed, (size, size))
        originals.append(print_of(png_bytes(photo)))
        small = photo.resize((size * 3 // 5, size * 3 // 5), Image.Resampling.LANCZOS)
        copies.append((print_of(jpeg_bytes(photo, quality=70)), print_of(jpeg_bytes(small))))
    print_ms = (time.perf_counter() - started) * 1000 / (3 * photos)
    pairs = list(itertools.combinations(originals, 2))
    false_matches = sum(1 for a, b in pairs if same_image(a, b))
    within_distance = sum(1 for a, b in pairs if _distance(a, b) <= MAX_DISTANCE)
    copy_distances = [
        _distance(original, copy) for original, both in zip(originals, copies, strict=True) for copy in both
    ]
    true_matches = sum(
        1 for original, both in zip(originals, copies, strict=True) for copy in both if same_image(original, copy)
    )
    keys = [set(index_keys(image)) for image in originals]
    sharing = [sum(1 for j, other in enumerate(keys) if j != i and mine & other) for i, mine in enumerate(keys)]
    return {
        "photos": photos,
        "size": size,
        "distinct_pairs": len(pairs),
        "false_matches": false_matches,
        "false_match_rate": false_matches / len(pairs),
        "distinct_pairs_within_distance": within_distance,
        "copies": len(copy_distances),
        "true_matches": true_matches,
        "true_match_rate": true_matches / len(copy_distances),
        "copy_distance_max": max(copy_distances),
        "distinct_distance_min": min(_distance(a, b) for a, b in pairs),
        "distinct_distance_median": statistics.median(_distance(a, b) for a, b in pairs),
        "informative": sum(1 for image in originals if image.informative),
        "photos_sharing_a_key_mean": round(statistics.fmean(sharing), 2),
        "photos_sharing_a_key_max": max(sharing),
        "print_ms": round(print_ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.similar_match", description=__doc__)
    parser.add_argument("--photos", type=int, default=300, help="distinct generated product photos")
    parser.add_argument("--size", type=int, default=512, help="their width and height in pixels")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    report = {"benchmark": "similar_match", "machine": machine_info(), **measure(args.photos, args.size)}
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
