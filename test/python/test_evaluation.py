"""The evaluation stage end to end on tiny models: prep sets the evaluation rows apart, the trainer trains, then
generates (causal LM and seq2seq), parses, scores and writes eval.json and predictions.jsonl, with the base model's
evaluation where the spec asks for it; an evaluation left undone is done without training again."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow.parquet as pq
import pytest

from conftest import PREP, ROOT, TRAINER, run_job, short_rows, write_spec
from specs import prep_spec, train_spec

NUMBER_EVAL = {"split": "test", "rows": "all", "seed": 42}


def prepare(base: Path, kind: str, evaluation: dict[str, Any] | None, rows: int = 120, **override: Any) -> tuple[Path, dict[str, Any], Any]:
    base.mkdir(parents=True, exist_ok=True)
    raw = short_rows(base / "raw.jsonl", rows, kind)
    data: dict[str, Any] = {"split": {"kind": "random", "seed": 3, "ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}}}
    if kind == "seq2seq":
        data["format"] = {"kind": "seq2seq", "inputField": "input", "targetField": "target"}
    spec = prep_spec(str(raw), data=data, **({"evaluation": evaluation} if evaluation else {}), **override)
    res = run_job(PREP, CAMPAIGN_SPEC=write_spec(base / "prep-spec.json", spec), CAMPAIGN_OUTPUT_DIR=base / "data")
    return base / "data", spec, res


def train_env(tmp: Path, spec: dict[str, Any], data: Path) -> dict[str, Path]:
    return {
        "CAMPAIGN_SPEC": write_spec(tmp / "spec.json", spec),
        "CAMPAIGN_DATA_DIR": data,
        "CAMPAIGN_MODEL_DIR": tmp / "model",
        "CAMPAIGN_CHECKPOINT_DIR": tmp / "checkpoints",
        "CAMPAIGN_OUTPUT_DIR": tmp / "output",
        "CAMPAIGN_PROGRESS_FILE": tmp / "progress.json",
    }


def scoring(answer: dict[str, Any], metrics: list[str], baseline: bool, **extra: Any) -> dict[str, Any]:
    return {
        **NUMBER_EVAL,
        "generation": {"maxNewTokens": 8, "batchSize": 5},
        "answer": answer,
        "metrics": metrics,
        "baseline": baseline,
        "computeBaseline": baseline,
        **extra,
    }


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- prep


def test_prep_sets_apart_a_seeded_sample_of_the_test_split_with_references_and_groups(tmp_path: Path) -> None:
    evaluation = {"split": "test", "rows": 7, "seed": 5, "groupBy": "study_id"}
    data, spec, res = prepare(tmp_path / "a", "seq2seq", evaluation, rows=200)
    assert res.rc == 0, str(res)
    manifest = json.loads((data / "manifest.json").read_text())
    ev = manifest["evaluation"]
    assert ev["split"] == "test" and ev["rows"] == 7 and ev["ofRows"] == manifest["splits"]["test"]["examples"] == 20
    table = pq.read_table(data / ev["files"][0]["path"])
    assert table.column_names == ["prompt", "reference", "study_id"]
    rows = table.to_pylist()
    # The reference is the target as the data holds it; the row is one of the test split's.
    raw = {json.loads(line)["input"]: json.loads(line) for line in (tmp_path / "a" / "raw.jsonl").read_text().splitlines()}
    test_prompts = set(pq.read_table(data / manifest["splits"]["test"]["files"][0]["path"]).column("prompt").to_pylist())
    for row in rows:
        assert row["prompt"] in test_prompts
        assert row["reference"] == raw[row["prompt"]]["target"] and row["study_id"] == raw[row["prompt"]]["study_id"]
    # The same seed picks the same rows; the training files are untouched by the evaluation.
    data2, _, res2 = prepare(tmp_path / "b", "seq2seq", evaluation, rows=200)
    assert res2.rc == 0 and pq.read_table(data2 / ev["files"][0]["path"]).to_pylist() == rows
    assert "reference" not in pq.read_schema(data / manifest["splits"]["test"]["files"][0]["path"]).names


def test_prep_refuses_an_evaluation_split_without_rows(tmp_path: Path) -> None:
    raw = short_rows(tmp_path / "raw.jsonl", 40)
    spec = prep_spec(str(raw), evaluation={"split": "test", "rows": "all", "seed": 1})  # the default split has no test rows
    res = run_job(PREP, CAMPAIGN_SPEC=write_spec(tmp_path / "spec.json", spec), CAMPAIGN_OUTPUT_DIR=tmp_path / "data")
    assert res.rc == 65, str(res)
    assert "evaluation.split test has no rows" in res.out
    assert not (tmp_path / "data" / "_SUCCESS").exists()


# ---------------------------------------------------------------- the trainer


def test_causal_lm_evaluates_itself_and_its_base_model_after_training(tmp_path: Path, tiny_causal: Path) -> None:
    data, prep, res = prepare(tmp_path / "prep", "alpaca", {**NUMBER_EVAL, "groupBy": "study_id"})
    assert res.rc == 0, str(res)
    spec = train_spec(
        str(tiny_causal), "causal-lm", prep["prepHash"], training={"maxSteps": 4, "saveSteps": 2, "evalSteps": 2},
        evaluation=scoring({"shape": "number"}, ["exact_match", "mae", "parse_rate"], True, groupBy="study_id"),
    )
    env = train_env(tmp_path, spec, data)
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    out = tmp_path / "output"
    run_eval = json.loads((out / "eval.json").read_text())
    base_eval = json.loads((out / "baseline" / "eval.json").read_text())
    manifest = json.loads((data / "manifest.json").read_text())
    n = manifest["evaluation"]["rows"]
    assert n == manifest["splits"]["test"]["examples"] == 12
    for report, kind in ((run_eval, "fine-tuned"), (base_eval, "base")):
        assert report["model"]["kind"] == kind and report["specHash"] == spec["specHash"]
        assert report["rows"] == n and report["counts"]["rows"] == n
        assert report["counts"]["parsed"] + report["counts"]["unparsed"] == report["counts"]["scored"] == n  # every reference is "Response: k"
        assert set(report["metrics"]) >= {"exact_match", "mae", "parse_rate"}
        assert report["metrics"]["parse_rate"] == pytest.approx(report["counts"]["parsed"] / n)
        assert report["settings"]["generation"]["paddingSide"] == "left" and report["settings"]["generation"]["decoding"] == "greedy"
        groups = report["groups"]
        assert groups["column"] == "study_id" and sum(g["counts"]["rows"] for g in groups["values"].values()) == n
    predictions = lines(out / "predictions.jsonl")
    assert len(predictions) == n
    for p in predictions:
        assert set(p) == {"index", "input", "reference", "prediction", "parsed", "expected", "correct", "group"}
        assert p["input"].endswith("<|im_start|>assistant\n") and p["reference"].startswith("Response: ")
        assert p["expected"] == float(p["reference"].split(": ")[1])
        assert p["correct"] == (p["parsed"] == p["expected"])
    assert run_eval["metrics"]["exact_match"] == pytest.approx(sum(p["correct"] for p in predictions) / n)
    assert len(lines(out / "baseline" / "predictions.jsonl")) == n
    assert "evaluation: the base model" in res.out and "evaluation: the trained model" in res.out

    # An evaluation left undone (eval.json gone, the trained model there) is done without training again,
    # and the part already done (the baseline) is not redone.
    (out / "eval.json").unlink()
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    assert "evaluating only" in res.out and "evaluation: the base model" not in res.out
    assert "trainable parameters" not in res.out  # nothing was set up for training
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    again = json.loads((out / "eval.json").read_text())
    assert again["metrics"] == run_eval["metrics"], "greedy decoding of the same model gives the same answers"


def test_seq2seq_evaluates_with_rouge_and_bleu_and_no_baseline(tmp_path: Path, tiny_t5: Path) -> None:
    data, prep, res = prepare(tmp_path / "prep", "seq2seq", {**NUMBER_EVAL})
    assert res.rc == 0, str(res)
    spec = train_spec(
        str(tiny_t5), "seq2seq", prep["prepHash"], training={"maxSteps": 3, "saveSteps": 3, "evalSteps": 3},
        data={"formatKind": "seq2seq", "tokenized": False, "packing": False, "maxLength": 128},
        evaluation=scoring({"shape": "text"}, ["rouge", "bleu", "parse_rate"], False),
    )
    res = run_job(TRAINER, **train_env(tmp_path, spec, data))
    assert res.rc == 0, str(res)
    out = tmp_path / "output"
    report = json.loads((out / "eval.json").read_text())
    assert report["settings"]["generation"]["paddingSide"] == "right"
    for key in ("rouge1", "rouge2", "rougeL"):
        assert 0.0 <= report["metrics"][key] <= 1.0
    assert 0.0 <= report["metrics"]["bleu"] <= 100.0
    assert report["counts"]["rows"] == 12
    assert not (out / "baseline").exists()
    predictions = lines(out / "predictions.jsonl")
    assert all(p["reference"].startswith("answer ") for p in predictions)


def test_the_baseline_is_computed_once_in_a_three_run_campaign(tmp_path: Path, tiny_causal: Path) -> None:
    data, prep, res = prepare(tmp_path / "prep", "alpaca", {**NUMBER_EVAL})
    assert res.rc == 0, str(res)
    # As the campaign renders them (components/campaign/baseline.ts): the first run of the base model computes it.
    for i, (name, lr) in enumerate((("lr-1", 1e-3), ("lr-2", 5e-4), ("lr-3", 1e-4))):
        spec = train_spec(
            str(tiny_causal), "causal-lm", prep["prepHash"], run=name, training={"learningRate": lr, "maxSteps": 2, "saveSteps": 2, "evalSteps": 2},
            evaluation={**scoring({"shape": "number"}, ["exact_match"], True), "computeBaseline": i == 0},
        )
        folder = tmp_path / name
        folder.mkdir()
        res = run_job(TRAINER, **train_env(folder, spec, data))
        assert res.rc == 0, str(res)
        assert (folder / "output" / "eval.json").is_file()
    assert [name for name in ("lr-1", "lr-2", "lr-3") if (tmp_path / name / "output" / "baseline" / "eval.json").is_file()] == ["lr-1"]


def test_a_dataset_without_evaluation_rows_is_refused_before_training(tmp_path: Path, tiny_causal: Path) -> None:
    data, prep, res = prepare(tmp_path / "prep", "alpaca", None)
    assert res.rc == 0, str(res)
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], evaluation=scoring({"shape": "number"}, ["exact_match"], False))
    res = run_job(TRAINER, **train_env(tmp_path, spec, data))
    assert res.rc == 65, str(res)
    assert "has no evaluation rows" in res.out


def test_a_stop_during_generation_exits_75_and_leaves_no_result(tmp_path: Path, tiny_causal: Path) -> None:
    from common.jobspec import ExitCode
    from trainer import evaluate

    data, prep, res = prepare(tmp_path / "prep", "alpaca", {**NUMBER_EVAL})
    assert res.rc == 0, str(res)
    spec = train_spec(str(tiny_causal), "causal-lm", prep["prepHash"], evaluation=scoring({"shape": "number"}, ["exact_match"], True))
    manifest = json.loads((data / "manifest.json").read_text())
    out = tmp_path / "output"
    code = evaluate.run_evaluation(spec, data, None, out, manifest, stopped=lambda: True)
    assert code == ExitCode.INTERRUPTED
    assert not (out / "baseline" / "eval.json").exists() and not (out / "eval.json").exists()


def test_a_new_node_after_an_interrupted_evaluation_evaluates_without_training(tmp_path: Path, tiny_causal: Path) -> None:
    data, prep, res = prepare(tmp_path / "prep", "alpaca", {**NUMBER_EVAL})
    assert res.rc == 0, str(res)
    spec = train_spec(
        str(tiny_causal), "causal-lm", prep["prepHash"], training={"maxSteps": 2, "saveSteps": 2, "evalSteps": 2},
        evaluation=scoring({"shape": "number"}, ["exact_match"], False),
    )
    env = train_env(tmp_path, spec, data)
    assert run_job(TRAINER, **env).rc == 0
    first = json.loads((tmp_path / "output" / "eval.json").read_text())
    # A node lost during the evaluation: its output never reached S3; the final checkpoint did.
    import shutil

    shutil.rmtree(tmp_path / "output")
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    assert "nothing left to train" in res.out and "evaluation: the trained model" in res.out
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert json.loads((tmp_path / "output" / "eval.json").read_text())["metrics"] == first["metrics"]


def test_the_progress_file_advances_during_the_evaluation(tmp_path: Path, tiny_causal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node runner's stall watchdog reads the progress file: during the evaluation after training it shows
    phase "evaluating" and the rows generated so far, part by part (the baseline, then the fine-tuned model), on
    top of the training's last step, rewritten as batches finish."""
    from trainer import evaluate

    data, prep, res = prepare(tmp_path / "prep", "alpaca", {**NUMBER_EVAL})
    assert res.rc == 0, str(res)
    spec = train_spec(
        str(tiny_causal), "causal-lm", prep["prepHash"], training={"maxSteps": 2, "saveSteps": 2, "evalSteps": 2},
        evaluation=scoring({"shape": "number"}, ["exact_match"], True),
    )
    env = train_env(tmp_path, spec, data)
    res = run_job(TRAINER, **env)
    assert res.rc == 0, str(res)
    progress_file = tmp_path / "progress.json"
    manifest = json.loads((data / "manifest.json").read_text())
    total = manifest["evaluation"]["rows"]
    last = json.loads(progress_file.read_text())
    assert last["phase"] == "evaluating" and last["step"] == 2 and last["totalSteps"] == 2, last
    schema = json.loads((ROOT / "containers" / "schemas" / "progress.schema.json").read_text())
    jsonschema.validate(last, schema)
    assert {k: last["evaluation"][k] for k in ("part", "done", "total")} == {"part": "fine-tuned", "done": total, "total": total}

    # Again in this process, reading the file before every batch (the moment the stop check runs).
    out = tmp_path / "output"
    (out / "eval.json").unlink()
    (out / "baseline" / "eval.json").unlink()
    training_only = {k: last[k] for k in ("step", "totalSteps", "epoch", "loss", "learningRate", "tokensPerSec", "etaSeconds", "updatedAt")}
    progress_file.write_text(json.dumps(training_only))
    monkeypatch.setenv("CAMPAIGN_PROGRESS_FILE", str(progress_file))
    monkeypatch.setenv("CAMPAIGN_PROGRESS_INTERVAL", "0")
    seen: list[dict[str, Any]] = []

    def stopped() -> bool:
        seen.append(json.loads(progress_file.read_text()))
        return False

    assert evaluate.run_evaluation(spec, data, None, out, manifest, stopped) == 0
    seen.append(json.loads(progress_file.read_text()))
    batch = spec["evaluation"]["generation"]["batchSize"]
    per_part = list(range(0, total, batch)) + [total]
    assert [(p["evaluation"]["part"], p["evaluation"]["done"]) for p in seen] == (
        [("baseline", d) for d in per_part[:-1]] + [("fine-tuned", d) for d in per_part]
    ), "a new row count after every batch; each part starts at 0"
    for p in seen:
        jsonschema.validate(p, schema)
        assert p["phase"] == "evaluating" and p["evaluation"]["total"] == total
        assert {k: p[k] for k in training_only if k != "updatedAt"} == {k: v for k, v in training_only.items() if k != "updatedAt"}, "the training's fields are kept"


