"""The families benchmark: its full-size models are the published checkpoints' shapes (built on the meta device: no
memory, no weights) wired into each family's own pipelines, and its CPU run reports one row per kind; the step
cache's comparison runs."""

from __future__ import annotations

import pytest
import torch

from bench import families, step_cache_compare
from bench.family_full import CHECKPOINTS, full_model, parameter_counts

# Transformer parameters of the published checkpoints (billions, the model cards' sizes).
PUBLISHED = {"wan": 5.0, "ltx": 1.92, "hunyuanvideo15": 8.33, "cogvideox": 5.57}
SIZE_MULTIPLE = {"wan": 32, "ltx": 32, "hunyuanvideo15": 16, "cogvideox": 16}


@pytest.mark.parametrize("family", list(CHECKPOINTS))
def test_a_full_size_model_has_the_published_shape_and_its_family_rules(family: str) -> None:
    assert parameter_counts(family)["transformer"] / 1e9 == pytest.approx(PUBLISHED[family], abs=0.01)
    model = full_model(family, torch.device("meta"), torch.bfloat16)
    assert model.adapter.family.name == family and model.rules is not None
    assert model.rules.size_multiple == SIZE_MULTIPLE[family]
    assert model.rules.start_image
    for pipeline in model.pipelines.each():
        assert pipeline.transformer.dtype == torch.bfloat16
        assert sum(p.numel() for p in pipeline.transformer.parameters()) / 1e9 == pytest.approx(
            PUBLISHED[family], abs=0.01
        )


def test_the_cpu_run_reports_each_kind_with_its_estimate() -> None:
    report = families.main(["--family", "ltx", "--steps", "2"])
    assert [(row["family"], row["kind"]) for row in report["runs"]] == [("ltx", "i2v"), ("ltx", "t2v")]
    for row in report["runs"]:
        assert row["size"] == "64x64x9" and row["seconds_per_video"] > 0 and row["gflop"] > 0
        assert row["measured_peak_mib"] > row["weights_mib"] > 0 and row["estimate_mib"] > 0
        assert row["fraction_of_bf16_peak"] is None  # no bf16 peak on a CPU


def test_the_step_cache_comparison_reports_each_threshold_against_the_exact_path() -> None:
    report = step_cache_compare.main(["--layers", "3", "--steps", "8", "--size", "64x64x5"])
    exact, *cached = report["runs"]
    assert exact["cache"] == "exact" and len(cached) == len(step_cache_compare.THRESHOLDS)
    for row in cached:
        assert row["steps_computed"] + row["steps_reused"] == 8 and row["steps_computed"] >= 4  # 4 warm-up steps
        assert row["drift_psnr_db"] > 20
