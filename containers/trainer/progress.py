"""The progress file (containers/schemas/progress.schema.json), rewritten atomically every few seconds."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from common.jobspec import utc_now, write_json_atomic


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

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write(state, force=True)
