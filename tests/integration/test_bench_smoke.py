"""Every benchmark run once with tiny parameters against the session's broker and S3 server (the JSON shape is
checked, never timings: this machine's speed is not the point). The pure statistics they rest on are unit-tested in
tests/unit/test_bench_stats.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import duty_cycle, overhead, resources, run_all, scale_out, soak
from bench.client import SMALL
from bench.infra import Infra
from consumer.memory.modes import MODES
from tests.support import REPO

# --- every benchmark, tiny ----------------------------------------------------------------------------------------


@pytest.fixture
def bench_infra(broker: str, s3_endpoint: str, tmp_path: Path) -> Infra:
    return Infra(bootstrap=broker, s3_endpoint=s3_endpoint, log_dir=tmp_path)


@pytest.mark.timeout(240)
async def test_every_benchmark_runs_tiny_and_reports_its_shape(bench_infra: Infra, tmp_path: Path) -> None:
    # Concurrently: each starts its own worker processes on its own topics, and most of the time is their start-up.
    duty, over, scale, res, chaos = await asyncio.gather(
        duty_cycle.measure(bench_infra, render_s=[0.2], requests=[4], video=SMALL),
        overhead.measure(bench_infra, requests=8, latency_samples=3, warmup=2),
        scale_out.measure(bench_infra, workers=(1, 2), render_s=0.1, requests=8),
        resources.measure(bench_infra, requests=10, warmup=2),
        soak.measure(
            bench_infra,
            requests=30,
            workers=2,
            render_s=0.01,
            kill_every=(1.0, 1.5),
            max_kills=1,
            chaos_s=30,
            settle_s=90,
            rate_per_s=30,
            seed=7,
        ),
    )

    (run,) = duty["runs"]
    for mode in ("pipelined", "sequential"):
        figures = run[mode]
        assert 0 < figures["hold_fraction"] <= 1
        assert 0 < figures["render_fraction"] <= 1
        assert figures["renders"] == 3  # 4 minus the warm-up render
        assert len(figures["timeline"]["hold"]) == 3
    assert set(run["idle_cut_by_pipelining"]) == {"hold_fraction_gain", "throughput_ratio"}

    for name in ("worker", "floor", "floor_short_fetch_wait"):
        assert over[name]["throughput_per_s"] > 0
        assert set(over[name]["latency_ms"]) == {"p50", "p90", "p99", "mean", "max"}
        assert over[name]["cpu_ms_per_request"] > 0
    assert set(over["worker"]["latency_stages_p50_ms"]) == {"pickup", "processing", "delivery"}
    assert set(over["ratio_to_floor"]) == {"throughput", "latency_p50", "latency_p99"}
    assert over["object_bytes"] > 0

    assert [point["workers"] for point in scale["points"]] == [1, 2]
    assert scale["points"][0]["ratio_to_1_worker"] == 1.0
    assert sum(scale["points"][1]["results_per_worker"].values()) == 8

    assert res["statuses"] == ["completed"]
    assert {"rss_mb", "open_fds"} <= set(res["after"])
    assert isinstance(res["rss_growth_mb"], float)
    assert isinstance(res["fd_growth"], int)

    assert chaos["sent"] == 30
    assert chaos["lost"] == 0
    assert chaos["completed"] == 30
    assert chaos["kills"] == 1
    # Duplicates come only from the killed worker's uncommitted records, and say the same as the first answer.
    assert chaos["requests_with_duplicates"] <= chaos["duplicated"] <= chaos["sent"]
    assert chaos["duplicates_differing"] == 0
    assert chaos["worker_processes"] == 3
    assert set(chaos["rss_growth_mb"]) == {"max", "busiest_worker"}

    pytest.importorskip("matplotlib")
    report: dict[str, Any] = {"duty_cycle": duty, "scale_out": scale}
    run_all.plot(report, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(300)
def test_render_modes_bench_runs_tiny_and_prints_json() -> None:
    done = subprocess.run(
        # 128x128x5 runs the same code as the default tiny size in a fraction of the time: ~8 s on an idle 2-core
        # runner, ~50 s on one busy with other test runs, so the limit only catches a hang.
        [sys.executable, "-m", "bench.render_modes", "--tiny", "--size", "128x128x5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["model"] == "tiny"
    assert {"device", "torch", "diffusers", "text_encoder", "guidance_scale"} <= report.keys()
    runs = report["runs"]
    assert {(r["design"], r["mode"]) for r in runs} == {("mode", m.value) for m in MODES} | {
        ("seed", "fp16+model_cpu_offload"),
        ("optimisation", "exact"),
        ("optimisation", "step_cache(threshold=0.1)"),
        ("optimisation", "fp8"),
    }
    measured = [r for r in runs if "skipped" not in r]
    assert {r["mode"] for r in measured} >= {"resident", "vae_tiling"}
    for run in measured:
        assert run["seconds"] > 0 and run["seconds_per_step"] > 0
        assert run["steps"] == (10 if run["design"] == "optimisation" else 2)
        assert run["peak_bytes"] > 0
        if run["design"] == "mode":
            # The estimator, calibrated on the full-size VAE, must not promise less than the tiny model takes.
            assert run["peak_bytes"] <= run["estimate_bytes"] <= 2 * run["peak_bytes"], run
    cached = next(r for r in runs if r["mode"].startswith("step_cache"))
    assert cached["steps_computed"] + cached["steps_reused"] == 10 and cached["steps_reused"] > 0
    assert 0 < cached["drift_mean_abs_8bit"] < 2 and cached["drift_psnr_db"] > 40
