"""Formatting and cleaning, column-wise (pyarrow.compute), so millions of rows take seconds.

Every format becomes the same three texts per example: an optional system text, the user text and the
answer. They are rendered into `prompt` and `completion` (common/render.py). Cleaning rules run in a fixed
order and each removed row is counted under the first rule that removes it:
  emptyCompletion, encoding, tooShort, tooLong, truncated, duplicate.
"""
from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common import render
from common.jobspec import ConfigError
from prep.read import Column, Malformed

CLEANING_RULES = ("emptyCompletion", "encoding", "tooShort", "tooLong", "truncated", "duplicate")
_BAD_CHARS = r"[\x{FFFD}\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"


@dataclass
class Formatted:
    """prompt/completion plus what the cleaning rules look at."""

    prompt: pa.Array
    completion: pa.Array
    user_len: Any  # characters of the user text (template decoration excluded)
    answer_text: pa.Array
    checked: list[pa.Array]  # texts the encoding rule scans
    identity: list[pa.Array]  # equal in all of these = the same example (exact dedup)
    keep: np.ndarray  # rows of the input kept by formatting (chat rows can be malformed only here)

    @staticmethod
    def of(prompt: pa.Array, completion: pa.Array, user: pa.Array, answer: pa.Array, keep: np.ndarray) -> "Formatted":
        return Formatted(prompt, completion, pc.utf8_length(user), answer, [user, answer], [user, answer], keep)


def template_fields(template: str | None) -> list[str]:
    if not template:
        return []
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ConfigError(f"data.template.prompt is not a valid template: {err}") from err


def needed_columns(data: dict[str, Any], group_column: str | None) -> list[Column]:
    """The columns of the raw data this format and template read."""
    fmt = data["format"]
    kind = fmt["kind"]
    tmpl = data["template"].get("prompt")
    cols: list[Column] = []
    if kind == "alpaca":
        cols = [Column(fmt["instructionField"], "string"), Column(fmt["inputField"], "string", required=False), Column(fmt["outputField"], "string")]
    elif kind == "seq2seq":
        cols = [Column(fmt["inputField"], "string"), Column(fmt["targetField"], "string")]
    elif kind == "classification":
        cols = [Column(fmt["textField"], "string"), Column(fmt["labelField"], "scalar")]
    elif kind == "chat":
        if tmpl:
            raise ConfigError("data.template.prompt does not apply to chat data (the messages are the prompt); use template.system only")
        cols = [Column(fmt["messagesField"], "messages")]
    names = {c.name for c in cols}
    for name in template_fields(tmpl):
        if name not in names:
            cols.append(Column(name, "string"))
            names.add(name)
    if group_column and group_column not in names:
        cols.append(Column(group_column, "scalar"))
    return cols


def _as_array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def _apply_template(table: pa.Table, template: str) -> pa.Array:
    pieces: list[Any] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if literal:
            pieces.append(literal)
        if name is not None:
            if spec or conversion:
                raise ConfigError(f"data.template.prompt: format specs and conversions are not supported ({{{name}!{conversion}:{spec}}})")
            column = table[name]
            pieces.append(column if pa.types.is_string(column.type) else pc.cast(column, pa.string()))
    if not pieces:
        return pa.array([template] * table.num_rows, pa.string())
    return _as_array(pc.binary_join_element_wise(*pieces, ""))


def format_table(
    table: pa.Table, data: dict[str, Any], rendering: str, tokenizer: Any, malformed: Malformed
) -> Formatted:
    fmt = data["format"]
    kind = fmt["kind"]
    system = data["template"].get("system") or ""
    tmpl = data["template"].get("prompt")
    n = table.num_rows
    if kind == "chat":
        return _format_chat(_as_array(table[fmt["messagesField"]]), system, rendering, tokenizer, malformed)

    if kind == "alpaca":
        if fmt["inputField"] in table.column_names:  # a missing input is an empty input
            position = table.schema.get_field_index(fmt["inputField"])
            table = table.set_column(position, fmt["inputField"], pc.fill_null(table[fmt["inputField"]], ""))
        answer = _as_array(table[fmt["outputField"]])
        if not tmpl and rendering in ("chatml", "plain"):
            return _format_alpaca_default(table, fmt, answer, system, rendering)
        if tmpl:
            user = _apply_template(table, tmpl)
        else:
            instr = _as_array(table[fmt["instructionField"]])
            inp = _as_array(table[fmt["inputField"]])
            joined = pc.binary_join_element_wise(instr, inp, "\n\n")
            user = pc.if_else(pc.equal(pc.utf8_length(inp), 0), instr, joined)
    elif kind == "seq2seq":
        user = _apply_template(table, tmpl) if tmpl else _as_array(table[fmt["inputField"]])
        answer = _as_array(table[fmt["targetField"]])
    else:  # classification
        user = _apply_template(table, tmpl) if tmpl else _as_array(table[fmt["textField"]])
        answer, keep = _class_answers(_as_array(table[fmt["labelField"]]), fmt, malformed)
        if not keep.all():
            mask = pa.array(keep)
            user = pc.filter(user, mask)  # answers are already only those of the kept rows
        prompt, completion = _render_vectorised(user, answer, system, rendering, tokenizer)
        return Formatted.of(prompt, completion, _as_array(user), _as_array(answer), keep)
    prompt, completion = _render_vectorised(user, answer, system, rendering, tokenizer)
    return Formatted.of(prompt, completion, _as_array(user), answer, np.ones(n, dtype=bool))


