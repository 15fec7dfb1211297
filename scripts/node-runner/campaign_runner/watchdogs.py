"""Stop decisions made while the job runs, pure: each tracker is fed observations with the time and says
whether its limit is reached. The control loop in main.py feeds them; the tests feed them directly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple


def busiest_gpu(nvidia_smi_output: str) -> Optional[float]:
    """The highest utilisation among the GPUs that `nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,
    nounits` listed; None when it listed none (the tool failed, or printed "[N/A]")."""
    values = []
    for line in nvidia_smi_output.splitlines():
        try:
            values.append(float(line.strip()))
        except ValueError:
            continue
    return max(values) if values else None


class GpuIdle:
    """Fires when every GPU stayed under the threshold for the whole window. A failed sample neither starts
    nor breaks a window."""

    def __init__(self, threshold: float, window_seconds: float):
        self.threshold = threshold
        self.window = window_seconds
        self.idle_since: Optional[float] = None

    def observe(self, utilisation: Optional[float], now: float) -> bool:
        if utilisation is None:
            return False
        if utilisation >= self.threshold:
            self.idle_since = None
            return False
        if self.idle_since is None:
            self.idle_since = now
        return now - self.idle_since >= self.window


# Where a stall in the teacher-forced loss pass (the validation at every evalSteps) is; the reason names it apart
# from a hung generation.
LOSS_PASS = "in the loss pass over held-out rows"


@dataclass(frozen=True)
class Counters:
    """What the progress file counts: the training step, and during the evaluation after training the part under
    way and its rows generated so far. Any change in either is progress."""
    step: int
    evaluation: Optional[Tuple[str, int, int]] = None  # (part, rows done, rows in all)

    @staticmethod
    def of(progress: Optional[Dict[str, Any]]) -> Optional["Counters"]:
        if progress is None:
            return None
        e = progress.get("evaluation")
        return Counters(int(progress["step"]), (e["part"], e["done"], e["total"]) if e else None)

    def where(self) -> str:
        """Where the job is, for the stall's reason."""
        if self.evaluation is None:
            return "after step %d" % self.step
        part, done, total = self.evaluation
        if part == "loss":
            return "%s after step %d, at %d of %d batches" % (LOSS_PASS, self.step, done, total)
        return "in the evaluation of the %s model, at %d of %d rows generated" % ("base" if part == "baseline" else part, done, total)


class ProgressStall:
    """Fires when neither a new step nor a new evaluation row appeared for the window, counted from the first step
    past the restored one or the first evaluation progress.

    A hung NCCL collective keeps every GPU busy while no step completes, which the GPU-idle watchdog cannot see.
    The evaluation after training (batched generation, containers/trainer/evaluate.py) writes no steps but its
    rows, so a long evaluation that advances is not a stall, and a generation that hangs is. Before the first
    step (model load, compilation, dataset scan) nothing is counted: that time is bounded by the max runtime."""

    def __init__(self, window_seconds: float, restored_step: int):
        self.window = window_seconds
        self.restored_step = restored_step
        self.last: Optional[Counters] = None
        self.since: Optional[float] = None

    @property
    def last_step(self) -> Optional[int]:
        return self.last.step if self.last is not None else None

    def observe(self, progress: Optional[Dict[str, Any]], now: float) -> bool:
        if self.window <= 0:
            return False
        counters = Counters.of(progress)
        started = counters is not None and (counters.step > self.restored_step or counters.evaluation is not None)
        if started and counters != self.last:
            self.last = counters
            self.since = now
            return False
        return self.since is not None and now - self.since >= self.window


@dataclass(frozen=True)
class MaxRuntime:
    """Counted from the runner's start, so staging counts too."""
    started: float
    limit_seconds: float

    def reached(self, now: float) -> bool:
        return now - self.started >= self.limit_seconds
