"""Tokenization and packing during prep, so the GPU never tokenizes (docs/campaigns.md, formatting before the GPUs)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from common import render
from common.jobspec import ConfigError

_BATCH = 4096


def tokenize_table(table: pa.Table, tokenizer: Any, family: str, max_length: int) -> tuple[pa.Table, dict[str, int]]:
    """input_ids + labels columns in place of prompt/completion; rows left with no target are removed."""
    ids_all: list[list[int]] = []
    labels_all: list[list[int]] = []
    keep: list[bool] = []
    truncated = 0
    prompts = table["prompt"].to_pylist()
    completions = table["completion"].to_pylist()
    for start in range(0, len(prompts), _BATCH):
        ids, labels, cut = render.tokenize_pairs(
            tokenizer, prompts[start : start + _BATCH], completions[start : start + _BATCH], family=family, max_length=max_length
        )
        truncated += cut
        for i, l in zip(ids, labels):
            ok = render.has_target(l)
            keep.append(ok)
            if ok:
                ids_all.append(i)
                labels_all.append(l)
    mask = pa.array(keep, pa.bool_())
    rest = table.drop_columns(["prompt", "completion"]).filter(mask)
    out = rest.append_column("input_ids", pa.array(ids_all, pa.list_(pa.int32()))).append_column("labels", pa.array(labels_all, pa.list_(pa.int32())))
    return out, {"truncated": truncated, "noTargetAfterTruncation": len(keep) - len(ids_all)}


class _Fenwick:
    """Counts of open bins per remaining capacity; finds the smallest capacity >= n in O(log L)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tree = [0] * (size + 1)
        self.log = 1 << size.bit_length()

    def add(self, index: int, delta: int) -> None:
        i = index + 1
        while i <= self.size:
            self.tree[i] += delta
            i += i & -i

    def prefix(self, index: int) -> int:
        i, total = index + 1, 0
        while i > 0:
            total += self.tree[i]
            i -= i & -i
        return total

    def first_at_least(self, index: int) -> int:
        """Smallest capacity c >= index with an open bin, or -1."""
        target = (self.prefix(index - 1) if index > 0 else 0) + 1
        pos, step, acc = 0, self.log, 0
        while step:
            nxt = pos + step
            if nxt <= self.size and acc + self.tree[nxt] < target:
                pos = nxt
                acc += self.tree[nxt]
            step >>= 1
        return pos if pos < self.size else -1


def pack(table: pa.Table, max_length: int) -> tuple[pa.Table, dict[str, float]]:
    """Best-fit-decreasing packing of tokenized causal-LM rows into rows of at most max_length tokens.

    Packed rows carry position_ids that restart at 0 for each example, so attention kernels that read them
    (flash attention) keep examples apart; labels keep -100 on every prompt.
    """
    if "input_ids" not in table.column_names:
        raise ConfigError("packing needs tokenized data (data.tokenize.enabled)")
    ids = table["input_ids"].to_pylist()
    labels = table["labels"].to_pylist()
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    tree = _Fenwick(max_length + 1)
    by_capacity: dict[int, list[int]] = {}
    bins: list[list[int]] = []
    fill: list[int] = []
    for row in order.tolist():
        n = int(lengths[row])
        cap = tree.first_at_least(n)
        if cap < 0:
            b = len(bins)
            bins.append([row])
            fill.append(n)
        else:
            b = by_capacity[cap].pop()
            tree.add(cap, -1)
            bins[b].append(row)
            fill[b] += n
        rest = max_length - fill[b]
        if rest > 0:
            by_capacity.setdefault(rest, []).append(b)
            tree.add(rest, 1)
    out_ids, out_labels, out_pos = [], [], []
    for members in bins:
        members.sort()
        p_ids: list[int] = []
        p_labels: list[int] = []
        p_pos: list[int] = []
        for row in members:
            p_ids.extend(ids[row])
            p_labels.extend(labels[row])
            p_pos.extend(range(len(ids[row])))
        out_ids.append(p_ids)
        out_labels.append(p_labels)
        out_pos.append(p_pos)
    ltype = pa.list_(pa.int32())
    packed = pa.table({"input_ids": pa.array(out_ids, ltype), "labels": pa.array(out_labels, ltype), "position_ids": pa.array(out_pos, ltype)})
    total = int(lengths.sum())
    return packed, {"examples": len(ids), "packedRows": len(bins), "fill": (total / (len(bins) * max_length)) if bins else 0.0}


def token_stats(table: pa.Table) -> dict[str, float]:
    if table.num_rows == 0:
        return {"rows": 0, "tokens": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0, "targetTokens": 0}
    import pyarrow.compute as pc

    lengths = pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False)
    flat_labels = pc.list_flatten(table["labels"]).to_numpy(zero_copy_only=False)
    return {
        "rows": int(table.num_rows),
        "tokens": int(lengths.sum()),
        "mean": float(lengths.mean()),
        "p50": int(np.percentile(lengths, 50)),
        "p95": int(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "targetTokens": int((flat_labels != render.IGNORE_INDEX).sum()),
    }