def _format_alpaca_default(table: pa.Table, fmt: dict[str, Any], answer: pa.Array, system: str, rendering: str) -> Formatted:
    """instruction [+ blank line + input] rendered in one pass, without building the user text on its own."""
    instr = _as_array(table[fmt["instructionField"]])
    if fmt["inputField"] in table.column_names:
        inp = _as_array(table[fmt["inputField"]])
    else:
        inp = pa.array([""] * len(instr), pa.string())
    inp_len = pc.utf8_length(inp)
    has_input = pc.greater(inp_len, 0)
    sep = pc.if_else(has_input, "\n\n", "")
    if rendering == "chatml":
        head = render.chatml_prompt_prefix(system) + render.CHATML_USER_OPEN
        prompt = pc.binary_join_element_wise(head, instr, sep, inp, render.CHATML_USER_CLOSE, "")
        completion = _as_array(pc.binary_join_element_wise(answer, render.CHATML_COMPLETION_CLOSE, ""))
    else:
        prompt = pc.binary_join_element_wise(system + "\n\n" if system else "", instr, sep, inp, "")
        completion = answer
    user_len = pc.add(pc.add(pc.utf8_length(instr), inp_len), pc.multiply(pc.cast(has_input, pa.int32()), 2))
    return Formatted(_as_array(prompt), completion, user_len, answer, [instr, inp, answer], [instr, inp, answer], np.ones(len(instr), dtype=bool))


def _class_answers(labels: pa.Array, fmt: dict[str, Any], malformed: Malformed) -> tuple[pa.Array, np.ndarray]:
    names: list[str] = fmt["labels"]
    rendered = [json.dumps({fmt["answerKey"]: name}, ensure_ascii=False, separators=(",", ":")) for name in names]
    if pa.types.is_integer(labels.type):
        idx = labels.to_numpy(zero_copy_only=False)
        keep = (idx >= 0) & (idx < len(names))
    else:
        idx_arr = pc.index_in(pc.cast(labels, pa.string()), value_set=pa.array(names))
        keep = pc.is_valid(idx_arr).to_numpy(zero_copy_only=False)
        idx = pc.fill_null(idx_arr, -1).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(~keep)[:5].tolist():
        malformed.add("label not in data.format.labels", f"record {i + 1}", json.dumps(labels[i].as_py()))
    extra = int((~keep).sum()) - min(5, int((~keep).sum()))
    if extra:
        malformed.add("label not in data.format.labels", "", "", n=extra)
    answers = pa.array(rendered, pa.string()).take(pa.array(idx[keep]))
    return answers, keep


def _render_vectorised(user: Any, answer: pa.Array, system: str, rendering: str, tokenizer: Any) -> tuple[pa.Array, pa.Array]:
    if rendering == "chatml":
        prompt = pc.binary_join_element_wise(render.chatml_prompt_prefix(system) + render.CHATML_USER_OPEN, user, render.CHATML_USER_CLOSE, "")
        completion = pc.binary_join_element_wise(answer, render.CHATML_COMPLETION_CLOSE, "")
        return _as_array(prompt), _as_array(completion)
    if rendering == "plain":
        prompt = pc.binary_join_element_wise(system + "\n\n", user, "") if system else user
        return _as_array(prompt), answer
    if rendering == "chat_template":
        prompts, completions = [], []
        head = [{"role": "system", "content": system}] if system else []
        for u, a in zip(_as_array(user).to_pylist(), answer.to_pylist()):
            p, c = render.template_messages(tokenizer, head + [{"role": "user", "content": u}, {"role": "assistant", "content": a}])
            prompts.append(p)
            completions.append(c)
        return pa.array(prompts, pa.string()), pa.array(completions, pa.string())
    raise ConfigError(f"unknown rendering {rendering!r}")


