#!/usr/bin/env bash
# The test command (npm test): types, TypeScript tests (config, plan, the Pulumi program under mocks,
# the node runner against a local S3 emulator, the CLI and the rehearsal), Python tests, shellcheck.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== tsc --noEmit (strict)"
npx tsc --noEmit -p .

echo "== schemas in containers/schemas match components/campaign/jobSpec.ts"
npx tsx scripts/gen-schemas.ts --check

echo "== shellcheck"
if command -v shellcheck >/dev/null; then
    mapfile -t shells < <(git ls-files '*.sh')
    shellcheck "${shells[@]}"
else
    echo "shellcheck is not installed (apt-get install shellcheck)" >&2
    exit 1
fi

python=$(bash scripts/python-env.sh)
export CAMPAIGN_PYTHON="$python"

echo "== Python tests (pytest)"
"$python" -m pytest -q test/python

echo "== TypeScript tests (node --test)"
mapfile -t ts_tests < <(find test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
node --import tsx --test --test-concurrency=1 "${ts_tests[@]}"
