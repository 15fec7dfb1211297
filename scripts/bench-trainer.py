"""Trainer benchmark: tokens/s, MFU and peak memory, packed against unpacked, on models built from configs
with random weights and mixed-length synthetic data (containers/trainer/benchmark.py has the cases).

    python scripts/bench-trainer.py                      # the cases this machine can run (CPU: small ones)
    python scripts/bench-trainer.py --device cuda        # the GPU cases: a Qwen2.5-0.5B-sized model
    python scripts/bench-trainer.py --case lora-sdpa-packed --steps 50 --json results.json
    python scripts/bench-trainer.py --write-estimates    # refresh bench-estimates.json (needs npx tsx)

MFU is measured tokens/s x FLOPs per token (the plan's 6N / 4N count) over the GPU's dense bf16 peak from the
instance catalog; set CAMPAIGN_GPU_PEAK_TFLOPS for a GPU the catalog does not list. Peak memory is the CUDA
allocator's peak over the measured steps, next to components/plan/estimate.ts for the same configuration.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "containers"))

from trainer import benchmark  # noqa: E402


def write_estimates() -> None:
    """Runs the plan's estimator (TypeScript) over every case and stores the result beside benchmark.py."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([c.estimate_input() for c in benchmark.CASES], f)
    out = subprocess.run(["npx", "tsx", str(ROOT / "scripts" / "trainer-estimate.ts"), f.name], cwd=ROOT, capture_output=True, text=True)
    Path(f.name).unlink()
    if out.returncode != 0:
        sys.exit(f"scripts/trainer-estimate.ts failed:\n{out.stderr}")
    benchmark.ESTIMATES.write_text(out.stdout)
    print(f"wrote {benchmark.ESTIMATES.relative_to(ROOT)} ({len(benchmark.CASES)} cases)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="auto: cuda when available, else cpu")
    parser.add_argument("--case", action="append", help="run only these cases (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per case (default 20 on GPU, 8 on CPU)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--write-estimates", action="store_true", help="regenerate the stored plan estimates and exit")
    args = parser.parse_args()
    if args.write_estimates:
        write_estimates()
        return 0
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: the GPU cases need one (run without --device for the CPU cases)", file=sys.stderr)
        return 2
    cases = [benchmark.case(n) for n in args.case] if args.case else [c for c in benchmark.CASES if c.device == device]
    steps = args.steps or (20 if device == "cuda" else 8)
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"trainer benchmark on {where}; torch {torch.__version__}; {steps} measured steps after {args.warmup} warmup")
    results = []
    for c in cases:
        why = c.missing()
        if why:
            print(f"{c.name:24s} skipped: {why}")
            continue
        r = benchmark.run_case(c, steps=steps, warmup=args.warmup)
        results.append(r)
        print(r.line(), flush=True)
    by_name = {r.name: r for r in results}
    for r in results:
        if r.packed and (u := by_name.get(r.name.replace("-packed", "-unpacked"))):
            print(f"{r.name}: {r.tokensPerSec / u.tokensPerSec:.2f}x the tokens/s of {u.name}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
