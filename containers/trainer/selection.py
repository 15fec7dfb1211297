"""training.selectBy: the best checkpoint, and early stopping, by a task metric instead of the validation loss.

At every evaluation during training (evalSteps) the trainer generates answers for the first selectBy.rows of the
validation rows prep set apart in selection/ (a seeded order), parses and scores them exactly as the final evaluation
does (trainer/evaluate.py: the same generation settings and answer shape; common/task_metrics.py), and adds the value
to the evaluation's metrics as `task_<metric>` (rouge is read as rougeL). The Trainer prefixes it `eval_`, so
`metric_for_best_model` (load_best_model_at_end: the checkpoint the output model and the final evaluation use) and
EarlyStoppingCallback read it like the loss. The direction comes from the metric: mae and rmse are better lower.

Only public transformers APIs: `Trainer.evaluate` is a documented subclassing point ("You can also subclass and
override this method to inject custom behavior", transformers 5.17 trainer.py); the value rides in the dict that
`compute_metrics` returns, which evaluation_loop prefixes with the metric_key_prefix, logs, passes to the callbacks'
on_evaluate and to the best-checkpoint decision (Trainer._determine_best_metric reads `eval_<metric_for_best_model>`).

Under torchrun every rank generates for the same rows (generation under ZeRO-3 needs every rank), and rank 0's value
is broadcast, so every rank's early stopping and best checkpoint agree.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common.jobspec import CONTRACT, DataError, log
from common.task_metrics import HEADLINE, LOWER_IS_BETTER, Scored, parse_answer, score

SELECTION_DIR: str = CONTRACT["evaluationFiles"]["selectionDir"]


def metric_key(metric: str) -> str:
    """The key the metric's value is logged under (the Trainer adds eval_): task_rougeL, task_mae, ..."""
    return "task_" + HEADLINE.get(metric, metric)


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def load_rows(data_dir: Path, manifest: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
    """The first `wanted` selection rows (fewer when the validation split has fewer)."""
    import pyarrow.parquet as pq

    info = manifest.get("selection")
    if not info:
        raise DataError(f"{data_dir} has no selection rows, but this run's spec selects by a task metric (training.selectBy): prepare the data again with the same config")
    rows: list[dict[str, Any]] = []
    for f in info["files"]:
        rows.extend(pq.read_table(data_dir / f["path"]).to_pylist())
    if len(rows) < min(wanted, info["ofRows"]):
        raise DataError(f"{data_dir}/{SELECTION_DIR} holds {len(rows)} rows, but training.selectBy.rows is {wanted}: prepare the data again with the same config")
    return rows[:wanted]


class TaskMetricSelection:
    """Generates and scores the selection rows with the model as it is at this step."""

    def __init__(self, spec: dict[str, Any], tokenizer: Any, rows: list[dict[str, Any]]) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.rows = rows
        self.metric = spec["training"]["selectBy"]["metric"]
        self.key = metric_key(self.metric)

    def compute(self, model: Any) -> dict[str, float]:
        import torch.distributed as dist

        from trainer.evaluate import generate

        ev = self.spec["evaluation"]
        labels = ev.get("labels")
        sides = (self.tokenizer.padding_side, self.tokenizer.truncation_side)
        was_training = model.training
        model.eval()
        try:
            predictions = generate(model, self.tokenizer, [r["prompt"] for r in self.rows], self.spec, lambda: False)
        finally:
            self.tokenizer.padding_side, self.tokenizer.truncation_side = sides
            if was_training:
                model.train()
        scored = [
            Scored(p, r["reference"], parse_answer(p, ev["answer"], labels), parse_answer(r["reference"], ev["answer"], labels))
            for p, r in zip(predictions, self.rows)
        ]
        value = score(scored, [self.metric], labels)["metrics"].get(HEADLINE.get(self.metric, self.metric))
        if value is None:
            # No value (no answer parsed, a constant side for pearson): the worst finite value, so such a checkpoint is
            # never better than one with a value (the Trainer starts its best from -inf/inf, so the first one is kept).
            value = -sys.float_info.max if greater_is_better(self.metric) else sys.float_info.max
            log(f"selectBy: {self.metric} could not be computed on {len(self.rows)} validation rows at this step; counted as the worst value")
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            shared = [value]
            dist.broadcast_object_list(shared, src=0)
            value = shared[0]
        return {self.key: float(value)}


def selecting_trainer(selection: TaskMetricSelection, metrics_fn: Any, **kwargs: Any) -> Any:
    """A Trainer whose evaluation during training also carries the selection metric (see the module's docstring)."""
    from transformers import Trainer

    class SelectingTrainer(Trainer):
        def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> dict[str, float]:
            if eval_dataset is None and metric_key_prefix == "eval":
                metrics_fn.extra = selection.compute(self.model)
            return super().evaluate(eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    return SelectingTrainer(**kwargs)
