"""Trainer throughput and memory on synthetic mixed-length data, with the plan's estimates beside them.

Shared by `npm run test:gpu` (test/python/test_gpu.py) and scripts/bench-trainer.py. Each case builds a model
from a config with random weights (no download), trains it for a few steps with the trainer's own pieces
(the Trainer, trainer.data.Collator, the packing layout of trainer.packing, trainer.model.apply_method) and
reports: non-padding tokens/s, seconds per step, MFU against the GPU's dense bf16 peak, and peak memory next
to the memory the plan estimates for the same configuration.

The estimates come from components/plan/estimate.ts (one source of truth), through scripts/trainer-estimate.ts,
stored in bench-estimates.json beside this file (the GPU machine needs no Node.js). Regenerate it after
changing a case or the estimator:

    python scripts/bench-trainer.py --write-estimates

Needs torch, transformers, peft, accelerate and pyarrow; QLoRA cases need bitsandbytes, DeepSpeed cases
deepspeed, flash-attention cases flash-attn on a CUDA GPU (each is skipped with the reason otherwise).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ESTIMATES = Path(__file__).resolve().parent / "bench-estimates.json"
IGNORE_INDEX = -100
PAD_ID = 0  # synthetic token ids start at 3


@dataclass(frozen=True)
class Shape:
    """A Qwen2-style decoder, in the fields of components/plan/models.ts DecoderArchitecture."""

    hiddenSize: int
    intermediateSize: int
    layers: int
    heads: int
    kvHeads: int
    vocabSize: int
    tiedEmbeddings: bool

    def architecture(self) -> dict[str, Any]:
        return {"kind": "decoder", **asdict(self), "headDim": self.hiddenSize // self.heads, "qkvBias": True, "fusedAttention": True}

    def qwen2_config(self) -> Any:
        from transformers import Qwen2Config

        return Qwen2Config(
            vocab_size=self.vocabSize, hidden_size=self.hiddenSize, intermediate_size=self.intermediateSize,
            num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.kvHeads,
            max_position_embeddings=32768, tie_word_embeddings=self.tiedEmbeddings, use_cache=False,
        )


# Qwen/Qwen2.5-0.5B's config.json; the estimates take its architecture from components/plan/models.ts, and
# test_bench.py checks the two agree
QWEN25_05B = Shape(896, 4_864, 24, 14, 2, 151_936, True)
HUB_IDS = {"qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B"}
# small enough for two shared CPU cores
CPU_SMALL = Shape(128, 256, 2, 4, 2, 2_048, True)
SHAPES = {"qwen2.5-0.5b": QWEN25_05B, "cpu-small": CPU_SMALL}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Case:
    name: str
    device: str  # "cuda" or "cpu"
    shape: str
    method: str  # full, lora, qlora
    attention: str  # sdpa, flash_attention_2, eager
    packed: bool
    perDeviceBatch: int
    maxLength: int
    zeroStage: int = 0
    gradientCheckpointing: bool = False
    loraR: int = 16
    needs: tuple[str, ...] = field(default=())

    @property
    def precision(self) -> str:
        """What the weights are loaded in, as the estimator counts them (the trainer's choice, trainer/model.py)."""
        if self.device == "cpu" or (self.method == "full" and self.zeroStage == 0):
            return "fp32"  # full fine-tuning keeps fp32 weights under bf16 autocast; DeepSpeed's bf16 mode converts them
        return "bf16"

    def estimate_input(self) -> dict[str, Any]:
        case: dict[str, Any] = {
            "name": self.name, "method": self.method,
            "perDeviceBatch": self.perDeviceBatch, "seqLength": self.maxLength, "precision": self.precision,
            "gradientCheckpointing": self.gradientCheckpointing, "zeroStage": self.zeroStage,
            "optimizer": "adamw_torch_fused" if self.device == "cuda" else "adamw_torch", "gpus": 1,
        }
        if self.shape in HUB_IDS:
            case["model"] = HUB_IDS[self.shape]
        else:
            case["architecture"] = SHAPES[self.shape].architecture()
        if self.method != "full":
            case["lora"] = {"r": self.loraR, "targetModules": LORA_TARGETS}
        return case

    def missing(self) -> str | None:
        """Why this case cannot run here, or None."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device"
        for package in self.needs:
            if importlib.util.find_spec(package) is None:
                return f"{package} is not installed"
        if self.attention == "flash_attention_2":
            from transformers.utils import is_flash_attn_2_available

            if not is_flash_attn_2_available():
                return "flash-attn is not installed (or does not fit this GPU)"
        return None


def _gpu_cases() -> list[Case]:
    out = []
    for attention, needs in (("sdpa", ()), ("flash_attention_2", ("flash_attn",))):
        for packed in (False, True):
            out.append(Case(f"lora-{'flash' if needs else 'sdpa'}-{'packed' if packed else 'unpacked'}", "cuda", "qwen2.5-0.5b", "lora", attention, packed, 4, 1024, needs=needs))
    out.append(Case("qlora-sdpa-packed", "cuda", "qwen2.5-0.5b", "qlora", "sdpa", True, 4, 1024, needs=("bitsandbytes",)))
    out.append(Case("full-zero2-sdpa-packed", "cuda", "qwen2.5-0.5b", "full", "sdpa", True, 2, 1024, zeroStage=2, needs=("deepspeed",)))
    return out


CASES: tuple[Case, ...] = tuple(_gpu_cases()) + (
    Case("cpu-lora-sdpa-unpacked", "cpu", "cpu-small", "lora", "sdpa", False, 4, 128),
    Case("cpu-lora-sdpa-packed", "cpu", "cpu-small", "lora", "sdpa", True, 4, 128),
)


def case(name: str) -> Case:
    found = [c for c in CASES if c.name == name]
    if not found:
        raise KeyError(f"no benchmark case {name!r}; known: {', '.join(c.name for c in CASES)}")
    return found[0]


# ---------------------------------------------------------------- data


def mixed_lengths(count: int, max_length: int, seed: int) -> list[int]:
    """Example lengths spread like chat fine-tuning data: log-normal around a quarter of max_length, clipped."""
    rng = random.Random(seed)
    median = max_length / 4
    return [max(8, min(max_length, int(rng.lognormvariate(math.log(median), 0.7)))) for _ in range(count)]


def examples(count: int, max_length: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Random token rows; the first half of each is a prompt (label -100), as prep writes them."""
    rng = random.Random(seed)
    out = []
    for n in mixed_lengths(count, max_length, seed):
        ids = [rng.randrange(3, vocab) for _ in range(n)]
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * (n // 2) + ids[n // 2 :]})
    return out


def packed(rows: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """The same examples packed by prep's own best-fit-decreasing packer."""
    import pyarrow as pa

    from prep.tokens import pack

    table = pa.table({"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]})
    out, _ = pack(table, max_length)
    return out.to_pylist()


class RowDataset:
    """A map-style dataset over Python rows (the Trainer needs __len__ and __getitem__ only)."""

    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


# ---------------------------------------------------------------- estimates


def load_estimates() -> dict[str, Any]:
    if not ESTIMATES.is_file():
        return {"gpuPeakBf16Tflops": {}, "cases": []}
    return json.loads(ESTIMATES.read_text())


def estimate_for(c: Case, estimates: dict[str, Any]) -> dict[str, Any] | None:
    """The plan's estimate of this case, when the stored one was made for exactly this configuration."""
    want = c.estimate_input()
    for stored in estimates.get("cases", []):
        if {k: stored.get(k) for k in want} == want:
            return dict(stored["estimate"])
    return None


def gpu_peak_tflops(device_name: str, estimates: dict[str, Any]) -> tuple[str, float] | None:
    """(catalog GPU model, dense bf16 TFLOP/s) for a CUDA device name; CAMPAIGN_GPU_PEAK_TFLOPS overrides."""
    override = os.environ.get("CAMPAIGN_GPU_PEAK_TFLOPS")
    if override:
        return "CAMPAIGN_GPU_PEAK_TFLOPS", float(override)
    name = device_name.upper()
    peaks: dict[str, float] = estimates.get("gpuPeakBf16Tflops", {})
    if "A100" in name:
        model = "A100-80GB" if "80G" in name else "A100-40GB"
        return (model, peaks[model]) if model in peaks else None
    for model, tflops in sorted(peaks.items(), key=lambda kv: -len(kv[0])):
        if model.upper() in name:
            return model, tflops
    return None


# ---------------------------------------------------------------- one case


@dataclass
class Result:
    name: str
    device: str
    attention: str
    packed: bool
    steps: int
    tokensPerSec: float
    secondsPerStep: float
    paddingShare: float
    loss: float
    mfu: float | None
    peakAllocatedGiB: float | None
    peakReservedGiB: float | None
    estimateGiB: float | None
    flopsPerToken: float | None
    note: str = ""

    def line(self) -> str:
        parts = [f"{self.name:24s} {self.tokensPerSec:10.0f} tok/s {self.secondsPerStep * 1000:8.1f} ms/step  padding {self.paddingShare:5.1%}"]
        parts.append(f"MFU {self.mfu:.1%}" if self.mfu is not None else "MFU n/a")
        if self.peakAllocatedGiB is not None:
            est = f"{self.estimateGiB:.2f}" if self.estimateGiB is not None else "n/a"
            ratio = f" ({self.peakReservedGiB / self.estimateGiB:.0%} of it)" if self.estimateGiB and self.peakReservedGiB else ""
            parts.append(f"peak {self.peakAllocatedGiB:.2f} GiB allocated, {self.peakReservedGiB:.2f} reserved; plan estimate {est} GiB{ratio}")
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)


def run_case(c: Case, steps: int = 20, warmup: int = 3, seed: int = 0) -> Result:
    """Trains case c for warmup + steps optimizer steps and measures the last `steps`."""
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments, set_seed

    from trainer import packing as packing_mod
    from trainer.data import Collator
    from trainer.model import apply_method

    why = c.missing()
    if why:
        raise RuntimeError(f"{c.name} cannot run here: {why}")
    set_seed(seed)
    shape = SHAPES[c.shape]
    cuda = c.device == "cuda"
    bf16 = cuda
    config = shape.qwen2_config()
    kwargs: dict[str, Any] = {"attn_implementation": c.attention}
    if c.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    dtype = torch.float32 if c.method == "full" or not cuda else torch.bfloat16
    if c.method == "qlora":
        # 4-bit weights load through from_pretrained: save the random model once, then quantize it on load
        with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
            AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(tmp)
            model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.bfloat16, device_map={"": 0}, **kwargs)
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, **kwargs)
    if cuda and c.method != "qlora" and c.zeroStage == 0:
        model = model.to("cuda")
    layout = None
    if c.packed:
        layout = packing_mod.packing_layout(c.attention)
        packing_mod.prepare_model_for_packing(model)
    spec = {"method": {"kind": c.method, "lora": {"r": c.loraR, "alpha": 2 * c.loraR, "dropout": 0.0, "targetModules": LORA_TARGETS, "maxTrainableFraction": 1.0}},
            "training": {"gradientCheckpointing": c.gradientCheckpointing}, "model": {"family": "causal-lm"}}
    model, _params = apply_method(model, spec)

    total_steps = warmup + steps
    rows = examples(max(64, 2 * total_steps * c.perDeviceBatch * 4), c.maxLength, shape.vocabSize, seed)
    data = packed(rows, c.maxLength) if c.packed else rows
    if len(data) < total_steps * c.perDeviceBatch:
        raise RuntimeError(f"{c.name}: {len(data)} rows are too few for {total_steps} steps")

    collator = CountingCollator(Collator(PAD_ID, "causal-lm", layout))
    timer = _StepTimer(warmup, cuda, collator)
    ds_config = None
    if c.zeroStage:
        from trainer.run import deepspeed_config

        ds_config = deepspeed_config(c.zeroStage)
        _single_process_env()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out_dir:
        trainer = _train(model, data, collator, timer, TrainingArguments(
            output_dir=out_dir, max_steps=total_steps, per_device_train_batch_size=c.perDeviceBatch, learning_rate=1e-4,
            bf16=bf16, optim="adamw_torch_fused" if cuda else "adamw_torch", logging_strategy="steps", logging_steps=1,
            save_strategy="no", eval_strategy="no", report_to="none", remove_unused_columns=False,
            use_cpu=not cuda, dataloader_num_workers=0, disable_tqdm=True,
            gradient_checkpointing=c.gradientCheckpointing, deepspeed=ds_config, seed=seed, data_seed=seed,
        ))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return _result(c, timer, steps, losses[-1] if losses else float("nan"), padding_share(data, c.perDeviceBatch, layout))


def _train(model: Any, data: list[dict[str, list[int]]], collator: "CountingCollator", timer: "_StepTimer", args: Any) -> Any:
    from transformers import PrinterCallback, Trainer

    trainer = Trainer(model=model, args=args, train_dataset=RowDataset(data), data_collator=collator, callbacks=[timer.callback])
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts; the result line says what matters
    trainer.train()
    return trainer


def padding_share(data: list[dict[str, list[int]]], batch: int, layout: str | None) -> float:
    """The share of padding in batches of `batch` rows (flattened batches have none). The rows are random draws,
    so consecutive groups pad like the Trainer's shuffled batches do."""
    if layout == packing_varlen():
        return 0.0
    slots = real = 0
    for i in range(0, len(data) - batch + 1, batch):
        widths = [len(r["input_ids"]) for r in data[i : i + batch]]
        slots += max(widths) * len(widths)
        real += sum(widths)
    return 1 - real / slots if slots else 0.0


def packing_varlen() -> str:
    from trainer.packing import VARLEN

    return VARLEN


class CountingCollator:
    """Counts the non-padding tokens it batches. Packed batches carry no attention mask, so the Trainer's own
    count would need a tokenizer's pad id; here the pad id is known (random ids never use it)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens = 0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(rows)
        self.tokens += int((batch["input_ids"] != PAD_ID).sum())
        return batch


class _StepTimer:
    """Wall time and tokens over the measured steps (after warmup), with the GPU synchronized at both ends.
    Tokens are counted as batches are made; the data loader fetches one batch ahead, the same at both ends."""

    def __init__(self, warmup: int, cuda: bool, counter: CountingCollator) -> None:
        from transformers import TrainerCallback

        self.warmup = warmup
        self.cuda = cuda
        self.counter = counter
        self.start = 0.0
        self.end = 0.0
        self.tokens_start = 0
        self.tokens_end = 0
        self.peak_allocated: int | None = None
        self.peak_reserved: int | None = None
        outer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                outer.step_end(state)

        self.callback = Callback()

    def step_end(self, state: Any) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
            self.tokens_start = self.counter.tokens
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
        self.end = time.perf_counter()
        self.tokens_end = self.counter.tokens
        if self.cuda:
            self.peak_allocated = torch.cuda.max_memory_allocated()
            self.peak_reserved = torch.cuda.max_memory_reserved()


def _result(c: Case, timer: "_StepTimer", steps: int, loss: float, padding: float) -> Result:
    import torch

    seconds = timer.end - timer.start
    tokens = timer.tokens_end - timer.tokens_start
    estimates = load_estimates()
    est = estimate_for(c, estimates)
    tps = tokens / seconds if seconds > 0 else 0.0
    mfu = None
    note = ""
    flops = est["flopsPerToken"] if est else None
    if c.device == "cuda":
        peak = gpu_peak_tflops(torch.cuda.get_device_name(), estimates)
        if peak is None:
            note = f"no bf16 peak known for {torch.cuda.get_device_name()} (set CAMPAIGN_GPU_PEAK_TFLOPS)"
        elif flops:
            mfu = tps * flops / (peak[1] * 1e12)
            note = f"peak {peak[1]:.0f} TFLOP/s ({peak[0]})"
    elif flops:
        note = f"{tps * flops / 1e9:.1f} GFLOP/s achieved (no CPU peak to compare with)"
    if est is None:
        note = (note + "; " if note else "") + "no stored estimate for this configuration: python scripts/bench-trainer.py --write-estimates"
    gib = 1024**3
    return Result(
        name=c.name, device=c.device, attention=c.attention, packed=c.packed, steps=steps, tokensPerSec=tps,
        secondsPerStep=seconds / steps if steps else 0.0, paddingShare=padding, loss=loss, mfu=mfu,
        peakAllocatedGiB=timer.peak_allocated / gib if timer.peak_allocated is not None else None,
        peakReservedGiB=timer.peak_reserved / gib if timer.peak_reserved is not None else None,
        estimateGiB=est["totalGiB"] if est else None, flopsPerToken=flops, note=note,
    )


def _single_process_env() -> None:
    """DeepSpeed initialises torch.distributed even for one process; give it a rendezvous on this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        os.environ.setdefault(key, value)
