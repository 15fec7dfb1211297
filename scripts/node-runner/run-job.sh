#!/usr/bin/env bash
# The campaign node runner: runs one job (prep or train) on a node and ends the node when the job ends.
#
#   run-job.sh            read /etc/campaign/runner.env (when present) and the environment, run the job
#   run-job.sh --help     this text
#
# Every exit path (success, job failure, staging failure, S3 unreachable, watchdog, spot interruption,
# an error in this script) goes through on_exit: stop the job, sync the newest checkpoint, write the
# final status.json, upload the logs, then `shutdown -h now`. The node is launched with
# instanceInitiatedShutdownBehavior=terminate, so billing stops there. docs/node-runner.md has the detail.
#
# Tests and the local rehearsal run this same script against local services: AWS_ENDPOINT_URL points
# every AWS call at an emulator, AWS_EC2_METADATA_SERVICE_ENDPOINT at a fake metadata service,
# `shutdown` / `docker` / `nvidia-smi` earlier on PATH are recorders, and so is the CloudWatch agent's
# ctl that CAMPAIGN_METRICS_AGENT_CTL names.

set -o errexit -o pipefail -o nounset -o errtrace

print_help() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    print_help
    exit 0
fi

# ------------------------------------------------------------------------------------------ settings

CAMPAIGN_ENV_FILE="${CAMPAIGN_ENV_FILE:-/etc/campaign/runner.env}"
if [[ -r "${CAMPAIGN_ENV_FILE}" ]]; then
    set -o allexport
    # shellcheck disable=SC1090
    source "${CAMPAIGN_ENV_FILE}"
    set +o allexport
fi

# Defaults in one block. Required settings have none; validate_settings names the missing ones.
ROLE="${CAMPAIGN_ROLE:-}"
CAMPAIGN="${CAMPAIGN_NAME:-}"
RUN="${CAMPAIGN_RUN:-}"
SPEC_URI="${CAMPAIGN_SPEC_URI:-}"
STATUS_URI="${CAMPAIGN_STATUS_URI:-}"
LOGS_URI="${CAMPAIGN_LOGS_URI:-}"
OUTPUT_URI="${CAMPAIGN_OUTPUT_URI:-}"
CHECKPOINTS_URI="${CAMPAIGN_CHECKPOINTS_URI:-}"
DATA_URI="${CAMPAIGN_DATA_URI:-}"
MODEL_URI="${CAMPAIGN_MODEL_URI:-}"
INPUT_URI="${CAMPAIGN_INPUT_URI:-}"
MODEL_OUTPUT_URI="${CAMPAIGN_MODEL_OUTPUT_URI:-}"
JOB_MODE="${CAMPAIGN_JOB_MODE:-docker}"
IMAGE="${CAMPAIGN_IMAGE:-}"
JOB_COMMAND="${CAMPAIGN_JOB_COMMAND:-}"
MAX_RUNTIME_SECONDS="${CAMPAIGN_MAX_RUNTIME_SECONDS:-}"
GPU_IDLE_MINUTES="${CAMPAIGN_GPU_IDLE_MINUTES:-0}"
GPU_IDLE_SECONDS="${CAMPAIGN_GPU_IDLE_SECONDS:-$((GPU_IDLE_MINUTES * 60))}"
GPU_IDLE_THRESHOLD="${CAMPAIGN_GPU_IDLE_THRESHOLD:-5}"
KEEP_CHECKPOINTS="${CAMPAIGN_KEEP_CHECKPOINTS:-2}"
SECRET_PARAMETERS="${CAMPAIGN_SECRET_PARAMETERS:-}"
STATUS_INTERVAL_SECONDS="${CAMPAIGN_STATUS_INTERVAL_SECONDS:-10}"
SPOT_POLL_SECONDS="${CAMPAIGN_SPOT_POLL_SECONDS:-5}"
STOP_GRACE_SECONDS="${CAMPAIGN_STOP_GRACE_SECONDS:-300}"
SPOT_GRACE_SECONDS="${CAMPAIGN_SPOT_GRACE_SECONDS:-80}"
METRICS_AGENT_CONFIG="${CAMPAIGN_METRICS_AGENT_CONFIG:-}"
METRICS_AGENT_CTL="${CAMPAIGN_METRICS_AGENT_CTL:-/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl}"
CONTAINER_NAME="${CAMPAIGN_CONTAINER_NAME:-campaign-job}"
IMDS_ENDPOINT="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}"
IMDS_ENDPOINT="${IMDS_ENDPOINT%/}"
if [[ -z "${CAMPAIGN_WORK_DIR:-}" ]]; then
    # Local NVMe where the Deep Learning AMI mounts it; the root EBS volume otherwise.
    if [[ -d /opt/dlami/nvme && -w /opt/dlami/nvme ]]; then
        CAMPAIGN_WORK_DIR=/opt/dlami/nvme/campaign
    else
        CAMPAIGN_WORK_DIR=/var/lib/campaign
    fi
fi
WORK_DIR="${CAMPAIGN_WORK_DIR}"

# The AWS CLI v1 reads AWS_DEFAULT_REGION only; retries bounded so an unreachable S3 fails in seconds.
export AWS_REGION="${AWS_REGION:-}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION}}"
export AWS_RETRY_MODE="${AWS_RETRY_MODE:-standard}"
export AWS_MAX_ATTEMPTS="${AWS_MAX_ATTEMPTS:-5}"
export AWS_PAGER=""

# The job's fixed paths (components/campaign/jobSpec.ts jobPaths); on the host they all live under JOB_DIR,
# which docker mounts at /job.
readonly CHECKPOINT_MARKER="_COMPLETE.json"
readonly SUCCESS_MARKER="_SUCCESS"
JOB_DIR="${WORK_DIR}/job"
STATE_DIR="${WORK_DIR}/state"
LOG_DIR="${WORK_DIR}/logs"
RUNNER_LOG="${LOG_DIR}/runner.log"
JOB_LOG="${LOG_DIR}/job.log"
CHECKPOINT_DIR="${JOB_DIR}/checkpoints"
UPLOADED_LIST="${STATE_DIR}/uploaded-checkpoints"
SPOT_NOTICE_FILE="${STATE_DIR}/spot-notice"
JOB_PID_FILE="${STATE_DIR}/job.pid"

