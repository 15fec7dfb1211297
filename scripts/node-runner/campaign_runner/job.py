"""The job: a docker container (nodes) or a plain process (tests, the rehearsal), its signals and exit code.

The job sees the fixed paths of contract.json's jobPaths: in docker mode the work dir's job/ is mounted at
/job; in process mode the same variables point at the host dirs.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Dict, IO, List, Optional, Sequence, Tuple

from .contract import JOB_PATHS

CONTAINER_ROOT = "/job"
ECR_REGISTRY = re.compile(r"^[0-9]{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


@dataclass(frozen=True)
class JobLayout:
    """Where the job's paths live on the host. data_dir differs from job_dir/data when a data volume is used."""
    job_dir: str
    data_dir: str

    def host_path(self, container_path: str) -> str:
        if container_path == CONTAINER_ROOT + "/data":
            return self.data_dir
        return self.job_dir + container_path[len(CONTAINER_ROOT):]

    def host_env(self) -> Dict[str, str]:
        return {name: self.host_path(path) for name, path in JOB_PATHS.items()}

    def dir_of(self, name: str) -> str:
        """The host path of a jobPaths variable, e.g. CAMPAIGN_CHECKPOINT_DIR."""
        return self.host_path(JOB_PATHS[name])


def ecr_registry(image: str) -> Optional[Tuple[str, str]]:
    """(registry, region) when the image is in ECR and needs `docker login`."""
    registry = image.split("/", 1)[0]
    m = ECR_REGISTRY.match(registry)
    return (registry, m.group(1)) if m else None


def docker_run_argv(name: str, image: str, argv: Sequence[str], layout: JobLayout, gpus: bool,
                    secret_names: Sequence[str]) -> List[str]:
    """`docker run` as the node runs it. Secrets pass by name (-e NAME): the values come from the runner's
    environment and never appear on a command line."""
    cmd = ["docker", "run", "--rm", "--name", name]
    if gpus:
        cmd += ["--gpus", "all"]
    cmd += ["--ipc=host", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864", "--network", "host",
            "-v", "%s:%s" % (layout.job_dir, CONTAINER_ROOT)]
    if layout.data_dir != layout.job_dir + "/data":
        cmd += ["-v", "%s:%s/data" % (layout.data_dir, CONTAINER_ROOT)]
    for var, path in JOB_PATHS.items():
        cmd += ["-e", "%s=%s" % (var, path)]
    for secret in secret_names:
        cmd += ["-e", secret]
    return cmd + [image, *argv]


class Job:
    """One running job. exit codes follow the shell's convention: a signal N reads as 128 + N."""

    def __init__(self, mode: str, container_name: str):
        self.mode = mode
        self.container_name = container_name
        self.proc: Optional[subprocess.Popen] = None
        self.term_sent = False
        self._term_lock = threading.Lock()

    def start(self, argv: Sequence[str], env: Dict[str, str], log: IO[bytes]) -> None:
        if self.mode == "docker":
            subprocess.run(["docker", "rm", "--force", self.container_name], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        # Its own session and process group, so a last-resort SIGKILL reaches every child.
        self.proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def started(self) -> bool:
        return self.proc is not None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM once: a second one could land while the job is exiting and turn its clean 75 into 143. The spot
        watcher thread and the main loop may both ask at the same moment, so the check and the send are one step."""
        with self._term_lock:
            if self.term_sent or not self.alive():
                return
            self.term_sent = True
            self._signal("TERM")

    def kill(self) -> None:
        self._signal("KILL")

    def _signal(self, name: str) -> None:
        if self.proc is None:
            return
        if self.mode == "docker":
            subprocess.run(["docker", "kill", "--signal", name, self.container_name], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            if name == "KILL":
                self._signal_process(signal.SIGKILL)
            return
        self._signal_process(signal.SIGTERM if name == "TERM" else signal.SIGKILL)

    def _signal_process(self, sig: int) -> None:
        assert self.proc is not None
        try:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """The exit code, or None when it is still running after `timeout` seconds."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return 128 - code if code < 0 else code
