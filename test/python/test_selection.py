"""training.selectBy on tiny models: prep sets validation rows apart in a seeded order; the trainer scores them at every
evaluation as eval_task_<metric>, keeps the checkpoint with the best value (in the metric's own direction) as the
output model, and early stopping stops on it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from conftest import TRAINER, run_job
from specs import train_spec
from test_evaluation import NUMBER_EVAL, prepare, scoring, train_env

SELECT = {**NUMBER_EVAL, "selectionRows": 8}


def logged(state: dict[str, Any], key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged evaluation that carries `key`."""
    return [(e["step"], e[key]) for e in state["log_history"] if key in e]


def final_state(checkpoints: Path) -> dict[str, Any]:
    newest = max(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((newest / "trainer_state.json").read_text())


def test_prep_keeps_validation_rows_in_a_seeded_order_whose_prefix_is_a_sample(tmp_path: Path) -> None:
    data, _, res = prepare(tmp_path / "a", "alpaca", SELECT, rows=200)
    assert res.rc == 0, str(res)
    manifest = json.loads((data / "manifest.json").read_text())
    sel = manifest["selection"]
    assert sel["split"] == "validation" and sel["rows"] == 8 and sel["ofRows"] == manifest["splits"]["validation"]["examples"]
    rows = pq.read_table(data / sel["files"][0]["path"]).to_pylist()
    validation = set(pq.read_table(data / manifest["splits"]["validation"]["files"][0]["path"]).column("prompt").to_pylist())
    assert all(r["prompt"] in validation for r in rows) and len({r["prompt"] for r in rows}) == 8
    # A larger sample with the same seed starts with the same rows: a run that samples fewer takes a prefix.
    data2, _, res2 = prepare(tmp_path / "b", "alpaca", {**SELECT, "selectionRows": 12}, rows=200)
    assert res2.rc == 0, str(res2)
    more = pq.read_table(data2 / json.loads((data2 / "manifest.json").read_text())["selection"]["files"][0]["path"]).to_pylist()
    assert more[:8] == rows


def test_the_best_checkpoint_is_the_one_with_the_best_task_metric(tmp_path: Path, tiny_causal: Path) -> None:
    data, prep, res = prepare(tmp_path / "prep", "alpaca", SELECT)
    assert res.rc == 0, str(res)
    spec = train_spec(
        str(tiny_causal), "causal-lm", prep["prepHash"],
        training={"maxSteps": 8, "saveSteps": 2, "evalSteps": 2, "saveTotalLimit": 10, "learningRate": 5e-3, "selectBy": {"metric": "rouge", "rows": 8}},
        evaluation=scoring({"shape": "text"}, ["rouge", "exact_match"], False, generation={"maxNewTokens": 6, "batchSize": 4}),
    )
    res = run_job(TRAINER, **train_env(tmp_path, spec, data))
    assert res.rc == 0, str(res)
    state = final_state(tmp_path / "checkpoints")
    values = logged(state, "eval_task_rougeL")
    assert [step for step, _ in values] == [2, 4, 6, 8], values
    assert len(logged(state, "eval_loss")) == 4, "the loss is still logged beside it"
    # rougeL is better higher: the first step with the highest value (the Trainer keeps the first of equals)
    best_step = min(values, key=lambda sv: (-sv[1], sv[0]))[0]
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}"), (state["best_model_checkpoint"], values)
    assert state["best_metric"] == max(v for _, v in values)
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert "eval_task_rougeL" in metrics["eval"], "the final evaluation of the output (the best checkpoint's model) carries it too"
    assert "selectBy: rouge on 8 validation rows" in res.out
    print("logged rougeL:", values, "best:", state["best_model_checkpoint"])


