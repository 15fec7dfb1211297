"""Checkpoint uploads: a worker thread beside the control loop, so a stop is acted on at once whatever is
uploading. Each pass uploads the newest complete local checkpoints first (checkpoints.upload_order): the files,
then the marker last, so S3 never holds a marker without its files. Each checkpoint is first snapshotted with
hard links (no copy, no extra space), so a trainer that saves and rotates faster than one upload cannot pull the
files from under it; one that was rotated away before its snapshot is skipped, never fatal. Then S3 is pruned to
the newest `keep` (marker first).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from typing import Callable, Optional, Set

from . import checkpoints
from .aws import AwsCli, Cancelled, as_prefix
from .contract import CHECKPOINT_MARKER


class CheckpointSync:
    def __init__(self, aws: AwsCli, local_dir: str, snapshot_dir: str, uri: str, keep: int, log: Callable[[str], None],
                 on_uploaded: Callable[[str, int], None]):
        self.aws = aws
        self.local_dir = local_dir
        self.snapshot_dir = snapshot_dir
        self.uri = as_prefix(uri)
        self.keep = keep
        self.log = log
        self.on_uploaded = on_uploaded
        self.uploaded: Set[int] = set()
        self._lock = threading.Lock()  # one pass at a time: the worker's and the final one
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel = threading.Event()  # ends the worker's upload in flight: the final pass takes over
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

    def sync_once(self, cancel: Optional[threading.Event] = None, prune: bool = True, newest_only: bool = False) -> None:
        """One pass: uploads, then (unless the caller prunes later, beside other uploads) pruning. newest_only: the
        one checkpoint a resume needs, when time is short (a spot notice leaves two minutes)."""
        with self._lock:
            order = checkpoints.upload_order(self.local_complete(), self.uploaded, 1 if newest_only else self.keep)
            for step in order:
                if not self._upload(step, cancel):
                    return
            if prune:
                self._prune()

    def prune(self) -> None:
        with self._lock:
            self._prune()

    def snapshot(self, name: str) -> Optional[str]:
        """Hard links of checkpoint `name`'s files in the snapshot dir, the marker first; None when the trainer
        removed (or is removing) the checkpoint. Raises OSError when the disk refuses links."""
        source = os.path.join(self.local_dir, name)
        target = os.path.join(self.snapshot_dir, name)
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.makedirs(target)
            os.link(os.path.join(source, CHECKPOINT_MARKER), os.path.join(target, CHECKPOINT_MARKER))
            for root, dirs, files in os.walk(source):
                rel = os.path.relpath(root, source)
                for d in dirs:
                    os.makedirs(os.path.join(target, rel, d), exist_ok=True)
                for f in files:
                    if rel == "." and f == CHECKPOINT_MARKER:
                        continue
                    os.link(os.path.join(root, f), os.path.join(target, rel, f))
        except FileNotFoundError:
            shutil.rmtree(target, ignore_errors=True)
            return None
        if not os.path.isdir(source):  # rotated while it was linked: the snapshot may lack files
            shutil.rmtree(target, ignore_errors=True)
            return None
        return target

    def _upload(self, step: int, cancel: Optional[threading.Event]) -> bool:
        """True when the pass may go on (uploaded, or vanished and skipped); False after a failure."""
        name = checkpoints.checkpoint_name(step)
        started = time.monotonic()
        try:
            path = self.snapshot(name)
        except OSError as e:
            self.log("cannot snapshot %s for its upload (%s): will retry" % (name, e))
            return False
        if path is None:
            self.log("%s vanished locally before its upload (the trainer rotated it): skipped" % name)
            return True
        try:
            return self._upload_snapshot(step, name, path, started, cancel)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _upload_snapshot(self, step: int, name: str, path: str, started: float, cancel: Optional[threading.Event]) -> bool:
        files = self.aws.s3("sync", "--delete", path, self.uri + name + "/", "--exclude", CHECKPOINT_MARKER, cancel=cancel)
        if not files.ok:
            self.log("uploading %s failed (will retry): %s" % (name, files.brief()))
            return False
        done = self.aws.s3("cp", os.path.join(path, CHECKPOINT_MARKER), self.uri + name + "/" + CHECKPOINT_MARKER,
                           cancel=cancel)
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
                    self.sync_once(self._cancel)
                except Cancelled:
                    self.log("checkpoint upload in flight stopped: the final pass uploads the newest first")
                except Exception as e:  # a pass that failed is retried on the next; the final pass reports
                    self.log("checkpoint sync pass failed (will retry): %r" % e)

        self._thread = threading.Thread(target=loop, name="checkpoint-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ends the worker, stopping its upload in flight: the job has exited, and its newest checkpoint (often
        the one saved on SIGTERM) goes first in the final pass rather than after an older one."""
        self._stop.set()
        self._cancel.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
