"""The prep job's lifecycle: spec -> stage models -> read -> format -> clean -> split -> tokenize/pack ->
Parquet shards + manifest.json -> _SUCCESS (last)."""
from __future__ import annotations

import hashlib
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.jobspec import MANIFEST, MANIFEST_VERSION, SPLITS, SUCCESS_MARKER, ConfigError, DataError, ModelRef, env_path, load_spec, log, resolve_model_dir, utc_now, validate_manifest, write_json_atomic
from prep import evaluation, nonempty, read, split, tokens, transform
from prep.stage import stage_models

SHARD_ROWS = 500_000
RESERVED_COLUMNS = {"prompt", "completion", "input_ids", "labels", "position_ids"}


def choose_rendering(spec: dict[str, Any], tokenizer: Any) -> str:
    """chat_template / chatml / plain, as common/render.py describes."""
    if spec["data"]["format"]["kind"] == "seq2seq":
        return "plain"
    tok_ref = spec.get("tokenizer")
    if tok_ref is not None:
        if tok_ref["family"] == "seq2seq":
            return "plain"
        return "chat_template" if getattr(tokenizer, "chat_template", None) else "chatml"
    families = {m["family"] for m in spec["stageModels"]}
    return "plain" if families == {"seq2seq"} else "chatml"


def load_tokenizer(ref: ModelRef, model_root: Path | None) -> Any:
    from transformers import AutoTokenizer

    where = resolve_model_dir(ref, model_root)
    log(f"loading tokenizer of {ref.id} from {where}")
    return AutoTokenizer.from_pretrained(where, revision=None if where != ref.id else ref.revision)


