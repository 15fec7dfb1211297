"""The training history (containers/schemas/metrics-history.schema.json): one JSON line appended per record.

Every logged step (loss, learning rate, grad norm, tokens/s), every evaluation's metrics, and when training ends
the peak memory of each GPU and the attempt's measured throughput. Lines are appended and flushed one at a time,
never rewritten, so the node runner can upload the file while it grows and a reader can skip a last line cut
short by a node that died mid-write. Each attempt (node) starts its own file; the report merges them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from common.jobspec import utc_now

# Trainer log keys that time the evaluation rather than measure the model.
_TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def eval_metrics(logs: dict[str, Any]) -> tuple[str, dict[str, float]] | None:
    """(split, metrics) when `logs` are an evaluation's: eval_* is the validation split, test_* the test split."""
    for prefix, split in (("eval_", "validation"), ("test_", "test")):
        metrics = {k: float(v) for k, v in logs.items()
                   if k.startswith(prefix) and not k.endswith(_TIMING_SUFFIXES) and _number(v) is not None}
        if metrics:
            return split, metrics
    return None


def device_peaks() -> list[dict[str, Any]]:
    """This process's GPU: peak allocated and reserved bytes since the process started; [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    return [{
        "device": int(device),
        "name": str(props.name),
        "allocatedBytes": int(torch.cuda.max_memory_allocated(device)),
        "reservedBytes": int(torch.cuda.max_memory_reserved(device)),
        "totalBytes": int(props.total_memory),
    }]


def all_device_peaks() -> list[dict[str, Any]]:
    """Every rank's GPU under torchrun (each rank drives one device), gathered on all ranks; sorted by device."""
    import torch.distributed as dist

    mine = device_peaks()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        mine = [d for part in gathered for d in (part or [])]
    return sorted(mine, key=lambda d: d["device"])


class MetricsHistory(TrainerCallback):
    """Appends the history to `path` (rank 0 writes; every rank takes part in the memory gather at the end)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.start_time = 0.0
        self.start_step = 0
        self.start_tokens = 0
        self.last_time = 0.0
        self.last_tokens = 0

    def append(self, record: dict[str, Any]) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one whole line per record, flushed at once: the runner may upload the file at any moment.
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start_time = self.last_time = time.monotonic()
        self.start_step = int(state.global_step)
        self.start_tokens = self.last_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.path is None or not logs or not state.is_world_process_zero:
            return
        step, epoch = int(state.global_step), float(state.epoch or 0.0)
        if "loss" in logs:
            now = time.monotonic()
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            elapsed = now - self.last_time
            rate = round((tokens - self.last_tokens) / elapsed, 2) if elapsed > 0 and tokens > self.last_tokens else None
            self.last_time, self.last_tokens = now, tokens
            self.append({"kind": "train", "step": step, "epoch": epoch, "at": utc_now(), "loss": _number(logs.get("loss")),
                         "learningRate": _number(logs.get("learning_rate")), "gradNorm": _number(logs.get("grad_norm")),
                         "tokensPerSec": rate, "tokens": tokens or None})
        evaluated = eval_metrics(logs)
        if evaluated is not None:
            split, metrics = evaluated
            self.append({"kind": "eval", "step": step, "epoch": epoch, "at": utc_now(), "split": split, "metrics": metrics})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        devices = all_device_peaks()  # a collective under torchrun: every rank calls it
        if self.path is None or not state.is_world_process_zero:
            return
        step = int(state.global_step)
        seconds = max(time.monotonic() - self.start_time, 0.0)
        tokens = max(int(getattr(state, "num_input_tokens_seen", 0) or 0) - self.start_tokens, 0)
        self.append({"kind": "memory", "step": step, "at": utc_now(), "devices": devices})
        self.append({"kind": "end", "step": step, "at": utc_now(), "firstStep": self.start_step, "trainSeconds": round(seconds, 3),
                     "tokens": tokens, "tokensPerSec": round(tokens / seconds, 2) if seconds > 0 and tokens > 0 else None,
                     "stopped": step < int(state.max_steps or 0)})
