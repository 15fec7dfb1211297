"""The trainer's lifecycle: checks (spec, data, checkpoints, hardware) -> model -> train -> output.

Every check that can fail runs before the first step, so a bad spec or unprepared data costs seconds of
GPU time, not hours.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.jobspec import ConfigError, ExitCode, JobError, env_path, load_spec, log, write_json_atomic
from trainer import checkpoints, evaluate
from trainer.model import LoadedModel, apply_method, load_model, precision
from trainer.data import check_prepared, required_columns

PROGRESS_INTERVAL = float(os.environ.get("CAMPAIGN_PROGRESS_INTERVAL", "5"))


@dataclass
class Paths:
    spec: Path
    data: Path
    model: Path | None
    checkpoints: Path
    output: Path
    progress: Path | None
    metrics: Path | None

    @staticmethod
    def from_env() -> "Paths":
        p = lambda name, required=True: env_path(name, required=required)  # noqa: E731
        return Paths(p("CAMPAIGN_SPEC"), p("CAMPAIGN_DATA_DIR"), p("CAMPAIGN_MODEL_DIR", False), p("CAMPAIGN_CHECKPOINT_DIR"),
                     p("CAMPAIGN_OUTPUT_DIR"), p("CAMPAIGN_PROGRESS_FILE", False), p("CAMPAIGN_METRICS_FILE", False))  # type: ignore[arg-type]


# ---------------------------------------------------------------- checks before any model is loaded


def preflight(spec: dict[str, Any], paths: Paths) -> tuple[dict[str, Any], Path | None]:
    """Data (exit 65), then checkpoints and settings (exit 78). Returns (manifest, checkpoint to resume)."""
    import torch

    manifest = check_prepared(paths.data, spec)
    if spec.get("customJob"):
        raise ConfigError("this spec names a customJob; the node runner runs that image's command, not the built-in trainer")
    t = spec["training"]
    kind = spec["method"]["kind"]
    cuda = torch.cuda.is_available()
    if kind == "qlora" and not cuda:
        raise ConfigError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit NF4 kernels); this machine has none. Use method lora or full here, or run on a GPU node.")
    if kind == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("QLoRA needs the bitsandbytes package, which is not installed in this image")
    if t["optimizer"] in ("paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit") and (not cuda or importlib.util.find_spec("bitsandbytes") is None):
        raise ConfigError(f"training.optimizer {t['optimizer']} needs bitsandbytes on a CUDA GPU")
    if t["zeroStage"] > 0 and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"training.zeroStage {t['zeroStage']} needs DeepSpeed, which is not installed here; use zeroStage 0")
    if t.get("globalBatch") and t["globalBatch"] != spec["gpus"] * t["perDeviceBatch"] * t["gradientAccumulation"]:
        raise ConfigError(
            f"training.globalBatch {t['globalBatch']} != gpus {spec['gpus']} x perDeviceBatch {t['perDeviceBatch']} x "
            f"gradientAccumulation {t['gradientAccumulation']} = {spec['gpus'] * t['perDeviceBatch'] * t['gradientAccumulation']}"
        )
    if t.get("earlyStopping") and t["saveSteps"] % t["evalSteps"] != 0:
        raise ConfigError("training.earlyStopping keeps the best checkpoint, so saveSteps must be a multiple of evalSteps")
    if t.get("earlyStopping") and not manifest["splits"].get("validation", {}).get("rows"):
        raise ConfigError("training.earlyStopping needs a validation split; the prepared data has none")
    if t.get("selectBy"):
        if t["saveSteps"] % t["evalSteps"] != 0:
            raise ConfigError("training.selectBy keeps the checkpoint with the best task metric, so saveSteps must be a multiple of evalSteps")
        if not spec.get("evaluation"):
            raise ConfigError("training.selectBy scores answers as the evaluation does, but this spec has no evaluation")
        if not manifest["splits"].get("validation", {}).get("rows"):
            raise ConfigError("training.selectBy samples validation rows; the prepared data has no validation split")
    if spec["data"]["packing"] and spec["model"]["family"] != "causal-lm":
        # an encoder-decoder's inputs and targets are separate sequences: there is no packed layout for them
        raise ConfigError("packed data is for causal LMs; this run's model is seq2seq. Prepare the data without packing (data.tokenize.packing: false).")
    if spec["data"]["packing"] and spec["data"]["maxLength"] > t["maxSeqLength"]:
        raise ConfigError(f"packed rows are {spec['data']['maxLength']} tokens, longer than training.maxSeqLength {t['maxSeqLength']}")
    if spec["gpus"] > 1 and cuda and torch.cuda.device_count() < spec["gpus"]:
        raise ConfigError(f"spec.gpus is {spec['gpus']} but this node has {torch.cuda.device_count()} GPUs")
    resume = checkpoints.find_resume(paths.checkpoints, spec)
    return manifest, resume


def deepspeed_config(stage: int) -> dict[str, Any]:
    """A DeepSpeed config for ZeRO stage 1-3; "auto" values are filled in by transformers from the spec."""
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage in (1, 2):
        zero.update({"allgather_partitions": True, "allgather_bucket_size": 200_000_000, "reduce_scatter": True, "reduce_bucket_size": 200_000_000})
    if stage == 3:
        zero.update({
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


# ---------------------------------------------------------------- SIGTERM and checkpoint markers


class StopRequest:
    """Set by SIGTERM (or, under torchrun, by the launcher's stop file); all ranks agree on the step."""

    def __init__(self) -> None:
        self.requested = False
        stop = os.environ.get("CAMPAIGN_STOP_FILE")
        self.stop_file = Path(stop) if stop else None

    def handler(self, signum: int, _frame: Any) -> None:
        if not self.requested:
            log(f"signal {signum}: finishing the current step, then saving a checkpoint and stopping")
        self.requested = True
        # One request is enough; a repeated SIGTERM arriving while the interpreter exits (when Python has
        # put the default handler back) would turn the clean exit 75 into a death by signal, 143.
        signal.signal(signum, signal.SIG_IGN)

    def agreed(self) -> bool:
        import torch
        import torch.distributed as dist

        local = self.requested or (self.stop_file is not None and self.stop_file.exists())
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
            flag = torch.tensor([1 if local else 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return local


def process_rank() -> int:
    """This process's rank under torchrun (0 when alone)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def make_callbacks(stop: StopRequest, spec: dict[str, Any]) -> list[Any]:
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        stopped_at: int | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if stop.agreed() and state.global_step < state.max_steps:
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
                log(f"rank {process_rank()}: stopping after step {state.global_step}")

    class MarkComplete(TrainerCallback):
        """Writes _COMPLETE.json into the checkpoint just saved, after its files are on disk."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            for f in folder.rglob("*"):
                if f.is_file():
                    with f.open("rb") as handle:
                        os.fsync(handle.fileno())
            checkpoints.write_marker(folder, state.global_step, spec)
            log(f"rank {process_rank()}: checkpoint-{state.global_step} complete")

    return [StopOnSignal(), MarkComplete()]


# ---------------------------------------------------------------- evaluation


class EvalMetrics:
    """Token accuracy over eval batches (batch_eval_metrics), plus a few decoded samples; -100 never reaches the decoder."""

    def __init__(self, tokenizer: Any, family: str, samples: int = 3) -> None:
        self.tokenizer = tokenizer
        self.family = family
        self.max_samples = samples
        self.samples: list[dict[str, str]] = []
        self.correct = 0
        self.total = 0
        # the selection metric of this evaluation (trainer/selection.py), merged into the result below
        self.extra: dict[str, float] = {}

    def __call__(self, pred: Any, compute_result: bool) -> dict[str, float]:
        import numpy as np

        preds = np.asarray(pred.predictions.detach().cpu() if hasattr(pred.predictions, "detach") else pred.predictions)
        labels = np.asarray(pred.label_ids.detach().cpu() if hasattr(pred.label_ids, "detach") else pred.label_ids)
        if self.family == "causal-lm":
            preds, labels = preds[:, :-1], labels[:, 1:]
        width = min(preds.shape[1], labels.shape[1])
        preds, labels = preds[:, :width], labels[:, :width]
        mask = labels != -100
        self.correct += int(((preds == labels) & mask).sum())
        self.total += int(mask.sum())
        if len(self.samples) < self.max_samples:
            from common.render import safe_decode

            take = min(self.max_samples - len(self.samples), len(labels))
            shown = np.where(mask[:take], preds[:take], -100)
            for p, l in zip(safe_decode(self.tokenizer, shown), safe_decode(self.tokenizer, labels[:take])):
                self.samples.append({"prediction": p, "label": l})
        if not compute_result:
            return {}
        result = {"token_accuracy": self.correct / self.total if self.total else 0.0, **self.extra}
        self.correct = self.total = 0
        self.extra = {}
        return result


def argmax_logits(logits: Any, labels: Any) -> Any:
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


# ---------------------------------------------------------------- the run


@dataclass
class Splits:
    train: Any
    validation: Any | None
    test: Any | None
    # training.selectBy's validation rows (prompt, reference), generated for at every evaluation
    selection: list[dict[str, Any]] | None = None


def load_splits(spec: dict[str, Any], paths: Paths, manifest: dict[str, Any], tokenizer: Any) -> Splits:
    """The prepared splits, tokenized when prep left them as text, cut to training.maxSeqLength when unpacked."""
    from common.jobspec import DataError
    from trainer.data import load_split, tokenize_dataset, truncate

    t = spec["training"]
    columns = required_columns(spec["data"])
    found: dict[str, Any] = {}
    for name in ("train", "validation", "test"):
        ds = load_split(paths.data, manifest, name, columns)
        if ds is not None and not spec["data"]["tokenized"]:
            ds = tokenize_dataset(ds, tokenizer, spec["model"]["family"], t["maxSeqLength"])
        elif ds is not None and not spec["data"]["packing"]:
            ds = truncate(ds, t["maxSeqLength"])
        found[name] = ds if ds is not None and len(ds) else None
    if found["train"] is None:
        raise DataError(f"no training example is left within training.maxSeqLength {t['maxSeqLength']} tokens")
    splits = Splits(found["train"], found["validation"], found["test"])
    log(f"examples: train {len(splits.train)}, validation {len(splits.validation or [])}, test {len(splits.test or [])}")
    return splits


def training_arguments(spec: dict[str, Any], paths: Paths, bf16: bool, fp16: bool, has_eval: bool) -> Any:
    """The Trainer's arguments, from the spec and this machine."""
    import torch
    from transformers import TrainingArguments

    t = spec["training"]
    cuda = torch.cuda.is_available()
    optim = t["optimizer"]
    if optim == "adamw_torch_fused" and not cuda:
        log("no CUDA device: adamw_torch instead of adamw_torch_fused")
        optim = "adamw_torch"
    ds_config = None
    if t["zeroStage"] > 0:
        ds_path = Path(tempfile.mkdtemp(prefix="campaign-ds-")) / "deepspeed.json"
        ds_path.write_text(json.dumps(deepspeed_config(t["zeroStage"]), indent=2))
        ds_config = str(ds_path)
    warmup: float | int = t["warmupSteps"] if t.get("warmupSteps") is not None else float(t.get("warmupRatio") or 0.0)
    early = t.get("earlyStopping")
    select = t.get("selectBy")
    from trainer.selection import greater_is_better, metric_key

    # the best checkpoint: by selectBy's task metric (its own direction), else by the validation loss under early stopping
    best_metric = metric_key(select["metric"]) if select else ("eval_loss" if early else None)
    wandb = spec["tracking"].get("wandbProject")
    report_to = "none"
    if wandb:
        if importlib.util.find_spec("wandb") is None:
            log(f"tracking.wandbProject {wandb} is set but wandb is not installed in this image; metrics go to metrics.json and the progress file only")
        else:
            os.environ.setdefault("WANDB_PROJECT", wandb)
            report_to = "wandb"
    return TrainingArguments(
        output_dir=str(paths.checkpoints),
        run_name=spec["run"],
        max_steps=t.get("maxSteps") or -1,
        num_train_epochs=t.get("epochs") or 1,
        learning_rate=t["learningRate"],
        lr_scheduler_type=t["scheduler"],
        warmup_steps=warmup,
        per_device_train_batch_size=t["perDeviceBatch"],
        per_device_eval_batch_size=t.get("evalBatch") or t["perDeviceBatch"],
        gradient_accumulation_steps=t["gradientAccumulation"],
        weight_decay=t["weightDecay"],
        max_grad_norm=t["maxGradNorm"],
        optim=optim,
        bf16=bf16,
        fp16=fp16,
        gradient_checkpointing=t["gradientCheckpointing"],
        gradient_checkpointing_kwargs={"use_reentrant": False} if t["gradientCheckpointing"] else None,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t["evalSteps"],
        save_strategy="steps",
        save_steps=t["saveSteps"],
        save_total_limit=t["saveTotalLimit"],
        logging_strategy="steps",
        logging_steps=t["loggingSteps"],
        load_best_model_at_end=best_metric is not None,
        metric_for_best_model=best_metric,
        greater_is_better=greater_is_better(select["metric"]) if select else (False if early else None),
        report_to=report_to,
        seed=t["seed"],
        data_seed=t["seed"],
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        batch_eval_metrics=True,
        deepspeed=ds_config,
        use_cpu=not cuda,
        dataloader_num_workers=2 if cuda else 0,
        ddp_find_unused_parameters=False if spec["method"]["kind"] != "full" else None,
        disable_tqdm=True,
    )


def build_trainer(spec: dict[str, Any], loaded: LoadedModel, model: Any, splits: Splits, args: Any, callbacks: list[Any]) -> tuple[Any, EvalMetrics]:
    from transformers import EarlyStoppingCallback, Trainer

    from trainer.data import Collator

    early = spec["training"].get("earlyStopping")
    if early:
        callbacks = callbacks + [EarlyStoppingCallback(early_stopping_patience=early["patience"], early_stopping_threshold=early["threshold"])]
    metrics_fn = EvalMetrics(loaded.tokenizer, spec["model"]["family"])
    has_eval = splits.validation is not None
    make: Any = Trainer
    if spec["training"].get("selectBy"):
        from trainer.selection import TaskMetricSelection, selecting_trainer

        selection = TaskMetricSelection(spec, loaded.tokenizer, splits.selection or [])
        make = lambda **kwargs: selecting_trainer(selection, metrics_fn, **kwargs)  # noqa: E731
    trainer = make(
        model=model,
        args=args,
        train_dataset=splits.train,
        eval_dataset=splits.validation,
        data_collator=Collator(loaded.tokenizer.pad_token_id, spec["model"]["family"], loaded.packing),
        processing_class=loaded.tokenizer,
        compute_metrics=metrics_fn if has_eval else None,
        preprocess_logits_for_metrics=argmax_logits if has_eval else None,
        callbacks=callbacks,
    )
    return trainer, metrics_fn


def train(spec: dict[str, Any], paths: Paths, manifest: dict[str, Any], resume: Path | None, stop: StopRequest) -> int:
    import torch
    from transformers import TrainerState, set_seed

    from trainer.history import MetricsHistory
    from trainer.progress import ProgressFile

    t = spec["training"]
    set_seed(t["seed"])
    bf16, fp16 = precision(t["precision"])
    if resume is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        checkpoints.load_on_indexed_cpu_devices()
    # A run that reached its last step before its output was uploaded (a node lost at the very end) is not
    # resumed: the Trainer would take one step past max_steps. Its weights are loaded and the output written.
    final = resume if resume is not None and checkpoints.is_final(resume) else None
    full = spec["method"]["kind"] == "full"
    loaded = load_model(spec, paths.model, bf16, fp16, weights_from=final if full else None)
    model, params = apply_method(loaded.model, spec, adapter_from=final if not full else None)
    splits = load_splits(spec, paths, manifest, loaded.tokenizer)
    args = training_arguments(spec, paths, bf16, fp16, splits.validation is not None)
    if t.get("selectBy"):
        from trainer import selection

        splits.selection = selection.load_rows(paths.data, manifest, t["selectBy"]["rows"])
        log(f"selectBy: {t['selectBy']['metric']} on {len(splits.selection)} validation rows at every evaluation picks the best checkpoint")
    stop_cb, mark_cb = make_callbacks(stop, spec)
    trainer, metrics_fn = build_trainer(spec, loaded, model, splits, args, [stop_cb, mark_cb, ProgressFile(paths.progress, PROGRESS_INTERVAL),
                                                                                MetricsHistory(paths.metrics)])
    if stop.requested:
        log("stopped before the first step; the checkpoints already saved are kept")
        return ExitCode.INTERRUPTED
    started = time.perf_counter()
    if final is not None:
        log(f"{final.name} is the run's last step: nothing left to train; writing the output from it")
        trainer.state = TrainerState.load_from_json(str(final / "trainer_state.json"))
        train_metrics: dict[str, Any] = {"resumedAtLastStep": trainer.state.global_step}
    else:
        train_metrics = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
    if stop_cb.stopped_at is not None:
        log(f"stopped at step {stop_cb.stopped_at} of {trainer.state.max_steps} with checkpoint-{stop_cb.stopped_at} saved; the run resumes from it")
        return ExitCode.INTERRUPTED
    write_output(spec, paths, trainer, metrics_fn, splits, {
        "parameters": params,
        "model": loaded.info(),
        "train": train_metrics,
        "trainSeconds": round(time.perf_counter() - started, 2),
    })
    return ExitCode.SUCCESS


def write_output(spec: dict[str, Any], paths: Paths, trainer: Any, metrics_fn: EvalMetrics, splits: Splits, facts: dict[str, Any]) -> None:
    """Final evaluation, then the adapter or model, the tokenizer and metrics.json (rank 0 writes the files)."""
    out: dict[str, Any] = {
        "run": spec["run"],
        "specHash": spec["specHash"],
        "prepHash": spec["prepHash"],
        "method": spec["method"]["kind"],
        **facts,
        "steps": trainer.state.global_step,
        "maxSteps": trainer.state.max_steps,
        "epoch": trainer.state.epoch,
        "versions": checkpoints.library_versions(),
    }
    if splits.validation is not None:
        out["eval"] = trainer.evaluate()
        out["samples"] = metrics_fn.samples
    if splits.test is not None:
        out["test"] = trainer.evaluate(splits.test, metric_key_prefix="test")
    if trainer.is_world_process_zero():
        paths.output.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(paths.output))
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(paths.output))
        write_json_atomic(paths.output / "metrics.json", out)
        log(f"done: {trainer.state.global_step} steps; output in {paths.output}")


# ---------------------------------------------------------------- entry points


def launch_distributed(gpus: int) -> int:
    """Runs this job under torchrun on all the node's GPUs; SIGTERM becomes a stop file every rank reads."""
    work = Path(tempfile.mkdtemp(prefix="campaign-torchrun-"))
    stop_file, code_file = work / "stop", work / "exit-code"
    env = {**os.environ, "CAMPAIGN_STOP_FILE": str(stop_file), "CAMPAIGN_EXIT_CODE_FILE": str(code_file)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", str(Path(__file__).resolve().parent / "main.py")]
    log("launching: " + " ".join(command))
    # its own session: a signal to this process's group reaches only the launcher, which relays it as the stop file
    proc = subprocess.Popen(command, env=env, start_new_session=True)

    def relay(signum: int, _frame: Any) -> None:
        log(f"signal {signum}: asking every rank to stop after the current step")
        stop_file.touch()

    signal.signal(signal.SIGTERM, relay)
    rc = proc.wait()
    if code_file.exists():
        return int(code_file.read_text().strip() or rc)
    return rc


def run() -> int:
    paths = Paths.from_env()
    spec = load_spec(paths.spec, "train")
    under_torchrun = "LOCAL_RANK" in os.environ
    stop = StopRequest()
    if not under_torchrun:
        signal.signal(signal.SIGTERM, stop.handler)
    manifest, resume = preflight(spec, paths)
    # The evaluation (trainer/evaluate.py) runs in this process once training has ended, never under torchrun.
    stopped = lambda: stop.requested  # noqa: E731
    evaluate.check_prepared(spec, manifest, paths.data)
    if not under_torchrun and evaluate.trained_output_present(paths.output, spec):
        log("the trained model of this spec is already in the output: evaluating only")
        return evaluate.run_evaluation(spec, paths.data, paths.model, paths.output, manifest, stopped)
    if spec["gpus"] > 1 and not under_torchrun:
        if stop.requested:
            log("stopped before training started; the checkpoints already saved are kept")
            return ExitCode.INTERRUPTED
        code = launch_distributed(spec["gpus"])
        signal.signal(signal.SIGTERM, stop.handler)  # the launcher relayed SIGTERM to the ranks until now
        return evaluate.after_training(code, spec, paths.data, paths.model, paths.output, manifest, stopped)
    if under_torchrun:
        signal.signal(signal.SIGTERM, stop.handler)
        return train(spec, paths, manifest, resume, stop)
    code = train(spec, paths, manifest, resume, stop)
    return evaluate.after_training(code, spec, paths.data, paths.model, paths.output, manifest, stopped)


def main() -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = run()
    except JobError as err:
        log(f"trainer refused to run: {err.message}")
        code = err.exit_code
    _report_exit(code)
    return code


def _report_exit(code: int) -> None:
    target = os.environ.get("CAMPAIGN_EXIT_CODE_FILE")
    if target and os.environ.get("RANK", "0") == "0":
        Path(target).write_text(str(code))