def test_early_stopping_stops_on_the_task_metric(tmp_path: Path, tiny_causal: Path) -> None:
    # A learning rate too small to change a greedy answer: the metric never improves, so patience 1 stops training at
    # the second evaluation instead of maxSteps (the loss still moves, so this stop is the metric's).
    data, prep, res = prepare(tmp_path / "prep", "alpaca", SELECT)
    assert res.rc == 0, str(res)
    spec = train_spec(
        str(tiny_causal), "causal-lm", prep["prepHash"],
        training={"maxSteps": 12, "saveSteps": 2, "evalSteps": 2, "saveTotalLimit": 10, "learningRate": 1e-12,
                  "earlyStopping": {"patience": 1, "threshold": 0}, "selectBy": {"metric": "exact_match", "rows": 8}},
        evaluation=scoring({"shape": "number"}, ["exact_match", "mae"], False, generation={"maxNewTokens": 6, "batchSize": 4}),
    )
    res = run_job(TRAINER, **train_env(tmp_path, spec, data))
    assert res.rc == 0, str(res)
    state = final_state(tmp_path / "checkpoints")
    values = logged(state, "eval_task_exact_match")
    assert [step for step, _ in values] == [2, 4] and values[0][1] == values[1][1], values
    assert state["global_step"] == 4 and json.loads((tmp_path / "output" / "metrics.json").read_text())["steps"] == 4
    assert state["best_model_checkpoint"].endswith("checkpoint-2")


def test_a_task_metric_that_disagrees_with_the_loss_picks_the_checkpoint(tmp_path: Path, tiny_causal: Path, monkeypatch: Any) -> None:
    """The trainer's own wiring (run.py: training_arguments, build_trainer; selection.py: the evaluate override), in
    process, with the selection's scores scripted: the best checkpoint is the metric's argbest, not the loss's, and the
    model the Trainer ends with is that checkpoint's."""
    import torch
    from safetensors.torch import load_file

    from trainer import run, selection
    from trainer.model import apply_method, load_model

    data, prep, res = prepare(tmp_path / "prep", "alpaca", SELECT)
    assert res.rc == 0, str(res)
    spec = train_spec(
        str(tiny_causal), "causal-lm", prep["prepHash"],
        training={"maxSteps": 8, "saveSteps": 2, "evalSteps": 2, "saveTotalLimit": 10, "learningRate": 5e-3, "precision": "fp32",
                  "selectBy": {"metric": "rouge", "rows": 4}},
        evaluation=scoring({"shape": "text"}, ["rouge"], False, generation={"maxNewTokens": 2, "batchSize": 4}),
    )
    for name, value in train_env(tmp_path, spec, data).items():
        monkeypatch.setenv(name, str(value))
    scripted = iter([0.1, 0.5, 0.3, 0.2])  # steps 2, 4, 6, 8: the best is step 4, whatever the loss does
    monkeypatch.setattr(selection.TaskMetricSelection, "compute", lambda self, model: {self.key: next(scripted)})
    paths = run.Paths.from_env()
    manifest = json.loads((data / "manifest.json").read_text())
    loaded = load_model(spec, None, False, False)
    model, _ = apply_method(loaded.model, spec)
    splits = run.load_splits(spec, paths, manifest, loaded.tokenizer)
    splits.selection = selection.load_rows(data, manifest, 4)
    args = run.training_arguments(spec, paths, False, False, True)
    assert (args.metric_for_best_model, args.greater_is_better, args.load_best_model_at_end) == ("task_rougeL", True, True)
    trainer, _ = run.build_trainer(spec, loaded, model, splits, args, [])
    trainer.train()
    history = trainer.state.log_history
    assert [(e["step"], e["eval_task_rougeL"]) for e in history if "eval_task_rougeL" in e] == [(2, 0.1), (4, 0.5), (6, 0.3), (8, 0.2)]
    losses = [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-4"), (trainer.state.best_model_checkpoint, losses)
    assert min(losses, key=lambda sv: sv[1])[0] != 4, f"the loss alone would keep another step: {losses}"
    # load_best_model_at_end: the adapter the Trainer holds now (and saves as the output) is checkpoint-4's
    saved = load_file(str(tmp_path / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"))
    current = {k: v for k, v in trainer.model.state_dict().items() if "lora_" in k}
    assert saved and all(any(torch.equal(v, current[c]) for c in current if c.startswith(k.rsplit(".weight", 1)[0])) for k, v in saved.items())