def run() -> None:
    started = time.perf_counter()
    spec_path = env_path("CAMPAIGN_SPEC")
    out_dir = env_path("CAMPAIGN_OUTPUT_DIR")
    input_dir = env_path("CAMPAIGN_INPUT_DIR", required=False)
    model_root = env_path("CAMPAIGN_MODEL_DIR", required=False)
    assert spec_path is not None and out_dir is not None
    spec = load_spec(spec_path, "prep")
    data = spec["data"]
    manifest_path = out_dir / MANIFEST
    if (out_dir / SUCCESS_MARKER).exists() and manifest_path.exists():
        import json

        if json.loads(manifest_path.read_text()).get("prepHash") == spec["prepHash"]:
            log(f"{out_dir} already holds the dataset of prep {spec['prepHash']}; nothing to do")
            return
    _clear_output(out_dir)
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    t = time.perf_counter()
    staged = stage_models([ModelRef.of(m) for m in spec["stageModels"]], model_root)
    t = lap("stageModels", t)

    tok_ref = ModelRef.of(spec["tokenizer"]) if spec.get("tokenizer") else None
    tokenize = data["tokenize"]
    if tokenize["enabled"] and tok_ref is None:
        raise ConfigError("data.tokenize.enabled needs the spec's tokenizer (the base model all runs share)")
    if tokenize["packing"] and not tokenize["enabled"]:
        raise ConfigError("data.tokenize.packing needs data.tokenize.enabled")
    if tokenize["packing"] and tok_ref is not None and tok_ref.family == "seq2seq":
        raise ConfigError("packing applies to causal LMs; the tokenizer's family is seq2seq")
    tokenizer = load_tokenizer(tok_ref, model_root) if tok_ref is not None else None
    rendering = choose_rendering(spec, tokenizer)
    t = lap("tokenizer", t)

    split_spec = data["split"]
    group_col = split_spec["column"] if split_spec["kind"] == "group" else None
    if group_col in RESERVED_COLUMNS:
        raise ConfigError(f"data.split.column {group_col!r} clashes with a prepared column name ({sorted(RESERVED_COLUMNS)})")
    columns = evaluation.with_group_column(transform.needed_columns(data, group_col), spec)
    table, total, malformed = read.read_source(data["source"], data["fileFormat"], data.get("revision"), columns, input_dir)
    table = table.combine_chunks()
    t = lap("read", t)
    log(f"read {total} rows, {malformed.count} malformed so far")

    f = transform.format_table(table, data, rendering, tokenizer, malformed)
    _check_malformed(malformed, total, data["maxMalformedFraction"])
    t = lap("format", t)

    keep, removed = transform.clean(f, data["cleaning"])
    t = lap("clean", t)
    cleaned: dict[str, Any] = {"prompt": f.prompt, "completion": f.completion}
    if group_col:
        groups = table[group_col]
        if not f.keep.all():
            groups = groups.filter(pa.array(f.keep))
        cleaned[group_col] = groups
    final = pa.table(cleaned).filter(pa.array(keep))
    log(f"kept {final.num_rows} of {total} rows; removed {removed}")
    nonempty.check_kept(total, malformed.count, removed, final.num_rows, data["cleaning"])
    codes, members = split.assign(final.num_rows, split_spec, final[group_col].combine_chunks() if group_col else None)
    examples = {name: int((codes == code).sum()) for name, code in split.SPLIT_CODES.items()}
    nonempty.check_split_examples(examples, final.num_rows, split_spec, removed, data["cleaning"])
    eval_rows = evaluation.select_rows(spec, table, f, keep, codes)
    selection_rows = evaluation.select_selection_rows(spec, f, keep, codes)
    t = lap("split", t)

    splits: dict[str, Any] = {}
    token_info: dict[str, Any] = {}
    for name, code in split.SPLIT_CODES.items():
        part = final.take(pa.array(np.flatnonzero(codes == code)))
        rows_before = part.num_rows
        if tokenize["enabled"]:
            part, tstats = tokens.tokenize_table(part, tokenizer, tok_ref.family, tokenize["maxLength"])  # type: ignore[union-attr]
            token_info[name] = {**tokens.token_stats(part), **tstats}
            if tokenize["packing"]:
                part, pstats = tokens.pack(part, tokenize["maxLength"])
                token_info[name]["packing"] = pstats
            nonempty.check_split_rows(name, rows_before, part.num_rows, split_spec, token_info[name], tokenize["maxLength"])
        splits[name] = {"examples": rows_before, "rows": part.num_rows, "files": _write_shards(part, out_dir / name)}
    t = lap("tokenizeAndWrite", t)

    tokenized = bool(tokenize["enabled"])
    out_columns = (["input_ids", "labels"] + (["position_ids"] if tokenize["packing"] else [])) if tokenized else ["prompt", "completion"]
    if group_col and not tokenize["packing"]:
        out_columns.append(group_col)
    manifest = {
        "manifestVersion": MANIFEST_VERSION,
        "prepHash": spec["prepHash"],
        "campaign": spec["campaign"],
        "createdAt": utc_now(),
        "formatKind": data["format"]["kind"],
        "rendering": rendering,
        "tokenized": tokenized,
        "packing": bool(tokenize["packing"]),
        "maxLength": tokenize["maxLength"],
        "tokenizer": spec.get("tokenizer"),
        "columns": out_columns,
        "counts": {
            "read": total,
            "malformed": malformed.count,
            "removed": removed,
            "kept": final.num_rows,
            "splits": {name: splits[name]["examples"] for name in SPLITS},
        },
        "malformed": {"count": malformed.count, "fraction": malformed.count / total if total else 0.0, "reasons": malformed.reasons, "examples": malformed.examples},
        "splits": splits,
        "evaluation": None if eval_rows is None else {**eval_rows.info, "files": _write_shards(eval_rows.table, out_dir / evaluation.DATASET_DIR)},
        "selection": None if selection_rows is None else {**selection_rows.info, "files": _write_shards(selection_rows.table, out_dir / evaluation.SELECTION_DIR)},
        "groups": None if members is None else {"column": group_col, "counts": {k: len(v) for k, v in members.items()}, "assignment": members},
        "tokens": token_info or None,
        "contentHash": _dataset_hash(splits),
        "stagedModels": staged,
        "timings": timings,
        "peakRssMb": peak_rss_mb(),
        "spec": spec,
    }
    validate_manifest(manifest)
    write_json_atomic(manifest_path, manifest)
    (out_dir / SUCCESS_MARKER).write_text(spec["prepHash"] + "\n")
    log(f"prepared dataset {spec['prepHash']} in {time.perf_counter() - started:.1f}s: " + ", ".join(f"{k} {v['rows']}" for k, v in splits.items()))


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _clear_output(out_dir: Path) -> None:
    """Removes what an earlier, unfinished prep left (never anything else)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (SUCCESS_MARKER, MANIFEST):
        (out_dir / name).unlink(missing_ok=True)
    for name in (*SPLITS, evaluation.DATASET_DIR, evaluation.SELECTION_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)


def _check_malformed(malformed: read.Malformed, total: int, limit: float) -> None:
    fraction = malformed.count / total if total else 0.0
    if malformed.count:
        log(f"{malformed.count} malformed rows of {total} ({fraction:.4%}): {malformed.reasons}")
    if total == 0:
        raise DataError("the data source holds no rows")
    if fraction > limit:
        examples = "\n".join(f"  {e['where']}: {e['reason']}: {e['text'][:160]}" for e in malformed.examples)
        raise DataError(
            f"{malformed.count} of {total} rows are malformed ({fraction:.2%}), more than data.maxMalformedFraction "
            f"= {limit:.2%}. Reasons: {malformed.reasons}. Examples:\n{examples}"
        )


def _write_shards(table: pa.Table, split_dir: Path) -> list[dict[str, Any]]:
    split_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, start in enumerate(range(0, table.num_rows, SHARD_ROWS)):
        path = split_dir / f"part-{i:05d}.parquet"
        chunk = table.slice(start, SHARD_ROWS)
        pq.write_table(chunk, path, compression="zstd", row_group_size=50_000)
        files.append({"path": f"{split_dir.name}/{path.name}", "rows": chunk.num_rows, "bytes": path.stat().st_size, "sha256": _sha256(path)})
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _dataset_hash(splits: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in SPLITS:
        for f in splits[name]["files"]:
            digest.update(f"{f['path']}:{f['sha256']}\n".encode())
    return digest.hexdigest()


def main() -> int:
    from common.jobspec import JobError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        run()
    except DataError as err:
        # A refused dataset leaves nothing behind that could pass for a prepared one (no _SUCCESS, no shards).
        out_dir = env_path("CAMPAIGN_OUTPUT_DIR", required=False)
        if out_dir is not None and not (out_dir / SUCCESS_MARKER).exists():
            _clear_output(out_dir)
        log(f"prep failed: {err.message}")
        return err.exit_code
    except JobError as err:
        log(f"prep failed: {err.message}")
        return err.exit_code
    return 0
