"""Which checkpoints a run resumes from: the rules in containers/trainer/checkpoints.py, on marker files alone."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from common.jobspec import ConfigError
from specs import train_spec
from trainer import checkpoints


def spec_with(gpus: int = 2, batch: int = 2, accumulation: int = 1, zero: int = 0, **training: Any) -> dict[str, Any]:
    return train_spec("/models/m", "causal-lm", "a" * 16, gpus=gpus, training={"perDeviceBatch": batch, "gradientAccumulation": accumulation, "zeroStage": zero, **training})


def saved(root: Path, step: int, spec: dict[str, Any], **marker: Any) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    checkpoints.write_marker(folder, step, spec)
    if marker:
        meta = json.loads((folder / "_COMPLETE.json").read_text())
        meta.update(marker)
        (folder / "_COMPLETE.json").write_text(json.dumps(meta))
    return folder


def test_the_same_spec_resumes_from_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    spec = spec_with()
    saved(tmp_path, 3, spec)
    newest = saved(tmp_path, 6, spec)
    (tmp_path / "checkpoint-9").mkdir()  # no marker: an unfinished save
    assert checkpoints.find_resume(tmp_path, spec) == newest


def test_the_same_global_batch_on_another_number_of_gpus_resumes(tmp_path: Path) -> None:
    two = spec_with(gpus=2, batch=2, accumulation=1)
    one = spec_with(gpus=1, batch=2, accumulation=2)
    assert two["specHash"] != one["specHash"] and checkpoints.run_key(two) == checkpoints.run_key(one)
    folder = saved(tmp_path, 4, two)
    assert checkpoints.find_resume(tmp_path, one) == folder


def test_another_global_batch_is_refused_with_the_accumulation_that_fixes_it(tmp_path: Path) -> None:
    saved(tmp_path, 4, spec_with(gpus=2, batch=2, accumulation=1))
    with pytest.raises(ConfigError, match=r"global batch 4; this run has 1 GPU\(s\) x perDeviceBatch 2 x gradientAccumulation 1 = global batch 2.*gradientAccumulation"):
        checkpoints.find_resume(tmp_path, spec_with(gpus=1, batch=2, accumulation=1))


def test_zero_partitions_need_the_same_number_of_gpus(tmp_path: Path) -> None:
    saved(tmp_path, 4, spec_with(gpus=2, batch=2, accumulation=1, zero=2))
    with pytest.raises(ConfigError, match=r"ZeRO-2 optimizer state partitioned over 2 GPU\(s\); this node runs 1"):
        checkpoints.find_resume(tmp_path, spec_with(gpus=1, batch=2, accumulation=2, zero=2))


def test_another_setting_is_another_run(tmp_path: Path) -> None:
    saved(tmp_path, 4, spec_with())
    other = spec_with(learningRate=5e-4)
    with pytest.raises(ConfigError, match=r"belongs to spec .* is not loaded"):
        checkpoints.find_resume(tmp_path, other)


def test_only_version_changes_that_break_loading_are_refused(tmp_path: Path) -> None:
    spec = spec_with()
    ours = checkpoints.library_versions()
    # torch, peft and accelerate minor versions do not change what a checkpoint loads into
    older = {**ours, "torch": "2.12.1", "peft": "0.20.0", "accelerate": "1.14.0", "transformers": ours["transformers"].rsplit(".", 1)[0] + ".99"}
    saved(tmp_path / "a", 2, spec, versions=older)
    assert checkpoints.find_resume(tmp_path / "a", spec) is not None
    saved(tmp_path / "b", 2, spec, versions={**ours, "transformers": "4.57.1"})
    with pytest.raises(ConfigError, match=r"transformers 4\.57\.1 -> .* \(another major version\)"):
        checkpoints.find_resume(tmp_path / "b", spec)


def test_a_zero_checkpoint_needs_the_deepspeed_it_was_saved_with(tmp_path: Path) -> None:
    spec = spec_with(zero=3)
    ours = checkpoints.library_versions()
    saved(tmp_path, 2, spec, versions={**ours, "deepspeed": "0.18.2"})
    with pytest.raises(ConfigError, match=r"deepspeed 0\.18\.2 -> .* \(ZeRO checkpoint format\)"):
        checkpoints.find_resume(tmp_path, spec)
