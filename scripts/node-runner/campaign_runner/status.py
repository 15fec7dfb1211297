"""The run's status: phases as an enum, one method per transition (only from the phases that allow it), the
reason kept, and an `events` list of every transition and warning with its time. Rendered in memory to the
status.json of components/campaign/jobSpec.ts (`status`), so a full disk cannot keep it from S3.
"""
from __future__ import annotations

import enum
import json
import math
import threading
from typing import Any, Dict, List, Optional

from .contract import PHASES, TERMINAL_PHASES
from .logs import utc_now_iso
from . import attempts as attempt_history


class Phase(enum.Enum):
    PENDING = "pending"
    PREPARING = "preparing"
    STAGED = "staged"
    STARTING = "starting"
    TRAINING = "training"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def is_terminal(self) -> bool:
        return self.value in TERMINAL_PHASES


# The enum names the contract's phases so that transitions can be written down; this check keeps the two equal.
if tuple(p.value for p in Phase) != PHASES:
    raise RuntimeError("status.Phase %s differs from contract.json's phases %s" % ([p.value for p in Phase], list(PHASES)))


class TransitionError(Exception):
    pass


_ALLOWED = {
    Phase.PREPARING: {Phase.PENDING},
    Phase.STAGED: {Phase.PREPARING},
    Phase.STARTING: {Phase.STAGED},
    Phase.TRAINING: {Phase.STARTING},
    Phase.UPLOADING: {Phase.STARTING, Phase.TRAINING},
    Phase.SUCCEEDED: {Phase.UPLOADING},
}

PROGRESS_KEYS = ("step", "totalSteps", "epoch", "loss", "learningRate", "tokensPerSec", "etaSeconds", "updatedAt")
# Optional in the progress file: what the job is at, and the evaluation after training (progress.schema.json).
PROGRESS_PHASES = ("training", "evaluating")
EVALUATION_PARTS = ("baseline", "fine-tuned")
EVALUATION_KEYS = ("part", "done", "total", "updatedAt")
TIMING_KEYS = ("nodeBoot", "inputsReady", "firstStep", "jobEnd", "shutdown")


def _number(value: Any, nullable: bool, minimum: Optional[float] = None, integer: bool = False) -> bool:
    if value is None:
        return nullable
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if integer and not float(value).is_integer():
        return False
    return minimum is None or value >= minimum


def parse_progress(text: str) -> Optional[Dict[str, Any]]:
    """The job's progress file if it matches the schema (progress.schema.json); None for a half-written or odd one."""
    try:
        d = json.loads(text)
    except ValueError:
        return None
    if not isinstance(d, dict) or any(k not in d for k in PROGRESS_KEYS):
        return None
    ok = (_number(d["step"], False, 0, True) and _number(d["totalSteps"], False, 0, True) and _number(d["epoch"], False, 0)
          and _number(d["loss"], True) and _number(d["learningRate"], True) and _number(d["tokensPerSec"], True, 0)
          and _number(d["etaSeconds"], True, 0) and isinstance(d["updatedAt"], str))
    if not ok:
        return None
    p = {k: d[k] for k in PROGRESS_KEYS}
    p["step"], p["totalSteps"] = int(p["step"]), int(p["totalSteps"])
    if "phase" in d:
        if d["phase"] not in PROGRESS_PHASES:
            return None
        p["phase"] = d["phase"]
    if "evaluation" in d:
        evaluation = _evaluation(d["evaluation"])
        if evaluation is False:
            return None
        p["evaluation"] = evaluation
    return p


def _evaluation(e: Any) -> "Optional[Dict[str, Any]] | bool":
    """The progress file's evaluation section, None when it is null, False when it is off-schema."""
    if e is None:
        return None
    if not isinstance(e, dict) or set(e) != set(EVALUATION_KEYS):
        return False
    if (e["part"] not in EVALUATION_PARTS or not _number(e["done"], False, 0, True) or not _number(e["total"], False, 0, True)
            or not isinstance(e["updatedAt"], str)):
        return False
    return {"part": e["part"], "done": int(e["done"]), "total": int(e["total"]), "updatedAt": e["updatedAt"]}


