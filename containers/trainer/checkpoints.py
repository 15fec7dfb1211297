"""Checkpoints tied to the run: `_COMPLETE.json` is written last into each checkpoint-<step>/ and names the
spec hash and library versions; resume takes the newest complete checkpoint and refuses one of another spec
or another library version (seeds/001's stale-checkpoint crash)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from common.jobspec import CHECKPOINT_MARKER, ConfigError, log, utc_now, write_json_atomic

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
LIBRARIES = ("torch", "transformers", "peft", "trl")


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in LIBRARIES}


def _minor(v: str) -> tuple[str, ...]:
    return tuple(v.split("+")[0].split(".")[:2])


def write_marker(checkpoint: Path, step: int, spec_hash: str) -> None:
    write_json_atomic(checkpoint / CHECKPOINT_MARKER, {"step": step, "specHash": spec_hash, "versions": library_versions(), "completedAt": utc_now()})


def checkpoints(root: Path) -> list[tuple[int, Path]]:
    """checkpoint-<step> directories, newest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found, reverse=True)


def find_resume(root: Path, spec_hash: str) -> Path | None:
    """The newest complete checkpoint of this spec, None when there is none; ConfigError for a foreign one."""
    for step, path in checkpoints(root):
        marker = path / CHECKPOINT_MARKER
        if not marker.is_file():
            log(f"{path.name} has no {CHECKPOINT_MARKER} (a save that did not finish); it is not resumed from")
            continue
        try:
            meta: dict[str, Any] = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{marker} cannot be read ({err}); remove {path} or start the run afresh") from err
        if meta.get("specHash") != spec_hash:
            raise ConfigError(
                f"{path.name} in {root} belongs to spec {meta.get('specHash')}, but this run's spec is {spec_hash}: "
                "it comes from another run or an edited config and is not loaded. Use a new run name, or delete the "
                "run's checkpoints to start afresh."
            )
        ours = library_versions()
        theirs = meta.get("versions") or {}
        changed = {k: (theirs.get(k), ours[k]) for k in LIBRARIES if _minor(str(theirs.get(k, ""))) != _minor(ours[k])}
        if changed:
            detail = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
            raise ConfigError(
                f"{path.name} was saved with other library versions ({detail}); resuming across these versions is "
                "refused. Pin the trainer image the run started with, or delete the run's checkpoints to start afresh."
            )
        if meta.get("step") != step:
            raise ConfigError(f"{marker} names step {meta.get('step')} but the directory is {path.name}")
        log(f"resuming from {path.name} (spec {spec_hash})")
        return path
    return None


def is_final(path: Path) -> bool:
    """Whether the checkpoint is the run's last step (global_step has reached max_steps in trainer_state.json)."""
    state_file = path / "trainer_state.json"
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{state_file} cannot be read ({err}); remove {path} or start the run afresh") from err
    max_steps = int(state.get("max_steps") or 0)
    return max_steps > 0 and int(state.get("global_step") or 0) >= max_steps
