"""Stop decisions made while the job runs, pure: each tracker is fed observations with the time and says
whether its limit is reached. The control loop in main.py feeds them; the tests feed them directly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


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


class ProgressStall:
    """Fires when no new step appeared for the window, counted from the first step past the restored one.

    A hung NCCL collective keeps every GPU busy while no step completes, which the GPU-idle watchdog cannot see.
    Before the first step (model load, compilation, dataset scan) nothing is counted: that time is bounded by the
    max runtime instead."""

    def __init__(self, window_seconds: float, restored_step: int):
        self.window = window_seconds
        self.restored_step = restored_step
        self.last_step: Optional[int] = None
        self.since: Optional[float] = None

    def observe(self, step: Optional[int], now: float) -> bool:
        if self.window <= 0:
            return False
        if step is not None and step > self.restored_step and step != self.last_step:
            self.last_step = step
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
