"""The multi-process path, run for real on CPU: spec.gpus = 2 makes the trainer re-run itself under torchrun with
two processes on the gloo backend, exactly as on a multi-GPU node (where the backend is NCCL). Tiny model, few
steps, one thread per process; one test, so the model loads as few times as the story needs:
SIGTERM mid-run -> both ranks stop after the same step, one checkpoint, marked by rank 0, exit 75 ->
the checkpoint resumed by two processes, and by one with the same global batch, each training to completion."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, TRAINER, Result, job_env, run_job
from specs import train_spec
from test_trainer import assert_lr_schedule, trainer_env

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # two processes share the machine's cores


def spec_for(model: Path, prep_hash: str, gpus: int, accumulation: int, **training: Any) -> dict[str, Any]:
    return train_spec(str(model), "causal-lm", prep_hash, gpus=gpus, training={"perDeviceBatch": 2, "gradientAccumulation": accumulation, **training})


def run_trainer(env: dict[str, Path]) -> Result:
    return run_job(TRAINER, timeout=1200, **env, **THREADS)  # generous: the machine may be shared


def stops(out: str) -> dict[int, int]:
    """rank -> the step it stopped after, from the ranks' log lines."""
    return {int(rank): int(step) for rank, step in re.findall(r"rank (\d+): stopping after step (\d+)", out)}


def test_sigterm_stops_both_ranks_at_one_step_and_the_checkpoint_resumes_on_two_or_one_process(tmp_path: Path, tiny_causal: Path, prepared: Any) -> None:
    data, prep = prepared("alpaca")
    total = 24
    two = spec_for(tiny_causal, prep["prepHash"], gpus=2, accumulation=1, maxSteps=total, saveSteps=1000, evalSteps=1000)
    first = tmp_path / "first"
    first.mkdir()
    env = trainer_env(first, two, data)
    proc = subprocess.Popen(TRAINER, env=job_env(**env, **THREADS), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    step = wait_for_step(first / "progress.json", proc, at_least=2)
    proc.send_signal(signal.SIGTERM)  # to the launcher only, as the node runner does
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 75, out
    stopped = stops(out)
    assert set(stopped) == {0, 1} and len(set(stopped.values())) == 1, out
    at = stopped[0]
    assert step <= at < total
    saved = sorted((first / "checkpoints").iterdir())
    assert [p.name for p in saved] == [f"checkpoint-{at}"]
    assert out.count(f"checkpoint-{at} complete") == 1 and f"rank 0: checkpoint-{at} complete" in out
    assert json.loads((saved[0] / "_COMPLETE.json").read_text())["step"] == at
    assert not (first / "output").exists()

    # the same checkpoint, resumed by two processes and, with the same global batch, by one
    one = spec_for(tiny_causal, prep["prepHash"], gpus=1, accumulation=2, maxSteps=total, saveSteps=1000, evalSteps=1000)
    for name, spec in (("again-on-two", two), ("on-one", one)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        shutil.copytree(first / "checkpoints", run_dir / "checkpoints")
        res = run_trainer(trainer_env(run_dir, spec, data))
        assert res.rc == 0, f"{name}: {res}"
        assert f"resuming from checkpoint-{at}" in res.out
        if spec is one:
            assert "saved with 2 GPU(s) x perDeviceBatch 2 x gradientAccumulation 1 = global batch 4; resuming with 1 GPU(s)" in res.out
            assert "--nproc_per_node" not in res.out
        metrics = json.loads((run_dir / "output" / "metrics.json").read_text())
        assert metrics["steps"] == total and "eval_loss" in metrics["eval"]
        assert (run_dir / "output" / "adapter_model.safetensors").is_file()
        last = run_dir / "checkpoints" / f"checkpoint-{total}"
        state = json.loads((last / "trainer_state.json").read_text())
        assert_lr_schedule(state["log_history"], 1e-3, total)  # one schedule across the stop and the resume
        assert res.out.count(f"checkpoint-{total} complete") == 1 and json.loads((last / "_COMPLETE.json").read_text())["layout"]["gpus"] == spec["gpus"]
        ranks = sorted(p.name for p in last.glob("rng_state*.pth"))
        assert ranks == (["rng_state_0.pth", "rng_state_1.pth"] if spec is two else ["rng_state.pth"])  # one RNG state per process


def wait_for_step(progress: Path, proc: subprocess.Popen[str], at_least: int, bound: float = 900) -> int:
    """Polls the progress file (written by rank 0) until training has reached a step; a generous bound, no fixed sleep."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.exists():
            step = int(json.loads(progress.read_text())["step"])
            if step >= at_least:
                return step
        time.sleep(0.05)
    proc.kill()
    out, _ = proc.communicate()
    pytest.fail(f"training did not reach step {at_least} while running (rc {proc.returncode}):\n{out[-4000:]}")
