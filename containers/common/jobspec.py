"""The job spec, the environment contract and the exit codes, as components/campaign/ defines them.

The spec is validated against containers/schemas/job-spec.schema.json, generated from the zod schemas, so
both sides agree on one contract. A rendered spec carries every default, so fields are read directly.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# The constants shared with TypeScript and the node runner, generated from components/campaign/contract.ts.
CONTRACT: dict[str, Any] = json.loads((SCHEMA_DIR / "contract.json").read_text())
SUCCESS_MARKER: str = CONTRACT["markers"]["datasetComplete"]
CHECKPOINT_MARKER: str = CONTRACT["markers"]["checkpointComplete"]
MANIFEST: str = CONTRACT["markers"]["manifest"]
MANIFEST_VERSION: int = CONTRACT["manifestVersion"]
SPLITS: tuple[str, ...] = tuple(CONTRACT["splits"])


class ExitCode:
    """The jobs' exit codes (contract.json exitCodes), read by the node runner to pick the final phase."""

    SUCCESS: int = CONTRACT["exitCodes"]["success"]
    FAILURE: int = CONTRACT["exitCodes"]["failure"]
    DATA_ERROR: int = CONTRACT["exitCodes"]["dataError"]
    INTERRUPTED: int = CONTRACT["exitCodes"]["interrupted"]
    CONFIG_ERROR: int = CONTRACT["exitCodes"]["configError"]


class JobError(Exception):
    """An error that ends the job with a given exit code and a message meant for the user."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DataError(JobError):
    exit_code = ExitCode.DATA_ERROR


class ConfigError(JobError):
    exit_code = ExitCode.CONFIG_ERROR


def log(message: str) -> None:
    """One line to stderr, prefixed and flushed: the runner ships stderr to the run's logs/."""
    print(f"[{utc_now()}] {message}", file=sys.stderr, flush=True)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def env_path(name: str, *, required: bool = True) -> Path | None:
    """A path from the job's environment (contract.json jobPaths)."""
    value = os.environ.get(name)
    if not value:
        if required:
            raise ConfigError(f"environment variable {name} is not set; the node runner sets it (see containers/README.md)")
        return None
    return Path(value)


def load_spec(path: Path, kind: str) -> dict[str, Any]:
    """Reads and validates a job spec; raises ConfigError naming the first problem."""
    import jsonschema  # imported here so a missing package is reported by the caller's error handling

    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"job spec {path} does not exist") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"job spec {path} is not valid JSON: {err}") from err
    schema = json.loads((SCHEMA_DIR / "job-spec.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(spec), key=lambda e: list(e.absolute_path))
    if errors:
        # oneOf hides the useful message; validate against the branch of the spec's kind to name the field.
        branch = next((s for s in schema["oneOf"] if s["properties"]["kind"].get("const") == spec.get("kind")), None)
        detail = errors[0]
        if branch is not None:
            inner = sorted(jsonschema.Draft202012Validator(branch).iter_errors(spec), key=lambda e: list(e.absolute_path))
            if inner:
                detail = inner[0]
        where = "/".join(str(p) for p in detail.absolute_path) or "(root)"
        raise ConfigError(f"job spec {path} does not match containers/schemas/job-spec.schema.json at {where}: {detail.message}")
    if spec["kind"] != kind:
        raise ConfigError(f"job spec {path} is a {spec['kind']!r} spec; this job runs {kind!r} specs")
    return spec


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Checks a prepared dataset's manifest against containers/schemas/manifest.schema.json (generated from
    components/campaign/contract.ts); raises JobError naming the first field that does not match."""
    import jsonschema

    schema = json.loads((SCHEMA_DIR / "manifest.schema.json").read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise JobError(f"{MANIFEST} does not match containers/schemas/manifest.schema.json at {where}: {errors[0].message}")


def write_json_atomic(path: Path, value: Any) -> None:
    """Writes JSON to a temporary file beside `path`, flushes it, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ModelRef:
    """spec.model / spec.tokenizer / spec.stageModels[i]."""

    id: str
    revision: str
    family: str

    @staticmethod
    def of(value: dict[str, Any]) -> "ModelRef":
        return ModelRef(id=value["id"], revision=value["revision"], family=value["family"])

    def is_hub_id(self) -> bool:
        """A hub id like Qwen/Qwen2.5-7B-Instruct: neither s3:// nor a path that exists here."""
        if self.id.startswith("s3://") or self.id.startswith((".", "/")):
            return False
        return not Path(self.id).exists()

    def staged_dir(self, model_root: Path) -> Path:
        """Where prep stages this model (mirrors S3 models/<id>/<revision>/)."""
        return model_root / self.id / self.revision


def resolve_model_dir(ref: ModelRef, model_root: Path | None) -> str:
    """Where to load a model or tokenizer from: staged weights when present, else the id itself."""
    if model_root is not None:
        for candidate in (model_root, ref.staged_dir(model_root)):
            if (candidate / "config.json").is_file() or (candidate / "tokenizer_config.json").is_file():
                return str(candidate)
    if ref.id.startswith("s3://"):
        raise ConfigError(f"model {ref.id} is an s3:// prefix but no staged copy was found in {model_root}; the node runner downloads it there")
    return ref.id
