"""How examples become text and tokens; shared by prep (which does it before any GPU) and the trainer
(which only tokenizes untokenized prepared data, never formats).

Renderings (manifest.json "rendering"):
  chat_template  the tokenizer's own chat template (a causal LM whose tokenizer has one)
  chatml         ChatML, written out here (no tokenizer given, or one without a chat template)
  plain          system + blank line + user text -> target text (seq2seq models and seq2seq data)
"""
from __future__ import annotations

from typing import Any, Sequence

IGNORE_INDEX = -100

CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"


def chatml_prompt_prefix(system: str | None) -> str:
    return f"{CHATML_START}system\n{system}{CHATML_END}\n" if system else ""


CHATML_USER_OPEN = f"{CHATML_START}user\n"
CHATML_USER_CLOSE = f"{CHATML_END}\n{CHATML_START}assistant\n"
CHATML_COMPLETION_CLOSE = f"{CHATML_END}\n"


def chatml_messages(messages: Sequence[dict[str, str]]) -> tuple[str, str]:
    """(prompt, completion) of a conversation whose last message is the assistant's answer."""
    parts = [f"{CHATML_START}{m['role']}\n{m['content']}{CHATML_END}\n" for m in messages[:-1]]
    prompt = "".join(parts) + f"{CHATML_START}assistant\n"
    return prompt, messages[-1]["content"] + CHATML_COMPLETION_CLOSE


def template_messages(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, str]:
    """(prompt, completion) rendered with the tokenizer's chat template; the prompt ends with the generation prompt."""
    prompt = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the conversation differently with and without the answer")
    return prompt, full[len(prompt):]


def tokenize_pairs(
    tokenizer: Any, prompts: list[str], completions: list[str], *, family: str, max_length: int
) -> tuple[list[list[int]], list[list[int]], int]:
    """Token ids and labels of (prompt, completion) pairs, and how many were truncated.

    causal-lm: input_ids = prompt + completion (+ eos unless the completion already ends with it),
               labels = -100 over the prompt, the completion's ids after it; cut at max_length.
    seq2seq:   input_ids = the prompt's ids, labels = the completion's ids (each with the tokenizer's own
               special tokens, e.g. T5's </s>), each cut at max_length.
    """
    truncated = 0
    if family == "seq2seq":
        sources = tokenizer(prompts, add_special_tokens=True)["input_ids"]
        targets = tokenizer(text_target=completions, add_special_tokens=True)["input_ids"]
        ids_out, labels_out = [], []
        for s, t in zip(sources, targets):
            if len(s) > max_length or len(t) > max_length:
                truncated += 1
            ids_out.append(s[:max_length])
            labels_out.append(t[:max_length])
        return ids_out, labels_out, truncated
    eos = tokenizer.eos_token_id
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    ids_out, labels_out = [], []
    for p, c in zip(p_ids, c_ids):
        if eos is not None and eos not in c[-2:]:
            c = c + [eos]
        ids = p + c
        labels = [IGNORE_INDEX] * len(p) + c
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        ids_out.append(ids)
        labels_out.append(labels)
    return ids_out, labels_out, truncated


def has_target(labels: Sequence[int]) -> bool:
    """False when truncation left no token to learn from (the loss of such a row is undefined)."""
    return any(t != IGNORE_INDEX for t in labels)


def safe_decode(tokenizer: Any, ids: Sequence[Sequence[int]]) -> list[str]:
    """Decodes predictions or labels that may hold -100 (the SocratiQ campaign's OverflowError): -100 becomes padding."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean = [[pad if int(t) < 0 else int(t) for t in row] for row in ids]
    return tokenizer.batch_decode(clean, skip_special_tokens=True)