# What on_exit reports. FINAL_PHASE stays empty until a path decides it; empty means the runner failed.
FINAL_PHASE=""
REASON=""
PHASE="pending"
JOB_RC=""
JOB_PID=""
JOB_STARTED=0
STOP_KIND=""
STOP_SIGNAL_SENT=0
RUNNER_SIGNAL=""
SPOT_WATCHER_PID=""
PULL_PID=""
LAST_CHECKPOINT=""
RESTORED_STEP=0
INSTANCE_ID=""
INSTANCE_TYPE=""
START_EPOCH="$(date +%s)"
T_BOOT=""
T_INPUTS=""
T_FIRST_STEP=""
T_JOB_END=""
T_SHUTDOWN=""
ERR_LINE=""
ERR_CMD=""
FINISHING=0
JOB_ARGV=()
SECRET_NAMES=()
SECRET_PARAMETER_NAMES=()
ATTEMPT_ID="$(date -u +%Y%m%dT%H%M%SZ)-local"
PULL_START=0
GPU_IDLE_SINCE=""
GPU_WATCHDOG=0

# ------------------------------------------------------------------------------------------ helpers

log() {
    printf '%s run-job[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${PHASE}" "$*" >&2
}

# A handled failure: the reason becomes the final status's reason.
fail() {
    REASON="$1"
    FINAL_PHASE="failed"
    log "FAILED: ${REASON}"
    exit 1
}

now_iso() {
    date -u +%Y-%m-%dT%H:%M:%S.%3NZ
}

# Every AWS call goes through here: AWS_ENDPOINT_URL is passed explicitly, so AWS CLI v2 releases that
# predate its support (v2.13) reach the emulator too. AWS_CALL_TIMEOUT (seconds, 0 = none) bounds a call:
# the exit path sets it so that a hung network cannot keep the node up.
AWS_CALL_TIMEOUT=0
awsc() {
    local -a endpoint=()
    if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then endpoint=(--endpoint-url "${AWS_ENDPOINT_URL}"); fi
    timeout "${AWS_CALL_TIMEOUT}" aws "${endpoint[@]}" "$@"
}

bucket_of() {
    local rest="${1#s3://}"
    printf '%s' "${rest%%/*}"
}

key_of() {
    local rest="${1#s3://}"
    if [[ "${rest}" == */* ]]; then printf '%s' "${rest#*/}"; fi
}

# A prefix URI with exactly one trailing slash.
as_prefix() {
    printf '%s/' "${1%/}"
}

# Last lines of a file on one line, bounded, for a status reason.
tail_brief() {
    local file="$1"
    [[ -s "${file}" ]] || return 0
    tail -n 5 "${file}" | tr '\n' ' ' | sed 's/  */ /g' | tail -c 600
}

# Small JSON and parsing tasks, in the python3 that both node AMIs (Ubuntu DLAMI, Amazon Linux 2023)
# ship; jq is not on every AMI.
PY_HELPER="$(
    cat <<'PY'
import datetime, json, math, os, re, shlex, sys

def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)

PROGRESS_KEYS = ["step", "totalSteps", "epoch", "loss", "learningRate", "tokensPerSec", "etaSeconds", "updatedAt"]

def number(v, nullable, minimum=None, integer=False):
    if v is None:
        return nullable
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, float) and not math.isfinite(v):
        return False
    if integer and not (isinstance(v, int) or float(v).is_integer()):
        return False
    return minimum is None or v >= minimum

def load_progress(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except Exception:
        return None
    if not isinstance(d, dict) or any(k not in d for k in PROGRESS_KEYS):
        return None
    ok = (number(d["step"], False, 0, True) and number(d["totalSteps"], False, 0, True)
          and number(d["epoch"], False, 0) and number(d["loss"], True) and number(d["learningRate"], True)
          and number(d["tokensPerSec"], True, 0) and number(d["etaSeconds"], True, 0)
          and isinstance(d["updatedAt"], str))
    if not ok:
        return None
    p = {k: d[k] for k in PROGRESS_KEYS}
    p["step"], p["totalSteps"] = int(p["step"]), int(p["totalSteps"])
    return p

def cmd_status(args):
    a = dict(x.split("=", 1) for x in args)
    opt = lambda k: a.get(k) or None
    progress = load_progress(a["progress"])
    if progress is not None:
        write_atomic(a["progressLast"], json.dumps(progress))
    else:
        progress = load_progress(a["progressLast"])
    exit_code = opt("exitCode")
    status = {
        "campaign": a["campaign"], "run": a["run"], "role": a["role"], "phase": a["phase"],
        "updatedAt": now(), "instanceId": opt("instanceId"), "instanceType": opt("instanceType"),
        "progress": progress, "exitCode": int(exit_code) if exit_code is not None else None,
        "reason": (opt("reason") or "")[:1000] or None, "lastCheckpoint": opt("lastCheckpoint"),
        "timings": {k: opt(k) for k in ["nodeBoot", "inputsReady", "firstStep", "jobEnd", "shutdown"]},
    }
    write_atomic(a["out"], json.dumps(status, indent=2, allow_nan=False) + "\n")
    print(progress["step"] if progress else -1)

def cmd_phase(path):
    try:
        with open(path) as f:
            d = json.load(f)
        print(d.get("phase", "") if isinstance(d, dict) else "")
    except Exception:
        print("")

def cmd_spec_check(path, role):
    try:
        with open(path) as f:
            spec = json.load(f)
    except Exception as e:
        print("the job spec is not valid JSON: %s" % e)
        sys.exit(1)
    if not isinstance(spec, dict) or "kind" not in spec:
        print("the job spec has no \"kind\" field")
        sys.exit(1)
    if spec["kind"] != role:
        print("the job spec is of kind %r but this node's role is %r" % (spec["kind"], role))
        sys.exit(1)

def cmd_checkpoints(listing, prefix, marker):
    # Prints "<step> complete|partial" for every checkpoint-<step>/ under prefix, ascending.
    with open(listing) as f:
        text = f.read().strip()
    keys = [o["Key"] for o in (json.loads(text).get("Contents") or [])] if text else []
    steps = {}
    for key in keys:
        m = re.match(re.escape(prefix) + r"checkpoint-(\d+)/(.+)$", key)
        if m:
            step = int(m.group(1))
            steps[step] = steps.get(step, False) or m.group(2) == marker
    for step in sorted(steps):
        print(step, "complete" if steps[step] else "partial")

def cmd_split(line):
    sys.stdout.write("".join(arg + "\0" for arg in shlex.split(line)))

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "status":
    cmd_status(args)
elif cmd == "phase":
    cmd_phase(args[0])
elif cmd == "spec-check":
    cmd_spec_check(args[0], args[1])
elif cmd == "checkpoints":
    cmd_checkpoints(args[0], args[1], args[2])
elif cmd == "split":
    cmd_split(args[0])
else:
    sys.exit("unknown helper command " + cmd)
PY
)"

