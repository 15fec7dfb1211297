"""The training's progress file during a loss pass (the validation at every evalSteps): the Trainer calls
on_prediction_step once per batch, with its eval_dataloader, and on_evaluate when the pass ends. The node runner's
stall watchdog reads these batches as progress, so a long validation pass is not taken for a hung job."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import jsonschema

from conftest import ROOT
from trainer.progress import ProgressFile

SCHEMA = json.loads((ROOT / "containers" / "schemas" / "progress.schema.json").read_text())


def state(step: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=100, epoch=0.5, is_world_process_zero=True, num_input_tokens_seen=0)


def test_a_loss_pass_writes_its_batches_then_training_resumes_without_them(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    cb = ProgressFile(path, interval=0)
    cb.on_train_begin(None, state(40), None)
    loader = [object()] * 3
    seen = []
    for _ in loader:
        cb.on_prediction_step(None, state(50), None, eval_dataloader=loader)
        seen.append(json.loads(path.read_text()))
    for doc in seen:
        jsonschema.validate(doc, SCHEMA)
        assert doc["phase"] == "evaluating" and doc["step"] == 50
    assert [(d["evaluation"]["part"], d["evaluation"]["done"], d["evaluation"]["total"]) for d in seen] == [("loss", 1, 3), ("loss", 2, 3), ("loss", 3, 3)]

    cb.on_evaluate(None, state(50), None, metrics={"eval_loss": 1.0})
    after = json.loads(path.read_text())
    jsonschema.validate(after, SCHEMA)
    assert "evaluation" not in after and "phase" not in after, after

    cb.on_prediction_step(None, state(60), None, eval_dataloader=loader)
    assert json.loads(path.read_text())["evaluation"]["done"] == 1, "the next pass counts from its first batch"


def test_only_rank_zero_writes(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    cb = ProgressFile(path, interval=0)
    other = state(5)
    other.is_world_process_zero = False
    cb.on_prediction_step(None, other, None, eval_dataloader=[1, 2])
    assert not path.exists()
