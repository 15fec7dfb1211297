"""Checkpoints tied to the run: `_COMPLETE.json` is written last into each checkpoint-<step>/ and names the
spec hash, the batch layout and the library versions; resume takes the newest complete checkpoint and refuses
one whose meaning differs from this run's (a stale checkpoint of another config would crash or silently mislead).

What a checkpoint means, and so what a resume refuses:
- the spec: another specHash is another run, unless the only difference is how the same global batch is laid
  out over GPUs (gpus x perDeviceBatch x gradientAccumulation). The Trainer shards each global batch over
  the processes batch by batch (accelerate's BatchSamplerShard: process i takes batches i, i+n, ... of the
  seeded sampler), and skips global_step x gradientAccumulation of its own batches on resume, so an equal
  global batch trains the same examples at every step whatever the layout. With DeepSpeed ZeRO the optimizer
  state is saved in per-rank partitions; loading it on another number of GPUs needs DeepSpeed's universal
  checkpoint conversion (deepspeedai/DeepSpeed blogs/deepspeed-ucp/README.md), so under ZeRO the GPU count
  must match too.
- library versions, only where a change breaks loading:
  * transformers, major version: a major release may change how checkpoints map onto modules (v5 brought
    the WeightConverter loading API that reshapes, fuses and renames layers: MIGRATION_GUIDE_V5.md), and
    LoRA adapter weights are keyed by module path.
  * deepspeed, major.minor, for ZeRO checkpoints only: the partitioned optimizer files are DeepSpeed's own
    format, read back by the same engine.
  Not checked: torch (optimizers fill in options added in later releases when an older state is loaded:
  torch/optim/adam.py Adam.__setstate__ sets amsgrad, maximize, foreach, capturable, differentiable,
  decoupled_weight_decay), peft (the adapter is a safetensors file keyed by module path, covered by the
  transformers rule) and accelerate (it saves only RNG states here). All are recorded in the marker.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from common.jobspec import CHECKPOINT_MARKER, ConfigError, log, utc_now, write_json_atomic

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
RECORDED_LIBRARIES = ("torch", "transformers", "peft", "accelerate", "deepspeed")
_LAYOUT_FIELDS = ("perDeviceBatch", "gradientAccumulation", "globalBatch")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that write and read checkpoints; deepspeed only where installed."""
    found: dict[str, str] = {}
    for name in RECORDED_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class Layout:
    """How a global batch is spread over the node's GPUs; the same key with another layout is the same run."""

    gpus: int
    perDeviceBatch: int
    gradientAccumulation: int
    zeroStage: int

    @property
    def global_batch(self) -> int:
        return self.gpus * self.perDeviceBatch * self.gradientAccumulation

    @staticmethod
    def of(spec: dict[str, Any]) -> "Layout":
        t = spec["training"]
        return Layout(spec["gpus"], t["perDeviceBatch"], t["gradientAccumulation"], t["zeroStage"])

    def describe(self) -> str:
        return f"{self.gpus} GPU(s) x perDeviceBatch {self.perDeviceBatch} x gradientAccumulation {self.gradientAccumulation} = global batch {self.global_batch}"


def run_key(spec: dict[str, Any]) -> str:
    """Hash of the spec without its batch layout (and without specHash): equal for the same run on another layout."""
    body = {k: v for k, v in spec.items() if k not in ("specHash", "gpus")}
    body["training"] = {k: v for k, v in spec["training"].items() if k not in _LAYOUT_FIELDS}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def write_marker(checkpoint: Path, step: int, spec: dict[str, Any]) -> None:
    write_json_atomic(checkpoint / CHECKPOINT_MARKER, {
        "step": step,
        "specHash": spec["specHash"],
        "runKey": run_key(spec),
        "layout": asdict(Layout.of(spec)),
        "versions": library_versions(),
        "completedAt": utc_now(),
    })


