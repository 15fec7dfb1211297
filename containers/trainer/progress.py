"""The progress file (containers/schemas/progress.schema.json), rewritten atomically every few seconds: the
training steps (ProgressFile, a Trainer callback on rank 0), then the rows of the evaluation after training
(EvaluationProgress, written by trainer/evaluate.py in the one process that evaluates). The node runner's stall
watchdog counts a new step or a new evaluation row as progress."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from common.jobspec import utc_now, write_json_atomic

# The fields every progress file has (the training's); the evaluation adds "phase" and "evaluation".
TRAINING_FIELDS = ("step", "totalSteps", "epoch", "loss", "learningRate", "tokensPerSec", "etaSeconds", "updatedAt")


def progress_interval() -> float:
    """Seconds between two rewrites of the progress file (CAMPAIGN_PROGRESS_INTERVAL, 5 by default; tests use 0)."""
    return float(os.environ.get("CAMPAIGN_PROGRESS_INTERVAL", "5"))


class ProgressFile(TrainerCallback):
    def __init__(self, path: Path | None, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.last_write = 0.0
        self.loss: float | None = None
        self.lr: float | None = None
        self.start_time = 0.0
        self.start_step = 0
        self.start_tokens = 0
        self.tokens_per_sec: float | None = None
        self.eta: float | None = None
        self.loss_batches = 0

    def snapshot(self, state: Any) -> dict[str, Any]:
        return {
            "step": int(state.global_step),
            "totalSteps": int(state.max_steps or 0),
            "epoch": float(state.epoch or 0.0),
            "loss": self.loss,
            "learningRate": self.lr,
            "tokensPerSec": self.tokens_per_sec,
            "etaSeconds": self.eta,
            "updatedAt": utc_now(),
        }

    def _write(self, state: Any, force: bool = False) -> None:
        if self.path is None or not state.is_world_process_zero:
            return
        now = time.monotonic()
        if not force and now - self.last_write < self.interval:
            return
        elapsed = now - self.start_time
        steps = state.global_step - self.start_step
        if elapsed > 0 and steps > 0:
            tokens = getattr(state, "num_input_tokens_seen", 0) - self.start_tokens
            self.tokens_per_sec = round(tokens / elapsed, 2) if tokens > 0 else None
            self.eta = round(max(state.max_steps - state.global_step, 0) * elapsed / steps, 1)
        write_json_atomic(self.path, self.snapshot(state))
        self.last_write = now

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start_time = time.monotonic()
        self.start_step = state.global_step
        self.start_tokens = getattr(state, "num_input_tokens_seen", 0)
        self._write(state, force=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs:
            if "loss" in logs:
                self.loss = float(logs["loss"])
            if "learning_rate" in logs:
                self.lr = float(logs["learning_rate"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write(state)

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # A loss pass over a large validation split can outlast compute.stallMinutes without a new step; its
        # batches are progress too. The Trainer passes its eval_dataloader to every callback event.
        if self.path is None or not state.is_world_process_zero:
            return
        self.loss_batches += 1
        now = time.monotonic()
        if now - self.last_write < self.interval:
            return
        loader = kwargs.get("eval_dataloader")
        total = len(loader) if loader is not None and hasattr(loader, "__len__") else self.loss_batches
        stamp = utc_now()
        write_json_atomic(self.path, {**self.snapshot(state), "updatedAt": stamp, "phase": "evaluating",
                                      "evaluation": {"part": "loss", "done": self.loss_batches, "total": max(total, self.loss_batches), "updatedAt": stamp}})
        self.last_write = now

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The pass ended: the next write is the training's again (no evaluation section).
        self.loss_batches = 0
        self._write(state, force=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write(state, force=True)


class EvaluationProgress:
    """The evaluation's rows in the progress file: `phase: "evaluating"` and `evaluation: {part, done, total,
    updatedAt}` on top of the training fields last written, rewritten atomically as batches finish (at most every
    `interval` seconds, always at a part's start and end). Without it a generation longer than compute.stallMinutes
    would look like a hung job to the node runner."""

    def __init__(self, path: Path | None, interval: float, output: Path) -> None:
        # Rank 0 writes, as for the training's progress (the evaluation runs in one process, never under torchrun).
        self.path = path if os.environ.get("RANK", "0") == "0" else None
        self.interval = interval
        self.training = training_fields(path, output) if self.path is not None else {}
        self.last_write = float("-inf")

    def begin(self, part: str, total: int) -> None:
        """A part starts (before its model loads): progress, even at 0 rows."""
        self._write(part, 0, total, force=True)

    def rows(self, part: str, done: int, total: int) -> None:
        self._write(part, done, total, force=done >= total)

    def _write(self, part: str, done: int, total: int, force: bool) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self.last_write < self.interval:
            return
        stamp = utc_now()
        write_json_atomic(self.path, {**self.training, "updatedAt": stamp, "phase": "evaluating",
                                      "evaluation": {"part": part, "done": done, "total": total, "updatedAt": stamp}})
        self.last_write = now


def training_fields(path: Path | None, output: Path) -> dict[str, Any]:
    """The training's fields as its progress file last had them; on a node that resumed at the run's last step and
    only evaluates (no training progress written), the steps from the output's metrics.json."""
    try:
        last = json.loads(path.read_text()) if path is not None else {}
        if all(k in last for k in TRAINING_FIELDS):
            return {k: last[k] for k in TRAINING_FIELDS}
    except (OSError, ValueError):
        pass
    try:
        metrics = json.loads((output / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    steps = int(metrics.get("steps") or 0)
    return {"step": steps, "totalSteps": int(metrics.get("maxSteps") or steps), "epoch": float(metrics.get("epoch") or 0.0),
            "loss": None, "learningRate": None, "tokensPerSec": None, "etaSeconds": None, "updatedAt": utc_now()}
