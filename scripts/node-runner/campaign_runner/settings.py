"""The runner's settings: CAMPAIGN_* variables (from /etc/campaign/runner.env and the environment) read into
one frozen dataclass and validated before any work. Every problem names its variable; all are reported at once.

components/node/runnerSettings.ts renders these names; docs/node-runner.md lists them with their defaults.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]+[a-z0-9](/.*)?$")
SECRET_ENTRY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(/?[A-Za-z0-9_.:/-]+)$")
VOLUME_ID = re.compile(r"^vol-[0-9a-f]{8,17}$")
DEFAULT_ENV_FILE = "/etc/campaign/runner.env"
DEFAULT_AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
DLAMI_NVME = "/opt/dlami/nvme"

REQUIRED = ("CAMPAIGN_ROLE", "CAMPAIGN_NAME", "CAMPAIGN_RUN", "AWS_REGION", "CAMPAIGN_SPEC_URI",
            "CAMPAIGN_STATUS_URI", "CAMPAIGN_LOGS_URI", "CAMPAIGN_OUTPUT_URI", "CAMPAIGN_MAX_RUNTIME_SECONDS")


class SettingsError(Exception):
    """One or more settings are missing or malformed; the message names each variable and what it needs."""

    def __init__(self, problems: List[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    role: str
    campaign: str
    run: str
    region: str
    spec_uri: str
    status_uri: str
    logs_uri: str
    output_uri: str
    checkpoints_uri: Optional[str]
    data_uri: Optional[str]
    model_uri: Optional[str]
    input_uri: Optional[str]
    model_output_uri: Optional[str]
    metrics_uri: Optional[str]
    job_mode: str
    image: Optional[str]
    job_argv: Tuple[str, ...]
    max_runtime_seconds: int
    gpu_idle_seconds: int
    gpu_idle_threshold: float
    stall_seconds: int
    keep_checkpoints: int
    secret_parameters: Tuple[Tuple[str, str], ...]
    status_interval_seconds: int
    spot_poll_seconds: int
    stop_grace_seconds: int
    spot_grace_seconds: int
    metrics_agent_config: Optional[str]
    metrics_agent_install: Optional[str]
    metrics_agent_ctl: str
    metrics_agent_service: str
    container_name: str
    work_dir: str
    imds_endpoint: str
    aws_endpoint: Optional[str]
    data_volume_id: Optional[str]
    data_volume_mount: str
    disk_by_id_dir: str
    s3_retry_attempts: int
    s3_retry_base_seconds: float
    # The control objects (control.py): this run's and the campaign's; empty when not given.
    control_uris: Tuple[str, ...] = ()
    control_poll_seconds: int = 30
    # systemd's TimeoutStopSec for the unit (components/node/runnerSettings.ts): the exit path after a SIGTERM fits in it.
    unit_stop_seconds: int = 360
    # train: the run's saved output is staged and evaluated again, without training (its evaluation settings changed)
    evaluate_only: bool = False

    @property
    def is_train(self) -> bool:
        return self.role == "train"


def read_env_file(path: str) -> Dict[str, str]:
    """KEY='value' lines as components/node/userData.ts renders them (shell quoting); comments and blanks skipped."""
    values: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            if len(words) != 1 or "=" not in words[0]:
                raise SettingsError(["%s line %d is not KEY='value'" % (path, number)])
            key, _, value = words[0].partition("=")
            values[key] = value
    return values


def merged_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment with the settings file on top, as `set -a; . runner.env` would give."""
    env = dict(environ)
    path = env.get("CAMPAIGN_ENV_FILE") or DEFAULT_ENV_FILE
    if os.path.isfile(path) and os.access(path, os.R_OK):
        env.update(read_env_file(path))
    return env


def default_work_dir() -> str:
    """Local NVMe where the Deep Learning AMI mounted it; the root EBS volume otherwise. The directory alone is not
    enough: before dlami-nvme.service has mounted it, or when that service found no instance store, it is a plain
    directory on the root volume (and anything written there before the mount would be hidden by it)."""
    if os.path.ismount(DLAMI_NVME) and os.access(DLAMI_NVME, os.W_OK):
        return os.path.join(DLAMI_NVME, "campaign")
    return "/var/lib/campaign"


