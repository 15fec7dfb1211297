"""The GPU check (`npm run test:gpu`): run on a CUDA machine before a campaign pays for one. Deselected by
default (test/python/pytest.ini) and skipped with the reason on a machine without CUDA. Needs torch,
transformers, peft, accelerate and pyarrow, and no network: models are built from configs with random weights.

Prints, per case: tokens/s, MFU against the GPU's dense bf16 peak, peak memory next to the plan's estimate
(containers/trainer/benchmark.py). The figures are benchmarks, not pass/fail thresholds; the assertions check
that each path runs, trains to a finite loss, keeps packed examples apart and fits the GPU.
"""
from __future__ import annotations

from pathlib import Path
import pytest
import torch

from trainer import benchmark

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device: the GPU check runs on a GPU machine (npm run test:gpu)")]

def run(name: str) -> benchmark.Result:
    c = benchmark.case(name)
    why = c.missing()
    if why:
        pytest.skip(f"{name}: {why}")
    result = benchmark.run_case(c)
    print("\n" + result.line())
    assert result.loss == result.loss and result.loss > 0, f"{name}: the loss is not finite ({result.loss})"
    assert result.tokensPerSec > 0
    total = torch.cuda.get_device_properties(0).total_memory / 1024**3
    assert result.peakReservedGiB is not None and result.peakReservedGiB < total
    return result


def test_bf16_and_tf32_are_used() -> None:
    from trainer.model import enable_tf32, precision

    assert precision("bf16") == (True, False), "this GPU has no bf16: the presets need Ampere or newer"
    assert enable_tf32(True) and torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    a = torch.randn(256, 256, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    print(f"\n{torch.cuda.get_device_name()}: compute capability {torch.cuda.get_device_capability()}, torch {torch.__version__}, CUDA {torch.version.cuda}")


@pytest.mark.parametrize("attn", ["sdpa", "flash_attention_2"])
def test_packed_examples_stay_apart_on_the_gpu(tmp_path: Path, attn: str) -> None:
    """The CPU isolation test (test_packing.py), in bf16 on the GPU, including FlashAttention-2's varlen path."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import is_flash_attn_2_available

    from trainer.data import Collator
    from trainer.packing import packing_layout, prepare_model_for_packing

    if attn == "flash_attention_2" and not is_flash_attn_2_available():
        pytest.skip("flash-attn is not installed")
    shape = benchmark.CPU_SMALL
    model = AutoModelForCausalLM.from_config(shape.qwen2_config(), attn_implementation=attn, dtype=torch.bfloat16).to("cuda").eval()
    prepare_model_for_packing(model)
    items = benchmark.examples(12, 256, shape.vocabSize, seed=1)
    rows = benchmark.packed(items, 256)
    layout = packing_layout(attn)
    batch = {k: v.to("cuda") for k, v in Collator(benchmark.PAD_ID, "causal-lm", layout)(rows).items()}
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits.float()
        offset = 0
        for r, row in enumerate(rows):
            out = logits[0, offset : offset + len(row["input_ids"])] if layout == "varlen" else logits[r]
            offset += len(row["input_ids"])
            starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["position_ids"])]
            for s, e in zip(starts[:-1], starts[1:]):
                alone = model(input_ids=torch.tensor([row["input_ids"][s:e]], device="cuda")).logits[0].float()
                torch.testing.assert_close(out[s:e], alone, rtol=2e-2, atol=2e-2)  # bf16 kernels differ by shape


@pytest.mark.parametrize("attention", ["sdpa", "flash"])
def test_lora_packed_against_unpacked(attention: str) -> None:
    unpacked = run(f"lora-{attention}-unpacked")
    packed = run(f"lora-{attention}-packed")
    print(f"{packed.name}: {packed.tokensPerSec / unpacked.tokensPerSec:.2f}x the tokens/s of {unpacked.name} (target >= 1.3x)")


def test_qlora() -> None:
    run("qlora-sdpa-packed")


def test_full_fine_tuning_under_deepspeed_zero2() -> None:
    run("full-zero2-sdpa-packed")
