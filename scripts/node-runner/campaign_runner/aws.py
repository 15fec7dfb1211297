"""The AWS CLI, the runner's only way to AWS: S3 transfers, SSM and ECR calls as subprocesses.

Every call passes AWS_ENDPOINT_URL explicitly as --endpoint-url (AWS CLI v2 releases before 2.13 ignore the
variable), can be cancelled from another thread (a stop is acted on within a second, whatever is uploading),
and is retried with backoff when S3 throttles (503 SlowDown) or has an internal error: the CLI's own retries
(AWS_MAX_ATTEMPTS, standard mode) are bounded, and a checkpoint must still get through a few minutes of
throttling. https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set

# Answers worth another try: throttling and S3's own transient errors (not "cannot connect", not "denied").
RETRYABLE = re.compile(r"SlowDown|\(503\)|Service Unavailable|ServiceUnavailable|InternalError|\(500\)|RequestTimeout\b")
NOT_FOUND = re.compile(r"\(404\)|NoSuchKey|Not Found|does not exist")
# Instance families where AWS CLI v2 picks the CRT transfer client on its own; the runner asks for it explicitly.
# https://docs.aws.amazon.com/cli/latest/topic/s3-config.html (preferred_transfer_client)
CRT_FAMILIES = re.compile(r"^(p4d|p4de|p5|p5e|p5en)\.")


class Cancelled(Exception):
    """A call was stopped because the runner is stopping."""


@dataclass(frozen=True)
class Result:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def brief(self) -> str:
        return tail_brief(self.stderr or self.stdout)


def tail_brief(text: str, lines: int = 5, limit: int = 600) -> str:
    """The last lines of a message on one line, bounded, for a status reason."""
    tail = " ".join(text.strip().splitlines()[-lines:])
    return re.sub(r"\s+", " ", tail)[-limit:]


def bucket_of(uri: str) -> str:
    return uri[len("s3://"):].split("/", 1)[0]


def key_of(uri: str) -> str:
    rest = uri[len("s3://"):]
    return rest.split("/", 1)[1] if "/" in rest else ""


def as_prefix(uri: str) -> str:
    return uri.rstrip("/") + "/"


class AwsCli:
    def __init__(self, endpoint: Optional[str], log: Callable[[str], None], retry_attempts: int = 6,
                 retry_base_seconds: float = 1.0, environ: Optional[Dict[str, str]] = None):
        self.endpoint = endpoint
        self.log = log
        self.retry_attempts = retry_attempts
        self.retry_base_seconds = retry_base_seconds
        self.env = dict(os.environ if environ is None else environ)
        self.env.setdefault("AWS_RETRY_MODE", "standard")
        self.env.setdefault("AWS_MAX_ATTEMPTS", "5")
        self.env["AWS_PAGER"] = ""
        # The AWS CLI v1 reads AWS_DEFAULT_REGION only.
        if self.env.get("AWS_REGION") and not self.env.get("AWS_DEFAULT_REGION"):
            self.env["AWS_DEFAULT_REGION"] = self.env["AWS_REGION"]
        self._procs: Set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    def call(self, args: Sequence[str], *, stdin: Optional[bytes] = None, timeout: Optional[float] = None,
             cancel: Optional[threading.Event] = None) -> Result:
        """One `aws` invocation. Raises Cancelled when `cancel` is set while it runs."""
        argv: List[str] = ["aws"]
        if self.endpoint:
            argv += ["--endpoint-url", self.endpoint]
        argv += list(args)
        if cancel is not None and cancel.is_set():
            raise Cancelled(" ".join(args[:2]))
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with self._lock:
            self._procs.add(proc)
        try:
            return self._wait(proc, argv, stdin, timeout, cancel)
        finally:
            with self._lock:
                self._procs.discard(proc)

    def _wait(self, proc: subprocess.Popen, argv: List[str], stdin: Optional[bytes], timeout: Optional[float],
              cancel: Optional[threading.Event]) -> Result:
        out: Dict[str, bytes] = {}
        # communicate() in a helper thread so this one can watch the cancel flag and the deadline.
        reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate(stdin))), daemon=True)
        reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while reader.is_alive():
            reader.join(0.1)
            if cancel is not None and cancel.is_set() and reader.is_alive():
                proc.kill()
                reader.join()
                raise Cancelled(" ".join(argv[1:4]))
            if deadline is not None and time.monotonic() > deadline and reader.is_alive():
                proc.kill()
                reader.join()
                return Result(argv, 124, "", "timed out after %.0f s" % timeout)
        return Result(argv, proc.returncode, out.get("stdout", b"").decode("utf-8", "replace"),
                      out.get("stderr", b"").decode("utf-8", "replace"))

    def run(self, args: Sequence[str], *, stdin: Optional[bytes] = None, timeout: Optional[float] = None,
            cancel: Optional[threading.Event] = None) -> Result:
        """A call retried with exponential backoff while S3 answers SlowDown or a 5xx."""
        result = self.call(args, stdin=stdin, timeout=timeout, cancel=cancel)
        for attempt in range(1, self.retry_attempts):
            if result.ok or not RETRYABLE.search(result.stderr):
                return result
            pause = self.retry_base_seconds * (2 ** (attempt - 1))
            self.log("S3 is throttling or failing (%s): retry %d of %d in %.0f s"
                     % (result.brief()[:200], attempt, self.retry_attempts - 1, pause))
            if cancel is not None:
                if cancel.wait(pause):
                    raise Cancelled(" ".join(args[:2]))
            else:
                time.sleep(pause)
            result = self.call(args, stdin=stdin, timeout=timeout, cancel=cancel)
        return result

    def kill_all(self) -> None:
        """Stops every call in flight (the exit path's last resort)."""
        with self._lock:
            for proc in list(self._procs):
                proc.kill()

    # ------------------------------------------------------------------ S3

    def s3(self, *args: str, cancel: Optional[threading.Event] = None, timeout: Optional[float] = None,
           stdin: Optional[bytes] = None) -> Result:
        return self.run(["s3", *args, "--only-show-errors"], cancel=cancel, timeout=timeout, stdin=stdin)

    def put_bytes(self, data: bytes, uri: str, content_type: str, timeout: Optional[float] = None,
                  cancel: Optional[threading.Event] = None) -> Result:
        """Streams `data` from memory (`aws s3 cp - URI`): nothing touches the local disk, which may be full."""
        return self.s3("cp", "-", uri, "--content-type", content_type, stdin=data, timeout=timeout, cancel=cancel)

    def list_objects(self, prefix_uri: str, cancel: Optional[threading.Event] = None) -> "tuple[Result, List[tuple]]":
        """(result, [(key relative to the prefix, size)]) for every object under the prefix."""
        import json

        prefix = key_of(as_prefix(prefix_uri))
        result = self.run(["s3api", "list-objects-v2", "--bucket", bucket_of(prefix_uri), "--prefix", prefix, "--output", "json"],
                          cancel=cancel)
        if not result.ok:
            return result, []
        text = result.stdout.strip()
        contents = (json.loads(text).get("Contents") or []) if text else []
        return result, [(o["Key"][len(prefix):], int(o.get("Size", 0))) for o in contents]

    def head_exists(self, uri: str, cancel: Optional[threading.Event] = None) -> Result:
        return self.run(["s3api", "head-object", "--bucket", bucket_of(uri), "--key", key_of(uri)], cancel=cancel)

    # ------------------------------------------------------------------ transfer settings

    def tune_transfers(self, instance_type: Optional[str], config_path: str, cpus: int) -> str:
        """Writes the CLI's S3 transfer settings to a config file of our own; returns what was chosen."""
        home = self.env.get("HOME") or "/root"
        if self.env.get("AWS_CONFIG_FILE") or os.path.exists(os.path.join(home, ".aws", "config")):
            return "using the existing AWS CLI config; transfer settings left as they are"
        version = ""
        if instance_type and CRT_FAMILIES.match(instance_type):
            answer = self.call(["--version"])
            version = (answer.stdout + answer.stderr).strip()
        lines = ["[default]", "region = %s" % self.env.get("AWS_DEFAULT_REGION", ""), "s3 ="]
        if version.startswith("aws-cli/2"):
            lines.append("  preferred_transfer_client = crt")
            chosen = "S3 transfers: CRT client (%s)" % instance_type
        else:
            concurrency = min(max(cpus * 4, 10), 64)
            lines += ["  max_concurrent_requests = %d" % concurrency, "  max_queue_size = 10000",
                      "  multipart_threshold = 64MB", "  multipart_chunksize = 16MB"]
            chosen = "S3 transfers: %d concurrent requests" % concurrency
        with open(config_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.env["AWS_CONFIG_FILE"] = config_path
        return chosen
