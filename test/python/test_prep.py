"""The prep job, run as the node runner runs it, on synthetic SocSci210-shaped data."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from conftest import PREP, run_job, write_spec
from socsci import generate
from specs import prep_spec


def run_prep(tmp: Path, spec: dict[str, Any], **extra: Path) -> tuple[Any, Path]:
    out = tmp / "out"
    res = run_job(PREP, CAMPAIGN_SPEC=write_spec(tmp / "spec.json", spec), CAMPAIGN_OUTPUT_DIR=out, **extra)
    return res, out


def read_split(out: Path, name: str) -> Any:
    files = sorted((out / name).glob("*.parquet"))
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def test_group_split_counts_and_no_leakage(tmp_path: Path) -> None:
    truth = generate(tmp_path / "raw.jsonl", rows=4200, studies=21, duplicate_every=50, short_every=200, malformed_every=700)
    spec = prep_spec(
        str(tmp_path / "raw.jsonl"),
        data={
            "cleaning": {"minChars": 5},
            "split": {"kind": "group", "column": "study_id", "seed": 11, "counts": {"train": 17, "validation": 2, "test": 2}},
        },
    )
    res, out = run_prep(tmp_path, spec)
    assert res.rc == 0, str(res)
    assert (out / "_SUCCESS").is_file()
    m = json.loads((out / "manifest.json").read_text())
    assert m["prepHash"] == spec["prepHash"] and m["spec"] == spec
    c = m["counts"]
    assert c["read"] == truth.lines == 4200
    assert c["malformed"] == truth.malformed_total == 6
    assert m["malformed"]["reasons"] == {
        "bad JSON": truth.malformed["bad_json"],
        "missing field 'output'": truth.malformed["missing_output"],
        "field 'output' has type int, expected a string": truth.malformed["wrong_type"],
    }
    assert 0 < len(m["malformed"]["examples"]) <= 5 and all("line" in e["where"] for e in m["malformed"]["examples"])
    assert c["removed"]["duplicate"] == truth.duplicates
    assert c["removed"]["tooShort"] == truth.short
    assert c["kept"] == truth.valid_unique == c["read"] - c["malformed"] - sum(c["removed"].values())

    groups = m["groups"]
    assert groups["column"] == "study_id" and groups["counts"] == {"train": 17, "validation": 2, "test": 2}
    seen: dict[str, set[str]] = {}
    for name in ("train", "validation", "test"):
        table = read_split(out, name)
        assert table is not None and table.column_names == ["prompt", "completion", "study_id"]
        studies = set(table["study_id"].to_pylist())
        assert studies == set(groups["assignment"][name])
        assert table.num_rows == sum(truth.rows_per_study[s] for s in studies) == m["splits"][name]["rows"]
        seen[name] = studies
    assert not (seen["train"] & seen["validation"]) and not (seen["train"] & seen["test"]) and not (seen["validation"] & seen["test"])
    assert len(seen["train"] | seen["validation"] | seen["test"]) == 21

    # content hashes name the files written
    for name in ("train", "validation", "test"):
        for f in m["splits"][name]["files"]:
            assert hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    # ChatML rendering when no tokenizer is given
    row = read_split(out, "train").slice(0, 1).to_pylist()[0]
    assert row["prompt"].startswith("<|im_start|>user\nYou are a behavioral prediction model")
    assert row["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert row["completion"].startswith("Response: ") and row["completion"].endswith("<|im_end|>\n")


def test_same_spec_same_content_and_ratio_sizes(tmp_path: Path) -> None:
    generate(tmp_path / "raw.jsonl", rows=1000, studies=10, duplicate_every=0, short_every=0, malformed_every=0)
    spec = prep_spec(str(tmp_path / "raw.jsonl"), data={"split": {"kind": "random", "seed": 5, "ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}}})
    hashes = []
    for i in range(2):
        res, out = run_prep(tmp_path / f"r{i}", spec) if (tmp_path / f"r{i}").mkdir() is None else (None, None)
        assert res.rc == 0, str(res)
        m = json.loads((out / "manifest.json").read_text())
        assert m["counts"]["splits"] == {"train": 800, "validation": 100, "test": 100}
        hashes.append(m["contentHash"])
    assert hashes[0] == hashes[1]


def test_too_many_malformed_rows_fail_with_examples(tmp_path: Path) -> None:
    generate(tmp_path / "raw.jsonl", rows=500, studies=5, malformed_every=10)  # 10% malformed
    res, out = run_prep(tmp_path, prep_spec(str(tmp_path / "raw.jsonl"), data={"maxMalformedFraction": 0.05}))
    assert res.rc == 65, str(res)
    assert "50 of 500 rows are malformed (10.00%), more than data.maxMalformedFraction = 5.00%" in res.out
    assert "raw.jsonl line 10: bad JSON" in res.out
    assert not (out / "_SUCCESS").exists()


def test_group_counts_that_do_not_match_the_data_are_a_config_error(tmp_path: Path) -> None:
    generate(tmp_path / "raw.jsonl", rows=300, studies=10, malformed_every=0)
    spec = prep_spec(str(tmp_path / "raw.jsonl"), data={"split": {"kind": "group", "column": "study_id", "seed": 1, "counts": {"train": 170, "validation": 20, "test": 20}}})
    res, _ = run_prep(tmp_path, spec)
    assert res.rc == 78, str(res)
    assert "the cleaned data has 10 groups" in res.out


def test_classification_as_chat_with_json_answer_and_cleaning_rules(tmp_path: Path) -> None:
    rows = [
        {"text": "Stocks rallied after the earnings report.", "label": 2},
        {"text": "The team won the final in extra time.", "label": 1},
        {"text": "The team won the final in extra time.", "label": 1},  # duplicate
        {"text": "Broken \ufffd text here", "label": 0},  # encoding
        {"text": "Unknown label row", "label": 9},  # malformed: label out of range
        {"text": "x" * 500, "label": 3},  # too long
    ]
    raw = tmp_path / "news.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = prep_spec(
        str(raw),
        data={
            "format": {"kind": "classification", "textField": "text", "labelField": "label", "labels": ["World", "Sports", "Business", "Sci/Tech"], "answerKey": "category"},
            "template": {"system": "You are a news article classifier.", "prompt": "Classify the following news article:\n\n{text}"},
            "cleaning": {"minChars": 1, "maxChars": 400, "dedup": "exact", "dropEncodingErrors": True},
            "maxMalformedFraction": 0.5,
            "split": {"kind": "random", "seed": 1, "ratios": {"train": 0.5, "validation": 0.5, "test": 0}},
        },
    )
    res, out = run_prep(tmp_path, spec)
    assert res.rc == 0, str(res)
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["malformed"] == 1 and m["malformed"]["reasons"] == {"label not in data.format.labels": 1}
    assert m["counts"]["removed"] == {"emptyCompletion": 0, "encoding": 1, "tooShort": 0, "tooLong": 1, "truncated": 0, "duplicate": 1}
    import pyarrow as pa

    both = pa.concat_tables([t for t in (read_split(out, "train"), read_split(out, "validation")) if t is not None]).to_pylist()
    completions = sorted(r["completion"] for r in both)
    assert completions == ['{"category":"Business"}<|im_end|>\n', '{"category":"Sports"}<|im_end|>\n']
    assert all(r["prompt"].startswith("<|im_start|>system\nYou are a news article classifier.<|im_end|>\n<|im_start|>user\nClassify the following") for r in both)


def test_parquet_and_csv_sources(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    table = pa.table({"input": [f"question {i}" for i in range(20)] + [None], "target": [f"answer {i}" for i in range(20)] + ["x"]})
    pq.write_table(table, tmp_path / "d.parquet")
    pcsv.write_csv(table.slice(0, 20), tmp_path / "d.csv")
    fmt = {"kind": "seq2seq", "inputField": "input", "targetField": "target"}
    for name, malformed in (("d.parquet", 1), ("d.csv", 0)):
        work = tmp_path / name.replace(".", "-")
        work.mkdir()
        res, out = run_prep(work, prep_spec(str(tmp_path / name), data={"format": fmt, "maxMalformedFraction": 0.1}))
        assert res.rc == 0, str(res)
        m = json.loads((out / "manifest.json").read_text())
        assert m["rendering"] == "plain" and m["counts"]["malformed"] == malformed and m["counts"]["kept"] == 20
        rows = read_split(out, "train").to_pylist()
        assert {r["completion"] for r in rows} <= {f"answer {i}" for i in range(20)}


def test_tokenize_and_pack_with_the_base_tokenizer(tmp_path: Path, tiny_causal: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"instruction": f"Predict answer {i}", "input": "", "output": f"Response: {i % 7}"}) + "\n" for i in range(50)))
    spec = prep_spec(
        str(raw),
        data={"tokenize": {"enabled": True, "maxLength": 64, "packing": True}, "split": {"kind": "random", "seed": 1, "ratios": {"train": 0.8, "validation": 0.2, "test": 0}}},
        tokenizer={"id": str(tiny_causal), "revision": "main", "family": "causal-lm"},
    )
    res, out = run_prep(tmp_path, spec)
    assert res.rc == 0, str(res)
    m = json.loads((out / "manifest.json").read_text())
    assert m["tokenized"] and m["packing"] and m["rendering"] == "chat_template"
    assert m["columns"] == ["input_ids", "labels", "position_ids"]
    train = read_split(out, "train").to_pylist()
    assert m["tokens"]["train"]["packing"]["examples"] == 40 and len(train) == m["tokens"]["train"]["packing"]["packedRows"] < 40
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal)
    starts = 0
    for row in train:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) <= 64
        for i, pos in enumerate(row["position_ids"]):
            if pos == 0:
                starts += 1
                assert row["labels"][i] == -100  # every example starts with its (masked) prompt
        targets = [t for t in row["labels"] if t != -100]
        assert "Response:" in tok.decode(targets)
    assert starts == 40


def test_stage_models_only_from_a_hub(tmp_path: Path) -> None:
    from common.jobspec import ModelRef
    from prep.stage import stage_models

    calls = []

    def fake_download(repo: str, revision: str, dest: Path) -> None:
        calls.append((repo, revision))
        (dest / "config.json").write_text("{}")
        (dest / "model.safetensors").write_bytes(b"0" * 10)

    local = tmp_path / "local-model"
    local.mkdir()
    staged = stage_models([ModelRef("Qwen/Qwen2.5-7B-Instruct", "main", "causal-lm"), ModelRef(str(local), "main", "causal-lm")], tmp_path / "models", fake_download)
    assert calls == [("Qwen/Qwen2.5-7B-Instruct", "main")]
    assert (tmp_path / "models" / "Qwen" / "Qwen2.5-7B-Instruct" / "main" / "config.json").is_file()
    assert staged[0]["staged"] and staged[0]["files"] == 2 and not staged[1]["staged"]


@pytest.mark.parametrize("bad", [{"kind": "train"}, {"data": {"split": {"kind": "random", "seed": 1, "ratios": {"train": 0.5}}}}])
def test_invalid_spec_is_a_config_error(tmp_path: Path, bad: dict[str, Any]) -> None:
    (tmp_path / "raw.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    spec = prep_spec(str(tmp_path / "raw.jsonl"), **bad)
    res, _ = run_prep(tmp_path, spec)
    assert res.rc == 78, str(res)
    assert "job-spec.schema.json" in res.out or "spec" in res.out


# ---------------------------------------------------------------- prep refuses data the runs cannot train on


def assert_refused(res: Any, out: Path) -> str:
    """Exit 65 and nothing a gate or a trainer could take for a prepared dataset; returns the reason line."""
    assert res.rc == 65, str(res)
    assert not (out / "_SUCCESS").exists() and not (out / "manifest.json").exists()
    assert not any((out / name).exists() for name in ("train", "validation", "test")), sorted(p.name for p in out.iterdir())
    lines = [line for line in res.out.splitlines() if "prep failed: " in line]
    assert len(lines) == 1, res.out
    return lines[0].split("prep failed: ", 1)[1]


def test_no_row_surviving_cleaning_fails_naming_the_rule(tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    # 30 rows whose question and answer are both under 50 characters, 5 of them repeated: tooShort removes all.
    raw.write_text("".join(json.dumps({"instruction": f"Add {i} and 2.", "input": "", "output": f"It is {i + 2}."}) + "\n" for i in list(range(30)) + list(range(5))))
    spec = prep_spec(str(raw), data={"cleaning": {"minChars": 50, "maxChars": 4096, "dedup": "exact", "dropEncodingErrors": True}})
    res, out = run_prep(tmp_path, spec)
    reason = assert_refused(res, out)
    assert reason == (
        "no example survived cleaning: read 35 rows, 0 malformed, 35 removed by cleaning: "
        "tooShort 35 (user text and answer both under data.cleaning.minChars = 50). "
        "Nothing to train on: loosen data.cleaning or check data.format's field names against the data"
    )
    assert len(reason) < 500, "the runner keeps the last 600 characters of the log for the status reason"


def test_an_empty_validation_split_fails_with_the_counts(tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    # 12 distinct examples, each repeated 4 times: 36 duplicates removed, 12 kept; 12 x 0.02 rounds to 0.
    raw.write_text("".join(json.dumps({"instruction": f"Question {i % 12}", "input": "", "output": f"Answer {i % 12}"}) + "\n" for i in range(48)))
    spec = prep_spec(str(raw), data={"split": {"kind": "random", "seed": 1, "ratios": {"train": 0.98, "validation": 0.02, "test": 0}}})
    res, out = run_prep(tmp_path, spec)
    reason = assert_refused(res, out)
    assert reason.startswith(
        "the validation split is empty (the runs evaluate on it (evalSteps, early stopping)): data.split.ratios.validation = 0.02, "
        "but only 12 examples survived cleaning (removed: duplicate 36 (exact duplicate of an earlier row, data.cleaning.dedup))"
    ), reason
    # A share the 12 rows can fill is a dataset; a test share they cannot fill is refused the same way.
    for name, ratios, rc in (("fits", {"train": 0.75, "validation": 0.25, "test": 0}, 0), ("no-test", {"train": 0.73, "validation": 0.25, "test": 0.02}, 65)):
        (tmp_path / name).mkdir()
        res, out = run_prep(tmp_path / name, prep_spec(str(raw), data={"split": {"kind": "random", "seed": 1, "ratios": ratios}}))
        assert res.rc == rc, str(res)
    assert json.loads((tmp_path / "fits" / "out" / "manifest.json").read_text())["counts"]["splits"] == {"train": 9, "validation": 3, "test": 0}
    assert "the test split is empty (the runs report test metrics on it): data.split.ratios.test = 0.02" in assert_refused(res, out)


def test_a_group_split_with_too_few_groups_for_validation_fails(tmp_path: Path) -> None:
    generate(tmp_path / "raw.jsonl", rows=300, studies=4, duplicate_every=0, short_every=0, malformed_every=0)
    spec = prep_spec(str(tmp_path / "raw.jsonl"), data={"split": {"kind": "group", "column": "study_id", "seed": 1, "ratios": {"train": 0.9, "validation": 0.1, "test": 0}}})
    res, out = run_prep(tmp_path, spec)
    reason = assert_refused(res, out)
    assert "the validation split is empty" in reason and "data.split.ratios.validation = 0.1" in reason and "too few groups" in reason, reason


def test_a_train_split_left_without_targets_by_tokenization_fails(tmp_path: Path, tiny_causal: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"instruction": f"Describe in detail the long history of example number {i} " * 3, "input": "", "output": f"Answer {i}"}) + "\n" for i in range(40)))
    spec = prep_spec(
        str(raw),
        data={"tokenize": {"enabled": True, "maxLength": 16, "packing": False}, "split": {"kind": "random", "seed": 1, "ratios": {"train": 0.9, "validation": 0.1, "test": 0}}},
        tokenizer={"id": str(tiny_causal), "revision": "main", "family": "causal-lm"},
    )
    res, out = run_prep(tmp_path, spec)
    reason = assert_refused(res, out)
    assert reason == (
        "the train split is empty after tokenization (nothing to train on): 36 of its 36 examples had no answer token left within "
        "data.tokenize.maxLength = 16 (tokens.train.noTargetAfterTruncation). Raise data.tokenize.maxLength or shorten the prompts"
    ), reason
