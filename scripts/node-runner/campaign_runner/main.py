"""The runner's lifecycle: settings, identity, staging, the job under watch, the final word, one shutdown.

    python3 -I campaign-runner.py          read /etc/campaign/runner.env (when present) and the environment, run the job
    python3 -I campaign-runner.py --help   this text

Every path (success, job failure, staging failure, S3 unreachable, a watchdog, a spot notice, a signal, an
error in the runner itself) ends in `finish`: stop the job, stop the CloudWatch agent, sync the newest
checkpoint, stream the final status.json to S3, upload the logs, then exactly one `shutdown -h now`. The node is
launched with instanceInitiatedShutdownBehavior=terminate, so billing stops there. docs/node-runner.md has the
detail.

Tests and the local rehearsal run this same program against local services: AWS_ENDPOINT_URL points every
AWS call at an emulator, AWS_EC2_METADATA_SERVICE_ENDPOINT at a fake metadata service, and `shutdown`,
`docker`, `nvidia-smi`, `systemctl` earlier on PATH are recorders, as is the agent ctl CAMPAIGN_METRICS_AGENT_CTL names.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

from . import datavolume, image
from .agent import MetricsAgent
from .aws import AwsCli, Cancelled, NOT_FOUND, tail_brief
from .contract import SUCCESS_MARKER
from .control import ControlPoller
from .imds import SPOT_ACTION_PATH, Imds
from .job import Job, JobLayout, docker_run_argv, ecr_registry
from .logs import Log, utc_now_iso
from .outcome import Outcome, StopDetail, StopKind, before_job_reason, classify, runner_exit_code
from .settings import Settings, SettingsError, load_settings, merged_environment
from .staging import Stager, StagingError, upload_dir
from .history import HistoryUpload
from .models import BadModelRef, staged_model_uploads
from .status import Phase, StatusBook, parse_progress
from .sync import CheckpointSync
from .watchdogs import GpuIdle, MaxRuntime, ProgressStall, busiest_gpu

TICK_SECONDS = 0.2  # the control loop's period: every stop is acted on within this (plus a signal's delivery)
EXIT_PATH_AWS_TIMEOUT = 120  # a hung network cannot hold the node on the way out
BACKGROUND_STATUS_TIMEOUT = 60  # a heartbeat never holds up the final status for longer
JOB_STARTUP_SECONDS = 60  # how long a watchdog stop waits for a just-started job to come up before SIGTERM
# Under this much free space (64 MiB, or 1% of a small volume) the work volume counts as full when a job fails:
# its own log, on the same volume, may not have been able to say why.
FULL_DISK_BYTES = 64 * 1024 * 1024


class Failure(Exception):
    """A handled failure: its message becomes the final status's reason."""


class NothingToDo(Exception):
    """The run already succeeded: the node ends at once, leaving status and logs as they are."""