def _format_chat(messages: pa.Array, system: str, rendering: str, tokenizer: Any, malformed: Malformed) -> Formatted:
    prompts, completions, users, answers = [], [], [], []
    keep = np.ones(len(messages), dtype=bool)
    for i, conv in enumerate(messages.to_pylist()):
        problem = _chat_problem(conv)
        if problem:
            keep[i] = False
            malformed.add(problem, f"record {i + 1}", json.dumps(conv)[:300])
            continue
        if system and conv[0]["role"] != "system":
            conv = [{"role": "system", "content": system}] + conv
        if rendering == "chat_template":
            p, c = render.template_messages(tokenizer, conv)
        elif rendering == "chatml":
            p, c = render.chatml_messages(conv)
        else:
            p = "\n\n".join(m["content"] for m in conv[:-1])
            c = conv[-1]["content"]
        prompts.append(p)
        completions.append(c)
        users.append("\n".join(m["content"] for m in conv[:-1] if m["role"] != "system"))
        answers.append(conv[-1]["content"])
    as_arr = lambda values: pa.array(values, pa.string())  # noqa: E731
    prompt, completion, answer = as_arr(prompts), as_arr(completions), as_arr(answers)
    user = as_arr(users)
    return Formatted(prompt, completion, pc.utf8_length(user), answer, [user, answer], [prompt, completion], keep)


def _chat_problem(conv: list[dict[str, Any]] | None) -> str | None:
    if not conv or len(conv) < 2:
        return "a conversation needs at least a user and an assistant message"
    for m in conv:
        if m is None or m.get("role") not in ("system", "user", "assistant") or m.get("content") is None:
            return "messages need a role of system, user or assistant and a content"
    if conv[-1]["role"] != "assistant":
        return "the last message is not the assistant's answer"
    if not any(m["role"] == "user" for m in conv):
        return "no user message"
    return None


def clean(f: Formatted, cleaning: dict[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
    """A boolean mask of the formatted rows to keep and the count each rule removed.

    Every rule is a pure function of an example's content, so exact duplicates get the same verdict from
    the other rules: duplicates are found over all rows (in a second thread, Arrow releases the GIL) and
    counted among the rows the other rules keep.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = len(f.prompt)
    removed = {rule: 0 for rule in CLEANING_RULES}
    keep = np.ones(n, dtype=bool)
    with ThreadPoolExecutor(max_workers=1) as pool:
        dup_future = pool.submit(_duplicates, f.identity) if cleaning["dedup"] == "exact" else None

        def apply(rule: str, drop: Any) -> None:
            mask = np.asarray(pc.fill_null(drop, False).to_numpy(zero_copy_only=False), dtype=bool) & keep
            removed[rule] = int(mask.sum())
            keep[mask] = False

        user_len = f.user_len
        answer_len = pc.utf8_length(f.answer_text)
        apply("emptyCompletion", pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(f.answer_text)), 0))
        if cleaning["dropEncodingErrors"]:
            bad = None
            for text in f.checked:
                hit = pc.match_substring_regex(text, _BAD_CHARS)
                bad = hit if bad is None else pc.or_(bad, hit)
            apply("encoding", bad)
        min_chars = cleaning["minChars"]
        if min_chars > 0:
            apply("tooShort", pc.and_(pc.less(user_len, min_chars), pc.less(answer_len, min_chars)))
        apply("tooLong", pc.greater(pc.add(user_len, answer_len), cleaning["maxChars"]))
        truncated = cleaning.get("dropTruncated")
        if truncated:
            apply("truncated", pc.and_(pc.match_substring(f.answer_text, truncated["marker"]), pc.less(answer_len, truncated["maxChars"])))
        if dup_future is not None:
            dup = dup_future.result() & keep
            removed["duplicate"] = int(dup.sum())
            keep &= ~dup
    return keep, removed


def _duplicates(identity: list[pa.Array]) -> np.ndarray:
    """Rows equal in every identity column to an earlier row (the first of each is kept).

    Each column is dictionary-encoded (Arrow's hash table); the codes are combined column by column and
    re-encoded, so equal rows get equal codes without building one long key string per row.
    """
    n = len(identity[0])
    if n == 0:
        return np.zeros(0, dtype=bool)
    combined: np.ndarray | None = None
    for column in identity:
        encoded = _as_array(pc.dictionary_encode(column, null_encoding="encode"))
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if combined is None:
            combined = codes
        else:
            merged = combined * len(encoded.dictionary) + codes
            combined = _as_array(pc.dictionary_encode(pa.array(merged))).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    assert combined is not None
    first = np.empty(int(combined.max()) + 1, dtype=np.int64)
    order = np.arange(n, dtype=np.int64)
    first[combined[::-1]] = order[::-1]  # the last write wins: the smallest position of each key
    return first[combined] != order
