"""Task metrics: answers read by their configured shape, then scored by one registry of metrics.

The shapes (spec.evaluation.answer.shape), applied alike to the generated text and to the reference answer:
  text    the whole answer with its whitespace collapsed; an empty answer does not parse
  json    the value under `key` of the first JSON object in the answer; with a label list (a classification
          format) the value must be one of the labels (case-insensitive), which it is returned as
  number  the last number in the answer ("Response: 3" -> 3.0, "... so she has 1,250 apples." -> 1250.0)
  label   the answer, trimmed of whitespace and a final period, equal to one label (case-insensitive)

An answer that does not parse is wrong and is counted (counts.unparsed, parse_rate): it scores 0 in rouge, bleu,
exact_match and accuracy, is a miss for its true class in macro_f1, and has no number to put into pearson, mae
or rmse, which are computed over the parsed rows only (their `rows` count says how many). A reference that does
not parse (a data problem) leaves its row out of every metric, counted as counts.referenceUnparsed.

Where the metrics come from, and why:
  rouge        torchmetrics ROUGEScore (rouge1, rouge2, rougeL F-measure, averaged over rows). The reference
               implementation, Google's rouge-score package, is not installable from this project's package
               index; torchmetrics reimplements it with the same defaults: lowercase, every run of characters
               other than [a-z0-9] is a separator, no stemming, ROUGE-L as the LCS F-measure of Lin (2004).
  bleu         sacrebleu corpus BLEU-4 (13a tokenization, exponential smoothing off by default), on sacrebleu's
               0-100 scale, as papers report it.
  accuracy, macro_f1, mae, rmse   scikit-learn (accuracy_score, f1_score average="macro" over the label list,
               mean_absolute_error, root_mean_squared_error).
  pearson      scipy.stats.pearsonr.
  exact_match, parse_rate   shares counted here (nothing to borrow).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# A prediction that did not parse, as a class of its own for accuracy and macro_f1 (never one of the labels).
UNPARSED_CLASS = "\x00unparsed"

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


# ---------------------------------------------------------------- answers


def parse_answer(text: str | None, answer: dict[str, Any], labels: Sequence[str] | None = None) -> Any:
    """The answer of `text` in the configured shape, or None when it does not parse."""
    if text is None:
        return None
    shape = answer["shape"]
    if shape == "text":
        collapsed = " ".join(text.split())
        return collapsed or None
    if shape == "number":
        return _last_number(text)
    if shape == "label":
        if not labels:
            raise ValueError("answer shape label needs the format's label list (spec.evaluation.labels)")
        return _match_label(text.strip().rstrip(".").strip(), labels)
    if shape == "json":
        obj = _first_json_object(text)
        if obj is None or answer["key"] not in obj:
            return None
        value = obj[answer["key"]]
        if labels:
            return _match_label(value, labels) if isinstance(value, str) else None
        if isinstance(value, (dict, list)) or value is None:
            return None
        return value
    raise ValueError(f"unknown answer shape {shape!r}")


def _last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    value = float(found[-1].replace(",", ""))
    return value if math.isfinite(value) else None


def _match_label(value: str, labels: Sequence[str]) -> str | None:
    folded = value.strip().casefold()
    for label in labels:
        if label.casefold() == folded:
            return label
    return None


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in the text: the whole text, else the first '{' from which one decodes."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return None


def as_number(value: Any) -> float | None:
    """A parsed answer as a number for pearson, mae and rmse (JSON values may be numbers or numeric strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        return _last_number(value) if _NUMBER.fullmatch(value.strip()) else None
    return None


def same_answer(predicted: Any, expected: Any) -> bool:
    """Exact agreement of two parsed answers; numbers within floating-point noise."""
    if predicted is None or expected is None:
        return False
    if isinstance(predicted, (int, float)) and isinstance(expected, (int, float)) and not isinstance(predicted, bool):
        return math.isclose(float(predicted), float(expected), rel_tol=1e-9, abs_tol=1e-9)
    return predicted == expected


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Scored:
    """One evaluated row: the texts and their parsed answers."""

    prediction: str
    reference: str
    predicted: Any  # None: the prediction did not parse
    expected: Any  # None: the reference did not parse (the row is left out of the metrics)


MetricValues = dict[str, Any]


def _texts(rows: Sequence[Scored]) -> tuple[list[str], list[str]]:
    return [str(r.predicted) if r.predicted is not None else "" for r in rows], [str(r.expected) for r in rows]


def _rouge(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    keys = ("rouge1", "rouge2", "rougeL")
    if not rows:
        return {k: None for k in keys}
    from torchmetrics.functional.text.rouge import rouge_score

    predictions, references = _texts(rows)
    # torchmetrics averages the per-pair scores over the batch, as rouge-score's users do.
    scores = rouge_score(predictions, references, rouge_keys=keys, use_stemmer=False)
    return {k: float(scores[f"{k}_fmeasure"]) for k in keys}


def _bleu(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    if not rows:
        return {"bleu": None}
    import sacrebleu

    predictions, references = _texts(rows)
    return {"bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score)}


def _exact_match(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    if not rows:
        return {"exact_match": None}
    return {"exact_match": sum(same_answer(r.predicted, r.expected) for r in rows) / len(rows)}


def _classes(rows: Sequence[Scored]) -> tuple[list[str], list[str]]:
    truth = [str(r.expected) for r in rows]
    guess = [str(r.predicted) if r.predicted is not None else UNPARSED_CLASS for r in rows]
    return truth, guess


def _accuracy(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    if not rows:
        return {"accuracy": None}
    from sklearn.metrics import accuracy_score

    truth, guess = _classes(rows)
    return {"accuracy": float(accuracy_score(truth, guess))}


def _macro_f1(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    if not rows:
        return {"macro_f1": None}
    from sklearn.metrics import f1_score

    truth, guess = _classes(rows)
    # The classes averaged over: the format's labels, else those the references hold. An unparsed answer is
    # never one of them, so it costs its true class recall without adding a class of its own.
    classes = list(labels) if labels else sorted(set(truth))
    return {"macro_f1": float(f1_score(truth, guess, labels=classes, average="macro", zero_division=0))}


def _number_pairs(rows: Sequence[Scored]) -> tuple[list[float], list[float]]:
    predicted, expected = [], []
    for r in rows:
        p, e = as_number(r.predicted), as_number(r.expected)
        if p is not None and e is not None:
            predicted.append(p)
            expected.append(e)
    return predicted, expected


def _pearson(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    predicted, expected = _number_pairs(rows)
    out: MetricValues = {"pearson": None, "pearson_rows": len(predicted)}
    # Undefined below two pairs or when either side is constant (scipy warns and returns nan).
    if len(predicted) < 2 or len(set(predicted)) < 2 or len(set(expected)) < 2:
        return out
    from scipy.stats import pearsonr

    out["pearson"] = float(pearsonr(predicted, expected).statistic)
    return out


def _mae(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    predicted, expected = _number_pairs(rows)
    if not predicted:
        return {"mae": None, "mae_rows": 0}
    from sklearn.metrics import mean_absolute_error

    return {"mae": float(mean_absolute_error(expected, predicted)), "mae_rows": len(predicted)}


def _rmse(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    predicted, expected = _number_pairs(rows)
    if not predicted:
        return {"rmse": None, "rmse_rows": 0}
    from sklearn.metrics import root_mean_squared_error

    return {"rmse": float(root_mean_squared_error(expected, predicted)), "rmse_rows": len(predicted)}


def _parse_rate(rows: Sequence[Scored], labels: Sequence[str] | None) -> MetricValues:
    if not rows:
        return {"parse_rate": None}
    return {"parse_rate": sum(r.predicted is not None for r in rows) / len(rows)}


METRICS: dict[str, Callable[[Sequence[Scored], Sequence[str] | None], MetricValues]] = {
    "rouge": _rouge,
    "bleu": _bleu,
    "exact_match": _exact_match,
    "accuracy": _accuracy,
    "macro_f1": _macro_f1,
    "pearson": _pearson,
    "mae": _mae,
    "rmse": _rmse,
    "parse_rate": _parse_rate,
}

# The value a metric name stands for when runs are compared, and which way is better.
HEADLINE = {"rouge": "rougeL"}
LOWER_IS_BETTER = {"mae", "rmse"}


def score(rows: Sequence[Scored], metrics: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Counts and metric values of some rows; rows whose reference did not parse are counted and left out."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    scorable = [r for r in rows if r.expected is not None]
    values: MetricValues = {}
    for name in metrics:
        values.update(METRICS[name](scorable, labels))
    parsed = sum(r.predicted is not None for r in scorable)
    return {
        "counts": {"rows": len(rows), "scored": len(scorable), "parsed": parsed, "unparsed": len(scorable) - parsed, "referenceUnparsed": len(rows) - len(scorable)},
        "metrics": values,
    }


def score_groups(rows: Sequence[Scored], groups: Sequence[Any], metrics: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """score() per group value (as text), in sorted order of the values."""
    members: dict[str, list[Scored]] = {}
    for row, group in zip(rows, groups, strict=True):
        members.setdefault("" if group is None else str(group), []).append(row)
    return {name: score(members[name], metrics, labels) for name in sorted(members)}
