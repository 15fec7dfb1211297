"""The prepared dataset: checked against the spec (the trainer never formats), loaded, tokenized only when
prep left it untokenized, and batched."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from common import render
from common.jobspec import MANIFEST, SUCCESS_MARKER, DataError, log
from trainer.packing import BLOCK_MASK, VARLEN

RUN_PREP = "Run the prep stage for this spec (pulumi up runs it before training) so the data is formatted before any GPU starts."


def check_prepared(data_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a dataset prepared for this spec; DataError (exit 65) otherwise."""
    want = spec["data"]
    if not (data_dir / SUCCESS_MARKER).is_file():
        raise DataError(f"{data_dir} has no {SUCCESS_MARKER}: it is not a finished prepared dataset. {RUN_PREP}")
    try:
        manifest = json.loads((data_dir / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{data_dir / MANIFEST} is missing or unreadable ({err}). {RUN_PREP}") from err
    if manifest.get("prepHash") != spec["prepHash"]:
        raise DataError(f"{data_dir} was prepared by prep {manifest.get('prepHash')}, but this run needs prep {spec['prepHash']}. {RUN_PREP}")
    problems = []
    if manifest.get("formatKind") != want["formatKind"]:
        problems.append(f"format {manifest.get('formatKind')} (spec: {want['formatKind']})")
    if bool(manifest.get("tokenized")) != want["tokenized"]:
        problems.append(f"tokenized={manifest.get('tokenized')} (spec: {want['tokenized']})")
    if bool(manifest.get("packing")) != want["packing"]:
        problems.append(f"packing={manifest.get('packing')} (spec: {want['packing']})")
    if want["tokenized"] and manifest.get("maxLength") != want["maxLength"]:
        problems.append(f"maxLength={manifest.get('maxLength')} (spec: {want['maxLength']})")
    needed = required_columns(want)
    for name in ("train", "validation", "test"):
        for f in manifest.get("splits", {}).get(name, {}).get("files", []):
            path = data_dir / f["path"]
            if not path.is_file():
                problems.append(f"{f['path']} is missing")
                continue
            present = set(pq.read_schema(path).names)
            missing = [c for c in needed if c not in present]
            if missing:
                problems.append(f"{f['path']} lacks columns {missing} (has {sorted(present)})")
            break
    if not manifest.get("splits", {}).get("train", {}).get("rows"):
        problems.append("the train split is empty")
    if problems:
        raise DataError(f"{data_dir} is not prepared the way this run's spec says: {'; '.join(problems)}. {RUN_PREP}")
    return manifest


def required_columns(want: dict[str, Any]) -> list[str]:
    if not want["tokenized"]:
        return ["prompt", "completion"]
    return ["input_ids", "labels"] + (["position_ids"] if want["packing"] else [])


def load_split(data_dir: Path, manifest: dict[str, Any], name: str, columns: list[str]) -> Any:
    """A datasets.Dataset of one split (memory-mapped Arrow), or None when the split is empty."""
    import datasets

    files = [str(data_dir / f["path"]) for f in manifest["splits"].get(name, {}).get("files", [])]
    if not files:
        return None
    ds = datasets.Dataset.from_parquet(files, columns=columns)
    return ds if len(ds) else None


def tokenize_dataset(ds: Any, tokenizer: Any, family: str, max_length: int) -> Any:
    """input_ids/labels from prompt/completion (data prepared without tokenization); rows left with no
    target by truncation are removed and counted."""

    def batch(rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids, labels, _ = render.tokenize_pairs(tokenizer, rows["prompt"], rows["completion"], family=family, max_length=max_length)
        return {"input_ids": ids, "labels": labels}

    before = len(ds)
    out = ds.map(batch, batched=True, batch_size=1000, remove_columns=ds.column_names, desc="tokenizing")
    out = out.filter(lambda row: render.has_target(row["labels"]))
    if len(out) < before:
        log(f"{before - len(out)} of {before} examples have no target token left within {max_length} tokens; they are not trained on")
    return out


def truncate(ds: Any, max_length: int) -> Any:
    longest = max((len(x) for x in ds["input_ids"]), default=0)
    if longest <= max_length:
        return ds
    log(f"cutting tokenized rows to training.maxSeqLength = {max_length} (the longest has {longest})")
    return ds.map(lambda row: {k: row[k][:max_length] for k in ("input_ids", "labels")})


class Collator:
    """Batches of token rows.

    Unpacked rows: input_ids padded with the pad id, labels with -100, and a 2D attention mask.
    Packed rows (position_ids restarting at 0 per example) are laid out for the attention implementation
    (trainer/packing.py): `block-mask` pads input_ids, labels and position_ids (0) and sends no attention
    mask; `varlen` concatenates the batch into one row without padding. In both the first token of every
    packed example is labelled -100, so no example is trained to predict from the one before it.
    """

    def __init__(self, pad_id: int, family: str, packing: str | None = None) -> None:
        if packing not in (None, BLOCK_MASK, VARLEN):
            raise ValueError(f"unknown packing layout {packing!r}")
        self.pad_id = pad_id
        self.family = family
        self.packing = packing

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.packing == VARLEN:
            return self._flattened(rows)
        if self.packing == BLOCK_MASK:
            return self._padded_packed(rows)
        return self._padded(rows)

    def _padded(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            mask[i, :n] = 1
        label_width = width if self.family == "causal-lm" else max(len(r["labels"]) for r in rows)
        labels = torch.full((len(rows), label_width), render.IGNORE_INDEX, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, : len(r["labels"])] = torch.as_tensor(r["labels"], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _padded_packed(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), render.IGNORE_INDEX, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)  # every padding token starts a block of its own
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            labels[i, :n] = _labels_without_example_starts(r)
            pos[i, :n] = torch.as_tensor(r["position_ids"], dtype=torch.long)
        return {"input_ids": ids, "labels": labels, "position_ids": pos}

    def _flattened(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.cat([torch.as_tensor(r["input_ids"], dtype=torch.long) for r in rows]).unsqueeze(0)
        labels = torch.cat([_labels_without_example_starts(r) for r in rows]).unsqueeze(0)
        pos = torch.cat([torch.as_tensor(r["position_ids"], dtype=torch.long) for r in rows]).unsqueeze(0)
        return {"input_ids": ids, "labels": labels, "position_ids": pos}


def _labels_without_example_starts(row: dict[str, Any]) -> torch.Tensor:
    labels = torch.as_tensor(row["labels"], dtype=torch.long).clone()
    pos = torch.as_tensor(row["position_ids"], dtype=torch.long)
    if len(pos) != len(labels):
        raise DataError(f"a packed row has {len(labels)} labels but {len(pos)} position_ids; prepare the data again")
    labels[pos == 0] = render.IGNORE_INDEX
    return labels
