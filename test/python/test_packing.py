"""Packed rows never mix examples: the logits of every example inside a packed batch equal the logits of the
example run alone, for each attention implementation the trainer can run on CPU (sdpa, eager), and for the
flattened layout it sends to FlashAttention-2 (run here through sdpa, which isolates it the same way)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import torch

from common.jobspec import ConfigError
from common.render import IGNORE_INDEX
from prep.tokens import pack
from trainer.data import Collator
from trainer.packing import BLOCK_MASK, VARLEN, packing_layout, prepare_model_for_packing

LENGTHS = [9, 3, 14, 6, 1, 11, 5, 8]  # mixed lengths, one single-token example
MAX_LENGTH = 20


def examples(vocab: int) -> list[dict[str, list[int]]]:
    gen = torch.Generator().manual_seed(7)
    out = []
    for n in LENGTHS:
        ids = torch.randint(3, vocab, (n,), generator=gen).tolist()
        prompt = n // 2
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


def packed_rows(items: list[dict[str, list[int]]]) -> list[dict[str, Any]]:
    """Rows as prep writes them (best-fit-decreasing packing), read back as the trainer's dataset yields them."""
    table = pa.table({"input_ids": [e["input_ids"] for e in items], "labels": [e["labels"] for e in items]})
    packed, stats = pack(table, MAX_LENGTH)
    assert stats["packedRows"] < len(items), "the test needs rows holding several examples"
    return packed.to_pylist()


def load(model_dir: Path, attn: str, packing: bool = True) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype=torch.float32).eval()
    if packing:
        prepare_model_for_packing(model)
    return model


def alone(model: Any, ex: dict[str, list[int]]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]


def find(items: list[dict[str, list[int]]], ids: list[int]) -> dict[str, list[int]]:
    return next(e for e in items if e["input_ids"] == ids)


def segments(row: dict[str, Any]) -> list[tuple[int, int]]:
    """(start, end) of each example in a packed row: a new one begins where position_ids restart at 0."""
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["position_ids"])]
    return list(zip(starts[:-1], starts[1:]))


def assert_isolated(model: Any, items: list[dict[str, list[int]]], rows: list[dict[str, Any]], layout: str) -> int:
    batch = Collator(pad_id=0, family="causal-lm", packing=layout)(rows)
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    checked = 0
    offset = 0
    for r, row in enumerate(rows):
        out = logits[0, offset : offset + len(row["input_ids"])] if layout == VARLEN else logits[r]
        offset += len(row["input_ids"])
        for start, end in segments(row):
            ex = find(items, row["input_ids"][start:end])
            torch.testing.assert_close(out[start:end], alone(model, ex), rtol=1e-4, atol=1e-5)
            checked += 1
    return checked


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_every_packed_example_sees_only_itself_with_padded_rows(tiny_causal: Path, attn: str) -> None:
    model = load(tiny_causal, attn)
    items = examples(model.config.vocab_size)
    rows = packed_rows(items)
    assert len({len(r["input_ids"]) for r in rows}) > 1, "rows of different widths, so the batch is padded"
    assert packing_layout(attn) == BLOCK_MASK
    assert assert_isolated(model, items, rows, BLOCK_MASK) == len(LENGTHS)


def test_the_flattened_flash_attention_layout_keeps_examples_apart(tiny_causal: Path) -> None:
    model = load(tiny_causal, "sdpa")
    items = examples(model.config.vocab_size)
    rows = packed_rows(items)
    assert packing_layout("flash_attention_2") == VARLEN
    batch = Collator(pad_id=0, family="causal-lm", packing=VARLEN)(rows)
    assert batch["input_ids"].shape == (1, sum(LENGTHS))  # no padding at all
    assert assert_isolated(model, items, rows, VARLEN) == len(LENGTHS)


def test_with_a_kv_cache_the_examples_would_mix(tiny_causal: Path) -> None:
    """Why prepare_model_for_packing exists: with use_cache on, transformers skips the per-example masks."""
    model = load(tiny_causal, "sdpa", packing=False)
    assert model.config.use_cache
    items = examples(model.config.vocab_size)
    rows = packed_rows(items)
    with pytest.raises(AssertionError):
        assert_isolated(model, items, rows, BLOCK_MASK)


@pytest.mark.parametrize("layout", [BLOCK_MASK, VARLEN])
def test_no_example_is_trained_to_predict_from_the_one_before(layout: str) -> None:
    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [IGNORE_INDEX, 6, 7, 8, 9], "position_ids": [0, 1, 2, 0, 1]},
        {"input_ids": [4, 3], "labels": [4, 3], "position_ids": [0, 1]},
    ]
    batch = Collator(pad_id=0, family="causal-lm", packing=layout)(rows)
    if layout == BLOCK_MASK:
        assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9], [IGNORE_INDEX, 3, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
        assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 0, 0]]
        assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [4, 3, 0, 0, 0]]
    else:
        assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9, IGNORE_INDEX, 3]]
        assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]


def test_attention_that_cannot_keep_examples_apart_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"flex_attention.*data\.tokenize\.packing: false"):
        packing_layout("flex_attention")
