"""Fixtures: tiny models built from configs (no downloads), synthetic SocSci210-shaped data, and helpers that
run the jobs exactly as the node runner does (python containers/<job>/main.py, everything from env)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "containers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PREP = [sys.executable, str(ROOT / "containers" / "prep" / "main.py")]
TRAINER = [sys.executable, str(ROOT / "containers" / "trainer" / "main.py")]


@dataclass
class Result:
    rc: int
    out: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n{self.out[-4000:]}"


def job_env(**paths: Path | str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_")}
    env.update({k: str(v) for k, v in paths.items()})
    env.setdefault("CAMPAIGN_PROGRESS_INTERVAL", "0")
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_job(command: list[str], timeout: float = 180, **paths: Path | str) -> Result:
    proc = subprocess.run(command, env=job_env(**paths), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout + proc.stderr)


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(json.dumps(spec))
    return path


def _make_model(family: str, out: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make-tiny-model.py"), "--family", family, "--out", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_model("causal-lm", tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_model("seq2seq", tmp_path_factory.mktemp("tiny-t5"))


def short_rows(path: Path, n: int, kind: str = "alpaca", studies: int = 4) -> Path:
    """Short alpaca or seq2seq rows (a few tokens each), so tiny models train on them in seconds."""
    with path.open("w") as out:
        for i in range(n):
            study = f"s{i % studies}"
            if kind == "seq2seq":
                row = {"input": f"question {i} about trust", "target": f"answer {i % 7}", "study_id": study}
            else:
                row = {"instruction": f"Predict answer {i}", "input": f"age {i % 50}", "output": f"Response: {i % 7}", "study_id": study}
            out.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Prepares a small dataset once per (kind, tokenize) and returns (data dir, prep spec)."""
    from specs import prep_spec

    cache: dict[tuple[str, bool], tuple[Path, dict[str, Any]]] = {}

    def make(kind: str = "alpaca", tokenizer: Path | None = None, family: str = "causal-lm", rows: int = 240) -> tuple[Path, dict[str, Any]]:
        key = (kind, tokenizer is not None)
        if key in cache:
            return cache[key]
        base = tmp_path_factory.mktemp(f"prepared-{kind}")
        raw = short_rows(base / "raw.jsonl", rows, kind)
        fmt = {"kind": kind, "inputField": "input", "targetField": "target"} if kind == "seq2seq" else {}
        override: dict[str, Any] = {"data": {"split": {"kind": "random", "seed": 3, "ratios": {"train": 0.9, "validation": 0.1, "test": 0}}}}
        if fmt:
            override["data"]["format"] = fmt
        if tokenizer is not None:
            override["data"]["tokenize"] = {"enabled": True, "maxLength": 64, "packing": False}
            override["tokenizer"] = {"id": str(tokenizer), "revision": "main", "family": family}
        spec = prep_spec(str(raw), **override)
        res = run_job(PREP, CAMPAIGN_SPEC=write_spec(base / "spec.json", spec), CAMPAIGN_OUTPUT_DIR=base / "data")
        assert res.rc == 0, str(res)
        cache[key] = (base / "data", spec)
        return cache[key]

    return make
