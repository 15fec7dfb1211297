"""Staging base weights from the hub into CAMPAIGN_MODEL_DIR/<id>/<revision>/ (the runner uploads that to
S3 models/<id>/<revision>/), so GPU nodes read weights from S3 instead of the hub."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from common.jobspec import ConfigError, ModelRef, log

# Weights, configs and tokenizer files; no other formats (.bin pickles, .h5, .msgpack, ONNX) are fetched.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja", "*.py"]


def _hub_download(repo_id: str, revision: str, local_dir: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=repo_id, revision=revision, local_dir=str(local_dir), allow_patterns=ALLOW_PATTERNS)


def stage_models(models: list[ModelRef], model_root: Path | None, download: Callable[[str, str, Path], None] = _hub_download) -> list[dict[str, Any]]:
    staged: list[dict[str, Any]] = []
    for ref in models:
        if not ref.is_hub_id():
            log(f"model {ref.id}: not a hub id (a local path or s3:// prefix), nothing to stage")
            staged.append({"id": ref.id, "revision": ref.revision, "staged": False, "reason": "not a hub id"})
            continue
        if model_root is None:
            raise ConfigError(f"spec.stageModels lists {ref.id} but CAMPAIGN_MODEL_DIR is not set")
        dest = ref.staged_dir(model_root)
        dest.mkdir(parents=True, exist_ok=True)
        log(f"staging {ref.id}@{ref.revision} into {dest}")
        download(ref.id, ref.revision, dest)
        files = sorted(p for p in dest.rglob("*") if p.is_file() and ".cache" not in p.parts)
        if not any(p.name == "config.json" for p in files):
            raise ConfigError(f"staged {ref.id}@{ref.revision} has no config.json; is it a model repository?")
        staged.append({
            "id": ref.id,
            "revision": ref.revision,
            "staged": True,
            "path": f"{ref.id}/{ref.revision}",
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
        })
    return staged
