"""Prep never opens the gate on data the runs cannot train on.

A prepared dataset with no rows, an empty train split, or an empty split the configuration asks for
(validation: every run evaluates on it every `evalSteps` and early stopping needs it; test: the runs'
final test metrics) would only be found out by the trainer, on a GPU node that was launched, pulled its
image and staged its model for nothing. Prep knows first, so it fails (exit 65, no `_SUCCESS`) with a
reason that names the counts and the cleaning rules that removed the rows.

The reasons are kept to one line of a few hundred characters: the node runner puts the last lines of the
job's log into the status reason, bounded to 600 characters, and the prep gate prints that reason.
"""
from __future__ import annotations

from typing import Any, Mapping

from common.jobspec import SPLITS, DataError

# Why a split must not be empty when the configuration gives it a share.
_NEED = {
    "train": "nothing to train on",
    "validation": "the runs evaluate on it (evalSteps, early stopping)",
    "test": "the runs report test metrics on it",
}


def describe_rule(rule: str, cleaning: Mapping[str, Any]) -> str:
    """What a cleaning rule removes, with the setting that controls it."""
    if rule == "emptyCompletion":
        return "blank answer"
    if rule == "encoding":
        return "U+FFFD or control characters, data.cleaning.dropEncodingErrors"
    if rule == "tooShort":
        return f"user text and answer both under data.cleaning.minChars = {cleaning['minChars']}"
    if rule == "tooLong":
        return f"user text + answer over data.cleaning.maxChars = {cleaning['maxChars']}"
    if rule == "truncated":
        t = cleaning.get("dropTruncated") or {}
        return f"answer holds data.cleaning.dropTruncated.marker {t.get('marker')!r} and is under its maxChars = {t.get('maxChars')}"
    if rule == "duplicate":
        return "exact duplicate of an earlier row, data.cleaning.dedup"
    return rule


def describe_removed(removed: Mapping[str, int], cleaning: Mapping[str, Any]) -> str:
    """The rules that removed rows, most first: `tooShort 588 (user text and answer both under ...)`."""
    hits = sorted(((n, rule) for rule, n in removed.items() if n), key=lambda x: (-x[0], x[1]))
    if not hits:
        return "none removed by cleaning"
    return "; ".join(f"{rule} {n} ({describe_rule(rule, cleaning)})" for n, rule in hits)


def check_kept(read: int, malformed: int, removed: Mapping[str, int], kept: int, cleaning: Mapping[str, Any]) -> None:
    """DataError when no example survived reading and cleaning."""
    if kept > 0:
        return
    raise DataError(
        f"no example survived cleaning: read {read} rows, {malformed} malformed, {sum(removed.values())} removed by cleaning: "
        f"{describe_removed(removed, cleaning)}. Nothing to train on: loosen data.cleaning or check data.format's field names against the data"
    )


def requested_share(split_spec: Mapping[str, Any], name: str) -> tuple[float, str] | None:
    """The share the configuration gives a split and the setting that gives it; None when it asks for none."""
    if name == "train":
        return 1.0, "data.split (train is always needed)"
    if split_spec["kind"] == "group" and split_spec.get("counts"):
        count = split_spec["counts"].get(name, 0)
        return (float(count), f"data.split.counts.{name} = {count} groups") if count else None
    ratios = split_spec.get("ratios") or {}
    ratio = ratios.get(name, 0)
    return (float(ratio), f"data.split.ratios.{name} = {ratio}") if ratio else None


def check_split_examples(examples: Mapping[str, int], kept: int, split_spec: Mapping[str, Any], removed: Mapping[str, int], cleaning: Mapping[str, Any]) -> None:
    """DataError when a split the configuration asks for received no example."""
    for name in SPLITS:
        asked = requested_share(split_spec, name)
        if asked is None or examples.get(name, 0) > 0:
            continue
        of = "groups" if split_spec["kind"] == "group" else "rows"
        raise DataError(
            f"the {name} split is empty ({_NEED[name]}): {asked[1]}, but only {kept} examples survived cleaning "
            f"(removed: {describe_removed(removed, cleaning)}), too few {of} for a {name} share. "
            f"Supply more data, loosen data.cleaning, or give {name} no share"
        )


def check_split_rows(name: str, examples: int, rows: int, split_spec: Mapping[str, Any], stats: Mapping[str, Any], max_length: int) -> None:
    """DataError when tokenization left a needed split without a row (every example lost its target)."""
    if rows > 0 or requested_share(split_spec, name) is None:
        return
    lost = stats.get("noTargetAfterTruncation", examples)
    raise DataError(
        f"the {name} split is empty after tokenization ({_NEED[name]}): {lost} of its {examples} examples had no answer token left "
        f"within data.tokenize.maxLength = {max_length} (tokens.{name}.noTargetAfterTruncation). Raise data.tokenize.maxLength or shorten the prompts"
    )
