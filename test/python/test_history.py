"""The training history (metrics.jsonl): what the trainer appends, line by line, on a tiny model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema

from conftest import ROOT, TRAINER, run_job, write_spec
from specs import train_spec

HISTORY_SCHEMA = json.loads((ROOT / "containers" / "schemas" / "metrics-history.schema.json").read_text())


def records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n"), "every record is a whole line"
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        jsonschema.validate(line, HISTORY_SCHEMA)
    return lines


def env_for(tmp: Path, spec: dict[str, Any], data: Path, history: Path) -> dict[str, Path]:
    return {
        "CAMPAIGN_SPEC": write_spec(tmp / "spec.json", spec),
        "CAMPAIGN_DATA_DIR": data,
        "CAMPAIGN_MODEL_DIR": tmp / "model",
        "CAMPAIGN_CHECKPOINT_DIR": tmp / "checkpoints",
        "CAMPAIGN_OUTPUT_DIR": tmp / "output",
        "CAMPAIGN_PROGRESS_FILE": tmp / "progress.json",
        "CAMPAIGN_METRICS_FILE": history,
    }


def test_every_logged_step_and_evaluation_is_appended_and_a_resumed_attempt_starts_at_its_checkpoint(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"])  # 6 steps, log every step, eval and save every 3
    first = tmp_path / "attempt-1.jsonl"
    res = run_job(TRAINER, **env_for(tmp_path, spec, data, first))
    assert res.rc == 0, str(res)
    lines = records(first)
    train = [r for r in lines if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] is not None and r["learningRate"] is not None and r["gradNorm"] is not None for r in train)
    assert train[0]["learningRate"] > train[-1]["learningRate"]  # linear decay
    assert all(r["tokens"] and r["tokens"] > 0 for r in train) and [r["tokens"] for r in train] == sorted(r["tokens"] for r in train)
    evals = [r for r in lines if r["kind"] == "eval"]
    # evalSteps 3 during training, then the final validation evaluation at step 6 (this data has no test split)
    assert [(r["step"], r["split"]) for r in evals] == [(3, "validation"), (6, "validation"), (6, "validation")]
    assert all("eval_loss" in r["metrics"] and "eval_runtime" not in r["metrics"] for r in evals)
    memory = [r for r in lines if r["kind"] == "memory"]
    assert len(memory) == 1 and memory[0]["devices"] == []  # no CUDA here
    end = [r for r in lines if r["kind"] == "end"]
    assert len(end) == 1 and end[0]["step"] == 6 and end[0]["firstStep"] == 0 and end[0]["stopped"] is False
    assert end[0]["tokens"] == train[-1]["tokens"] and end[0]["tokensPerSec"] and end[0]["tokensPerSec"] > 0

    # A new node: its own file; it resumes from checkpoint-3 and logs steps 4-6 again.
    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-6")
    shutil.rmtree(tmp_path / "output")
    second = tmp_path / "attempt-2.jsonl"
    res = run_job(TRAINER, **env_for(tmp_path, spec, data, second))
    assert res.rc == 0, str(res)
    again = records(second)
    assert [r["step"] for r in again if r["kind"] == "train"] == [4, 5, 6]
    resumed_end = [r for r in again if r["kind"] == "end"][0]
    assert resumed_end["firstStep"] == 3 and resumed_end["step"] == 6
    # tokens continue from the checkpoint's count, not from zero
    assert [r for r in again if r["kind"] == "train"][0]["tokens"] > train[2]["tokens"]


def test_evaluation_logs_are_split_by_prefix_and_lose_their_timings() -> None:
    from trainer.history import eval_metrics

    assert eval_metrics({"loss": 1.0, "learning_rate": 0.1}) is None
    assert eval_metrics({"eval_loss": 2.0, "eval_runtime": 3.1, "eval_samples_per_second": 9.0, "eval_token_accuracy": 0.5, "epoch": 1.0}) == (
        "validation", {"eval_loss": 2.0, "eval_token_accuracy": 0.5})
    assert eval_metrics({"test_loss": 1.5, "test_steps_per_second": 2.0}) == ("test", {"test_loss": 1.5})
