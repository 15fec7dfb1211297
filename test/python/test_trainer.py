"""The trainer job, run as the node runner runs it (python containers/trainer/main.py, everything from env),
on tiny models built from configs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import PREP, ROOT, TRAINER, job_env, run_job, short_rows, write_spec
from specs import prep_spec, train_spec

PROGRESS_SCHEMA = json.loads((ROOT / "containers" / "schemas" / "progress.schema.json").read_text())


def trainer_env(tmp: Path, spec: dict[str, Any], data: Path) -> dict[str, Path]:
    return {
        "CAMPAIGN_SPEC": write_spec(tmp / "spec.json", spec),
        "CAMPAIGN_DATA_DIR": data,
        "CAMPAIGN_MODEL_DIR": tmp / "model",  # empty: the model loads from spec.model.id
        "CAMPAIGN_CHECKPOINT_DIR": tmp / "checkpoints",
        "CAMPAIGN_OUTPUT_DIR": tmp / "output",
        "CAMPAIGN_PROGRESS_FILE": tmp / "progress.json",
    }


def lr_used_at(step: int, base: float, total: int) -> float:
    """Linear decay without warmup: the learning rate the optimizer used for step `step` (1-based)."""
    return base * (total - step + 1) / total


def assert_lr_schedule(log_history: list[dict[str, Any]], base: float, total: int) -> None:
    logged = {h["step"]: h["learning_rate"] for h in log_history if "learning_rate" in h}
    assert sorted(logged) == list(range(1, total + 1))
    for step, lr in logged.items():
        assert lr == pytest.approx(lr_used_at(step, base, total), rel=1e-6), (step, lr)


def test_causal_lora_trains_checkpoints_and_reports(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"])
    env = trainer_env(tmp_path, spec, data)
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-3", "checkpoint-6"]
    for name in ckpts:
        marker = json.loads((tmp_path / "checkpoints" / name / "_COMPLETE.json").read_text())
        assert marker["specHash"] == spec["specHash"] and marker["step"] == int(name.split("-")[1])
        assert {"torch", "transformers", "peft", "accelerate"} <= set(marker["versions"]) and "trl" not in marker["versions"]
        assert marker["layout"] == {"gpus": 1, "perDeviceBatch": 4, "gradientAccumulation": 1, "zeroStage": 0}
    out = tmp_path / "output"
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["specHash"] == spec["specHash"]
    assert 0 < metrics["parameters"]["share"] < 0.1
    assert "eval_loss" in metrics["eval"] and 0 <= metrics["eval"]["eval_token_accuracy"] <= 1
    progress = json.loads((tmp_path / "progress.json").read_text())
    jsonschema.validate(progress, PROGRESS_SCHEMA)
    assert progress["step"] == progress["totalSteps"] == 6 and progress["loss"] is not None
    assert progress["tokensPerSec"] and progress["tokensPerSec"] > 0
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert_lr_schedule(state["log_history"], 1e-3, 6)
    assert "trainable parameters:" in res.out and "no CUDA device" in res.out


def test_a_node_lost_after_the_last_checkpoint_writes_the_output_without_another_step(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"])
    env = trainer_env(tmp_path, spec, data)
    assert run_job(TRAINER, **env).rc == 0
    shutil.rmtree(tmp_path / "output")  # the node ended before its output reached S3
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    assert "checkpoint-6 is the run's last step: nothing left to train" in res.out
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["train"] == {"resumedAtLastStep": 6}
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]
    assert (tmp_path / "output" / "adapter_model.safetensors").is_file()


def test_packed_data_trains_with_each_example_kept_apart(tmp_path: Path, tiny_causal: Path) -> None:
    """Prep packs tokenized rows; the trainer lays them out for its attention (sdpa here: block-diagonal masks)."""
    raw = short_rows(tmp_path / "raw.jsonl", 120)
    prep = prep_spec(str(raw), data={"tokenize": {"enabled": True, "maxLength": 64, "packing": True}, "split": {"kind": "random", "seed": 3, "ratios": {"train": 0.9, "validation": 0.1, "test": 0}}},
                     tokenizer={"id": str(tiny_causal), "revision": "main", "family": "causal-lm"})
    res = run_job(PREP, CAMPAIGN_SPEC=write_spec(tmp_path / "prep.json", prep), CAMPAIGN_OUTPUT_DIR=tmp_path / "data")
    assert res.rc == 0, str(res)
    assert json.loads((tmp_path / "data" / "manifest.json").read_text())["packing"] is True
    run = tmp_path / "run"
    run.mkdir()
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], data={"tokenized": True, "packing": True, "maxLength": 64}, training={"maxSteps": 3, "saveSteps": 3, "evalSteps": 3, "maxSeqLength": 64})
    res = run_job(TRAINER, **trainer_env(run, spec, tmp_path / "data"))
    assert res.rc == 0, str(res)
    assert "packed examples kept apart by block-diagonal causal masks built from position_ids (sdpa)" in res.out
    metrics = json.loads((run / "output" / "metrics.json").read_text())
    assert metrics["model"]["packing"] == "block-mask" and metrics["steps"] == 3 and "eval_loss" in metrics["eval"]
    progress = json.loads((run / "progress.json").read_text())
    assert progress["tokensPerSec"] and progress["tokensPerSec"] > 0  # counted from input_ids without an attention mask


def test_seq2seq_lora_trains_and_evaluates_with_masked_labels(tmp_path: Path, tiny_t5: Path, prepared: Any) -> None:
    data, prep = prepared("seq2seq", tokenizer=tiny_t5, family="seq2seq")
    spec = train_spec(str(tiny_t5), "seq2seq", prep["prepHash"], data={"formatKind": "seq2seq", "tokenized": True, "packing": False, "maxLength": 64}, training={"maxSteps": 4, "evalSteps": 2, "saveSteps": 2, "perDeviceBatch": 3})
    res = run_job(TRAINER, **trainer_env(tmp_path, spec, data))
    assert res.rc == 0, str(res)
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["steps"] == 4
    # labels are padded with -100 in every eval batch (uneven lengths, batch of 3); decoding them must work
    assert metrics["samples"] and all(s["label"].startswith("answer") for s in metrics["samples"])
    assert "eval_token_accuracy" in metrics["eval"]
    assert (tmp_path / "checkpoints" / "checkpoint-4" / "_COMPLETE.json").is_file()


def test_sigterm_saves_a_checkpoint_and_a_new_process_resumes(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    total = 40
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], training={"maxSteps": total, "saveSteps": 1000, "evalSteps": 1000, "perDeviceBatch": 2})
    env = trainer_env(tmp_path, spec, data)
    proc = subprocess.Popen(TRAINER, env=job_env(**env), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    progress = tmp_path / "progress.json"
    deadline = time.monotonic() + 600  # generous: the machine may be shared
    step = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.exists():
            step = json.loads(progress.read_text())["step"]
            if step >= 5:
                break
        time.sleep(0.02)
    assert proc.poll() is None and step >= 5, "training did not reach step 5 while running"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # a second stop request (a watcher and a watchdog) changes nothing
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 75, out
    saved = [p for p in (tmp_path / "checkpoints").iterdir()]
    assert len(saved) == 1
    stopped = int(saved[0].name.split("-")[1])
    assert step <= stopped < total
    assert json.loads((saved[0] / "_COMPLETE.json").read_text())["step"] == stopped
    assert not (tmp_path / "output" / "metrics.json").exists()

    res = run_job(TRAINER, timeout=900, **env)
    assert res.rc == 0, str(res)
    assert f"resuming from checkpoint-{stopped}" in res.out
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["steps"] == total
    state = json.loads((tmp_path / "checkpoints" / f"checkpoint-{total}" / "trainer_state.json").read_text())
    assert_lr_schedule(state["log_history"], 1e-3, total)  # one schedule across both processes


def test_checkpoint_of_another_spec_is_refused(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"])
    other = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], training={"learningRate": 5e-4})
    assert other["specHash"] != spec["specHash"]
    ckpt = tmp_path / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "_COMPLETE.json").write_text(json.dumps({"step": 3, "specHash": other["specHash"], "versions": {}}))
    partial = tmp_path / "checkpoints" / "checkpoint-9"  # newer but never completed: not a candidate
    partial.mkdir()
    res = run_job(TRAINER, **trainer_env(tmp_path, spec, data))
    assert res.rc == 78, str(res)
    assert other["specHash"] in res.out and spec["specHash"] in res.out and "is not loaded" in res.out
    assert "checkpoint-9 has no _COMPLETE.json" in res.out


def test_checkpoint_of_other_library_versions_is_refused(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"])
    ckpt = tmp_path / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    versions = {"torch": "2.13.0", "transformers": "4.57.1", "peft": "0.21.0", "accelerate": "1.15.0"}
    (ckpt / "_COMPLETE.json").write_text(json.dumps({"step": 3, "specHash": spec["specHash"], "versions": versions}))
    res = run_job(TRAINER, **trainer_env(tmp_path, spec, data))
    assert res.rc == 78, str(res)
    assert "transformers 4.57.1 -> 5.17.0 (another major version)" in res.out


def test_unprepared_data_is_refused(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"])
    # another prep's dataset
    res = run_job(TRAINER, **trainer_env(tmp_path, train_spec(str(tiny_causal), "causal-lm", "f" * 16), data))
    assert res.rc == 65 and "run the prep stage" in res.out.lower() and "f" * 16 in res.out, str(res)
    # tokenized data expected, text found
    res = run_job(TRAINER, **trainer_env(tmp_path, train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], data={"tokenized": True}), data))
    assert res.rc == 65 and "tokenized=False (spec: True)" in res.out, str(res)
    # a copy without _SUCCESS (prep did not finish)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(data, unfinished)
    (unfinished / "_SUCCESS").unlink()
    res = run_job(TRAINER, **trainer_env(tmp_path, spec, unfinished))
    assert res.rc == 65 and "has no _SUCCESS" in res.out, str(res)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_too_many_trainable_parameters_are_refused(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], method={"lora": {"maxTrainableFraction": 0.01}})
    res = run_job(TRAINER, **trainer_env(tmp_path, spec, data))
    assert res.rc == 78, str(res)
    assert "above method.lora.maxTrainableFraction 1.00%" in res.out


def test_qlora_without_cuda_is_a_config_error(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], method={"kind": "qlora"})
    res = run_job(TRAINER, **trainer_env(tmp_path, spec, data))
    assert res.rc == 78, str(res)
    assert "QLoRA needs a CUDA GPU" in res.out


def test_deepspeed_config_from_the_zero_stage() -> None:
    from trainer.run import deepspeed_config

    two = deepspeed_config(2)
    assert two["zero_optimization"]["stage"] == 2 and two["zero_optimization"]["reduce_bucket_size"] == 200_000_000
    assert two["bf16"] == {"enabled": "auto"} and two["gradient_accumulation_steps"] == "auto"
    three = deepspeed_config(3)
    assert three["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_safe_decode_handles_minus_100(tiny_t5: Path) -> None:
    from transformers import AutoTokenizer

    from common.render import safe_decode

    tok = AutoTokenizer.from_pretrained(tiny_t5)
    ids = tok("answer 3")["input_ids"]
    assert safe_decode(tok, [ids + [-100, -100], [-100] * 3]) == [tok.decode(ids, skip_special_tokens=True), ""]
