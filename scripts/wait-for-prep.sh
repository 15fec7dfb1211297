#!/usr/bin/env bash
# The prep gate: waits until the prepared dataset is complete in S3, so no GPU is requested before it is.
#
#   wait-for-prep.sh --marker URI --status URI --logs URI --max-seconds N [--instance-id I] [--interval S]
#
# Succeeds as soon as the dataset's _SUCCESS marker (--marker) exists. Fails fast, printing the last lines of
# the prep job's logs (--logs, a prefix), when the prep's status.json (--status) says failed or interrupted
# (with --instance-id, only a status written by that prep node counts: an earlier attempt's failure does
# not). Fails when N seconds pass (the prep cap, prep.maxHours). The URIs come from components/campaign/
# layout.ts through gateCommand (components/campaign/gate.ts). `pulumi up` runs it as a local command; it
# uses the operator's AWS CLI and credentials, and honours AWS_ENDPOINT_URL (tests use a local S3 emulator).
#
# Environment: CAMPAIGN_GATE_INTERVAL (seconds between polls, default 15), CAMPAIGN_GATE_LOG_LINES (50).

set -o errexit -o pipefail -o nounset -o errtrace
trap 'echo "wait-for-prep: error at line ${LINENO}: ${BASH_COMMAND}" >&2' ERR

marker_uri=""
status_uri=""
logs_uri=""
max_seconds=""
instance_id=""
interval="${CAMPAIGN_GATE_INTERVAL:-15}"
log_lines="${CAMPAIGN_GATE_LOG_LINES:-50}"
endpoint_args=()
if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then endpoint_args=(--endpoint-url "${AWS_ENDPOINT_URL}"); fi

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "wait-for-prep: $*" >&2
    exit 1
}

while (($# > 0)); do
    case "$1" in
        --marker) marker_uri="${2:-}"; shift 2 ;;
        --status) status_uri="${2:-}"; shift 2 ;;
        --logs) logs_uri="${2:-}"; shift 2 ;;
        --max-seconds) max_seconds="${2:-}"; shift 2 ;;
        --instance-id) instance_id="${2:-}"; shift 2 ;;
        --interval) interval="${2:-}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

s3_uri_re='^s3://([^/]+)/(.+)$'
for arg in "--marker ${marker_uri}" "--status ${status_uri}" "--logs ${logs_uri}"; do
    [[ "${arg#* }" =~ ${s3_uri_re} ]] || die "${arg%% *} must be an s3://bucket/key URI, got '${arg#* }'"
done
[[ "${marker_uri}" =~ ${s3_uri_re} ]] && bucket="${BASH_REMATCH[1]}" && marker_key="${BASH_REMATCH[2]}"
[[ "${status_uri}" =~ ${s3_uri_re} ]] && status_bucket="${BASH_REMATCH[1]}" && status_key="${BASH_REMATCH[2]}"
[[ "${logs_uri}" =~ ${s3_uri_re} ]] && logs_bucket="${BASH_REMATCH[1]}" && logs_prefix="${BASH_REMATCH[2]}"
[[ "${status_bucket}" == "${bucket}" && "${logs_bucket}" == "${bucket}" ]] || die "--marker, --status and --logs must name one bucket"
[[ "${max_seconds}" =~ ^[0-9]+$ ]] || die "--max-seconds must be a whole number, got '${max_seconds}'"
[[ "${interval}" =~ ^[0-9]+$ && "${interval}" -gt 0 ]] || die "--interval must be a positive whole number, got '${interval}'"
command -v aws >/dev/null || die "the AWS CLI (aws) is not installed; it is needed to watch s3://${bucket}"

# exists KEY: 0 when the object exists, 1 when it does not (404/403), 2 on any other error.
exists() {
    local key="$1" out
    if out="$(aws "${endpoint_args[@]}" s3api head-object --bucket "${bucket}" --key "${key}" 2>&1 >/dev/null)"; then
        return 0
    fi
    if [[ "${out}" == *"404"* || "${out}" == *"Not Found"* || "${out}" == *"403"* || "${out}" == *"Forbidden"* || "${out}" == *"NoSuchBucket"* ]]; then
        return 1
    fi
    echo "wait-for-prep: checking s3://${bucket}/${key}: ${out}" >&2
    return 2
}

# json_field NAME BODY: a string field's value from a JSON document (first occurrence).
json_field() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" <<<"$2" | head -n 1
}

# prep_phase: the phase in status.json, empty when there is none yet or it is another node's.
prep_phase() {
    local body
    body="$(aws "${endpoint_args[@]}" s3 cp "s3://${bucket}/${status_key}" - 2>/dev/null)" || return 0
    if [[ -n "${instance_id}" && "$(json_field instanceId "${body}")" != "${instance_id}" ]]; then
        return 0
    fi
    json_field phase "${body}"
}

# prep_reason: the reason in status.json (why the prep failed, as the node runner recorded it), unescaped
# for display; empty when there is none. A JSON string may hold escaped quotes, so they are matched too.
prep_reason() {
    local body
    body="$(aws "${endpoint_args[@]}" s3 cp "s3://${bucket}/${status_key}" - 2>/dev/null)" || return 0
    sed -n -E 's/.*"reason"[[:space:]]*:[[:space:]]*"(([^"\\]|\\.)*)".*/\1/p' <<<"${body}" | head -n 1 |
        sed -E 's/\\\\/\x01/g; s/\\"/"/g; s/\\[nrt]/ /g; s/\\\//\//g; s/\x01/\\/g'
}

# print_logs: the last lines of every log under the prep's logs/ (attempt copies excluded).
print_logs() {
    local keys key
    keys="$(aws "${endpoint_args[@]}" s3api list-objects-v2 --bucket "${bucket}" --prefix "${logs_prefix}" \
        --query 'Contents[].Key' --output text 2>/dev/null)" || keys=""
    for key in ${keys}; do
        [[ "${key}" == "None" || "${key}" == *"/attempts/"* ]] && continue
        echo "---- last ${log_lines} lines of s3://${bucket}/${key}" >&2
        aws "${endpoint_args[@]}" s3 cp "s3://${bucket}/${key}" - 2>/dev/null | tail -n "${log_lines}" >&2 || true
    done
}

start=${SECONDS}
echo "wait-for-prep: waiting for s3://${bucket}/${marker_key} (at most ${max_seconds}s)"
while true; do
    rc=0
    exists "${marker_key}" || rc=$?
    if ((rc == 0)); then
        echo "wait-for-prep: prepared dataset ready after $((SECONDS - start))s"
        exit 0
    fi
    phase="$(prep_phase)"
    case "${phase}" in
        failed | interrupted)
            print_logs
            reason="$(prep_reason)"
            die "prep ${phase}${reason:+: ${reason}} (s3://${bucket}/${status_key}); no GPU node was requested. Fix the cause and run pulumi up --refresh"
            ;;
        succeeded)
            # The runner writes _SUCCESS before the final status; give S3 one more look.
            exists "${marker_key}" && { echo "wait-for-prep: prepared dataset ready"; exit 0; }
            die "prep says succeeded but s3://${bucket}/${marker_key} is missing"
            ;;
    esac
    if ((SECONDS - start >= max_seconds)); then
        print_logs
        die "no s3://${bucket}/${marker_key} after ${max_seconds}s (the prep cap); last phase: ${phase:-none}"
    fi
    sleep "${interval}"
done
