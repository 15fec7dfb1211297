"""The answer shapes and every metric of the registry on hand-made predictions whose values are known by hand."""
from __future__ import annotations

import math
from typing import Any

import pytest

from common.task_metrics import Scored, parse_answer, score, score_groups

AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
JSON_CATEGORY = {"shape": "json", "key": "category"}


@pytest.mark.parametrize(
    "text, answer, labels, expected",
    [
        ("  a  question\nwith   spaces ", {"shape": "text"}, None, "a question with spaces"),
        ("   ", {"shape": "text"}, None, None),
        ('{"category": "world"}', JSON_CATEGORY, AG_LABELS, "World"),
        ('Sure! {"category":"Sports"} is my answer', JSON_CATEGORY, AG_LABELS, "Sports"),
        ('{"category": "Cooking"}', JSON_CATEGORY, AG_LABELS, None),  # not a label
        ('{"category": ["World"]}', JSON_CATEGORY, AG_LABELS, None),  # not a string
        ('{"topic": "World"}', JSON_CATEGORY, AG_LABELS, None),  # no such key
        ('{"category": "World"', JSON_CATEGORY, AG_LABELS, None),  # cut off
        ("World", JSON_CATEGORY, AG_LABELS, None),  # not JSON at all
        ('{"score": 4}', {"shape": "json", "key": "score"}, None, 4),
        ("Response: 3", {"shape": "number"}, None, 3.0),
        ("so she has 1,250 apples.", {"shape": "number"}, None, 1250.0),
        ("from -2.5 to 7.25", {"shape": "number"}, None, 7.25),
        ("no digits here", {"shape": "number"}, None, None),
        (" sports. ", {"shape": "label"}, AG_LABELS, "Sports"),
        ("sport", {"shape": "label"}, AG_LABELS, None),
        (None, {"shape": "text"}, None, None),
    ],
)
def test_answer_shapes(text: str | None, answer: dict[str, Any], labels: list[str] | None, expected: Any) -> None:
    assert parse_answer(text, answer, labels) == expected


def test_the_label_shape_needs_a_label_list() -> None:
    with pytest.raises(ValueError, match="label list"):
        parse_answer("World", {"shape": "label"}, None)


def rows(answer: dict[str, Any], pairs: list[tuple[str, str]], labels: list[str] | None = None) -> list[Scored]:
    return [Scored(p, r, parse_answer(p, answer, labels), parse_answer(r, answer, labels)) for p, r in pairs]


def test_rouge_and_bleu_on_text() -> None:
    text = {"shape": "text"}
    scored = rows(text, [("the cat sat on the mat", "the cat was on the mat"), ("   ", "a question nobody answered")])
    out = score(scored, ["rouge", "bleu", "exact_match", "parse_rate"])
    # Row 1: LCS "the cat on the mat" = 5 of 6 tokens each way -> F 5/6; unigrams 5/6; bigrams 3 of 5.
    # Row 2 did not parse: 0 everywhere. Means over the two rows.
    m = out["metrics"]
    assert m["rougeL"] == pytest.approx(5 / 6 / 2)
    assert m["rouge1"] == pytest.approx(5 / 6 / 2)
    assert m["rouge2"] == pytest.approx(3 / 5 / 2)
    assert m["exact_match"] == 0.0
    assert m["parse_rate"] == 0.5
    assert 0 < m["bleu"] < 100
    assert out["counts"] == {"rows": 2, "scored": 2, "parsed": 1, "unparsed": 1, "referenceUnparsed": 0}


def test_rouge_tokenizes_like_rouge_score() -> None:
    # Lowercased, punctuation is a separator: these are the same tokens.
    out = score(rows({"shape": "text"}, [("Why, then, does it MATTER?", "why then does it matter")]), ["rouge", "bleu"])
    assert out["metrics"]["rougeL"] == pytest.approx(1.0)
    assert out["metrics"]["bleu"] < 100  # sacrebleu keeps case and punctuation


