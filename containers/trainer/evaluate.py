"""The evaluation stage: after training, on the same node, the run's task metrics on the rows prep set apart.

    trained output (adapter or model) + evaluation/ rows -> batched generation -> answers parsed by shape
        -> metrics (common/task_metrics.py) -> output/predictions.jsonl, then output/eval.json (last)

With spec.evaluation.computeBaseline the base model is evaluated first, on the same rows with the same settings,
into output/baseline/ (components/campaign/baseline.ts says which run does it). The base weights are loaded once:
a LoRA/QLoRA adapter is put on top of them for the run's own evaluation; a fully fine-tuned model is loaded from
the output instead.

Evaluation runs in one process on one device, after torchrun's training processes have ended: generation needs
the whole model, which ZeRO-3 shards across ranks during training.

Padding: decoder-only models generate after the prompt's last token, so prompts are padded (and, when longer than
training.maxSeqLength, cut) on the left; encoder-decoder models read the prompt in the encoder and are padded and
cut on the right, as in training. Prompts are generated in order of length to waste little on padding.

Progress: the progress file (CAMPAIGN_PROGRESS_FILE) says `phase: "evaluating"` and the rows generated so far of
the part under way (baseline, then fine-tuned), rewritten as batches finish, so the node runner's stall watchdog
sees a long evaluation advance (trainer/progress.py, EvaluationProgress).

Interruptions: SIGTERM stops the evaluation between batches and the job exits 75. The run's last checkpoint is in
S3 by then, so the next node writes the output from it without training and evaluates again; a part whose
eval.json already names this spec's evaluationHash (and, for the run's own part, its specHash) is not redone.

Evaluation only: a finished run whose evaluation settings changed keeps its training hash (specHash), so it is not
trained again: its node runs in evaluate-only mode, the runner stages the saved output (model and metrics.json)
into the output directory, and the trainer finds the trained model there and only evaluates, recording the new
evaluationHash in eval.json.
"""
from __future__ import annotations

import gc
import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from common.jobspec import CONTRACT, DataError, ExitCode, ModelRef, env_path, log, resolve_model_dir, utc_now, write_json_atomic
from common.task_metrics import Scored, parse_answer, same_answer, score, score_groups

if TYPE_CHECKING:
    from trainer.progress import EvaluationProgress

FILES: dict[str, str] = CONTRACT["evaluationFiles"]
LIBRARIES = ("torch", "transformers", "peft", "torchmetrics", "sacrebleu", "scikit-learn", "scipy")
LOG_EVERY_SECONDS = 30.0


class EvaluationStopped(Exception):
    """SIGTERM arrived during generation."""


# ---------------------------------------------------------------- when to evaluate


def trained_output_present(output: Path, spec: dict[str, Any]) -> bool:
    """The run's trained model is already in `output` (metrics.json, written after the model, names this spec)."""
    try:
        return json.loads((output / "metrics.json").read_text()).get("specHash") == spec["specHash"]
    except (OSError, ValueError):
        return False


def _done(folder: Path, spec: dict[str, Any], part: str) -> bool:
    """The part's eval.json was computed with this spec's evaluation settings (evaluationHash) and, for the run's
    own part, on this spec's trained model (specHash, the training hash). The baseline does not depend on training."""
    try:
        report = json.loads((folder / FILES["metrics"]).read_text())
    except (OSError, ValueError):
        return False
    same_evaluation = report.get("evaluationHash") == spec.get("evaluationHash")
    return same_evaluation and (part == "baseline" or report.get("specHash") == spec["specHash"])


def after_training(code: int, spec: dict[str, Any], data_dir: Path, model_root: Path | None, output: Path, manifest: dict[str, Any], stopped: Callable[[], bool]) -> int:
    """The job's exit code once training ended with `code`: evaluation runs only after a successful training."""
    if code != ExitCode.SUCCESS or not spec.get("evaluation"):
        return code
    return run_evaluation(spec, data_dir, model_root, output, manifest, stopped)


def run_evaluation(spec: dict[str, Any], data_dir: Path, model_root: Path | None, output: Path, manifest: dict[str, Any], stopped: Callable[[], bool]) -> int:
    ev = spec.get("evaluation")
    if not ev:
        return ExitCode.SUCCESS
    todo_baseline = ev["computeBaseline"] and not _done(output / FILES["baselineDir"], spec, "baseline")
    todo_run = not _done(output, spec, "fine-tuned")
    if not (todo_baseline or todo_run):
        log("evaluation: eval.json of these evaluation settings is already in the output; nothing to redo")
        return ExitCode.SUCCESS
    rows, info = load_rows(data_dir, manifest)
    from trainer.progress import EvaluationProgress, progress_interval

    progress = EvaluationProgress(env_path("CAMPAIGN_PROGRESS_FILE", required=False), progress_interval(), output)
    # Written before the model loads: loading a large base model takes minutes, and that is the evaluation at work.
    progress.begin("baseline" if todo_baseline else "fine-tuned", len(rows))
    gc.collect()
    _empty_device_cache()
    try:
        model, tokenizer = load_base(spec, model_root)
        if todo_baseline:
            log(f"evaluation: the base model {spec['model']['id']} on {len(rows)} {info['split']} rows (the campaign's baseline)")
            evaluate_model(model, tokenizer, spec, rows, info, output / FILES["baselineDir"], "base", stopped, progress)
        if todo_run:
            progress.begin("fine-tuned", len(rows))
            model = with_trained_weights(model, spec, model_root, output)
            log(f"evaluation: the trained model on {len(rows)} {info['split']} rows")
            evaluate_model(model, tokenizer, spec, rows, info, output, "fine-tuned", stopped, progress)
    except EvaluationStopped:
        log("evaluation stopped by a signal; the run's last checkpoint is kept, so the next node evaluates again without training")
        return ExitCode.INTERRUPTED
    return ExitCode.SUCCESS


