"""Inputs from S3 to the local disk before the job starts, and the job's output back after it.

A URI that ends in "/" (or names no object) is a prefix and is synced; otherwise the one object is copied.
Before anything is staged, the inputs' total size is checked against the free space, so a volume that is too
small fails at once with the numbers instead of hours later with a half-written dataset.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from .aws import AwsCli, as_prefix, tail_brief

UNREACHABLE = re.compile(r"Could not connect|Connect timeout|Unable to locate credentials")
GIB = 1024 ** 3
MIB = 1024 ** 2


class StagingError(Exception):
    pass


@dataclass(frozen=True)
class Input:
    label: str
    uri: str
    dest: str
    single_object: bool
    size: int


def measure(directory: str) -> "tuple[int, int]":
    """(bytes, files) under a directory. `du -sb` counts the bytes: it is what an operator would run to check."""
    out = subprocess.run(["du", "-sb", directory], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    size = int(out.stdout.split()[0])
    files = sum(len(names) for _, _, names in os.walk(directory))
    return size, files


def local_bytes(directory: str) -> int:
    total = 0
    for root, _, names in os.walk(directory):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def space_problem(needed: int, free: int, where: str, what: str) -> Optional[str]:
    """A sentence when `needed` bytes cannot fit in `free`; None when they can."""
    if needed <= free:
        return None
    return ("not enough space in %s for %s: %.2f GiB needed, %.2f GiB free; use an instance with more local NVMe, "
            "a larger compute.rootVolumeGb or compute.dataVolumeGb" % (where, what, needed / GIB, free / GIB))


class Stager:
    def __init__(self, aws: AwsCli, log: Callable[[str], None], cancel: threading.Event):
        self.aws = aws
        self.log = log
        self.cancel = cancel

    def describe(self, label: str, uri: str, dest: str) -> Input:
        """Where the input is and how large, without downloading it."""
        if not uri.endswith("/"):
            head = self.aws.head_exists(uri, cancel=self.cancel)
            if head.ok:
                import json

                size = int(json.loads(head.stdout or "{}").get("ContentLength", 0))
                return Input(label, uri, dest, True, size)
            if UNREACHABLE.search(head.stderr):
                raise StagingError("staging %s from %s failed: %s" % (label, uri, head.brief()))
        listed, objects = self.aws.list_objects(uri, cancel=self.cancel)
        if not listed.ok:
            raise StagingError("staging %s from %s failed: %s" % (label, uri, listed.brief()))
        if not objects:
            raise StagingError("staging %s: nothing found at %s" % (label, uri))
        return Input(label, as_prefix(uri), dest, False, sum(size for _, size in objects))

    def check_space(self, inputs: List[Input], extra_bytes: int = 0, extra_what: str = "") -> None:
        """Fails early when what is still to download does not fit where it goes."""
        by_fs: dict = {}
        for item in inputs:
            os.makedirs(item.dest, exist_ok=True)
            device = os.stat(item.dest).st_dev
            missing = max(item.size - local_bytes(item.dest), 0)
            where, needed, what = by_fs.get(device, (item.dest, 0, []))
            by_fs[device] = (where, needed + missing, what + [item.label])
        for where, needed, what in by_fs.values():
            names = " and ".join(what + ([extra_what] if extra_what else []))
            problem = space_problem(needed + extra_bytes, shutil.disk_usage(where).free, where, names)
            if problem:
                raise StagingError(problem)

    def stage(self, item: Input) -> None:
        os.makedirs(item.dest, exist_ok=True)
        started = time.monotonic()
        if item.single_object:
            res = self.aws.s3("cp", item.uri, os.path.join(item.dest, os.path.basename(item.uri)), cancel=self.cancel)
        else:
            res = self.aws.s3("sync", item.uri, item.dest, cancel=self.cancel)
        if not res.ok:
            raise StagingError("staging %s from %s failed: %s" % (item.label, item.uri, res.brief()))
        seconds = max(time.monotonic() - started, 0.001)
        size, files = measure(item.dest)
        if files == 0:
            raise StagingError("staging %s: nothing found at %s" % (item.label, item.uri))
        self.log("staged %s: %d files, %d MiB in %.3f s (%d MiB/s) from %s"
                 % (item.label, files, size // MIB, seconds, size / seconds / MIB, item.uri))


def upload_dir(aws: AwsCli, directory: str, uri: str, marker: str) -> Optional[str]:
    """The directory's files to `uri`, then `marker` last (the job's own, or an empty one); an error or None."""
    prefix = as_prefix(uri)
    files = aws.s3("sync", directory, prefix, "--exclude", marker)
    if not files.ok:
        return files.brief()
    path = os.path.join(directory, marker)
    data = b""
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
    done = aws.s3("cp", "-", prefix + marker, stdin=data)
    return None if done.ok else done.brief()


__all__ = ["Stager", "StagingError", "Input", "upload_dir", "space_problem", "tail_brief"]
