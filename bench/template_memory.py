"""A template worker's memory at full concurrency with the largest requests: one worker process with
`VIDGEN_MODEL=template` (`python -m consumer run`) under a memory limit it reads as a cgroup v2 `memory.max` (under
`VIDGEN_CGROUP_ROOT`; by default the deploy/k8s template pod's 4 GiB), through a real broker (tansu) and S3 server
(moto). A burst of the largest allowed requests (1024x1024x49 by default; every other one animates a 1600x1200
start image, the rest are title cards) arrives at once; the resident memory of the worker and its children (the
start-image sandboxes) is sampled every 5 ms with psutil.

    python -m bench.template_memory [--count 6] [--size 1024x1024x49] [--limit-mib 4096] [--output F]

Prints one JSON report: the worker idle (after one warm-up job) and at its peak, its growth, the budget it admitted
against (`vidgen_vram_total_bytes`: the limit less the idle worker), the seconds jobs waited for memory, and whether
the peak stayed under the limit. The worker runs with its default settings otherwise (two render slots, four
finishing, a 1 GiB + 5% margin, 768 MiB per start-image decode).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.client import Client, make_requests
from bench.infra import Infra, embedded_infra, machine_info, new_run, print_report
from bench.template_e2e import upload_photo
from bench.workers import running_workers

__all__ = ["TreePeak", "main", "measure"]

_MIB = 1 << 20
_TIMEOUT_S = 1_800.0


class TreePeak:
    """The largest resident memory of a process and its children (the decode sandboxes), sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> int:
        total = 0
        for process in (self._process, *self._process.children(recursive=True)):
            with contextlib.suppress(psutil.Error):  # a sandbox child may be gone between listing and reading
                total += process.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.now())
            time.sleep(0.005)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure(infra: Infra, *, count: int, size: tuple[int, int, int], limit_bytes: int) -> dict[str, Any]:
    width, height, frames = size
    video = {"width": width, "height": height, "num_frames": frames}
    pool = new_run(infra, "template-memory").template_pool()
    with tempfile.TemporaryDirectory(prefix="vidgen-cgroup-") as cgroup:
        (Path(cgroup) / "memory.max").write_text(f"{limit_bytes}\n", encoding="ascii")
        extra = {"VIDGEN_MODEL": "template", "VIDGEN_CGROUP_ROOT": cgroup, "VIDGEN_MAX_FINISHING_JOBS": "4"}
        async with running_workers(infra, pool, 1, render_s=0, extra=extra) as (worker,), Client(pool) as client:
            image_url = await upload_photo(pool)
            warm = make_requests("warm-up", 1, video={"width": 256, "height": 256, "num_frames": 5})
            await client.send(warm)
            if not await client.wait_for([warm[0]["request_id"]], timeout_s=_TIMEOUT_S):
                raise TimeoutError("the warm-up request was not answered")
            await asyncio.sleep(1)
            tree = TreePeak(worker.pid)
            idle = tree.now()
            burst = [
                {**body, "image_url": image_url} if index % 2 else body
                for index, body in enumerate(make_requests("burst", count, video=video))
            ]
            started = time.monotonic()
            with tree:
                await client.send(burst)
                answered = await client.wait_for([body["request_id"] for body in burst], timeout_s=_TIMEOUT_S)
            wall_s = time.monotonic() - started
            arrivals = client.first_results(body["request_id"] for body in burst)
            statuses = sorted(
                f"{a.result.status}:{a.result.error.code if a.result.error else ''}" for a in arrivals.values()
            )
            budget = await worker.metric("vidgen_vram_total_bytes")
            waited_s = await worker.metric("vidgen_admission_wait_seconds_total")
    return {
        "machine": machine_info(),
        "video": {**video, "count": count, "start_images": count // 2},
        "answered": answered,
        "statuses": statuses,
        "limit_mib": limit_bytes // _MIB,
        "budget_mib": round(budget / _MIB),
        "idle_mib": round(idle / _MIB),
        "peak_mib": round(tree.peak / _MIB),
        "grew_mib": round((tree.peak - idle) / _MIB),
        "peak_under_limit": tree.peak <= limit_bytes,
        "admission_wait_s": round(waited_s, 1),
        "wall_s": round(wall_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=6, help="requests in the burst")
    parser.add_argument("--size", default="1024x1024x49", help="WxHxF")
    parser.add_argument("--limit-mib", type=int, default=4096, help="the worker's memory limit (cgroup memory.max)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    width, height, frames = (int(part) for part in args.size.split("x"))
    with embedded_infra() as infra:
        report = asyncio.run(
            measure(infra, count=args.count, size=(width, height, frames), limit_bytes=args.limit_mib * _MIB)
        )
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
