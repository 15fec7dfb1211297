#!/usr/bin/env bash
# The campaign node runner's entry in this repository: runs the built runner (dist/campaign-runner.py, from
# campaign_runner/ by build_runner.py) exactly as a node does, with the system's python3 in isolated mode.
# The tests (test/node/runner.test.ts) and the rehearsal (npm start) start it; `--help` describes the runner.
#
#   run-job.sh [--help]
set -o errexit -o nounset -o pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# exec: the runner keeps this process's pid, so a SIGTERM to it (systemd, the tests) reaches the runner.
exec python3 -I "${here}/dist/campaign-runner.py" "$@"