py() {
    python3 -c "${PY_HELPER}" "$@"
}

# ------------------------------------------------------------------------------------------ metadata

# IMDSv2: a token by PUT, then GETs with it. Bounded and quiet: the fake endpoint or no endpoint at all
# (a laptop) must not stall the runner.
IMDS_TOKEN=""
imds_token() {
    curl --silent --fail --max-time 2 --connect-timeout 1 -X PUT \
        -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" "${IMDS_ENDPOINT}/latest/api/token"
}

# imds_get PATH: prints the body on HTTP 200; returns 1 on 404 (no such item), 2 when IMDS is unreachable.
imds_get() {
    local path="${1#/}" body code
    if [[ -z "${IMDS_TOKEN}" ]]; then
        IMDS_TOKEN="$(imds_token)" || {
            IMDS_TOKEN=""
            return 2
        }
    fi
    body="$(mktemp)"
    code="$(curl --silent --max-time 2 --connect-timeout 1 --output "${body}" --write-out '%{http_code}' \
        -H "X-aws-ec2-metadata-token: ${IMDS_TOKEN}" "${IMDS_ENDPOINT}/${path}")" || code="000"
    case "${code}" in
        200)
            cat "${body}"
            rm -f "${body}"
            ;;
        404)
            rm -f "${body}"
            return 1
            ;;
        401)
            IMDS_TOKEN=""
            rm -f "${body}"
            return 2
            ;;
        *)
            rm -f "${body}"
            return 2
            ;;
    esac
}

read_identity() {
    INSTANCE_ID="$(imds_get latest/meta-data/instance-id)" || INSTANCE_ID=""
    INSTANCE_TYPE="$(imds_get latest/meta-data/instance-type)" || INSTANCE_TYPE=""
    if [[ -z "${INSTANCE_ID}" ]]; then
        log "instance metadata not reachable at ${IMDS_ENDPOINT}: no instance id; spot notices will still be polled"
    fi
}

node_boot_time() {
    local uptime
    uptime="$(cut -d. -f1 /proc/uptime 2>/dev/null)" || uptime=0
    date -u -d "@$(($(date +%s) - uptime))" +%Y-%m-%dT%H:%M:%S.000Z
}

# ------------------------------------------------------------------------------------------ status