def checkpoints(root: Path) -> list[tuple[int, Path]]:
    """checkpoint-<step> directories, newest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found, reverse=True)


def find_resume(root: Path, spec: dict[str, Any]) -> Path | None:
    """The newest complete checkpoint of this run, None when there is none; ConfigError for one that means something else."""
    for step, path in checkpoints(root):
        marker = path / CHECKPOINT_MARKER
        if not marker.is_file():
            log(f"{path.name} has no {CHECKPOINT_MARKER} (a save that did not finish); it is not resumed from")
            continue
        try:
            meta: dict[str, Any] = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{marker} cannot be read ({err}); remove {path} or start the run afresh") from err
        if meta.get("step") != step:
            raise ConfigError(f"{marker} names step {meta.get('step')} but the directory is {path.name}")
        check_same_run(path, meta, spec)
        check_versions(path, meta, spec)
        log(f"resuming from {path.name} (spec {spec['specHash']})")
        return path
    return None


def check_same_run(path: Path, meta: dict[str, Any], spec: dict[str, Any]) -> None:
    if meta.get("specHash") == spec["specHash"]:
        return
    ours = Layout.of(spec)
    if meta.get("runKey") != run_key(spec) or not isinstance(meta.get("layout"), dict):
        raise ConfigError(
            f"{path.name} in {path.parent} belongs to spec {meta.get('specHash')}, but this run's spec is {spec['specHash']}: "
            "it comes from another run or an edited config and is not loaded. Use a new run name, or delete the "
            "run's checkpoints to start afresh."
        )
    try:
        theirs = Layout(**{k: int(meta["layout"][k]) for k in ("gpus", "perDeviceBatch", "gradientAccumulation", "zeroStage")})
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{path / CHECKPOINT_MARKER} has an unreadable layout ({err}); remove {path} or start the run afresh") from err
    if theirs.global_batch != ours.global_batch:
        raise ConfigError(
            f"{path.name} was trained with {theirs.describe()}; this run has {ours.describe()}. A step would mean "
            f"another number of examples, so it is not resumed. Set training.gradientAccumulation so that the global "
            f"batch is {theirs.global_batch} again, or delete the run's checkpoints to start afresh."
        )
    if ours.zeroStage > 0 and theirs.gpus != ours.gpus:
        raise ConfigError(
            f"{path.name} holds DeepSpeed ZeRO-{ours.zeroStage} optimizer state partitioned over {theirs.gpus} GPU(s); "
            f"this node runs {ours.gpus}. Resume on an instance with {theirs.gpus} GPU(s), or delete the run's checkpoints to start afresh."
        )
    log(f"{path.name} was saved with {theirs.describe()}; resuming with {ours.describe()}")


def check_versions(path: Path, meta: dict[str, Any], spec: dict[str, Any]) -> None:
    ours = library_versions()
    theirs: dict[str, str] = meta.get("versions") or {}
    changed: list[str] = []
    if _part(theirs.get("transformers"), 1) != _part(ours.get("transformers"), 1):
        changed.append(f"transformers {theirs.get('transformers')} -> {ours.get('transformers')} (another major version)")
    if spec["training"]["zeroStage"] > 0 and _part(theirs.get("deepspeed"), 2) != _part(ours.get("deepspeed"), 2):
        changed.append(f"deepspeed {theirs.get('deepspeed')} -> {ours.get('deepspeed')} (ZeRO checkpoint format)")
    if changed:
        raise ConfigError(
            f"{path.name} was saved with library versions this image cannot resume from: {', '.join(changed)}. "
            "Pin the trainer image the run started with, or delete the run's checkpoints to start afresh."
        )


def _part(v: str | None, parts: int) -> tuple[str, ...] | None:
    return tuple(v.split("+")[0].split(".")[:parts]) if v else None


def load_on_indexed_cpu_devices() -> None:
    """Lets torch.load map storages to "cpu:<n>", the device the Trainer passes when resuming on several CPU processes.

    With more than one process the Trainer loads optimizer.pt with map_location=args.device (trainer.py,
    _load_optimizer_and_scheduler), and accelerate gives each CPU process torch.device("cpu", index)
    (accelerate/state.py, PartialState.set_device), but torch's CPU deserializer accepts only the location "cpu"
    (torch/serialization.py, _cpu_deserialize). This registers, through torch's public
    torch.serialization.register_package, a deserializer that keeps such storages on the CPU. Only the
    multi-process CPU path (the tests' torchrun on gloo) needs it; GPU ranks load onto "cuda:<n>".
    """
    import torch

    def tag(_storage: Any) -> None:
        return None  # saving is unchanged

    def keep_on_cpu(storage: Any, location: str) -> Any:
        return storage if re.fullmatch(r"cpu:\d+", location) else None

    torch.serialization.register_package(100, tag, keep_on_cpu)


def is_final(path: Path) -> bool:
    """Whether the checkpoint is the run's last step (global_step has reached max_steps in trainer_state.json)."""
    state_file = path / "trainer_state.json"
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{state_file} cannot be read ({err}); remove {path} or start the run afresh") from err
    max_steps = int(state.get("max_steps") or 0)
    return max_steps > 0 and int(state.get("global_step") or 0) >= max_steps
