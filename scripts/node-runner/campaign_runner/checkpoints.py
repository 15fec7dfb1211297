"""Checkpoint decisions, pure: which checkpoint to restore, which to upload and in what order, which to prune.

A checkpoint is `checkpoint-<step>/` with `_COMPLETE.json` written last (by the trainer locally, by the runner
last in S3); without its marker it is a partial upload and never used. The marker names the spec the checkpoint
was trained for (specHash); one of another spec is foreign and never restored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

from .contract import CHECKPOINT_MARKER

NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_name(step: int) -> str:
    return "checkpoint-%d" % step


def step_of(name: str) -> Optional[int]:
    m = NAME.match(name)
    return int(m.group(1)) if m else None


def remote_steps(keys: Iterable[str]) -> Dict[int, bool]:
    """{step: complete} from object keys relative to the checkpoints prefix ("checkpoint-4/weights.bin")."""
    steps: Dict[int, bool] = {}
    for key in keys:
        top, sep, rest = key.partition("/")
        step = step_of(top)
        if step is None or not sep or not rest:
            continue
        steps[step] = steps.get(step, False) or rest == CHECKPOINT_MARKER
    return steps


@dataclass(frozen=True)
class RestoreChoice:
    """The checkpoint to restore (None: start from scratch) and what was passed over, for the log."""
    step: Optional[int]
    partial_above: Sequence[int] = ()
    refused: Sequence[str] = field(default_factory=tuple)


def refusal(marker: Optional[dict], spec_hash: Optional[str]) -> Optional[str]:
    """Why a complete checkpoint cannot be restored for this spec, or None when it can."""
    if marker is None:
        return "its %s is not a JSON object" % CHECKPOINT_MARKER
    theirs = marker.get("specHash")
    if spec_hash is not None and theirs is not None and theirs != spec_hash:
        return "it belongs to spec %s, this run's is %s" % (theirs, spec_hash)
    return None


def choose_restore(steps: Dict[int, bool], marker_of: Callable[[int], Optional[dict]],
                   spec_hash: Optional[str]) -> RestoreChoice:
    """The newest complete checkpoint whose marker matches the spec. marker_of is asked newest first and only
    as far as needed (on a node it downloads one small file)."""
    refused: List[str] = []
    chosen: Optional[int] = None
    for step in sorted((s for s, complete in steps.items() if complete), reverse=True):
        why = refusal(marker_of(step), spec_hash)
        if why is None:
            chosen = step
            break
        refused.append("%s: %s" % (checkpoint_name(step), why))
    floor = chosen if chosen is not None else -1
    partial = sorted(s for s, complete in steps.items() if not complete and s > floor)
    return RestoreChoice(chosen, tuple(partial), tuple(refused))


def upload_order(local_complete: Iterable[int], uploaded: Set[int], keep: int) -> List[int]:
    """Local complete checkpoints still to upload, newest first: only the `keep` newest matter (0 keeps all),
    since older ones would be pruned at once."""
    newest_first = sorted(set(local_complete), reverse=True)
    window = newest_first[:keep] if keep > 0 else newest_first
    return [s for s in window if s not in uploaded]


def prune_victims(steps: Dict[int, bool], keep: int) -> List[int]:
    """Checkpoints to delete from S3: complete ones beyond the `keep` newest (0 keeps all), and partial ones
    below the newest complete (leftovers of an interrupted upload). A partial one above it may be an upload in
    progress and stays."""
    if keep <= 0:
        return []
    complete = sorted((s for s, c in steps.items() if c), reverse=True)
    if not complete:
        return []
    newest = complete[0]
    leftovers = [s for s, c in steps.items() if not c and s < newest]
    return sorted(set(complete[keep:]) | set(leftovers))
