"""Job specs as the TypeScript side renders them (every default filled in), for tests and the benchmark."""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any


def short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        # a discriminated union (format, split) is replaced whole, not merged across kinds
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("format", "split"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def prep_spec(source: str, **override: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schemaVersion": 1,
        "kind": "prep",
        "campaign": "test-campaign",
        "prepHash": "0" * 16,
        "data": {
            "source": source,
            "fileFormat": "auto",
            "format": {"kind": "alpaca", "instructionField": "instruction", "inputField": "input", "outputField": "output"},
            "template": {},
            "cleaning": {"minChars": 1, "maxChars": 100_000, "dedup": "exact", "dropEncodingErrors": True},
            "maxMalformedFraction": 0.01,
            "split": {"kind": "random", "seed": 42, "ratios": {"train": 0.95, "validation": 0.05, "test": 0}},
            "tokenize": {"enabled": False, "maxLength": 2048, "packing": False},
        },
        "stageModels": [],
    }
    spec = merge(spec, override)
    if "prepHash" not in override:
        spec["prepHash"] = short_hash({k: v for k, v in spec.items() if k != "prepHash"})
    return spec


def train_spec(model_dir: str, family: str, prep_hash: str, **override: Any) -> dict[str, Any]:
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if family == "causal-lm" else ["q", "k", "v", "o"]
    spec: dict[str, Any] = {
        "schemaVersion": 1,
        "kind": "train",
        "campaign": "test-campaign",
        "run": "run-a",
        "specHash": "0" * 16,
        "prepHash": prep_hash,
        "model": {"id": model_dir, "revision": "main", "family": family},
        "method": {"kind": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "targetModules": targets, "maxTrainableFraction": 0.5}},
        "training": {
            "learningRate": 1e-3,
            "scheduler": "linear",
            "maxSteps": 6,
            "perDeviceBatch": 4,
            "gradientAccumulation": 1,
            "maxSeqLength": 128,
            "precision": "bf16",
            "tf32": True,
            "gradientCheckpointing": False,
            "zeroStage": 0,
            "optimizer": "adamw_torch_fused",
            "weightDecay": 0,
            "maxGradNorm": 1.0,
            "evalSteps": 3,
            "saveSteps": 3,
            "loggingSteps": 1,
            "saveTotalLimit": 2,
            "seed": 42,
        },
        "data": {"formatKind": "alpaca", "tokenized": False, "packing": False, "maxLength": 128},
        "gpus": 1,
        "tracking": {},
    }
    spec = merge(spec, override)
    if "specHash" not in override:
        spec["specHash"] = short_hash({k: v for k, v in spec.items() if k != "specHash"})
    return spec
