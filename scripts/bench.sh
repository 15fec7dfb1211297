#!/usr/bin/env bash
# npm run bench: the project's benchmarks. They print figures; nothing here is a pass/fail test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=$(bash scripts/python-env.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== prep throughput (2.47M synthetic SocSci210-shaped rows)"
"$python" scripts/bench-prep.py --workdir "$work/prep"

echo "== node runner: job exit to shutdown call, staging throughput against the S3 emulator"
npx tsx scripts/bench-runner.ts