class StatusBook:
    """The one place the run's state lives. Thread-safe: the control loop, the uploader and the spot watcher
    all write to it."""

    def __init__(self, campaign: str, run: str, role: str):
        self.campaign, self.run, self.role = campaign, run, role
        self.phase = Phase.PENDING
        self.reason: Optional[str] = None
        self.exit_code: Optional[int] = None
        self.last_checkpoint: Optional[str] = None
        self.instance_id: Optional[str] = None
        self.instance_type: Optional[str] = None
        self.progress: Optional[Dict[str, Any]] = None
        self.timings: Dict[str, Optional[str]] = {k: None for k in TIMING_KEYS}
        self.events: List[Dict[str, Any]] = []
        # The earlier nodes' attempts at the run (attempts.py), and what this node's attempt is known by.
        self.earlier_attempts: List[Dict[str, Any]] = []
        self.spec_hash: Optional[str] = None
        self.started_at = utc_now_iso()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ transitions

    def _move(self, to: Phase, reason: Optional[str] = None) -> None:
        with self._lock:
            if self.phase.is_terminal():
                raise TransitionError("the status is already %s; cannot become %s" % (self.phase.value, to.value))
            allowed = _ALLOWED.get(to)
            if allowed is not None and self.phase not in allowed:
                raise TransitionError("%s cannot follow %s" % (to.value, self.phase.value))
            self.phase = to
            if reason is not None:
                self.reason = reason[:1000]
            self.events.append({"at": utc_now_iso(), "kind": "phase", "phase": to.value, "reason": self.reason if reason else None})

    def preparing(self) -> None:
        self._move(Phase.PREPARING)

    def staged(self) -> None:
        with self._lock:
            self.timings["inputsReady"] = utc_now_iso()
            self._move(Phase.STAGED)

    def starting(self) -> None:
        self._move(Phase.STARTING)

    def training(self) -> None:
        """The job got past its restored step: the first-step time is set once."""
        with self._lock:
            if self.timings["firstStep"] is None:
                self.timings["firstStep"] = utc_now_iso()
            if self.phase is Phase.STARTING:
                self._move(Phase.TRAINING)

    def uploading(self) -> None:
        self._move(Phase.UPLOADING)

    def succeeded(self) -> None:
        with self._lock:
            self._move(Phase.SUCCEEDED)
            self.reason = None

    def failed(self, reason: str) -> None:
        self._move(Phase.FAILED, reason)

    def interrupted(self, reason: str) -> None:
        self._move(Phase.INTERRUPTED, reason)

    def warn(self, message: str) -> None:
        """A problem worth seeing in status.json that does not change the phase (e.g. no GPU metrics)."""
        with self._lock:
            self.events.append({"at": utc_now_iso(), "kind": "warning", "phase": self.phase.value, "reason": message[:1000]})

    def note(self, message: str) -> None:
        """A step worth a time in status.json (a stop acted on, the agent stopped)."""
        with self._lock:
            self.events.append({"at": utc_now_iso(), "kind": "event", "phase": self.phase.value, "reason": message[:1000]})

    def carry_attempts(self, previous_text: str) -> None:
        """The attempts in the status.json an earlier node left, kept before this node's (attempts.py)."""
        with self._lock:
            self.earlier_attempts = attempt_history.carried(previous_text)

    # ------------------------------------------------------------------ observations

    def job_ended(self, code: int) -> None:
        with self._lock:
            self.exit_code = code
            self.timings["jobEnd"] = utc_now_iso()

    def observe_progress(self, progress: Optional[Dict[str, Any]], restored_step: int) -> None:
        """A good progress sample replaces the last; a step past the restored one means training started. An
        evaluation under way (a node that resumed at the run's last step only evaluates) is the job at work too:
        the phase becomes `training` (the job's phase, whatever it computes) without a first-step time."""
        if progress is None:
            return
        with self._lock:
            self.progress = progress
            if progress["step"] > restored_step and self.phase in (Phase.STARTING, Phase.TRAINING, Phase.UPLOADING,
                                                                   Phase.FAILED, Phase.INTERRUPTED):
                self.training()
            elif progress.get("evaluation") is not None and self.phase is Phase.STARTING:
                self._move(Phase.TRAINING)

    def checkpoint_uploaded(self, name: str, step: int) -> None:
        with self._lock:
            current = None if self.last_checkpoint is None else int(self.last_checkpoint.rsplit("-", 1)[1])
            if current is None or step > current:
                self.last_checkpoint = name

    # ------------------------------------------------------------------ rendering

    def render(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "campaign": self.campaign, "run": self.run, "role": self.role, "phase": self.phase.value,
                "updatedAt": utc_now_iso(), "instanceId": self.instance_id, "instanceType": self.instance_type,
                "progress": dict(self.progress) if self.progress else None, "exitCode": self.exit_code,
                "reason": self.reason, "lastCheckpoint": self.last_checkpoint, "timings": dict(self.timings),
                "events": [dict(e) for e in self.events],
                "attempts": attempt_history.history(self),
            }

    def render_bytes(self) -> bytes:
        return (json.dumps(self.render(), indent=2, allow_nan=False) + "\n").encode("utf-8")
