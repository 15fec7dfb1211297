"""The evaluation rows, set apart by prep (spec.evaluation): the chosen split's rows with their rendered prompt, the
reference answer as the data holds it (not the rendered completion: no chat markers, no eos) and the groupBy
column, whatever tokenization and packing make of the training files. They are written to evaluation/ in the
prepared dataset, so the baseline and every run generate from exactly the same prompts.

    evaluation/part-00000.parquet   prompt (string), reference (string), [<groupBy column>]
    manifest.json "evaluation"      split, rows, ofRows, seed, groupBy, columns, files

With spec.evaluation.selectionRows (a run's training.selectBy), the validation rows the trainer generates for at every
evaluation during training are set apart too, in a seeded order rather than in data order: a run that samples r rows
takes the first r, so the same r rows whatever the most any run asks for.

    selection/part-00000.parquet    prompt (string), reference (string)
    manifest.json "selection"       split (validation), rows, ofRows, seed, columns, files
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from common.jobspec import CONTRACT, ConfigError, DataError
from prep.read import Column
from prep.split import SPLIT_CODES

DATASET_DIR: str = CONTRACT["evaluationFiles"]["datasetDir"]
SELECTION_DIR: str = CONTRACT["evaluationFiles"]["selectionDir"]
PROMPT, REFERENCE = "prompt", "reference"


@dataclass
class EvaluationRows:
    table: pa.Table
    info: dict[str, Any]


def with_group_column(columns: list[Column], spec: dict[str, Any]) -> list[Column]:
    """The raw columns to read, plus the evaluation's groupBy column when the format does not read it already."""
    group = (spec.get("evaluation") or {}).get("groupBy")
    if not group or any(c.name == group for c in columns):
        return columns
    if group in (PROMPT, REFERENCE):
        raise ConfigError(f"evaluation.groupBy {group!r} clashes with a column of the evaluation rows ({PROMPT}, {REFERENCE}); group by another column")
    return [*columns, Column(group, "scalar")]


def select_rows(spec: dict[str, Any], table: pa.Table, formatted: Any, keep: np.ndarray, codes: np.ndarray) -> EvaluationRows | None:
    """The evaluation rows of the cleaned, split data, or None when the spec asks for no evaluation.

    `table` holds the raw rows read, `formatted` their formatting (formatted.keep: rows formatting kept), `keep`
    the cleaning verdict over the formatted rows and `codes` the split of each kept row.
    """
    ev = spec.get("evaluation")
    if not ev:
        return None
    columns: dict[str, Any] = {PROMPT: formatted.prompt, REFERENCE: formatted.answer_text}
    group = ev.get("groupBy")
    if group:
        values = table[group]
        if not formatted.keep.all():
            values = values.filter(pa.array(formatted.keep))
        columns[group] = values
    cleaned = pa.table(columns).filter(pa.array(keep))
    chosen = np.flatnonzero(codes == SPLIT_CODES[ev["split"]])
    available = len(chosen)
    if available == 0:
        raise DataError(
            f"evaluation.split {ev['split']} has no rows after cleaning and splitting, so there is nothing to evaluate: "
            f"give data.split's {ev['split']} split a larger share, or evaluate another split"
        )
    if ev["rows"] != "all" and ev["rows"] < available:
        # A seeded sample, kept in data order: the same rows for the baseline and every run of the campaign.
        chosen = np.sort(np.random.default_rng(ev["seed"] % (1 << 64)).choice(chosen, size=ev["rows"], replace=False))
    rows = cleaned.take(pa.array(chosen))
    info = {
        "split": ev["split"],
        "rows": rows.num_rows,
        "ofRows": available,
        "seed": ev["seed"],
        "groupBy": group,
        "columns": rows.column_names,
    }
    return EvaluationRows(rows, info)


def select_selection_rows(spec: dict[str, Any], formatted: Any, keep: np.ndarray, codes: np.ndarray) -> EvaluationRows | None:
    """The validation rows for training.selectBy in a seeded order (a permutation, so any prefix is a seeded sample),
    the first selectionRows of them; None when no run selects by a task metric."""
    ev = spec.get("evaluation") or {}
    wanted = ev.get("selectionRows")
    if not wanted:
        return None
    cleaned = pa.table({PROMPT: formatted.prompt, REFERENCE: formatted.answer_text}).filter(pa.array(keep))
    chosen = np.flatnonzero(codes == SPLIT_CODES["validation"])
    if len(chosen) == 0:
        raise DataError(
            "training.selectBy samples validation rows, but the validation split has no rows after cleaning and splitting: "
            "give data.split's validation split a larger share"
        )
    order = np.random.default_rng(ev["seed"] % (1 << 64)).permutation(chosen)[:wanted]
    rows = cleaned.take(pa.array(order))
    info = {"split": "validation", "rows": rows.num_rows, "ofRows": len(chosen), "seed": ev["seed"], "columns": rows.column_names}
    return EvaluationRows(rows, info)