def node_boot_time() -> Optional[str]:
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    boot = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=uptime)
    return boot.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def runner_error_reason(error: BaseException) -> str:
    """An unexpected error, with where in the runner it happened: `runner error (exit 3) at line 42: du -sb ...`."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "campaign_runner" in f.filename]
    where = " at line %d" % frames[-1].lineno if frames else ""
    module = os.path.basename(frames[-1].filename) if frames else "?"
    if isinstance(error, subprocess.CalledProcessError):
        cmd = error.cmd if isinstance(error.cmd, str) else " ".join(shlex.quote(str(c)) for c in error.cmd)
        stderr = error.stderr.decode("utf-8", "replace") if isinstance(error.stderr, bytes) else (error.stderr or "")
        said = "; %s" % tail_brief(stderr) if stderr else ""
        return "runner error (exit %d)%s: %s (%s%s)" % (error.returncode, where, cmd, module, said)
    return "runner error (%s)%s: %s (%s)" % (type(error).__name__, where, error, module)


class Runner:
    def __init__(self, settings: Settings, environ: Dict[str, str]):
        self.s = settings
        self.started = time.monotonic()
        self.work = settings.work_dir
        self.job_dir = os.path.join(self.work, "job")
        self.state_dir = os.path.join(self.work, "state")
        self.log_dir = os.path.join(self.work, "logs")
        self.runner_log = os.path.join(self.log_dir, "runner.log")
        self.job_log = os.path.join(self.log_dir, "job.log")
        self.layout = JobLayout(self.job_dir, os.path.join(self.job_dir, "data"))
        self.status = StatusBook(settings.campaign, settings.run, settings.role)
        self.spec: Optional[dict] = None  # the job spec, once fetched (the prep role uploads its stageModels)
        self.log = Log(lambda: self.status.phase.value)
        self.aws = AwsCli(settings.aws_endpoint, self.log, settings.s3_retry_attempts, settings.s3_retry_base_seconds,
                          environ)
        self.imds = Imds(settings.imds_endpoint)
        self.job = Job(settings.job_mode, settings.container_name)
        self.agent = MetricsAgent(settings.metrics_agent_ctl, settings.metrics_agent_service,
                                  settings.metrics_agent_config, settings.metrics_agent_install, self.log,
                                  self.status.warn)
        self.stop_requested = threading.Event()  # cancels staging; set by a spot notice, a signal, the max runtime
        self.stop: Optional[StopDetail] = None
        self._stop_lock = threading.Lock()
        self.spot_notice: Optional[str] = None
        self.restored_step = 0
        self.job_started_at: Optional[float] = None
        self.secret_env: Dict[str, str] = {}
        self.pull: Optional[subprocess.Popen] = None
        self.image_need: Optional[image.ImageNeed] = None
        self.sync: Optional[CheckpointSync] = None
        self.history: Optional[HistoryUpload] = None
        self.attempt_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-local"
        self._publisher: Optional[threading.Thread] = None
        self._publish_wanted = threading.Event()
        # One status upload at a time, and none after the final one: an older status landing after the final
        # word would leave S3 saying "training" for a node that is gone.
        self._publish_lock = threading.Lock()
        self._final_published = False
        self._final_pass_done = False
        self._heartbeat_cancel = threading.Event()
        self._finished = threading.Event()
        self._shutdown_called = False
        self.signal_at: Optional[float] = None  # when SIGTERM/SIGINT came: the unit's stop timeout counts from it
        self._system_stopping: Optional[bool] = None

    # ------------------------------------------------------------------ stops

    def request_stop(self, detail: StopDetail) -> None:
        """The first stop wins: its kind names the reason."""
        with self._stop_lock:
            if self.stop is None:
                self.stop = detail
                self.status.note("stop requested: %s" % detail.kind.value)
        self.stop_requested.set()

    def on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name[3:]
        self.log("received SIG%s" % name)
        if self.signal_at is None:
            self.signal_at = time.monotonic()
        self.request_stop(StopDetail(StopKind.SIGNAL, signal_name=name))

    def watch_spot(self) -> None:
        """Polls spot/instance-action; on a notice, records it and sends SIGTERM to the job at once. Anything but a
        200 answer (404: no notice; an error: unknown) is never a notice."""
        failing_since: Optional[float] = None
        while not self._finished.is_set():
            answer = self.imds.get_once(SPOT_ACTION_PATH)
            if answer.found and answer.body and answer.body.strip():
                self.spot_notice = answer.body.strip()
                self.log("spot interruption notice: %s" % self.spot_notice)
                self.request_stop(StopDetail(StopKind.SPOT, notice=self.spot_notice))
                self.job.terminate()
                return
            if answer.problem and failing_since is None:
                failing_since = time.monotonic()
                self.log("instance metadata unavailable (%s): no spot notice can be seen until it answers" % answer.problem)
            elif not answer.problem and failing_since is not None:
                self.log("instance metadata answers again after %.0f s" % (time.monotonic() - failing_since))
                failing_since = None
            self._finished.wait(self.s.spot_poll_seconds)

    def on_control(self, action: str, uri: str) -> None:
        """A control object asked for a graceful stop or restart: the main loop sends SIGTERM within a tick."""
        self.request_stop(StopDetail(StopKind.CONTROL, control_action=action, control_uri=uri))

    def system_going_down(self) -> bool:
        """Whether systemd is stopping the whole system (`systemctl is-system-running` says "stopping"): a SIGTERM
        then comes from an instance being terminated or stopped, and the OS powers off by itself."""
        if self._system_stopping is None:
            try:
                out = subprocess.run(["systemctl", "is-system-running"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     timeout=10, check=False)
                self._system_stopping = out.stdout.decode("utf-8", "replace").strip() == "stopping"
            except (OSError, subprocess.TimeoutExpired):
                self._system_stopping = False
            if self._system_stopping:
                self.log("the system is shutting down (systemctl is-system-running: stopping)")
        return self._system_stopping

    def settled_stop(self) -> Optional[StopDetail]:
        """The stop as the final status names it: a signal says whether the OS was going down."""
        stop = self.stop
        if stop is not None and stop.kind is StopKind.SIGNAL and not stop.system_stopping and self.system_going_down():
            stop = dataclasses.replace(stop, system_stopping=True)
        return stop

    def watch_max_runtime(self) -> None:
        """Counted from the runner's start and acted on once the job runs (then within a tick, whatever is
        uploading). Staging is not cut short: a slow but healthy staging still hands the job its checkpoint
        save, and a staging that hangs is ended by the user data's `shutdown -h +N` backstop."""
        limit = MaxRuntime(self.started, self.s.max_runtime_seconds)
        while not self._finished.wait(TICK_SECONDS):
            if self.job.started and limit.reached(time.monotonic()):
                self.request_stop(StopDetail(StopKind.MAX_RUNTIME, max_runtime_seconds=self.s.max_runtime_seconds))
                return

    # ------------------------------------------------------------------ status

    def publish_soon(self) -> None:
        """status.json in the background, the newest state each time: a slow S3 never holds the control loop."""
        self._publish_wanted.set()
        if self._publisher is None:
            def loop() -> None:
                while not self._finished.is_set():
                    if self._publish_wanted.wait(0.5):
                        self._publish_wanted.clear()
                        try:
                            self.publish(self.status.render_bytes(), timeout=BACKGROUND_STATUS_TIMEOUT,
                                         cancel=self._heartbeat_cancel)
                            if self.history is not None:
                                self.history.upload(timeout=BACKGROUND_STATUS_TIMEOUT, cancel=self._heartbeat_cancel)
                        except Cancelled:
                            return  # the final status takes over

            self._publisher = threading.Thread(target=loop, name="status", daemon=True)
            self._publisher.start()

    def publish(self, data: bytes, timeout: Optional[float] = None, final: bool = False,
                cancel: Optional[threading.Event] = None) -> bool:
        """status.json: locally when the disk allows, and to S3 streamed from memory. After the final status,
        background publishes are dropped."""
        with self._publish_lock:
            if self._final_published:
                return False
            self._final_published = final
            path = os.path.join(self.work, "status.json")
            try:
                tmp = path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except OSError as e:
                self.log("could not write %s (%s); S3 still gets it from memory" % (path, e))
            res = self.aws.put_bytes(data, self.s.status_uri, "application/json", timeout=timeout, cancel=cancel)
            if not res.ok:
                self.log("status upload to %s failed: %s" % (self.s.status_uri, res.brief()))
            return res.ok

    def sample_progress(self) -> Optional[Dict[str, Any]]:
        """The progress file when it is readable and on schema (else None), merged into the status."""
        try:
            with open(self.layout.dir_of("CAMPAIGN_PROGRESS_FILE"), encoding="utf-8") as f:
                progress = parse_progress(f.read())
        except OSError:
            progress = None
        self.status.observe_progress(progress, self.restored_step)
        return progress

    # ------------------------------------------------------------------ steps

    def prepare_work_dir(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        # A rerun on the same node (after a reboot) starts clean, except for staged inputs, which sync reuses.
        for path in (self.state_dir, os.path.join(self.job_dir, "checkpoints"), os.path.join(self.job_dir, "output")):
            shutil.rmtree(path, ignore_errors=True)
        for name in ("progress.json", "spec.json"):
            try:
                os.remove(os.path.join(self.job_dir, name))
            except FileNotFoundError:
                pass
        for sub in ("checkpoints", "output", "input", "data", "model"):
            os.makedirs(os.path.join(self.job_dir, sub), exist_ok=True)
        os.makedirs(self.state_dir, exist_ok=True)
        open(self.job_log, "ab").close()

    def read_identity(self) -> None:
        ident = self.imds.get("latest/meta-data/instance-id", attempts=5)
        kind = self.imds.get("latest/meta-data/instance-type", attempts=3)
        self.status.instance_id = ident.body.strip() if ident.found and ident.body else None
        self.status.instance_type = kind.body.strip() if kind.found and kind.body else None
        if self.status.instance_id is None:
            self.log("instance metadata not reachable at %s (%s): no instance id; spot notices will still be polled"
                     % (self.s.imds_endpoint, ident.problem or "404"))

    def check_previous_status(self) -> None:
        res = self.aws.s3("cp", self.s.status_uri, "-", cancel=self.stop_requested)
        if res.ok:
            try:
                phase = json.loads(res.stdout).get("phase", "")
            except (ValueError, AttributeError):
                phase = ""
            self.log("previous status: %s" % (phase or "unreadable"))
            self.status.carry_attempts(res.stdout)  # the earlier nodes' attempts, so relaunch counts them all
            if phase == Phase.SUCCEEDED.value and self.s.evaluate_only:
                self.log("evaluate-only node: the run succeeded before; its saved model is evaluated again with the new evaluation settings")
            elif phase == Phase.SUCCEEDED.value:
                raise NothingToDo()
        elif NOT_FOUND.search(res.stderr):
            self.log("no previous status: a fresh start")
        else:
            raise Failure("S3 unreachable or refused reading %s: %s" % (self.s.status_uri, res.brief()))

    def fetch_spec(self) -> dict:
        path = self.layout.dir_of("CAMPAIGN_SPEC")
        res = self.aws.s3("cp", self.s.spec_uri, path, cancel=self.stop_requested)
        if not res.ok:
            raise Failure("cannot download the job spec %s: %s" % (self.s.spec_uri, res.brief()))
        try:
            with open(path, encoding="utf-8") as f:
                spec = json.load(f)
        except ValueError as e:
            raise Failure("the job spec is not valid JSON: %s (%s)" % (e, self.s.spec_uri))
        if not isinstance(spec, dict) or "kind" not in spec:
            raise Failure('the job spec has no "kind" field (%s)' % self.s.spec_uri)
        if spec["kind"] != self.s.role:
            raise Failure("the job spec is of kind %r but this node's role is %r (%s)" % (spec["kind"], self.s.role, self.s.spec_uri))
        return spec

    def read_secrets(self) -> None:
        for name, parameter in self.s.secret_parameters:
            res = self.aws.run(["ssm", "get-parameter", "--name", parameter, "--with-decryption", "--query",
                                "Parameter.Value", "--output", "text"], cancel=self.stop_requested)
            if not res.ok:
                raise Failure("cannot read SSM parameter %s: %s" % (parameter, res.brief()))
            self.secret_env[name] = res.stdout.rstrip("\n")
            self.log("secret %s read from SSM parameter %s" % (name, parameter))

    def prepare_image(self) -> None:
        """docker mode: `docker login` to ECR, then what the image will need on disk, before anything is pulled or
        staged, so that the free-space check counts it on docker's own file system (image.py)."""
        if self.s.job_mode != "docker" or not self.s.image:
            return
        ecr = ecr_registry(self.s.image)
        if ecr is not None:
            registry, region = ecr
            password = self.aws.run(["ecr", "get-login-password", "--region", region], cancel=self.stop_requested)
            login = subprocess.run(["docker", "login", "--username", "AWS", "--password-stdin", registry],
                                   input=password.stdout.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            if not password.ok or login.returncode != 0:
                raise Failure("docker login to %s failed: %s" % (registry, password.brief() or tail_brief(login.stderr.decode())))
            self.log("logged in to %s" % registry)
        need, why = image.measure(self.s.image, self.aws, self.stop_requested)
        if need is None:
            self.status.warn("the image's size is unknown before its pull (%s): the free-space check counts the inputs only" % why)
            self.log("the image's size is unknown before its pull (%s): the free-space check counts the inputs only" % why)
        elif need.present:
            self.log("the image %s is already in docker's store" % self.s.image)
        else:
            self.log("%s goes to docker's data root %s" % (need.describe(), need.root_dir))
        self.image_need = need

    def start_image_pull(self) -> None:
        if self.s.job_mode != "docker" or not self.s.image:
            return
        self.log("pulling %s (in the background)" % self.s.image)
        self.pull_log = open(os.path.join(self.log_dir, "docker-pull.log"), "wb")
        self.pull_started = time.monotonic()
        self.pull = subprocess.Popen(["docker", "pull", "--quiet", self.s.image], stdin=subprocess.DEVNULL,
                                     stdout=self.pull_log, stderr=subprocess.STDOUT)

    def wait_image_pull(self) -> None:
        if self.pull is None:
            return
        while self.pull.poll() is None:
            if self.stop_requested.wait(TICK_SECONDS):
                raise Cancelled("docker pull")
        code, self.pull = self.pull.returncode, None
        self.pull_log.close()
        if code != 0:
            with open(os.path.join(self.log_dir, "docker-pull.log"), encoding="utf-8", errors="replace") as f:
                raise Failure("docker pull %s failed (exit %d): %s" % (self.s.image, code, tail_brief(f.read())))
        self.log("image ready %.0f s after the pull started" % (time.monotonic() - self.pull_started))

    def stage_inputs(self, spec: dict) -> None:
        stager = Stager(self.aws, self.log, self.stop_requested)
        inputs = []
        if self.s.role == "prep":
            # No input URI: the job reads its data from the Hugging Face Hub itself.
            if self.s.input_uri:
                inputs.append(stager.describe("input", self.s.input_uri, self.layout.dir_of("CAMPAIGN_INPUT_DIR")))
        else:
            assert self.s.data_uri is not None
            inputs.append(stager.describe("dataset", self.s.data_uri, self.layout.data_dir))
            if self.s.model_uri:
                inputs.append(stager.describe("base model", self.s.model_uri, self.layout.dir_of("CAMPAIGN_MODEL_DIR")))
            if self.s.evaluate_only:
                # the run's final model and metrics.json, uploaded when it succeeded: the trainer evaluates it
                inputs.append(stager.describe("saved output", self.s.output_uri, self.layout.dir_of("CAMPAIGN_OUTPUT_DIR")))
        stager.check_space(inputs, self.image_need)
        self.start_image_pull()  # after the check: an image that cannot fit is not pulled
        for item in inputs:
            stager.stage(item)
        if self.s.role == "train":
            if not os.path.exists(os.path.join(self.layout.data_dir, SUCCESS_MARKER)):
                raise Failure("the dataset at %s is incomplete: no %s marker" % (self.s.data_uri, SUCCESS_MARKER))
            if self.s.evaluate_only:
                # No checkpoint is restored or synced: nothing trains here, and the trainer must find the model.
                self.check_saved_output(spec)
            elif self.s.checkpoints_uri:
                self.sync = self._checkpoint_sync()
                try:
                    self.restored_step = self.sync.restore(spec.get("specHash")) or 0
                except RuntimeError as e:
                    raise Failure(str(e))

    def check_saved_output(self, spec: dict) -> None:
        """An evaluate-only node stops before the job when the staged output is not the trained model of this spec:
        the trainer would otherwise train it again."""
        path = os.path.join(self.layout.dir_of("CAMPAIGN_OUTPUT_DIR"), "metrics.json")
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f).get("specHash")
        except (OSError, ValueError, AttributeError):
            saved = None
        if saved != spec.get("specHash"):
            raise Failure("evaluate-only node: the saved output at %s is not the trained model of spec %s (its metrics.json names %s); "
                          "nothing is trained here, so run `pulumi up` again to let the campaign decide afresh"
                          % (self.s.output_uri, spec.get("specHash"), saved or "none"))
        self.log("evaluate-only node: the saved model of spec %s is staged; no checkpoint is restored" % saved)

    def _checkpoint_sync(self) -> CheckpointSync:
        assert self.s.checkpoints_uri is not None
        return CheckpointSync(self.aws, self.layout.dir_of("CAMPAIGN_CHECKPOINT_DIR"),
                              os.path.join(self.state_dir, "upload"), self.s.checkpoints_uri,
                              self.s.keep_checkpoints, self.log, self.status.checkpoint_uploaded)

    def job_env(self) -> Dict[str, str]:
        env = dict(self.aws.env)
        env.update(self.secret_env)
        if self.s.job_mode == "process":
            env.update(self.layout.host_env())
        return env

    def start_job(self, job_log: "object") -> None:
        self.log("starting the job (%s)" % self.s.job_mode)
        if self.s.job_mode == "docker":
            assert self.s.image is not None
            argv = docker_run_argv(self.s.container_name, self.s.image, self.s.job_argv, self.layout,
                                   self.s.role == "train", [n for n, _ in self.s.secret_parameters])
        else:
            argv = list(self.s.job_argv)
        self.job.start(argv, self.job_env(), job_log)  # type: ignore[arg-type]
        self.job_started_at = time.monotonic()

    def gpu_utilisation(self) -> Optional[float]:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return busiest_gpu(out.stdout.decode("utf-8", "replace")) if out.returncode == 0 else None

    def monitor_job(self) -> None:
        """The control loop while the job runs: stops are acted on within a tick; progress each tick; status,
        GPU samples and checkpoint passes every status interval (uploads run in their own thread)."""
        gpu = None
        if self.s.gpu_idle_seconds > 0:
            if shutil.which("nvidia-smi"):
                gpu = GpuIdle(self.s.gpu_idle_threshold, self.s.gpu_idle_seconds)
            else:
                self.log("nvidia-smi not found: the GPU-idle watchdog is off")
        stall = ProgressStall(self.s.stall_seconds, self.restored_step)
        last_status = 0.0
        while self.job.alive():
            now = time.monotonic()
            progress = self.sample_progress()
            if self.stop is None and stall.observe(progress, now):
                last = stall.last
                in_evaluation = last.where() if last is not None and last.evaluation is not None else ""
                self.request_stop(StopDetail(StopKind.STALL, stall_seconds=self.s.stall_seconds, stalled_at_step=stall.last_step,
                                             stalled_in_evaluation=in_evaluation))
            if self.stop is None and now - last_status >= self.s.status_interval_seconds:
                last_status = now
                if gpu is not None and gpu.observe(self.gpu_utilisation(), now):
                    self.request_stop(StopDetail(StopKind.GPU_IDLE, gpu_threshold=self.s.gpu_idle_threshold,
                                                 gpu_window_seconds=self.s.gpu_idle_seconds))
                self.publish_soon()
            if self.stop is not None:
                return
            self.stop_requested.wait(TICK_SECONDS)

    def stop_job(self, grace: float) -> None:
        """SIGTERM (the job saves a checkpoint and exits 75), then SIGKILL after `grace` seconds."""
        if not self.job.alive():
            return
        if self.stop is not None and self.stop.kind is StopKind.MAX_RUNTIME:
            self.await_job_up()  # a limit that passed during staging meets a job that is still starting
        if self.spot_notice is None and not self.job.term_sent:
            self.log("sending SIGTERM to the job; waiting up to %d s for its checkpoint" % grace)
            self.status.note("SIGTERM sent to the job (%s)" % (self.stop.kind.value if self.stop else "runner exit"))
        self.job.terminate()
        deadline = time.monotonic() + grace
        while self.job.alive() and time.monotonic() < deadline:
            self.sample_progress()
            time.sleep(TICK_SECONDS)
        if self.job.alive():
            self.log("the job did not stop within %d s: SIGKILL" % grace)
            self.job.kill()

    def await_job_up(self) -> None:
        """A job signalled before it installed its SIGTERM handler dies with 143 instead of saving and exiting 75.
        Until its first progress file (written once it is up), a stop waits up to JOB_STARTUP_SECONDS from its
        start. Only the max runtime needs it (it can pass during staging); a spot notice or systemd's stop cannot
        wait, and a job that just started has nothing to save."""
        progress = self.layout.dir_of("CAMPAIGN_PROGRESS_FILE")
        if os.path.exists(progress) or self.job_started_at is None:
            return
        self.log("the job has written no progress yet: waiting up to %d s from its start before signalling it" % JOB_STARTUP_SECONDS)
        while (self.job.alive() and not os.path.exists(progress)
               and time.monotonic() - self.job_started_at < JOB_STARTUP_SECONDS):
            time.sleep(TICK_SECONDS)

    def reap_job(self) -> Optional[int]:
        if not self.job.started or self.status.exit_code is not None:
            return self.status.exit_code
        code = self.job.wait()
        assert code is not None
        self.sample_progress()  # a job that ended between two samples still gets its first step and last progress
        self.status.job_ended(code)
        self.log("the job exited with code %d" % code)
        return code

    def out_of_space(self) -> Optional[str]:
        try:
            usage = shutil.disk_usage(self.work)
        except OSError:
            return None
        if usage.free >= min(FULL_DISK_BYTES, usage.total // 100):
            return None
        return "the work volume %s is out of space (no space left on device: %.1f MiB free of %.1f MiB)" % (
            self.work, usage.free / 2 ** 20, usage.total / 2 ** 20)

    def job_log_tail(self) -> str:
        try:
            with open(self.job_log, "rb") as f:
                f.seek(max(os.path.getsize(self.job_log) - 8192, 0))
                return tail_brief(f.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def upload_staged_models(self, model_dir: str, model_output_uri: str) -> None:
        """Each staged model to its own models/<id>/<revision>/ (models.py): the prep role may list and write only those."""
        try:
            uploads = staged_model_uploads(self.spec, model_dir, model_output_uri)
        except BadModelRef as e:
            raise Failure(str(e))
        for local, uri in uploads:
            if not os.path.isdir(local):
                # The prep job stages hub models only; it logged why it skipped this one.
                self.log("no staged folder %s: nothing to upload to %s" % (local, uri))
                continue
            res = self.aws.s3("sync", local, uri)
            if not res.ok:
                raise Failure("uploading the staged model to %s failed: %s" % (uri, res.brief()))
            self.log("uploaded the staged model to %s" % uri)

    def upload_outputs(self) -> None:
        started = time.monotonic()
        if self.s.role == "prep" and self.s.model_output_uri:
            self.upload_staged_models(self.layout.dir_of("CAMPAIGN_MODEL_DIR"), self.s.model_output_uri)
        problem = upload_dir(self.aws, self.layout.dir_of("CAMPAIGN_OUTPUT_DIR"), self.s.output_uri, SUCCESS_MARKER)
        if problem:
            raise Failure("uploading the output to %s failed: %s" % (self.s.output_uri, problem))
        self.log("uploaded the output to %s in %.0f s" % (self.s.output_uri, time.monotonic() - started))

    # ------------------------------------------------------------------ the run

    def run(self) -> int:
        """Everything up to the final word; `finish` then always runs."""
        outcome: Outcome
        noop = False
        try:
            outcome = self.body()
        except NothingToDo:
            self.log("this run already succeeded: nothing to do")
            noop = True
            outcome = Outcome("noop", None)
        except Failure as e:
            outcome = Outcome("failed", str(e))
        except (Cancelled, StagingError) as e:
            if self.stop is not None and isinstance(e, Cancelled):
                outcome = before_job_reason(self.settled_stop() or self.stop)
            else:
                outcome = Outcome("failed", str(e))
        except datavolume.DataVolumeError as e:
            outcome = Outcome("failed", str(e))
        except BaseException as e:  # the runner's own error: still the final word and the shutdown
            outcome = Outcome("failed", runner_error_reason(e))
            self.log("".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
        return self.finish(outcome, noop)

    def body(self) -> Outcome:
        self.prepare_work_dir()
        self.log.open_file(self.runner_log)
        self.read_identity()
        self.attempt_id = "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), self.status.instance_id or "local")
        self.link_attempt_logs()
        self.start_history()
        self.log("campaign %s run %s role %s mode %s on %s %s" % (self.s.campaign, self.s.run, self.s.role, self.s.job_mode,
                                                                   self.status.instance_type or "unknown", self.status.instance_id or ""))
        threading.Thread(target=self.watch_spot, name="spot-watcher", daemon=True).start()
        threading.Thread(target=self.watch_max_runtime, name="max-runtime", daemon=True).start()
        self.log(self.aws.tune_transfers(self.status.instance_type, os.path.join(self.state_dir, "aws-config"), os.cpu_count() or 1))

        self.check_previous_status()
        # Only now: a run that already succeeded has ended above, so no control object can turn it into an interrupted one.
        if self.s.control_uris:
            poller = ControlPoller(self.aws, self.s.control_uris, self.s.control_poll_seconds, self.state_dir, self.log,
                                   self.status.warn, self.on_control, self._finished)
            threading.Thread(target=poller.run, name="control", daemon=True).start()
        self.agent.begin_install()
        self.status.preparing()
        self.publish_soon()
        if self.s.data_volume_id and self.s.role == "train":
            mount = datavolume.prepare(self.s.data_volume_id, self.s.disk_by_id_dir, self.s.data_volume_mount, self.log)
            self.layout = JobLayout(self.job_dir, os.path.join(mount, "data"))
        spec = self.fetch_spec()
        self.spec = spec
        self.status.spec_hash = spec.get("specHash") if isinstance(spec.get("specHash"), str) else None
        self.read_secrets()
        self.prepare_image()
        self.stage_inputs(spec)
        self.wait_image_pull()
        if self.stop is not None:
            raise Cancelled("staging")
        self.status.staged()
        self.publish_soon()
        self.log("inputs ready %.0f s after the runner started" % (time.monotonic() - self.started))

        self.agent.start()
        with open(self.job_log, "ab") as job_log:
            self.start_job(job_log)
        self.status.starting()
        self.publish_soon()
        if self.sync is not None:
            self.sync.start(self.s.status_interval_seconds)
        self.monitor_job()
        if self.stop is not None:
            # A spot notice leaves two minutes; a SIGTERM from systemd leaves TimeoutStopSec (150 s).
            grace = self.s.spot_grace_seconds if self.stop.kind in (StopKind.SPOT, StopKind.SIGNAL) else self.s.stop_grace_seconds
            self.stop_job(grace)
        code = self.reap_job()
        assert code is not None
        if self.agent.stop():
            self.status.note("CloudWatch agent stopped")
        self.final_checkpoint_sync()
        outcome = classify(code, self.settled_stop(), self.job_log_tail(), self.out_of_space())
        if outcome.phase != "uploading":
            return outcome
        self.status.uploading()
        self.publish_soon()
        self.upload_outputs()
        return Outcome("succeeded", None)

    def final_checkpoint_sync(self) -> None:
        """The newest checkpoints up before the final status names them; pruning waits for `finish`, where it
        runs beside the status and log uploads."""
        if self.sync is None or self._final_pass_done:
            return
        self._final_pass_done = True
        self.sync.stop()
        kind = self.stop.kind if self.stop is not None else None
        if kind is StopKind.SIGNAL and self.signal_at is not None:
            # systemd gives the unit UNIT_STOP seconds from the SIGTERM: the sync ends in time for the final word.
            budget = self.signal_at + self.s.unit_stop_seconds - (EXIT_PATH_AWS_TIMEOUT + 30) - time.monotonic()
            self.log("the OS path: %.0f s left to sync the newest checkpoint" % max(budget, 0))
            cancel = threading.Event()
            timer = threading.Timer(max(budget, 0), cancel.set)
            timer.daemon = True
            timer.start()
            try:
                self.sync.sync_once(cancel=cancel, prune=False, newest_only=True)
            except Cancelled:
                self.log("the newest checkpoint did not reach S3 within the stop budget; the last one synced before stays the one a new node resumes")
            finally:
                timer.cancel()
            return
        self.sync.sync_once(prune=False, newest_only=kind is StopKind.SPOT)

    def finish(self, outcome: Outcome, noop: bool) -> int:
        """The one way out: never raises, ends in exactly one `shutdown -h now`."""
        try:
            self._finished.set()
            if not noop:
                self._final_word(outcome)
        except BaseException as e:  # pragma: no cover - the last line of defence
            try:
                self.log("the exit path failed: %s" % runner_error_reason(e))
            except BaseException:
                pass
        finally:
            self.shutdown()
        return runner_exit_code(outcome.phase)

    def _final_word(self, outcome: Outcome) -> None:
        if self.pull is not None and self.pull.poll() is None:
            self.pull.kill()
        if self.job.alive():  # the runner itself failed while the job ran
            self.stop_job(self.s.stop_grace_seconds)
        if self.job.started:
            self.reap_job()
            self.agent.stop()
            try:
                self.final_checkpoint_sync()
            except Exception as e:
                self.log("the final checkpoint sync failed: %r" % e)
        if outcome.phase == "succeeded":
            self.status.succeeded()
        elif not self.status.phase.is_terminal():
            (self.status.interrupted if outcome.phase == "interrupted" else self.status.failed)(outcome.reason or "failed")
        self.log("FAILED: %s" % outcome.reason if outcome.phase == "failed" else "final phase %s%s" % (
            outcome.phase, ": %s" % outcome.reason if outcome.reason else ""))
        self.status.timings["shutdown"] = utc_now_iso()
        data = self.status.render_bytes()
        self._heartbeat_cancel.set()  # a heartbeat still uploading gives way to the final word
        # The final status and the logs go up side by side: the node is billed until the shutdown call.
        uploads = [threading.Thread(target=self.publish, args=(data, EXIT_PATH_AWS_TIMEOUT, True), name="final-status")]
        uploads.append(threading.Thread(target=self.upload_logs, name="logs"))
        if self.history is not None:
            uploads.append(threading.Thread(target=self.history.upload_final, args=(data, EXIT_PATH_AWS_TIMEOUT), name="history"))
        # On a spot interruption the two minutes go to the checkpoint and the final word; the next node prunes.
        if self.sync is not None and self.job.started and outcome.phase != "interrupted":
            uploads.append(threading.Thread(target=self._prune_quietly, name="prune"))
        for t in uploads:
            t.start()
        deadline = time.monotonic() + EXIT_PATH_AWS_TIMEOUT + 10
        for t in uploads:
            t.join(max(deadline - time.monotonic(), 0))
        # Nothing of this runner outlives it: an upload still running now is cut off before the shutdown.
        self.aws.kill_all()
        self.log("final status %s%s; shutting down" % (self.status.phase.value, ": %s" % self.status.reason if self.status.reason else ""))

    def _prune_quietly(self) -> None:
        assert self.sync is not None
        try:
            self.sync.prune()
        except Exception as e:  # the next node prunes what is left
            self.log("pruning checkpoints on the way out failed: %r" % e)

    def start_history(self) -> None:
        """Training runs with CAMPAIGN_METRICS_URI: this attempt's history goes up under its own key."""
        if self.s.role != "train" or not self.s.metrics_uri:
            return
        self.history = HistoryUpload(self.aws, self.layout.dir_of("CAMPAIGN_METRICS_FILE"), self.s.metrics_uri,
                                     self.attempt_id, self.log)
        self.history.remove_local()

    def link_attempt_logs(self) -> None:
        """logs/attempts/<start>-<instance>/ holds hard links to runner.log and job.log, made now while the disk
        has room: the same files, so one upload at the end carries both copies and a full disk costs nothing."""
        attempt = os.path.join(self.log_dir, "attempts", self.attempt_id)
        try:
            os.makedirs(attempt, exist_ok=True)
            for path in (self.runner_log, self.job_log):
                target = os.path.join(attempt, os.path.basename(path))
                if os.path.exists(path) and not os.path.exists(target):
                    os.link(path, target)
        except OSError as e:
            self.log("could not link this attempt's logs under %s (%s): they go up only as runner.log and job.log" % (attempt, e))

    def upload_logs(self) -> None:
        """runner.log and job.log under CAMPAIGN_LOGS_URI, and the same under attempts/<start>-<instance>/, so an
        interrupted attempt's logs survive the attempt that resumes it: one call."""
        res = self.aws.s3("cp", "--recursive", self.log_dir, self.s.logs_uri.rstrip("/") + "/", "--exclude", "*",
                          "--include", "runner.log", "--include", "job.log", "--include", "attempts/%s/*" % self.attempt_id,
                          timeout=EXIT_PATH_AWS_TIMEOUT)
        if not res.ok:
            self.log("log upload to %s failed: %s" % (self.s.logs_uri, res.brief()))

    def shutdown(self) -> None:
        if self._shutdown_called:
            return
        self._shutdown_called = True
        if self.stop is not None and self.stop.kind is StopKind.SIGNAL and self.system_going_down():
            # The OS is already powering off (the instance is being terminated or stopped): no second shutdown.
            self.log("the system is already shutting down: no shutdown call")
            self.log.close()
            return
        self.log.close()
        try:
            subprocess.run(["shutdown", "-h", "now"], check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            sys.stderr.write("run-job: shutdown -h now failed: %s\n" % e)


def settings_failure(environ: Dict[str, str], error: SettingsError) -> int:
    """Settings that cannot run: say so on stderr (the journal), in status.json when its URI is usable, and end."""
    sys.stderr.write("run-job: FAILED: %s\n" % error)
    uri = environ.get("CAMPAIGN_STATUS_URI", "")
    if uri.startswith("s3://"):
        doc = {"campaign": environ.get("CAMPAIGN_NAME", ""), "run": environ.get("CAMPAIGN_RUN", ""),
               "role": environ.get("CAMPAIGN_ROLE") if environ.get("CAMPAIGN_ROLE") in ("prep", "train") else "train",
               "phase": "failed", "updatedAt": utc_now_iso(), "instanceId": None, "instanceType": None, "progress": None,
               "exitCode": None, "reason": ("invalid runner settings: %s" % error)[:1000], "lastCheckpoint": None,
               "timings": {"nodeBoot": node_boot_time(), "inputsReady": None, "firstStep": None, "jobEnd": None,
                           "shutdown": utc_now_iso()},
               "events": [{"at": utc_now_iso(), "kind": "phase", "phase": "failed", "reason": "invalid runner settings"}]}
        aws = AwsCli(environ.get("AWS_ENDPOINT_URL") or None, lambda m: sys.stderr.write("run-job: %s\n" % m), 2, 1.0, environ)
        aws.put_bytes((json.dumps(doc, indent=2) + "\n").encode(), uri, "application/json", timeout=EXIT_PATH_AWS_TIMEOUT)
    subprocess.run(["shutdown", "-h", "now"], check=False)
    return 1


def main(argv: List[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    environ = merged_environment(os.environ)
    try:
        settings = load_settings(environ)
    except SettingsError as e:
        return settings_failure(environ, e)
    runner = Runner(settings, environ)
    runner.status.timings["nodeBoot"] = node_boot_time()
    signal.signal(signal.SIGTERM, runner.on_signal)
    signal.signal(signal.SIGINT, runner.on_signal)
    return runner.run()
