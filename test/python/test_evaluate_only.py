"""Evaluation only: a finished run whose evaluation settings changed keeps its training hash (specHash) and gets a
node that evaluates its saved model again. On that node the runner stages the run's saved output (the model and
metrics.json) and no checkpoint; the trainer must not train, and eval.json records the new evaluation hash."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import TRAINER, run_job
from test_evaluation import NUMBER_EVAL, prepare, scoring, train_env
from specs import train_spec

TRAINING_HASH = "1" * 16


def test_a_changed_evaluation_is_computed_from_the_saved_model_without_training(tmp_path: Path, tiny_causal: Path) -> None:
    data, prep, res = prepare(tmp_path / "prep", "alpaca", NUMBER_EVAL)
    assert res.rc == 0, str(res)
    first = train_spec(
        str(tiny_causal), "causal-lm", prep["prepHash"], training={"maxSteps": 4, "saveSteps": 2, "evalSteps": 2},
        evaluation=scoring({"shape": "number"}, ["exact_match"], True), specHash=TRAINING_HASH, evaluationHash="a" * 16,
    )
    env = train_env(tmp_path, first, data)
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    out = tmp_path / "output"
    trained = (out / "metrics.json").read_bytes()
    assert json.loads((out / "eval.json").read_text())["evaluationHash"] == "a" * 16
    assert json.loads((out / "baseline" / "eval.json").read_text())["evaluationHash"] == "a" * 16

    # The evaluation-only node: other evaluation settings, the same training hash, the saved output and no checkpoint.
    changed = {**first, "evaluation": scoring({"shape": "number"}, ["exact_match", "mae"], True, generation={"maxNewTokens": 6, "batchSize": 3}),
               "evaluationHash": "b" * 16}
    shutil.rmtree(tmp_path / "checkpoints")
    env = train_env(tmp_path, changed, data)
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    assert "evaluating only" in res.out and "trainable parameters" not in res.out, res.out
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir()), "no training step, no checkpoint"
    assert (out / "metrics.json").read_bytes() == trained, "the saved model's metrics.json is not rewritten: nothing was retrained"
    for folder in (out, out / "baseline"):
        report = json.loads((folder / "eval.json").read_text())
        assert report["evaluationHash"] == "b" * 16 and report["specHash"] == TRAINING_HASH
        assert set(report["metrics"]) >= {"exact_match", "mae"}
        assert report["settings"]["generation"]["maxNewTokens"] == 6
    assert "evaluation: the base model" in res.out, "new evaluation settings compute the baseline again"

    # The same settings once more: both parts are current, nothing is redone.
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    assert "nothing to redo" in res.out