# write_status [PHASE]: status.json locally, then to S3. A failed upload is logged, not fatal.
write_status() {
    if [[ $# -gt 0 ]]; then PHASE="$1"; fi
    local step
    step="$(py status out="${STATE_DIR}/status.json" progress="${JOB_DIR}/progress.json" \
        progressLast="${STATE_DIR}/progress.last.json" campaign="${CAMPAIGN}" run="${RUN}" role="${ROLE}" \
        phase="${PHASE}" instanceId="${INSTANCE_ID}" instanceType="${INSTANCE_TYPE}" exitCode="${JOB_RC}" \
        reason="${REASON}" lastCheckpoint="${LAST_CHECKPOINT}" nodeBoot="${T_BOOT}" inputsReady="${T_INPUTS}" \
        firstStep="${T_FIRST_STEP}" jobEnd="${T_JOB_END}" shutdown="${T_SHUTDOWN}")" || {
        log "could not render status.json"
        return 0
    }
    cp "${STATE_DIR}/status.json" "${WORK_DIR}/status.json"
    if [[ "${PHASE}" == "starting" || "${PHASE}" == "training" ]] && [[ -z "${T_FIRST_STEP}" ]] &&
        ((step > RESTORED_STEP)); then
        T_FIRST_STEP="$(now_iso)"
        PHASE="training"
        write_status
        return 0
    fi
    [[ -n "${STATUS_URI}" ]] || return 0
    aws_quiet s3 cp "${STATE_DIR}/status.json" "${STATUS_URI}" --content-type application/json ||
        log "status upload to ${STATUS_URI} failed"
}

# Runs an AWS CLI command with its progress output suppressed and errors kept.
aws_quiet() {
    awsc "$@" --only-show-errors
}

# ------------------------------------------------------------------------------------------ S3 transfers

# The AWS CLI's S3 transfer settings, in a config file of our own: the CRT client where AWS CLI v2
# picks it automatically (p4d, p4de, p5*), a wide thread pool elsewhere.
tune_transfers() {
    if [[ -n "${AWS_CONFIG_FILE:-}" || -e "${HOME:-/root}/.aws/config" ]]; then
        log "using the existing AWS CLI config; transfer settings left as they are"
        return 0
    fi
    local version="" concurrency
    if [[ "${INSTANCE_TYPE}" =~ ^(p4d|p4de|p5|p5e|p5en)\. ]]; then version="$(aws --version 2>&1 || true)"; fi
    concurrency=$(($(nproc) * 4))
    ((concurrency < 10)) && concurrency=10
    ((concurrency > 64)) && concurrency=64
    {
        printf '[default]\nregion = %s\ns3 =\n' "${AWS_DEFAULT_REGION}"
        if [[ "${version}" == aws-cli/2* ]]; then
            printf '  preferred_transfer_client = crt\n'
            log "S3 transfers: CRT client (${INSTANCE_TYPE})"
        else
            printf '  max_concurrent_requests = %s\n  max_queue_size = 10000\n' "${concurrency}"
            printf '  multipart_threshold = 64MB\n  multipart_chunksize = 16MB\n'
            log "S3 transfers: ${concurrency} concurrent requests"
        fi
    } >"${STATE_DIR}/aws-config"
    export AWS_CONFIG_FILE="${STATE_DIR}/aws-config"
}

# stage URI DIR LABEL: a prefix (ends in /, or no object of that name) is synced into DIR; a single
# object is copied into DIR under its own name. Logs size, time and throughput.
stage() {
    local uri="$1" dir="$2" label="$3" start end bytes files ms err
    mkdir -p "${dir}"
    start="$(date +%s%N)"
    err="${STATE_DIR}/stage.err"
    if [[ "${uri}" != */ ]] && awsc s3api head-object --bucket "$(bucket_of "${uri}")" --key "$(key_of "${uri}")" \
        >/dev/null 2>"${err}"; then
        aws_quiet s3 cp "${uri}" "${dir}/$(basename "${uri}")" 2>"${err}" ||
            fail "staging ${label} from ${uri} failed: $(tail_brief "${err}")"
    else
        if grep -q -E 'Could not connect|Connect timeout|Unable to locate credentials' "${err}" 2>/dev/null; then
            fail "staging ${label} from ${uri} failed: $(tail_brief "${err}")"
        fi
        aws_quiet s3 sync "$(as_prefix "${uri}")" "${dir}" 2>"${err}" ||
            fail "staging ${label} from ${uri} failed: $(tail_brief "${err}")"
    fi
    end="$(date +%s%N)"
    bytes="$(du -sb "${dir}" | cut -f1)"
    files="$(find "${dir}" -type f | wc -l)"
    ms=$(((end - start) / 1000000))
    ((ms > 0)) || ms=1
    if ((files == 0)); then
        fail "staging ${label}: nothing found at ${uri}"
    fi
    log "staged ${label}: ${files} files, $((bytes / 1048576)) MiB in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s ($((bytes * 1000 / ms / 1048576)) MiB/s) from ${uri}"
}

# upload_dir DIR URI MARKER: DIR's files to URI, then MARKER last (the local one, or an empty one).
upload_dir() {
    local dir="$1" uri="$2" marker="$3" err="${STATE_DIR}/upload.err"
    uri="$(as_prefix "${uri}")"
    aws_quiet s3 sync "${dir}" "${uri}" --exclude "${marker}" 2>"${err}" || return 1
    if [[ ! -e "${dir}/${marker}" ]]; then : >"${dir}/${marker}"; fi
    aws_quiet s3 cp "${dir}/${marker}" "${uri}${marker}" 2>"${err}" || return 1
}

# ------------------------------------------------------------------------------------------ checkpoints

# s3_checkpoints: "<step> complete|partial" lines for CHECKPOINTS_URI, ascending by step.
s3_checkpoints() {
    local listing="${STATE_DIR}/listing.json" prefix
    prefix="$(key_of "$(as_prefix "${CHECKPOINTS_URI}")")"
    awsc s3api list-objects-v2 --bucket "$(bucket_of "${CHECKPOINTS_URI}")" --prefix "${prefix}" \
        --output json >"${listing}" || return 1
    py checkpoints "${listing}" "${prefix}" "${CHECKPOINT_MARKER}"
}

# Restores the highest-step checkpoint whose marker is in S3. A checkpoint without its marker is a
# partial upload and is never used.
restore_checkpoint() {
    local lines step="" err="${STATE_DIR}/restore.err" start
    lines="$(s3_checkpoints 2>"${err}")" || fail "listing checkpoints at ${CHECKPOINTS_URI} failed: $(tail_brief "${err}")"
    step="$(awk '$2 == "complete" { s = $1 } END { print s }' <<<"${lines}")"
    if [[ -z "${step}" ]]; then
        log "no complete checkpoint in ${CHECKPOINTS_URI}: starting from scratch"
        return 0
    fi
    if awk -v s="${step}" '$2 == "partial" && $1 > s { found = 1 } END { exit !found }' <<<"${lines}"; then
        log "ignoring partial checkpoints above checkpoint-${step} (no ${CHECKPOINT_MARKER})"
    fi
    start="$(date +%s)"
    aws_quiet s3 sync "$(as_prefix "${CHECKPOINTS_URI}")checkpoint-${step}/" "${CHECKPOINT_DIR}/checkpoint-${step}" \
        2>"${err}" || fail "restoring checkpoint-${step} failed: $(tail_brief "${err}")"
    [[ -e "${CHECKPOINT_DIR}/checkpoint-${step}/${CHECKPOINT_MARKER}" ]] ||
        fail "restored checkpoint-${step} lacks ${CHECKPOINT_MARKER}"
    echo "${step}" >>"${UPLOADED_LIST}"
    LAST_CHECKPOINT="checkpoint-${step}"
    RESTORED_STEP="${step}"
    log "restored checkpoint-${step} in $(($(date +%s) - start)) s"
}

# Local checkpoints whose marker exists and that are newer than any in S3, ascending by step.
new_local_checkpoints() {
    local dir name step newest
    newest="$(sort -n "${UPLOADED_LIST}" 2>/dev/null | tail -n 1)"
    for dir in "${CHECKPOINT_DIR}"/checkpoint-*; do
        [[ -d "${dir}" && -e "${dir}/${CHECKPOINT_MARKER}" ]] || continue
        name="$(basename "${dir}")"
        step="${name#checkpoint-}"
        [[ "${step}" =~ ^[0-9]+$ ]] || continue
        if [[ -n "${newest}" ]] && ((10#${step} <= newest)); then continue; fi
        echo "${step}"
    done | sort -n
}

# Uploads the newest complete local checkpoints not yet in S3 (at most KEEP_CHECKPOINTS of them; older
# new ones would be pruned at once): the files first, the marker last. Then prunes S3.
sync_checkpoints() {
    [[ "${ROLE}" == "train" && -n "${CHECKPOINTS_URI}" ]] || return 0
    local steps step uri keep="${KEEP_CHECKPOINTS}" err="${STATE_DIR}/ckpt.err" start
    steps="$(new_local_checkpoints)"
    [[ -n "${steps}" ]] || return 0
    if ((keep > 0)); then steps="$(tail -n "${keep}" <<<"${steps}")"; fi
    for step in ${steps}; do
        uri="$(as_prefix "${CHECKPOINTS_URI}")checkpoint-${step}/"
        start="$(date +%s%N)"
        if aws_quiet s3 sync --delete "${CHECKPOINT_DIR}/checkpoint-${step}" "${uri}" \
            --exclude "${CHECKPOINT_MARKER}" 2>"${err}" &&
            aws_quiet s3 cp "${CHECKPOINT_DIR}/checkpoint-${step}/${CHECKPOINT_MARKER}" \
                "${uri}${CHECKPOINT_MARKER}" 2>"${err}"; then
            echo "${step}" >>"${UPLOADED_LIST}"
            LAST_CHECKPOINT="checkpoint-${step}"
            log "uploaded checkpoint-${step} in $((($(date +%s%N) - start) / 1000000)) ms"
        else
            log "uploading checkpoint-${step} failed (will retry): $(tail_brief "${err}")"
            return 0
        fi
    done
    prune_checkpoints || log "pruning checkpoints failed (will retry)"
}

# Keeps the KEEP_CHECKPOINTS newest complete checkpoints in S3 (0 keeps all). For each older one the
# marker goes first, so a half-deleted checkpoint is never taken for a complete one. Partial uploads
# below the newest complete checkpoint are leftovers and go too.
prune_checkpoints() {
    ((KEEP_CHECKPOINTS > 0)) || return 0
    local lines newest victims step prefix
    lines="$(s3_checkpoints)" || return 1
    newest="$(awk '$2 == "complete" { s = $1 } END { print s }' <<<"${lines}")"
    [[ -n "${newest}" ]] || return 0
    victims="$(awk -v keep="${KEEP_CHECKPOINTS}" -v newest="${newest}" '
        $2 == "complete" { c[++n] = $1 }
        $2 == "partial" && $1 < newest { print $1 }
        END { for (i = 1; i <= n - keep; i++) print c[i] }' <<<"${lines}")"
    prefix="$(as_prefix "${CHECKPOINTS_URI}")"
    for step in ${victims}; do
        awsc s3 rm "${prefix}checkpoint-${step}/${CHECKPOINT_MARKER}" --only-show-errors || return 1
        awsc s3 rm "${prefix}checkpoint-${step}/" --recursive --only-show-errors || return 1
        log "pruned checkpoint-${step} from S3"
    done
}

# ------------------------------------------------------------------------------------------ spot notices

# A background loop: on a spot interruption notice it records the notice and signals the job at once,
# whatever the main loop is busy with (an upload, say).
spot_watch() {
    trap - EXIT ERR TERM INT
    set +o errexit
    PHASE="spot-watch"
    local body
    while true; do
        body="$(imds_get latest/meta-data/spot/instance-action)"
        if [[ $? -eq 0 && -n "${body}" ]]; then
            printf '%s\n' "${body}" >"${SPOT_NOTICE_FILE}"
            log "spot interruption notice: ${body}"
            signal_job TERM
            exit 0
        fi
        sleep "${SPOT_POLL_SECONDS}"
    done
}

start_spot_watcher() {
    spot_watch &
    SPOT_WATCHER_PID=$!
}

stop_spot_watcher() {
    if [[ -n "${SPOT_WATCHER_PID}" ]]; then
        kill "${SPOT_WATCHER_PID}" 2>/dev/null || true
        wait "${SPOT_WATCHER_PID}" 2>/dev/null || true
        SPOT_WATCHER_PID=""
    fi
}

spot_noticed() {
    [[ -s "${SPOT_NOTICE_FILE}" ]]
}

# ------------------------------------------------------------------------------------------ the job

# signal_job TERM|KILL: to the container, or to the job process (KILL: its whole process group).
signal_job() {
    local sig="$1" pid
    if [[ "${JOB_MODE}" == "docker" ]]; then
        docker kill --signal "${sig}" "${CONTAINER_NAME}" >/dev/null 2>&1 || true
        return 0
    fi
    pid="$(cat "${JOB_PID_FILE}" 2>/dev/null)" || return 0
    [[ -n "${pid}" ]] || return 0
    if [[ "${sig}" == "KILL" ]]; then
        kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
    else
        kill "-${sig}" "${pid}" 2>/dev/null || true
    fi
}

job_alive() {
    [[ -n "${JOB_PID}" ]] && kill -0 "${JOB_PID}" 2>/dev/null
}

docker_login() {
    local registry="${IMAGE%%/*}"
    if [[ "${registry}" =~ ^[0-9]{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$ ]]; then
        local region="${BASH_REMATCH[1]}"
        awsc ecr get-login-password --region "${region}" |
            docker login --username AWS --password-stdin "${registry}" >/dev/null ||
            fail "docker login to ${registry} failed"
        log "logged in to ${registry}"
    fi
}

# docker pull runs in the background while the inputs are staged: the two are the node's slowest steps.
start_image_pull() {
    [[ "${JOB_MODE}" == "docker" ]] || return 0
    docker_login
    log "pulling ${IMAGE} (in the background)"
    docker pull --quiet "${IMAGE}" >"${LOG_DIR}/docker-pull.log" 2>&1 &
    PULL_PID=$!
    PULL_START="$(date +%s)"
}

wait_image_pull() {
    [[ -n "${PULL_PID}" ]] || return 0
    wait "${PULL_PID}" || fail "docker pull ${IMAGE} failed: $(tail_brief "${LOG_DIR}/docker-pull.log")"
    PULL_PID=""
    log "image ready $(($(date +%s) - PULL_START)) s after the pull started"
}

# GPU nodes: the CloudWatch agent starts right before the job, not at boot. The GPU-idle alarm
# (treatMissingData: missing) then has no data, and cannot fire, while the image is pulled and the inputs
# staged, which can take longer than its idle window. A missing agent or a failed start is not fatal:
# this runner's own GPU-idle watchdog still guards the job.
start_metrics_agent() {
    [[ -n "${METRICS_AGENT_CONFIG}" ]] || return 0
    local err="${STATE_DIR}/metrics-agent.err"
    if [[ ! -x "${METRICS_AGENT_CTL}" ]]; then
        log "${METRICS_AGENT_CTL} is not installed: no GPU metrics in CloudWatch"
        return 0
    fi
    if timeout 120 "${METRICS_AGENT_CTL}" -a fetch-config -m ec2 -s -c "file:${METRICS_AGENT_CONFIG}" \
        >"${err}" 2>&1; then
        log "CloudWatch agent started with ${METRICS_AGENT_CONFIG}"
    else
        log "starting the CloudWatch agent failed (carrying on without GPU metrics): $(tail_brief "${err}")"
    fi
}

start_job() {
    local -a secret_env=()
    local name
    for name in "${SECRET_NAMES[@]}"; do
        secret_env+=(-e "${name}")
    done
    log "starting the job (${JOB_MODE})"
    if [[ "${JOB_MODE}" == "docker" ]]; then
        local -a gpus=()
        if [[ "${ROLE}" == "train" ]]; then gpus=(--gpus all); fi
        docker rm --force "${CONTAINER_NAME}" >/dev/null 2>&1 || true
        # Secrets pass by name (-e NAME): their values come from this process's environment and never
        # appear on a command line.
        docker run --rm --name "${CONTAINER_NAME}" "${gpus[@]}" --ipc=host --ulimit memlock=-1 \
            --ulimit stack=67108864 --network host -v "${JOB_DIR}:/job" \
            -e CAMPAIGN_SPEC=/job/spec.json -e CAMPAIGN_INPUT_DIR=/job/input -e CAMPAIGN_DATA_DIR=/job/data \
            -e CAMPAIGN_MODEL_DIR=/job/model -e CAMPAIGN_CHECKPOINT_DIR=/job/checkpoints \
            -e CAMPAIGN_OUTPUT_DIR=/job/output -e CAMPAIGN_PROGRESS_FILE=/job/progress.json \
            "${secret_env[@]}" "${IMAGE}" "${JOB_ARGV[@]}" </dev/null >>"${JOB_LOG}" 2>&1 &
        JOB_PID=$!
    else
        (
            export CAMPAIGN_SPEC="${JOB_DIR}/spec.json" CAMPAIGN_INPUT_DIR="${JOB_DIR}/input" \
                CAMPAIGN_DATA_DIR="${JOB_DIR}/data" CAMPAIGN_MODEL_DIR="${JOB_DIR}/model" \
                CAMPAIGN_CHECKPOINT_DIR="${CHECKPOINT_DIR}" CAMPAIGN_OUTPUT_DIR="${JOB_DIR}/output" \
                CAMPAIGN_PROGRESS_FILE="${JOB_DIR}/progress.json"
            # Its own session and process group, so a last-resort SIGKILL reaches every child.
            exec setsid "${JOB_ARGV[@]}"
        ) </dev/null >>"${JOB_LOG}" 2>&1 &
        JOB_PID=$!
    fi
    echo "${JOB_PID}" >"${JOB_PID_FILE}"
    JOB_STARTED=1
}

# GPU utilisation: the busiest GPU's percentage, or nothing when nvidia-smi cannot say.
gpu_utilisation() {
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null |
        awk 'BEGIN { m = -1 } $1 ~ /^[0-9]+$/ { if ($1 + 0 > m) m = $1 + 0 } END { if (m >= 0) print m }'
}

# Sets STOP_KIND=gpu-idle when every GPU stayed under the threshold for the whole window.
check_gpu_idle() {
    ((GPU_WATCHDOG)) || return 0
    local util now
    util="$(gpu_utilisation)"
    now="$(date +%s)"
    if [[ -z "${util}" ]]; then
        return 0
    fi
    if ((util < GPU_IDLE_THRESHOLD)); then
        [[ -n "${GPU_IDLE_SINCE}" ]] || GPU_IDLE_SINCE="${now}"
        if ((now - GPU_IDLE_SINCE >= GPU_IDLE_SECONDS)); then
            STOP_KIND="gpu-idle"
        fi
    else
        GPU_IDLE_SINCE=""
    fi
}

# The main loop while the job runs: status every STATUS_INTERVAL_SECONDS (with checkpoint uploads and
# the GPU sample), limits and notices every second.
monitor_job() {
    local last=0 now
    while job_alive; do
        now="$(date +%s)"
        if spot_noticed; then
            STOP_KIND="spot"
        elif [[ -n "${RUNNER_SIGNAL}" ]]; then
            STOP_KIND="signal"
        elif ((now - START_EPOCH >= MAX_RUNTIME_SECONDS)); then
            STOP_KIND="max-runtime"
        elif ((now - last >= STATUS_INTERVAL_SECONDS)); then
            sync_checkpoints
            check_gpu_idle
            write_status
            last="${now}"
        fi
        [[ -z "${STOP_KIND}" ]] || break
        sleep 1
    done
    # The job may have ended on the watcher's SIGTERM before this loop saw the notice.
    if [[ -z "${STOP_KIND}" ]]; then
        if spot_noticed; then
            STOP_KIND="spot"
        elif [[ -n "${RUNNER_SIGNAL}" ]]; then
            STOP_KIND="signal"
        fi
    fi
}

# stop_job GRACE: SIGTERM (the job saves a checkpoint and exits 75), then SIGKILL after GRACE seconds.
stop_job() {
    local grace="$1" deadline
    job_alive || return 0
    # The spot watcher signals the job the moment it sees a notice; a second SIGTERM could land while the
    # job is exiting and turn its clean exit 75 into 143.
    if ((!STOP_SIGNAL_SENT)) && ! spot_noticed; then
        log "sending SIGTERM to the job; waiting up to ${grace} s for its checkpoint"
        signal_job TERM
        STOP_SIGNAL_SENT=1
    fi
    deadline=$(($(date +%s) + grace))
    while job_alive && (($(date +%s) < deadline)); do
        sleep 0.5
    done
    if job_alive; then
        log "the job did not stop within ${grace} s: SIGKILL"
        signal_job KILL
    fi
}

# Waits for the job and records its exit code and end time.
reap_job() {
    [[ -n "${JOB_PID}" ]] || return 0
    JOB_RC=0
    wait "${JOB_PID}" || JOB_RC=$?
    JOB_PID=""
    T_JOB_END="$(now_iso)"
    log "the job exited with code ${JOB_RC}"
}

describe_exit() {
    case "$1" in
        0) echo "success" ;;
        65) echo "data refused" ;;
        75) echo "stopped after saving a checkpoint" ;;
        78) echo "configuration error" ;;
        137) echo "killed" ;;
        *) echo "failure" ;;
    esac
}

