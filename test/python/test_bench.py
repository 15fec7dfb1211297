"""The trainer benchmark's CPU side: its stored plan estimates are those components/plan/estimate.ts computes
today, the Qwen2.5-0.5B shape it builds is the plan's, and one small case trains through the code the GPU check
uses (containers/trainer/benchmark.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT
from trainer import benchmark


def fresh_estimates() -> dict:
    if shutil.which("npx") is None or not (ROOT / "node_modules" / ".bin" / "tsx").exists():
        pytest.skip("npx tsx is not available (npm install): cannot recompute the plan's estimates")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([c.estimate_input() for c in benchmark.CASES], f)
    out = subprocess.run(["npx", "tsx", str(ROOT / "scripts" / "trainer-estimate.ts"), f.name], cwd=ROOT, capture_output=True, text=True, timeout=300)
    Path(f.name).unlink()
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_stored_estimates_are_the_plans_current_ones() -> None:
    stored = benchmark.load_estimates()
    assert stored == fresh_estimates(), "containers/trainer/bench-estimates.json is stale: python scripts/bench-trainer.py --write-estimates"
    for c in benchmark.CASES:
        assert benchmark.estimate_for(c, stored) is not None, c.name


def test_the_benchmark_builds_the_model_the_plan_estimates() -> None:
    stored = benchmark.load_estimates()
    plan = next(s["architecture"] for s in stored["cases"] if s.get("model") == "Qwen/Qwen2.5-0.5B")
    assert plan == benchmark.QWEN25_05B.architecture()
    assert benchmark.estimate_for(benchmark.case("lora-sdpa-packed"), stored)["totalParams"] == 494_032_768  # the published count


def test_gpu_names_map_to_the_catalog_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = benchmark.load_estimates()
    monkeypatch.delenv("CAMPAIGN_GPU_PEAK_TFLOPS", raising=False)
    assert benchmark.gpu_peak_tflops("NVIDIA H100 80GB HBM3", stored) == ("H100", 989)
    assert benchmark.gpu_peak_tflops("NVIDIA A100-SXM4-40GB", stored) == ("A100-40GB", 312)
    assert benchmark.gpu_peak_tflops("NVIDIA A10G", stored) == ("A10G", 70)
    assert benchmark.gpu_peak_tflops("NVIDIA L40S", stored) == ("L40S", 362)
    assert benchmark.gpu_peak_tflops("NVIDIA GeForce RTX 4090", stored) is None  # not in the catalog
    monkeypatch.setenv("CAMPAIGN_GPU_PEAK_TFLOPS", "165")
    assert benchmark.gpu_peak_tflops("NVIDIA GeForce RTX 4090", stored) == ("CAMPAIGN_GPU_PEAK_TFLOPS", 165.0)


def test_a_small_case_trains_and_reports_on_cpu() -> None:
    result = benchmark.run_case(benchmark.case("cpu-lora-sdpa-packed"), steps=2, warmup=1)
    assert result.steps == 2 and result.tokensPerSec > 0 and result.loss == result.loss
    assert result.paddingShare < 0.2 and result.flopsPerToken and result.flopsPerToken > 0
    assert result.peakAllocatedGiB is None and "GFLOP/s achieved" in result.line()
