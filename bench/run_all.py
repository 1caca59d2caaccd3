"""`make bench`: benchmarks 1-4 on one embedded broker and S3 server, with defaults sized for a few minutes on a
2-core machine. Writes bench/results/report.json (every figure, machine info, timestamp) and report.png (the
duty-cycle timeline at R = 1 s, pipelined vs sequential, and the scale-out curve), and prints the report.
The soak (`python -m bench.soak`) is separate.

    python -m bench.run_all [--output-dir bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import duty_cycle, overhead, resources, scale_out
from bench.infra import REPO_ROOT, Infra, embedded_infra, machine_info

__all__ = ["main", "plot"]

BENCHMARKS = {
    "duty_cycle": duty_cycle.measure,
    "overhead": overhead.measure,
    "scale_out": scale_out.measure,
    "resources": resources.measure,
}


async def run_all(infra: Infra) -> dict[str, Any]:
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": _git_state(),
        "machine": machine_info(),
    }
    for name, measure in BENCHMARKS.items():
        started = time.monotonic()
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        report[name] = await measure(infra)
        report[name]["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """The duty-cycle timeline (R closest to 1 s, first 15 s) and the scale-out curve, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (timeline, curve) = plt.subplots(
        2, 1, figsize=(11, 7.5), gridspec_kw={"height_ratios": [1.1, 1]}, layout="constrained"
    )
    run = min(report["duty_cycle"]["runs"], key=lambda r: abs(r["render_s"] - 1.0))
    window = 15.0
    for row, mode in enumerate(("sequential", "pipelined")):
        figures = run[mode]
        calls = [(start, end - start) for start, end in figures["timeline"]["render"] if start < window]
        holds = [(start, end - start) for start, end in figures["timeline"]["hold"] if start < window]
        timeline.broken_barh(calls, (row - 0.38, 0.76), facecolors="#c6dbef", edgecolors="#6baed6", linewidth=0.5)
        timeline.broken_barh(holds, (row - 0.25, 0.5), facecolors="#08519c")
    timeline.set_yticks(
        [0, 1],
        [
            f"sequential (1 in flight)\nhold {run['sequential']['hold_fraction']:.3f}, "
            f"render {run['sequential']['render_fraction']:.3f}",
            f"pipelined (2 in flight)\nhold {run['pipelined']['hold_fraction']:.3f}, "
            f"render {run['pipelined']['render_fraction']:.3f}",
        ],
    )
    timeline.set_xlim(0, window)
    timeline.set_xlabel("seconds since the first measured render")
    timeline.set_title(
        f"Duty cycle, one worker, stand-in render R = {run['render_s']:g} s, 512x512x25 encoded and uploaded\n"
        "dark: model held (render_started_at + R); light: (render_started_at, render_finished_at) from the results",
        fontsize=10,
    )

    points = report["scale_out"]["points"]
    workers = [point["workers"] for point in points]
    ratios = [point["ratio_to_1_worker"] for point in points]
    curve.plot(workers, workers, linestyle="--", color="grey", label="linear")
    curve.plot(workers, ratios, marker="o", color="#08519c", label="measured")
    for count, ratio in zip(workers, ratios, strict=True):
        curve.annotate(f"{ratio:.2f}x", (count, ratio), textcoords="offset points", xytext=(6, -12))
    curve.set_xticks(workers)
    curve.set_xlabel("worker processes (one consumer group, 8 partitions)")
    curve.set_ylabel("throughput / 1 worker")
    curve.set_title(f"Scale-out, stand-in render R = {report['scale_out']['render_s']:g} s", fontsize=10)
    curve.legend()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _git(*args: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return None


def _git_state() -> dict[str, Any]:
    """The commit measured, and the worker's files that differed from it (the tree may be mid-edit)."""
    commit = _git("rev-parse", "HEAD")
    changed = _git("status", "--porcelain", "--", "consumer", "schemas")
    return {
        "commit": commit.strip() if commit else None,
        "worker_files_changed": [line[3:] for line in (changed or "").splitlines()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401 - fail before minutes of benchmarks, not after
    except ImportError:
        print("bench: matplotlib is missing (pip install matplotlib)", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            return await run_all(infra)

    started = time.monotonic()
    report = asyncio.run(run())
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.output_dir / "report.png")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