# ------------------------------------------------------------------------------------------ exit path

on_err() {
    ERR_LINE="$1"
    ERR_CMD="$2"
}

on_signal() {
    RUNNER_SIGNAL="$1"
    log "received SIG$1"
    if ((JOB_STARTED)) && [[ -z "${JOB_RC}" ]]; then
        return 0 # monitor_job sees RUNNER_SIGNAL and stops the job gracefully
    fi
    REASON="the runner was stopped by SIG$1 before the job ran"
    FINAL_PHASE="failed"
    exit 143
}

# The one way out. Runs on every exit; never fails; ends in exactly one `shutdown -h now`.
on_exit() {
    local rc=$?
    set +o errexit
    trap - ERR TERM INT
    ((FINISHING)) && return
    FINISHING=1
    AWS_CALL_TIMEOUT=120

    if [[ -z "${FINAL_PHASE}" ]]; then
        FINAL_PHASE="failed"
        REASON="runner error (exit ${rc})${ERR_LINE:+ at line ${ERR_LINE}: ${ERR_CMD}}"
        log "FAILED: ${REASON}"
    fi
    stop_spot_watcher
    if [[ -n "${PULL_PID}" ]]; then kill "${PULL_PID}" 2>/dev/null; fi

    if [[ "${FINAL_PHASE}" != "noop" ]]; then
        if job_alive; then
            stop_job "${STOP_GRACE_SECONDS}"
        fi
        reap_job
        if ((JOB_STARTED)); then sync_checkpoints; fi
        T_SHUTDOWN="$(now_iso)"
        # The final status and the logs go up side by side: the node is billed until the shutdown call.
        write_status "${FINAL_PHASE}" &
        local status_pid=$!
        upload_logs
        wait "${status_pid}"
        log "final status ${FINAL_PHASE}${REASON:+: ${REASON}}; shutting down"
    fi
    shutdown -h now
    case "${FINAL_PHASE}" in
        succeeded | noop) exit 0 ;;
        interrupted) exit 75 ;;
        *) exit 1 ;;
    esac
}

