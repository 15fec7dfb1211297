"""Prep throughput on synthetic SocSci210-shaped data (the SocSci210 campaign: 2,468,761 training examples; its GPU
machine formatted ~20,000 examples/s). Runs the real prep command on a generated JSONL file and prints
examples/s for formatting + cleaning + split, the read and write stages, and the job's peak RSS.

    python scripts/bench-prep.py [--rows 2470000] [--studies 210] [--malformed-every 10000] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "python"))

from socsci import generate  # noqa: E402
from specs import prep_spec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_470_000)
    parser.add_argument("--studies", type=int, default=210)
    parser.add_argument("--malformed-every", type=int, default=10_000, help="one malformed line in N (0: none)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data and output")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-prep-"))
    work.mkdir(parents=True, exist_ok=True)
    raw = work / f"socsci-{args.rows}-{args.studies}-{args.malformed_every}.jsonl"
    if not raw.exists():
        t = time.perf_counter()
        generate(raw, rows=args.rows, studies=args.studies, malformed_every=args.malformed_every)
        print(f"generated {args.rows:,} rows ({raw.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    counts = {"train": args.studies - 2 * (args.studies // 10), "validation": args.studies // 10, "test": args.studies // 10}
    spec = prep_spec(str(raw), data={"cleaning": {"minChars": 5}, "split": {"kind": "group", "column": "study_id", "seed": 42, "counts": counts}})
    (work / "spec.json").write_text(json.dumps(spec))
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "CAMPAIGN_SPEC": str(work / "spec.json"), "CAMPAIGN_OUTPUT_DIR": str(out)}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "containers" / "prep" / "main.py")], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"prep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    m = json.loads((out / "manifest.json").read_text())
    timings = m["timings"]
    rows = m["counts"]["read"]
    fcs = timings["format"] + timings["clean"] + timings["split"]
    result = {
        "rows": rows,
        "kept": m["counts"]["kept"],
        "malformed": m["counts"]["malformed"],
        "removed": m["counts"]["removed"],
        "splits": m["counts"]["splits"],
        "cpus": os.cpu_count(),
        "seconds": {**timings, "formatCleanSplit": round(fcs, 3), "wall": round(wall, 2)},
        "examplesPerSec": {
            "formatCleanSplit": round(rows / fcs),
            "read": round(rows / timings["read"]),
            "endToEnd": round(rows / wall),
        },
        "peakRssMb": m["peakRssMb"],
    }
    print(json.dumps(result, indent=2))
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