class _Reader:
    """Reads typed values and collects problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: List[str] = []

    def text(self, name: str, default: Optional[str] = None) -> Optional[str]:
        value = self.env.get(name, "")
        return value if value != "" else default

    def whole(self, name: str, default: Optional[int]) -> int:
        raw = self.text(name)
        if raw is None:
            if default is None:
                return 0  # reported as missing by the required check
            return default
        if not re.fullmatch(r"[0-9]+", raw):
            self.problems.append("%s must be a whole number of seconds/items, not %r" % (name, raw))
            return 0
        return int(raw)

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw):
            self.problems.append("%s must be a non-negative number, not %r" % (name, raw))
            return default
        return float(raw)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from the environment (already merged with the settings file); raises SettingsError."""
    r = _Reader(environ)
    missing = [name for name in REQUIRED if not r.text(name)]
    if missing:
        r.problems.append("missing settings: %s" % " ".join(missing))

    role = r.text("CAMPAIGN_ROLE", "")
    if role and role not in ("prep", "train"):
        r.problems.append("CAMPAIGN_ROLE must be prep or train, not %r" % role)
    job_mode = r.text("CAMPAIGN_JOB_MODE", "docker")
    if job_mode not in ("docker", "process"):
        r.problems.append("CAMPAIGN_JOB_MODE must be docker or process, not %r" % job_mode)
    image = r.text("CAMPAIGN_IMAGE")
    if job_mode == "docker" and not image:
        r.problems.append("CAMPAIGN_IMAGE is required in docker mode")
    command = r.text("CAMPAIGN_JOB_COMMAND")
    argv: Tuple[str, ...] = ()
    if command:
        try:
            argv = tuple(shlex.split(command))
        except ValueError as e:
            r.problems.append("CAMPAIGN_JOB_COMMAND does not parse (%s): %s" % (e, command))
        else:
            if not argv:
                r.problems.append("CAMPAIGN_JOB_COMMAND is empty")
    if job_mode == "process" and not command:
        r.problems.append("CAMPAIGN_JOB_COMMAND is required in process mode")

    uris = {}
    for name in ("CAMPAIGN_SPEC_URI", "CAMPAIGN_STATUS_URI", "CAMPAIGN_LOGS_URI", "CAMPAIGN_OUTPUT_URI",
                 "CAMPAIGN_CHECKPOINTS_URI", "CAMPAIGN_DATA_URI", "CAMPAIGN_MODEL_URI", "CAMPAIGN_INPUT_URI",
                 "CAMPAIGN_MODEL_OUTPUT_URI", "CAMPAIGN_METRICS_URI"):
        value = r.text(name)
        if value is not None and not S3_URI.match(value):
            r.problems.append("%s is not an s3:// URI: %r" % (name, value))
        uris[name] = value
    for name in ("CAMPAIGN_RUN_CONTROL_URI", "CAMPAIGN_CAMPAIGN_CONTROL_URI"):
        value = r.text(name)
        if value is not None and not S3_URI.match(value):
            r.problems.append("%s is not an s3:// URI: %r" % (name, value))
        uris[name] = value
    if role == "train" and not uris["CAMPAIGN_DATA_URI"]:
        r.problems.append("CAMPAIGN_DATA_URI is required for train")

    secrets: List[Tuple[str, str]] = []
    for entry in (r.text("CAMPAIGN_SECRET_PARAMETERS", "") or "").split(","):
        if not entry:
            continue
        m = SECRET_ENTRY.match(entry)
        if not m:
            r.problems.append("CAMPAIGN_SECRET_PARAMETERS entry %r is not NAME=/ssm/parameter/name" % entry.partition("=")[0])
            continue
        secrets.append((m.group(1), m.group(2)))

    volume = r.text("CAMPAIGN_DATA_VOLUME_ID")
    if volume is not None and not VOLUME_ID.match(volume):
        r.problems.append("CAMPAIGN_DATA_VOLUME_ID must be an EBS volume id such as vol-0123456789abcdef0, not %r" % volume)

    evaluate_only = r.text("CAMPAIGN_EVALUATE_ONLY", "0")
    if evaluate_only not in ("0", "1"):
        r.problems.append("CAMPAIGN_EVALUATE_ONLY must be 0 or 1, not %r" % evaluate_only)
    elif evaluate_only == "1" and role != "train":
        r.problems.append("CAMPAIGN_EVALUATE_ONLY is for a train node (it evaluates the run's saved model); this one is %s" % (role or "of no role"))

    gpu_idle_minutes = r.whole("CAMPAIGN_GPU_IDLE_MINUTES", 0)
    stall_minutes = r.whole("CAMPAIGN_STALL_MINUTES", 30)
    settings = Settings(
        role=role or "",
        campaign=r.text("CAMPAIGN_NAME", "") or "",
        run=r.text("CAMPAIGN_RUN", "") or "",
        region=r.text("AWS_REGION", "") or "",
        spec_uri=uris["CAMPAIGN_SPEC_URI"] or "",
        status_uri=uris["CAMPAIGN_STATUS_URI"] or "",
        logs_uri=uris["CAMPAIGN_LOGS_URI"] or "",
        output_uri=uris["CAMPAIGN_OUTPUT_URI"] or "",
        checkpoints_uri=uris["CAMPAIGN_CHECKPOINTS_URI"],
        data_uri=uris["CAMPAIGN_DATA_URI"],
        model_uri=uris["CAMPAIGN_MODEL_URI"],
        input_uri=uris["CAMPAIGN_INPUT_URI"],
        model_output_uri=uris["CAMPAIGN_MODEL_OUTPUT_URI"],
        metrics_uri=uris["CAMPAIGN_METRICS_URI"],
        job_mode=job_mode or "docker",
        image=image,
        job_argv=argv,
        max_runtime_seconds=r.whole("CAMPAIGN_MAX_RUNTIME_SECONDS", None),
        # Seconds overrides exist for the tests; nodes get minutes.
        gpu_idle_seconds=r.whole("CAMPAIGN_GPU_IDLE_SECONDS", gpu_idle_minutes * 60),
        gpu_idle_threshold=r.number("CAMPAIGN_GPU_IDLE_THRESHOLD", 5.0),
        stall_seconds=r.whole("CAMPAIGN_STALL_SECONDS", stall_minutes * 60),
        keep_checkpoints=r.whole("CAMPAIGN_KEEP_CHECKPOINTS", 2),
        secret_parameters=tuple(secrets),
        status_interval_seconds=max(r.whole("CAMPAIGN_STATUS_INTERVAL_SECONDS", 10), 1),
        spot_poll_seconds=max(r.whole("CAMPAIGN_SPOT_POLL_SECONDS", 5), 1),
        stop_grace_seconds=r.whole("CAMPAIGN_STOP_GRACE_SECONDS", 300),
        spot_grace_seconds=r.whole("CAMPAIGN_SPOT_GRACE_SECONDS", 80),
        metrics_agent_config=r.text("CAMPAIGN_METRICS_AGENT_CONFIG"),
        metrics_agent_install=r.text("CAMPAIGN_METRICS_AGENT_INSTALL"),
        metrics_agent_ctl=r.text("CAMPAIGN_METRICS_AGENT_CTL", DEFAULT_AGENT_CTL) or DEFAULT_AGENT_CTL,
        metrics_agent_service=r.text("CAMPAIGN_METRICS_AGENT_SERVICE", "amazon-cloudwatch-agent") or "amazon-cloudwatch-agent",
        container_name=r.text("CAMPAIGN_CONTAINER_NAME", "campaign-job") or "campaign-job",
        work_dir=r.text("CAMPAIGN_WORK_DIR") or default_work_dir(),
        imds_endpoint=(r.text("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254") or "").rstrip("/"),
        aws_endpoint=r.text("AWS_ENDPOINT_URL"),
        data_volume_id=volume,
        data_volume_mount=r.text("CAMPAIGN_DATA_VOLUME_MOUNT", "/mnt/campaign-data") or "/mnt/campaign-data",
        disk_by_id_dir=r.text("CAMPAIGN_DISK_BY_ID_DIR", "/dev/disk/by-id") or "/dev/disk/by-id",
        s3_retry_attempts=max(r.whole("CAMPAIGN_S3_RETRY_ATTEMPTS", 6), 1),
        s3_retry_base_seconds=r.number("CAMPAIGN_S3_RETRY_BASE_SECONDS", 1.0),
        evaluate_only=evaluate_only == "1",
        control_uris=tuple(u for u in (uris["CAMPAIGN_RUN_CONTROL_URI"], uris["CAMPAIGN_CAMPAIGN_CONTROL_URI"]) if u),
        control_poll_seconds=max(r.whole("CAMPAIGN_CONTROL_POLL_SECONDS", 30), 1),
        unit_stop_seconds=r.whole("CAMPAIGN_UNIT_STOP_SECONDS", 360),
    )
    if r.problems:
        raise SettingsError(r.problems)
    return settings