# runner.log and job.log under CAMPAIGN_LOGS_URI, and a copy of both under attempts/<start>-<instance>/,
# so a spot-interrupted attempt's logs survive the attempt that resumes it.
upload_logs() {
    [[ -n "${LOGS_URI}" && -d "${LOG_DIR}" ]] || return 0
    local attempt="${LOG_DIR}/attempts/${ATTEMPT_ID}"
    mkdir -p "${attempt}"
    cp "${RUNNER_LOG}" "${attempt}/runner.log" 2>/dev/null
    cp "${JOB_LOG}" "${attempt}/job.log" 2>/dev/null
    aws_quiet s3 cp --recursive "${LOG_DIR}" "$(as_prefix "${LOGS_URI}")" \
        --exclude "*" --include runner.log --include job.log --include "attempts/${ATTEMPT_ID}/*" ||
        log "log upload to ${LOGS_URI} failed"
}

# ------------------------------------------------------------------------------------------ steps

validate_settings() {
    local missing=() name
    for name in CAMPAIGN_ROLE CAMPAIGN_NAME CAMPAIGN_RUN AWS_REGION CAMPAIGN_SPEC_URI CAMPAIGN_STATUS_URI \
        CAMPAIGN_LOGS_URI CAMPAIGN_OUTPUT_URI CAMPAIGN_MAX_RUNTIME_SECONDS; do
        [[ -n "${!name:-}" ]] || missing+=("${name}")
    done
    ((${#missing[@]} == 0)) || fail "missing settings: ${missing[*]}"
    [[ "${ROLE}" == "prep" || "${ROLE}" == "train" ]] || fail "CAMPAIGN_ROLE must be prep or train, not '${ROLE}'"
    [[ "${JOB_MODE}" == "docker" || "${JOB_MODE}" == "process" ]] ||
        fail "CAMPAIGN_JOB_MODE must be docker or process, not '${JOB_MODE}'"
    if [[ "${JOB_MODE}" == "docker" && -z "${IMAGE}" ]]; then fail "CAMPAIGN_IMAGE is required in docker mode"; fi
    if [[ "${JOB_MODE}" == "process" && -z "${JOB_COMMAND}" ]]; then
        fail "CAMPAIGN_JOB_COMMAND is required in process mode"
    fi
    for name in MAX_RUNTIME_SECONDS GPU_IDLE_SECONDS KEEP_CHECKPOINTS STATUS_INTERVAL_SECONDS SPOT_POLL_SECONDS \
        STOP_GRACE_SECONDS SPOT_GRACE_SECONDS; do
        [[ "${!name}" =~ ^[0-9]+$ ]] || fail "${name} must be a whole number, not '${!name}'"
    done
    [[ "${GPU_IDLE_THRESHOLD}" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
        fail "CAMPAIGN_GPU_IDLE_THRESHOLD must be a number, not '${GPU_IDLE_THRESHOLD}'"
    GPU_IDLE_THRESHOLD="${GPU_IDLE_THRESHOLD%%.*}"
    ((STATUS_INTERVAL_SECONDS > 0)) || STATUS_INTERVAL_SECONDS=1
    ((SPOT_POLL_SECONDS > 0)) || SPOT_POLL_SECONDS=1
    local uri
    for uri in "${SPEC_URI}" "${STATUS_URI}" "${LOGS_URI}" "${OUTPUT_URI}" "${CHECKPOINTS_URI}" "${DATA_URI}" \
        "${MODEL_URI}" "${INPUT_URI}" "${MODEL_OUTPUT_URI}"; do
        [[ -z "${uri}" || "${uri}" =~ ^s3://[a-z0-9][a-z0-9.-]+[a-z0-9](/.*)?$ ]] || fail "not an s3:// URI: '${uri}'"
    done
    if [[ "${ROLE}" == "train" && -z "${DATA_URI}" ]]; then fail "CAMPAIGN_DATA_URI is required for train"; fi
    local tool
    for tool in aws python3 curl setsid; do
        command -v "${tool}" >/dev/null || fail "${tool} is not installed"
    done
    if [[ "${JOB_MODE}" == "docker" ]]; then command -v docker >/dev/null || fail "docker is not installed"; fi
    if [[ -n "${JOB_COMMAND}" ]]; then
        py split "${JOB_COMMAND}" >/dev/null 2>&1 || fail "CAMPAIGN_JOB_COMMAND does not parse: ${JOB_COMMAND}"
        mapfile -d '' JOB_ARGV < <(py split "${JOB_COMMAND}")
        ((${#JOB_ARGV[@]} > 0)) || fail "CAMPAIGN_JOB_COMMAND is empty"
    fi
    local -a pairs=()
    local pair
    IFS=, read -r -a pairs <<<"${SECRET_PARAMETERS}"
    for pair in "${pairs[@]}"; do
        [[ -n "${pair}" ]] || continue
        [[ "${pair}" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(/?[A-Za-z0-9_.:/-]+)$ ]] ||
            fail "CAMPAIGN_SECRET_PARAMETERS entry '${pair%%=*}' is not NAME=/ssm/parameter/name"
        SECRET_NAMES+=("${BASH_REMATCH[1]}")
        SECRET_PARAMETER_NAMES+=("${BASH_REMATCH[2]}")
    done
    if ((GPU_IDLE_SECONDS > 0)); then
        if command -v nvidia-smi >/dev/null; then
            GPU_WATCHDOG=1
        else
            log "nvidia-smi not found: the GPU-idle watchdog is off"
        fi
    fi
}

prepare_work_dir() {
    mkdir -p "${WORK_DIR}" "${LOG_DIR}"
    # A rerun on the same node (after a reboot) starts clean, except for staged inputs, which sync reuses.
    rm -rf "${STATE_DIR}" "${CHECKPOINT_DIR}" "${JOB_DIR}/output" "${JOB_DIR}/progress.json" "${JOB_DIR}/spec.json"
    mkdir -p "${STATE_DIR}" "${CHECKPOINT_DIR}" "${JOB_DIR}/output" "${JOB_DIR}/input" "${JOB_DIR}/data" \
        "${JOB_DIR}/model"
    : >"${UPLOADED_LIST}"
    : >>"${JOB_LOG}"
}

# Idempotent start: a run whose status already says succeeded is left alone and the node ends at once.
check_previous_status() {
    local err="${STATE_DIR}/status.err" phase
    if awsc s3 cp "${STATUS_URI}" "${STATE_DIR}/previous-status.json" --only-show-errors 2>"${err}"; then
        phase="$(py phase "${STATE_DIR}/previous-status.json")"
        log "previous status: ${phase:-unreadable}"
        if [[ "${phase}" == "succeeded" ]]; then
            FINAL_PHASE="noop"
            log "this run already succeeded: nothing to do"
            exit 0
        fi
    elif grep -q -E '\(404\)|NoSuchKey|Not Found' "${err}"; then
        log "no previous status: a fresh start"
    else
        fail "S3 unreachable or refused reading ${STATUS_URI}: $(tail_brief "${err}")"
    fi
}

fetch_spec() {
    local err="${STATE_DIR}/spec.err" problem
    awsc s3 cp "${SPEC_URI}" "${JOB_DIR}/spec.json" --only-show-errors 2>"${err}" ||
        fail "cannot download the job spec ${SPEC_URI}: $(tail_brief "${err}")"
    problem="$(py spec-check "${JOB_DIR}/spec.json" "${ROLE}")" || fail "${problem} (${SPEC_URI})"
}

# Secrets: SSM SecureString parameters into the environment; names are logged, values never.
read_secrets() {
    local i name parameter value err="${STATE_DIR}/ssm.err"
    for i in "${!SECRET_NAMES[@]}"; do
        name="${SECRET_NAMES[i]}"
        parameter="${SECRET_PARAMETER_NAMES[i]}"
        value="$(awsc ssm get-parameter --name "${parameter}" --with-decryption --query Parameter.Value \
            --output text 2>"${err}")" || fail "cannot read SSM parameter ${parameter}: $(tail_brief "${err}")"
        export "${name}=${value}"
        log "secret ${name} read from SSM parameter ${parameter}"
    done
}

stage_inputs() {
    case "${ROLE}" in
        prep)
            # No input URI: the job reads its data from the Hugging Face Hub itself.
            if [[ -n "${INPUT_URI}" ]]; then stage "${INPUT_URI}" "${JOB_DIR}/input" "input"; fi
            ;;
        train)
            stage "${DATA_URI}" "${JOB_DIR}/data" "dataset"
            [[ -e "${JOB_DIR}/data/${SUCCESS_MARKER}" ]] ||
                fail "the dataset at ${DATA_URI} is incomplete: no ${SUCCESS_MARKER} marker"
            if [[ -n "${MODEL_URI}" ]]; then stage "${MODEL_URI}" "${JOB_DIR}/model" "base model"; fi
            if [[ -n "${CHECKPOINTS_URI}" ]]; then restore_checkpoint; fi
            ;;
    esac
}

upload_outputs() {
    local err="${STATE_DIR}/upload.err" start
    start="$(date +%s)"
    if [[ "${ROLE}" == "prep" && -n "${MODEL_OUTPUT_URI}" ]] && [[ -n "$(ls -A "${JOB_DIR}/model")" ]]; then
        aws_quiet s3 sync "${JOB_DIR}/model" "$(as_prefix "${MODEL_OUTPUT_URI}")" 2>"${err}" ||
            fail "uploading the staged model to ${MODEL_OUTPUT_URI} failed: $(tail_brief "${err}")"
    fi
    upload_dir "${JOB_DIR}/output" "${OUTPUT_URI}" "${SUCCESS_MARKER}" ||
        fail "uploading the output to ${OUTPUT_URI} failed: $(tail_brief "${err}")"
    log "uploaded the output to ${OUTPUT_URI} in $(($(date +%s) - start)) s"
}

main() {
    T_BOOT="$(node_boot_time)"
    prepare_work_dir
    exec > >(tee -a "${RUNNER_LOG}") 2>&1
    validate_settings
    read_identity
    ATTEMPT_ID="$(date -u +%Y%m%dT%H%M%SZ)-${INSTANCE_ID:-local}"
    log "campaign ${CAMPAIGN} run ${RUN} role ${ROLE} mode ${JOB_MODE} on ${INSTANCE_TYPE:-unknown} ${INSTANCE_ID:-}"
    start_spot_watcher
    tune_transfers

    check_previous_status
    write_status "preparing"
    fetch_spec
    read_secrets
    start_image_pull
    stage_inputs
    wait_image_pull
    T_INPUTS="$(now_iso)"
    if spot_noticed; then
        FINAL_PHASE="interrupted"
        REASON="spot interruption notice before the job started: $(head -c 300 "${SPOT_NOTICE_FILE}")"
        exit 75
    fi
    write_status "staged"
    log "inputs ready $(($(date +%s) - START_EPOCH)) s after the runner started"

    start_metrics_agent
    start_job
    write_status "starting"
    monitor_job
    case "${STOP_KIND}" in
        # A spot notice leaves two minutes; a SIGTERM from systemd leaves TimeoutStopSec (150 s).
        spot | signal) stop_job "${SPOT_GRACE_SECONDS}" ;;
        "") ;;
        *) stop_job "${STOP_GRACE_SECONDS}" ;;
    esac
    reap_job
    sync_checkpoints

    # A job that exited 0 finished its work, even if a notice or a limit came in its last moments: its
    # output is uploaded and the run succeeds, rather than a new node redoing finished work.
    if ((JOB_RC != 0)); then
        case "${STOP_KIND}" in
            spot)
                FINAL_PHASE="interrupted"
                REASON="spot interruption notice: $(head -c 300 "${SPOT_NOTICE_FILE}"); job exit ${JOB_RC} ($(describe_exit "${JOB_RC}"))"
                exit 75
                ;;
            max-runtime)
                fail "stopped at the max runtime of ${MAX_RUNTIME_SECONDS} s; job exit ${JOB_RC} ($(describe_exit "${JOB_RC}"))"
                ;;
            gpu-idle)
                fail "stopped by the GPU-idle watchdog: utilisation under ${GPU_IDLE_THRESHOLD}% for ${GPU_IDLE_SECONDS} s; job exit ${JOB_RC} ($(describe_exit "${JOB_RC}"))"
                ;;
            signal)
                fail "the runner was stopped by SIG${RUNNER_SIGNAL}; job exit ${JOB_RC} ($(describe_exit "${JOB_RC}"))"
                ;;
        esac
    fi
    if ((JOB_RC != 0)); then
        fail "the job exited with code ${JOB_RC} ($(describe_exit "${JOB_RC}")): $(tail_brief "${JOB_LOG}")"
    fi
    write_status "uploading"
    upload_outputs
    FINAL_PHASE="succeeded"
    REASON=""
}

trap 'on_err "${LINENO}" "${BASH_COMMAND}"' ERR
trap on_exit EXIT
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

main "$@"
