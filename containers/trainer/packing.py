"""Packed rows that never mix examples, on every attention implementation the trainer loads.

Prep packs several tokenized examples into one row and gives each example position_ids that restart at 0
(containers/prep/tokens.py). Attention must then stay inside each example. How transformers 5.17 does it
depends on the attention implementation, so the batch is laid out per implementation:

- flash_attention_2 / flash_attention_3 ("varlen"): the whole batch is flattened into one row of
  [1, total tokens] with position_ids and no attention_mask. transformers then calls flash-attn's varlen
  kernel with cu_seqlens taken from where position_ids restart (modeling_flash_attention_utils.py,
  `_is_packed_sequence` needs batch size 1 and `_prepare_from_posids`). A 2D attention_mask would send it
  down the padding path instead, which ignores position_ids and lets the examples of a row see each other;
  this is transformers' own padding-free layout (DataCollatorWithFlattening in data/data_collator.py).
- sdpa / eager ("block-mask"): padded rows with position_ids and no attention_mask. create_causal_mask
  (masking_utils.py, `_preprocess_mask_arguments` -> `find_packed_sequence_indices`) then ANDs the causal
  mask with a block-diagonal one, one block per example, built from the position_ids; it does so only when
  the 2D attention_mask is None and there is no KV cache, so the model's config gets use_cache=False
  (with the cache a DynamicCache is created in training too, and the examples mix: test_packing.py shows it).
  Padding positions carry position 0, so each padding token is a block of its own: real tokens never see it.
  An explicit 4D mask would also be accepted as-is, but the Trainer counts input tokens as
  attention_mask.sum() when an attention_mask is present (trainer.py, include_num_input_tokens_seen
  "non_padding"), which a 4D mask turns into a count of token pairs.

Any other implementation is refused with the fix. In every layout the first token of each example gets the
label -100: the causal-LM loss predicts token i from tokens before it, and the token before an example's first
token belongs to the previous example (DataCollatorWithFlattening's separator_id does the same).

Seq2seq models are never packed: the trainer refuses packed data for them before loading anything.
"""
from __future__ import annotations

from typing import Any

from common.jobspec import ConfigError

VARLEN = "varlen"
BLOCK_MASK = "block-mask"

_VARLEN_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3")
_MASK_IMPLEMENTATIONS = ("sdpa", "eager")


def packing_layout(attn_implementation: str) -> str:
    """How packed batches are laid out for this attention implementation; ConfigError where none keeps examples apart."""
    if attn_implementation in _VARLEN_IMPLEMENTATIONS:
        return VARLEN
    if attn_implementation in _MASK_IMPLEMENTATIONS:
        return BLOCK_MASK
    raise ConfigError(
        f"packed data needs attention that keeps the packed examples apart (flash_attention_2, sdpa or eager); this "
        f"model runs {attn_implementation!r}. Prepare the data without packing (data.tokenize.packing: false)."
    )


def prepare_model_for_packing(model: Any) -> None:
    """No KV cache during training: transformers builds the per-example masks only without one (see above)."""
    model.config.use_cache = False


def describe(layout: str, attn_implementation: str) -> str:
    if layout == VARLEN:
        return f"packed examples kept apart by {attn_implementation}'s variable-length kernel (each batch flattened into one row, position_ids)"
    return f"packed examples kept apart by block-diagonal causal masks built from position_ids ({attn_implementation})"
