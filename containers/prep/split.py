"""Train/validation/test assignment: random rows, or whole groups (the SocSci210 campaign: 170/20/20 studies by study_id,
no group in two splits)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.jobspec import SPLITS, ConfigError

SPLIT_CODES = {name: i for i, name in enumerate(SPLITS)}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed % (1 << 64))


def _sizes(total: int, ratios: dict[str, float]) -> tuple[int, int, int]:
    validation = int(round(total * ratios["validation"]))
    test = int(round(total * ratios.get("test", 0)))
    return total - validation - test, validation, test


def assign(n: int, split: dict[str, Any], groups: pa.Array | None) -> tuple[np.ndarray, dict[str, list[str]] | None]:
    """A split code (0 train, 1 validation, 2 test) per row, and for group splits the groups of each split."""
    rng = _rng(split["seed"])
    codes = np.zeros(n, dtype=np.int8)
    if split["kind"] == "random":
        train, validation, test = _sizes(n, split["ratios"])
        if n and train <= 0:
            raise ConfigError(f"data.split.ratios leave no training rows out of {n}")
        order = rng.permutation(n)
        codes[order[train : train + validation]] = 1
        codes[order[train + validation :]] = 2
        return codes, None

    assert groups is not None
    names = pc.cast(groups, pa.string()) if not pa.types.is_string(groups.type) else groups
    encoded = pc.dictionary_encode(names)
    dictionary = encoded.dictionary.to_pylist()
    ordered = sorted(range(len(dictionary)), key=lambda i: dictionary[i])
    total = len(dictionary)
    if split.get("counts"):
        c = split["counts"]
        train, validation, test = c["train"], c["validation"], c.get("test", 0)
        if train + validation + test != total:
            raise ConfigError(
                f"data.split.counts asks for {train}+{validation}+{test} = {train + validation + test} groups of "
                f"{split['column']!r}, but the cleaned data has {total} groups; set counts that add up to {total} or use ratios"
            )
    elif split.get("ratios"):
        train, validation, test = _sizes(total, split["ratios"])
        if train <= 0:
            raise ConfigError(f"data.split.ratios leave no training group out of {total} groups of {split['column']!r}")
    else:
        raise ConfigError("a group split needs data.split.counts or data.split.ratios")
    shuffled = [ordered[i] for i in rng.permutation(total)]
    group_code = np.zeros(total, dtype=np.int8)
    for i in shuffled[train : train + validation]:
        group_code[i] = 1
    for i in shuffled[train + validation :]:
        group_code[i] = 2
    codes = group_code[encoded.indices.to_numpy(zero_copy_only=False)]
    members = {name: sorted(dictionary[i] for i in range(total) if group_code[i] == code) for name, code in SPLIT_CODES.items()}
    return codes, members
