"""How a run ends, pure: the job's exit code and why it was stopped give the final phase, the reason and the
runner's own exit code."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from .contract import EXIT_CODES
from .watchdogs import LOSS_PASS

# Words for the exit codes of components/campaign/contract.ts; 137 is the kernel's SIGKILL (128 + 9).
_WORDS = {
    EXIT_CODES["success"]: "success",
    EXIT_CODES["dataError"]: "data refused",
    EXIT_CODES["interrupted"]: "stopped after saving a checkpoint",
    EXIT_CODES["configError"]: "configuration error",
    137: "killed",
}


def describe_exit(code: int) -> str:
    return _WORDS.get(code, "failure")


class StopKind(enum.Enum):
    """Why the runner stopped the job (None: the job ended on its own)."""
    SPOT = "spot"
    SIGNAL = "signal"
    MAX_RUNTIME = "max-runtime"
    GPU_IDLE = "gpu-idle"
    STALL = "stall"
    CONTROL = "control"  # a control object asked for a graceful stop or restart (control.py)


@dataclass(frozen=True)
class StopDetail:
    kind: StopKind
    # What the reason names: the notice's body, the signal's name, the limits.
    notice: str = ""
    signal_name: str = ""
    # A signal while the OS was going down (systemd stopping every unit: the instance is terminated or stopped).
    system_stopping: bool = False
    control_action: str = ""
    control_uri: str = ""
    max_runtime_seconds: int = 0
    gpu_threshold: float = 0.0
    gpu_window_seconds: int = 0
    stall_seconds: int = 0
    stalled_at_step: Optional[int] = None
    # Where the job stood when the stall fired, when it was evaluating (watchdogs.Counters.where); empty: training.
    stalled_in_evaluation: str = ""


@dataclass(frozen=True)
class Outcome:
    phase: str  # "succeeded" | "failed" | "interrupted"
    reason: Optional[str]


def runner_exit_code(phase: str) -> int:
    """0 for succeeded (or nothing to do), 75 for interrupted, 1 otherwise: systemd and the tests read it."""
    if phase in ("succeeded", "noop"):
        return 0
    if phase == "interrupted":
        return EXIT_CODES["interrupted"]
    return EXIT_CODES["failure"]


def _number(value: float) -> str:
    return "%g" % value


def stop_reason(stop: StopDetail, job_exit: str) -> str:
    if stop.kind is StopKind.SPOT:
        return "spot interruption notice: %s; %s" % (stop.notice[:300], job_exit)
    if stop.kind is StopKind.MAX_RUNTIME:
        return "stopped at the max runtime of %d s; %s" % (stop.max_runtime_seconds, job_exit)
    if stop.kind is StopKind.GPU_IDLE:
        return "stopped by the GPU-idle watchdog: utilisation under %s%% for %d s; %s" % (
            _number(stop.gpu_threshold), stop.gpu_window_seconds, job_exit)
    if stop.kind is StopKind.STALL and stop.stalled_in_evaluation.startswith(LOSS_PASS):
        return ("stopped by the progress-stall watchdog: no new batch for %d s %s (a hung collective or data loader?); %s"
                % (stop.stall_seconds, stop.stalled_in_evaluation, job_exit))
    if stop.kind is StopKind.STALL and stop.stalled_in_evaluation:
        return ("stopped by the progress-stall watchdog: no new evaluation row for %d s %s (a hung generation?); %s"
                % (stop.stall_seconds, stop.stalled_in_evaluation, job_exit))
    if stop.kind is StopKind.STALL:
        return ("stopped by the progress-stall watchdog: no new step for %d s after step %s (a hung collective or "
                "data loader?); %s" % (stop.stall_seconds, stop.stalled_at_step, job_exit))
    if stop.kind is StopKind.CONTROL:
        return "%s; %s" % (control_reason(stop), job_exit)
    return "%s; %s" % (signal_reason(stop), job_exit)


def control_reason(stop: StopDetail) -> str:
    return "stopped on request (%s in %s)" % (stop.control_action, stop.control_uri)


def signal_reason(stop: StopDetail) -> str:
    if stop.system_stopping:
        return "the node is shutting down: instance terminated or stopped (SIG%s from the OS)" % stop.signal_name
    return "the runner was stopped by SIG%s" % stop.signal_name


# Stops that leave the run resumable: the job was asked to save and the next node resumes from the newest complete
# checkpoint. A watchdog or the max runtime, by contrast, would end the next attempt the same way: failed.
INTERRUPTING = (StopKind.SPOT, StopKind.SIGNAL, StopKind.CONTROL)


def classify(job_code: int, stop: Optional[StopDetail], job_log_tail: str, out_of_space: Optional[str]) -> Outcome:
    """The run's end once the job exited. A job that exited 0 finished its work even if a notice or a limit came
    in its last moments: the caller uploads its output (phase "uploading", then "succeeded")."""
    if job_code == EXIT_CODES["success"]:
        return Outcome("uploading", None)
    job_exit = "job exit %d (%s)" % (job_code, describe_exit(job_code))
    if stop is not None:
        phase = "interrupted" if stop.kind in INTERRUPTING else "failed"
        return Outcome(phase, stop_reason(stop, job_exit))
    reason = "the job exited with code %d (%s)" % (job_code, describe_exit(job_code))
    if out_of_space:
        reason += "; %s" % out_of_space
    if job_log_tail:
        reason += ": %s" % job_log_tail
    return Outcome("failed", reason)


def before_job_reason(stop: StopDetail) -> Outcome:
    """A stop that came before the job started (during staging or the image pull)."""
    if stop.kind is StopKind.SPOT:
        return Outcome("interrupted", "spot interruption notice before the job started: %s" % stop.notice[:300])
    if stop.kind is StopKind.MAX_RUNTIME:
        return Outcome("failed", "reached the max runtime of %d s before the job started" % stop.max_runtime_seconds)
    if stop.kind is StopKind.CONTROL:
        return Outcome("interrupted", "%s before the job started" % control_reason(stop))
    return Outcome("interrupted", "%s before the job ran" % signal_reason(stop))