def test_bleu_of_identical_corpora_is_100() -> None:
    pairs = [("what makes you believe that is true today", "what makes you believe that is true today")] * 3
    assert score(rows({"shape": "text"}, pairs), ["bleu"])["metrics"]["bleu"] == pytest.approx(100.0)


def test_accuracy_and_macro_f1_of_json_labels_with_an_unparsed_answer() -> None:
    pairs = [
        ('{"category":"World"}', '{"category":"World"}'),
        ('{"category":"Business"}', '{"category":"Sports"}'),
        ("I think it is business news", '{"category":"Business"}'),  # does not parse: wrong
        ('{"category": "world"}', '{"category":"World"}'),
    ]
    out = score(rows(JSON_CATEGORY, pairs, AG_LABELS), ["accuracy", "macro_f1", "exact_match", "parse_rate"], AG_LABELS)
    m = out["metrics"]
    assert m["accuracy"] == 0.5 and m["exact_match"] == 0.5
    # F1 per label: World 1, Sports 0, Business 0 (one false positive, one miss), Sci/Tech 0 (no support): mean 0.25.
    assert m["macro_f1"] == pytest.approx(0.25)
    assert m["parse_rate"] == 0.75
    assert out["counts"]["unparsed"] == 1


def test_pearson_mae_rmse_over_parsed_numbers() -> None:
    pairs = [("Response: 1", "2"), ("Response: 2", "4"), ("I would say 3", "6"), ("no idea", "1")]
    out = score(rows({"shape": "number"}, pairs), ["pearson", "mae", "rmse", "parse_rate", "exact_match"])
    m = out["metrics"]
    assert m["pearson"] == pytest.approx(1.0) and m["pearson_rows"] == 3
    assert m["mae"] == pytest.approx((1 + 2 + 3) / 3) and m["mae_rows"] == 3
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 4 + 9) / 3)) and m["rmse_rows"] == 3
    assert m["parse_rate"] == 0.75
    assert m["exact_match"] == 0.0


def test_pearson_is_undefined_for_a_constant_prediction() -> None:
    out = score(rows({"shape": "number"}, [("3", "1"), ("3", "5"), ("3", "2")]), ["pearson", "mae"])
    assert out["metrics"]["pearson"] is None and out["metrics"]["pearson_rows"] == 3
    assert out["metrics"]["mae"] == pytest.approx((2 + 2 + 1) / 3)


def test_a_reference_that_does_not_parse_leaves_its_row_out_and_is_counted() -> None:
    out = score(rows({"shape": "number"}, [("4", "4"), ("4", "n/a")]), ["exact_match", "parse_rate"])
    assert out["metrics"] == {"exact_match": 1.0, "parse_rate": 1.0}
    assert out["counts"] == {"rows": 2, "scored": 1, "parsed": 1, "unparsed": 0, "referenceUnparsed": 1}


def test_no_rows_gives_no_values_rather_than_zeros() -> None:
    out = score([], ["rouge", "bleu", "exact_match", "accuracy", "macro_f1", "pearson", "mae", "rmse", "parse_rate"], AG_LABELS)
    assert out["counts"]["rows"] == 0
    assert all(v is None or k.endswith("_rows") for k, v in out["metrics"].items()), out["metrics"]


def test_groups_are_scored_apart_including_one_with_nothing_scorable() -> None:
    scored = rows({"shape": "number"}, [("1", "1"), ("2", "3"), ("5", "5"), ("x", "n/a")])
    groups = ["study-b", "study-b", "study-a", "study-c"]
    out = score_groups(scored, groups, ["exact_match", "mae"])
    assert list(out) == ["study-a", "study-b", "study-c"]
    assert out["study-a"]["metrics"] == {"exact_match": 1.0, "mae": 0.0, "mae_rows": 1}
    assert out["study-b"]["metrics"]["exact_match"] == 0.5 and out["study-b"]["metrics"]["mae"] == pytest.approx(0.5)
    assert out["study-c"]["counts"]["scored"] == 0 and out["study-c"]["metrics"]["exact_match"] is None


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        score([], ["bertscore"])
