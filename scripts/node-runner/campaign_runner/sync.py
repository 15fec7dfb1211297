"""Checkpoint uploads: a worker thread beside the control loop, so a stop is acted on at once whatever is
uploading. Each pass uploads the newest complete local checkpoints first (checkpoints.upload_order): the files,
then the marker last, so S3 never holds a marker without its files. A checkpoint that the trainer rotated away
while it was uploading is skipped, never fatal. Then S3 is pruned to the newest `keep` (marker first).
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable, Optional, Set

from . import checkpoints
from .aws import AwsCli, as_prefix
from .contract import CHECKPOINT_MARKER


class CheckpointSync:
    def __init__(self, aws: AwsCli, local_dir: str, uri: str, keep: int, log: Callable[[str], None],
                 on_uploaded: Callable[[str, int], None]):
        self.aws = aws
        self.local_dir = local_dir
        self.uri = as_prefix(uri)
        self.keep = keep
        self.log = log
        self.on_uploaded = on_uploaded
        self.uploaded: Set[int] = set()
        self._lock = threading.Lock()  # one pass at a time: the worker's and the final one
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ one pass

    def local_complete(self) -> Set[int]:
        steps = set()
        try:
            names = os.listdir(self.local_dir)
        except OSError:
            return steps
        for name in names:
            step = checkpoints.step_of(name)
            if step is not None and os.path.isfile(os.path.join(self.local_dir, name, CHECKPOINT_MARKER)):
                steps.add(step)
        return steps

    def sync_once(self) -> None:
        with self._lock:
            for step in checkpoints.upload_order(self.local_complete(), self.uploaded, self.keep):
                if not self._upload(step):
                    return
            self._prune()

    def _upload(self, step: int) -> bool:
        """True when the pass may go on (uploaded, or vanished and skipped); False after a failure."""
        name = checkpoints.checkpoint_name(step)
        path = os.path.join(self.local_dir, name)
        marker = os.path.join(path, CHECKPOINT_MARKER)
        started = time.monotonic()
        try:
            with open(marker, "rb") as f:
                marker_bytes = f.read()
        except OSError:
            self.log("%s vanished locally before its upload (the trainer rotated it): skipped" % name)
            return True
        files = self.aws.s3("sync", "--delete", path, self.uri + name + "/", "--exclude", CHECKPOINT_MARKER)
        if not os.path.isfile(marker):
            self.log("%s vanished locally while it uploaded (the trainer rotated it): skipped" % name)
            return True
        if not files.ok:
            self.log("uploading %s failed (will retry): %s" % (name, files.brief()))
            return False
        # The marker from memory: the local one may be gone by now, and S3 must get the bytes that were read.
        done = self.aws.s3("cp", "-", self.uri + name + "/" + CHECKPOINT_MARKER, "--content-type", "application/json",
                           stdin=marker_bytes)
        if not done.ok:
            self.log("uploading %s's marker failed (will retry): %s" % (name, done.brief()))
            return False
        self.uploaded.add(step)
        self.on_uploaded(name, step)
        self.log("uploaded %s in %d ms" % (name, (time.monotonic() - started) * 1000))
        return True

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        listed, objects = self.aws.list_objects(self.uri)
        if not listed.ok:
            self.log("pruning checkpoints failed (will retry): %s" % listed.brief())
            return
        for step in checkpoints.prune_victims(checkpoints.remote_steps(k for k, _ in objects), self.keep):
            name = checkpoints.checkpoint_name(step)
            # The marker first, so a half-deleted checkpoint is never taken for a complete one.
            first = self.aws.s3("rm", self.uri + name + "/" + CHECKPOINT_MARKER)
            rest = self.aws.s3("rm", self.uri + name + "/", "--recursive") if first.ok else first
            if not rest.ok:
                self.log("pruning %s failed (will retry): %s" % (name, rest.brief()))
                return
            self.uploaded.discard(step)
            self.log("pruned %s from S3" % name)

    # ------------------------------------------------------------------ restore

    def restore(self, spec_hash: Optional[str]) -> Optional[int]:
        """Downloads the newest complete checkpoint of this spec; its step, or None (start from scratch).
        Raises RuntimeError with the CLI's message when S3 cannot be read."""
        listed, objects = self.aws.list_objects(self.uri)
        if not listed.ok:
            raise RuntimeError("listing checkpoints at %s failed: %s" % (self.uri, listed.brief()))
        steps = checkpoints.remote_steps(k for k, _ in objects)

        def marker_of(step: int) -> Optional[dict]:
            got = self.aws.s3("cp", self.uri + checkpoints.checkpoint_name(step) + "/" + CHECKPOINT_MARKER, "-")
            if not got.ok:
                raise RuntimeError("reading %s's marker failed: %s" % (checkpoints.checkpoint_name(step), got.brief()))
            try:
                value = json.loads(got.stdout)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None

        choice = checkpoints.choose_restore(steps, marker_of, spec_hash)
        for why in choice.refused:
            self.log("not restoring %s" % why)
        if choice.step is None:
            self.log("no complete checkpoint of this spec in %s: starting from scratch" % self.uri)
            return None
        name = checkpoints.checkpoint_name(choice.step)
        if choice.partial_above:
            self.log("ignoring partial checkpoints above %s (no %s): %s"
                     % (name, CHECKPOINT_MARKER, ", ".join(checkpoints.checkpoint_name(s) for s in choice.partial_above)))
        started = time.monotonic()
        got = self.aws.s3("sync", self.uri + name + "/", os.path.join(self.local_dir, name))
        if not got.ok:
            raise RuntimeError("restoring %s failed: %s" % (name, got.brief()))
        if not os.path.isfile(os.path.join(self.local_dir, name, CHECKPOINT_MARKER)):
            raise RuntimeError("restored %s lacks %s" % (name, CHECKPOINT_MARKER))
        self.uploaded.add(choice.step)
        self.on_uploaded(name, choice.step)
        self.log("restored %s in %.1f s" % (name, time.monotonic() - started))
        return choice.step

    # ------------------------------------------------------------------ the worker

    def start(self, interval_seconds: float) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(interval_seconds)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self.sync_once()
                except Exception as e:  # a pass that failed is retried on the next; the final pass reports
                    self.log("checkpoint sync pass failed (will retry): %r" % e)

        self._thread = threading.Thread(target=loop, name="checkpoint-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ends the worker after the upload in flight (it is worth finishing: the job may be gone)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
