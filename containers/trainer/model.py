"""The model: precision for this machine, the base model with its attention implementation, and the method
(full fine-tuning, LoRA, QLoRA) on top. Packed data is checked against the attention implementation here,
before anything trains (trainer/packing.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.jobspec import ConfigError, ModelRef, log, resolve_model_dir
from trainer import packing


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    attention: str
    dtype: str
    packing: str | None  # the packed-batch layout (trainer/packing.py), None for unpacked data

    def info(self) -> dict[str, Any]:
        return {"attention": self.attention, "dtype": self.dtype, "packing": self.packing}


def precision(spec_precision: str) -> tuple[bool, bool]:
    """(bf16, fp16) for the Trainer; on a machine without CUDA training runs in fp32, and says so."""
    import torch

    if not torch.cuda.is_available():
        if spec_precision != "fp32":
            log(f"no CUDA device: training in fp32 (training.precision {spec_precision} applies on GPUs)")
        return False, False
    if spec_precision == "bf16":
        if not torch.cuda.is_bf16_supported():
            raise ConfigError("training.precision bf16 is not supported by this GPU (it needs Ampere or newer); use fp16")
        return True, False
    return False, spec_precision == "fp16"


def enable_tf32(wanted: bool) -> bool:
    """TF32 matmuls and convolutions on Ampere and newer when training.tf32; whether they are on."""
    import torch

    if wanted and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return True
    return False


def attention_for(family: str, half: bool) -> str | None:
    """FlashAttention-2 on CUDA in half precision when flash-attn is installed, else SDPA; seq2seq keeps its default."""
    import torch
    from transformers.utils import is_flash_attn_2_available

    if family != "causal-lm":
        return None
    if torch.cuda.is_available() and half and is_flash_attn_2_available():
        return "flash_attention_2"
    return "sdpa"


def load_model(spec: dict[str, Any], model_root: Path | None, bf16: bool, fp16: bool, weights_from: Path | None = None) -> LoadedModel:
    """The base model (or, with weights_from, a full fine-tuning checkpoint's weights) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    ref = ModelRef.of(spec["model"])
    where = resolve_model_dir(ref, model_root)
    revision = ref.revision if where == ref.id else None
    log(f"loading {ref.family} model {ref.id} from {where}")
    tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"the tokenizer of {ref.id} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    kind = spec["method"]["kind"]
    half = torch.bfloat16 if bf16 else torch.float16 if fp16 else torch.float32
    # full fine-tuning keeps fp32 master weights (mixed precision autocasts); adapters train over a half-precision base
    kwargs: dict[str, Any] = {"revision": revision, "dtype": torch.float32 if kind == "full" else half}
    if kind == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
        )
        kwargs["dtype"] = torch.bfloat16 if bf16 else torch.float16
    attention = attention_for(ref.family, bf16 or fp16)
    if weights_from is not None:
        where, kwargs["revision"] = str(weights_from), None
        log(f"weights from {weights_from}")
    if ref.family == "causal-lm":
        model = AutoModelForCausalLM.from_pretrained(where, attn_implementation=attention, **kwargs)
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(where, **kwargs)
    layout = None
    if spec["data"]["packing"]:
        assert attention is not None  # preflight refuses packed data for seq2seq
        layout = packing.packing_layout(attention)
        packing.prepare_model_for_packing(model)
        log(packing.describe(layout, attention))
    enable_tf32(spec["training"]["tf32"])
    loaded = LoadedModel(model, tokenizer, attention or "default", str(kwargs["dtype"]), layout)
    log(f"attention: {loaded.attention}, weights: {loaded.dtype}")
    return loaded


def apply_method(model: Any, spec: dict[str, Any], adapter_from: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Full fine-tuning leaves the model as is; LoRA/QLoRA add adapters (new ones, or those saved in adapter_from)."""
    kind = spec["method"]["kind"]
    if kind == "full":
        total = sum(p.numel() for p in model.parameters())
        return model, {"trainable": total, "total": total, "share": 1.0}
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training

    lora = spec["method"]["lora"]
    if kind == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec["training"]["gradientCheckpointing"])
    if adapter_from is not None:
        log(f"adapter from {adapter_from}")
        model = PeftModel.from_pretrained(model, str(adapter_from), is_trainable=True)
    else:
        task = TaskType.CAUSAL_LM if spec["model"]["family"] == "causal-lm" else TaskType.SEQ_2_SEQ_LM
        config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=lora["targetModules"], bias="none", task_type=task)
        try:
            model = get_peft_model(model, config)
        except ValueError as err:
            raise ConfigError(f"method.lora.targetModules {lora['targetModules']} do not fit this model: {err}") from err
    trainable, total = model.get_nb_trainable_parameters()
    share = trainable / total
    log(f"trainable parameters: {trainable:,} of {total:,} ({share:.2%})")
    if share > lora["maxTrainableFraction"]:
        raise ConfigError(
            f"{share:.2%} of the parameters are trainable ({trainable:,} of {total:,}), above method.lora.maxTrainableFraction "
            f"{lora['maxTrainableFraction']:.2%}: LoRA should train a small share (the SocratiQ campaign trained 46% by accident). "
            "Check targetModules, or raise the bound if this is intended."
        )
    return model, {"trainable": trainable, "total": total, "share": share}