def test_greedy_generation_ignores_the_models_own_sampling_defaults(tiny_causal: Path) -> None:
    """Qwen2.5-Instruct ships do_sample, temperature and a repetition penalty in generation_config.json; greedy
    evaluation must not pick them up, and sampling only when the spec asks for it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer import evaluate

    tokenizer = AutoTokenizer.from_pretrained(tiny_causal)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    spec = train_spec(str(tiny_causal), "causal-lm", "0" * 16, evaluation=scoring({"shape": "text"}, ["exact_match"], False))
    prompts = ["<|im_start|>user\nPredict answer 3<|im_end|>\n<|im_start|>assistant\n", "<|im_start|>user\nage 7<|im_end|>\n<|im_start|>assistant\n"]
    plain = evaluate.generate(model, tokenizer, prompts, spec, stopped=lambda: False)
    model.generation_config.do_sample = True
    model.generation_config.temperature = 0.7
    model.generation_config.repetition_penalty = 3.0
    torch.manual_seed(0)
    assert evaluate.generate(model, tokenizer, prompts, spec, stopped=lambda: False) == plain
    config = evaluate.generation_config(spec, tokenizer)
    assert (config.do_sample, config.num_beams, config.repetition_penalty) == (False, 1, 1.0)
    sampling = {**spec, "evaluation": {**spec["evaluation"], "generation": {**spec["evaluation"]["generation"], "sampling": {"temperature": 0.5, "topP": 0.9, "seed": 1}}}}
    config = evaluate.generation_config(sampling, tokenizer)
    assert (config.do_sample, config.temperature, config.top_p, config.top_k) == (True, 0.5, 0.9, 0)
    # Decoder-only prompts are padded on the left: the batch of two different lengths generates as each alone.
    alone = [evaluate.generate(model, tokenizer, [p], spec, stopped=lambda: False)[0] for p in prompts]
    assert plain == alone
