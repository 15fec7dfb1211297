#!/usr/bin/env bash
# Runs the prep job on this machine (prep.runOn: local): the node runner in process mode, with the
# same settings a prep node gets, so the prepared dataset and its _SUCCESS land in S3 exactly as from
# a prep node. `pulumi up` runs it as a local command with the runner's settings in the environment.
#
#   local-prep.sh         (CAMPAIGN_* settings from the environment, as components/node/runnerSettings.ts renders them)
#
# On this machine the runner must not end the machine: a `shutdown` earlier on PATH only records the
# request, and instance metadata points at a closed local port so no metadata lookups wait.
# Needs: bash, python3 with containers/requirements-cpu.txt (scripts/python-env.sh builds it), the AWS CLI.

set -o errexit -o pipefail -o nounset -o errtrace
trap 'echo "local-prep: error at line ${LINENO}: ${BASH_COMMAND}" >&2' ERR

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${CAMPAIGN_NAME:?CAMPAIGN_NAME is required (the runner settings)}"

python="${CAMPAIGN_PYTHON:-}"
if [[ -z "${python}" ]]; then python="$(bash "${root}/scripts/python-env.sh")"; fi

work="${CAMPAIGN_WORK_DIR:-${root}/.campaign-work/${CAMPAIGN_NAME}/prep}"
shim="${work}/bin"
mkdir -p "${shim}"
cat >"${shim}/shutdown" <<'EOF'
#!/usr/bin/env bash
echo "local-prep: the runner asked to shut down ($*); this machine keeps running" >&2
EOF
chmod +x "${shim}/shutdown"

export PATH="${shim}:${PATH}"
export CAMPAIGN_WORK_DIR="${work}"
export CAMPAIGN_JOB_MODE=process
export CAMPAIGN_JOB_COMMAND="${CAMPAIGN_JOB_COMMAND:-${python} ${root}/containers/prep/main.py}"
export CAMPAIGN_ENV_FILE="${work}/no-runner.env"
export AWS_EC2_METADATA_SERVICE_ENDPOINT="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://127.0.0.1:9}"

exec bash "${root}/scripts/node-runner/run-job.sh"