# ---------------------------------------------------------------- rows and models


def check_prepared(spec: dict[str, Any], manifest: dict[str, Any], data_dir: Path) -> None:
    """Before any training: a spec that asks for an evaluation needs a dataset with evaluation rows (exit 65)."""
    if spec.get("evaluation") and not manifest.get("evaluation"):
        raise DataError(f"{data_dir} has no evaluation rows, but this run's spec asks for an evaluation: prepare the data again with the same config (its prep hash includes the evaluation)")


def load_rows(data_dir: Path, manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The evaluation rows prep set apart (prep/evaluation.py)."""
    import pyarrow.parquet as pq

    info = manifest["evaluation"]
    rows: list[dict[str, Any]] = []
    for f in info["files"]:
        rows.extend(pq.read_table(data_dir / f["path"]).to_pylist())
    if len(rows) != info["rows"]:
        raise DataError(f"{data_dir}/{FILES['datasetDir']} holds {len(rows)} rows, but its manifest says {info['rows']}: prepare the data again")
    return rows, info


def _device() -> Any:
    import torch

    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def _dtype(spec: dict[str, Any]) -> Any:
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    wanted = spec["training"]["precision"]
    if wanted == "bf16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if wanted in ("bf16", "fp16") else torch.float32


def _load_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    kwargs: dict[str, Any] = {"dtype": _dtype(spec)}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": 0}
    if spec["method"]["kind"] == "qlora":
        from transformers import BitsAndBytesConfig

        # the same 4-bit base the adapter was trained on (trainer/model.py)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=kwargs["dtype"],
        )
    if spec["model"]["family"] == "causal-lm":
        kwargs["attn_implementation"] = "sdpa"
    return kwargs


def _auto_class(family: str) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForCausalLM if family == "causal-lm" else AutoModelForSeq2SeqLM


def load_base(spec: dict[str, Any], model_root: Path | None) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    ref = ModelRef.of(spec["model"])
    where = resolve_model_dir(ref, model_root)
    revision = ref.revision if where == ref.id else None
    tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # as in training (trainer/model.py)
    model = _auto_class(ref.family).from_pretrained(where, revision=revision, **_load_kwargs(spec))
    if not hasattr(model, "hf_device_map"):
        model.to(_device())
    return model.eval(), tokenizer


def with_trained_weights(base: Any, spec: dict[str, Any], model_root: Path | None, output: Path) -> Any:
    """The run's trained model: the adapter in `output` on the loaded base, or the full model saved there."""
    if spec["method"]["kind"] == "full":
        del base
        gc.collect()
        _empty_device_cache()
        kwargs = {k: v for k, v in _load_kwargs(spec).items() if k != "quantization_config"}
        model = _auto_class(spec["model"]["family"]).from_pretrained(output, **kwargs)
        if not hasattr(model, "hf_device_map"):
            model.to(_device())
        return model.eval()
    from peft import PeftModel

    return PeftModel.from_pretrained(base, output).eval()


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- generation


def generation_config(spec: dict[str, Any], tokenizer: Any) -> Any:
    """Greedy unless sampling is asked for. Every knob that would change greedy output is set here, so a model's
    own generation_config.json (Qwen2.5-Instruct ships sampling and a repetition penalty) does not fill it in."""
    from transformers import GenerationConfig

    gen = spec["evaluation"]["generation"]
    sampling = gen.get("sampling")
    return GenerationConfig(
        max_new_tokens=gen["maxNewTokens"],
        do_sample=sampling is not None,
        num_beams=1,
        temperature=sampling["temperature"] if sampling else 1.0,
        top_p=sampling["topP"] if sampling else 1.0,
        # sampling: top-p only (top_k 0 is off); greedy: the library default, which greedy search ignores
        top_k=0 if sampling else 50,
        repetition_penalty=1.0,
        pad_token_id=tokenizer.pad_token_id,
    )


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], spec: dict[str, Any], stopped: Callable[[], bool],
             on_rows: Callable[[int], None] | None = None) -> list[str]:
    """The generated answer of every prompt (new tokens only, special tokens dropped), in the prompts' order.
    `on_rows` hears the number of rows generated so far after every batch."""
    import torch

    family = spec["model"]["family"]
    causal = family == "causal-lm"
    gen = spec["evaluation"]["generation"]
    config = generation_config(spec, tokenizer)
    if gen.get("sampling"):
        torch.manual_seed(gen["sampling"]["seed"])
    tokenizer.padding_side = "left" if causal else "right"
    tokenizer.truncation_side = "left" if causal else "right"
    # Causal LMs: the prompt already ends with the rendered assistant header; no BOS/EOS is added (as in training).
    special = not causal
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=special)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    batch_size = gen["batchSize"]
    started = last_log = time.monotonic()
    for start in range(0, len(order), batch_size):
        if stopped():
            raise EvaluationStopped()
        chosen = order[start : start + batch_size]
        enc = tokenizer(
            [prompts[i] for i in chosen], add_special_tokens=special, padding=True, truncation=True,
            max_length=spec["training"]["maxSeqLength"], return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            generated = model.generate(**enc, generation_config=config)
        new_tokens = generated[:, enc["input_ids"].shape[1] :] if causal else generated
        for i, text in zip(chosen, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            out[i] = text
        done = min(start + batch_size, len(order))
        if on_rows is not None:
            on_rows(done)
        now = time.monotonic()
        if now - last_log >= LOG_EVERY_SECONDS:
            log(f"evaluation: {done}/{len(order)} rows generated ({done / (now - started):.1f} rows/s)")
            last_log = now
    return out


# ---------------------------------------------------------------- one model's evaluation


def evaluate_model(model: Any, tokenizer: Any, spec: dict[str, Any], rows: list[dict[str, Any]], info: dict[str, Any], folder: Path, kind: str, stopped: Callable[[], bool],
                   progress: "EvaluationProgress | None" = None) -> dict[str, Any]:
    """Generates, parses, scores; writes predictions.jsonl, then eval.json (its presence means the part is done).
    `progress` (when given) gets the rows generated after every batch."""
    ev = spec["evaluation"]
    labels = ev.get("labels")
    started = time.perf_counter()
    prompts = [r["prompt"] for r in rows]
    part = "baseline" if kind == "base" else "fine-tuned"
    on_rows = (lambda done: progress.rows(part, done, len(rows))) if progress is not None else None
    predictions = generate(model, tokenizer, prompts, spec, stopped, on_rows)
    scored = [
        Scored(p, r["reference"], parse_answer(p, ev["answer"], labels), parse_answer(r["reference"], ev["answer"], labels))
        for p, r in zip(predictions, rows)
    ]
    result = score(scored, ev["metrics"], labels)
    group = info.get("groupBy")
    groups = None
    if group:
        groups = {"column": group, "values": score_groups(scored, [r[group] for r in rows], ev["metrics"], labels)}
    seconds = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    _write_predictions(folder / FILES["predictions"], rows, scored, group)
    report = {
        "campaign": spec["campaign"],
        "run": spec["run"],
        "specHash": spec["specHash"],
        # the evaluation settings this report was computed with: other ones evaluate again (components/campaign/relaunch.ts)
        "evaluationHash": spec.get("evaluationHash"),
        "prepHash": spec["prepHash"],
        "model": {"kind": kind, "id": spec["model"]["id"], "revision": spec["model"]["revision"], "method": spec["method"]["kind"] if kind != "base" else None},
        "split": info["split"],
        "rows": len(rows),
        "ofRows": info["ofRows"],
        "seed": info["seed"],
        **result,
        "groups": groups,
        "settings": {
            "answer": ev["answer"],
            "metrics": ev["metrics"],
            "labels": labels,
            "generation": {
                **ev["generation"],
                "decoding": "sampling" if ev["generation"].get("sampling") else "greedy",
                "maxInputTokens": spec["training"]["maxSeqLength"],
                "paddingSide": tokenizer.padding_side,
            },
        },
        "seconds": round(seconds, 2),
        "rowsPerSecond": round(len(rows) / seconds, 2) if seconds > 0 else None,
        "device": str(next(model.parameters()).device),
        "libraries": _versions(),
        "createdAt": utc_now(),
    }
    write_json_atomic(folder / FILES["metrics"], report)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items() if isinstance(v, float))
    log(f"evaluation of the {kind} model: {shown or 'no metric could be computed'}; {result['counts']['unparsed']} of {result['counts']['scored']} answers did not parse ({seconds:.1f}s)")
    return report


def _write_predictions(path: Path, rows: list[dict[str, Any]], scored: list[Scored], group: str | None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for i, (row, s) in enumerate(zip(rows, scored)):
            line = {
                "index": i,
                "input": row["prompt"],
                "reference": s.reference,
                "prediction": s.prediction,
                "parsed": s.predicted,
                "expected": s.expected,
                "correct": same_answer(s.predicted, s.expected),
            }
            if group:
                line["group"] = row[group]
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
