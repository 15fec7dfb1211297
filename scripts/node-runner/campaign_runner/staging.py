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
from typing import Callable, Dict, List, Optional

from .aws import AwsCli, as_prefix, tail_brief
from .image import ImageNeed, existing_ancestor

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


@dataclass(frozen=True)
class Need:
    """Bytes that something still needs on one file system (`device`, reached at `where`)."""
    what: str
    where: str
    device: int
    size: int


def space_problems(needs: List[Need], free: Dict[int, int]) -> List[str]:
    """One sentence per file system whose free space cannot hold everything that goes onto it; none when all fit.
    Each file system counts alone: the local NVMe may hold the inputs while docker's image goes to the root volume."""
    by_device: Dict[int, List[Need]] = {}
    for need in needs:
        by_device.setdefault(need.device, []).append(need)
    problems = []
    for device, group in by_device.items():
        problem = space_problem(sum(n.size for n in group), free[device], group[0].where, " and ".join(n.what for n in group))
        if problem:
            problems.append(problem)
    return problems


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

    def check_space(self, inputs: List[Input], image: Optional[ImageNeed] = None) -> None:
        """Fails early when what is still to download does not fit where it goes: the inputs, and in docker mode the
        image on docker's data root, summed per file system (the root volume may hold both)."""
        needs = []
        for item in inputs:
            os.makedirs(item.dest, exist_ok=True)
            needs.append(Need(item.label, item.dest, os.stat(item.dest).st_dev, max(item.size - local_bytes(item.dest), 0)))
        if image is not None and image.size > 0:
            where = existing_ancestor(image.root_dir)
            needs.append(Need(image.describe(), where, os.stat(where).st_dev, image.size))
        free = {n.device: shutil.disk_usage(n.where).free for n in needs}
        problems = space_problems(needs, free)
        if problems:
            raise StagingError("; ".join(problems))

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


__all__ = ["Stager", "StagingError", "Input", "Need", "upload_dir", "space_problem", "space_problems", "tail_brief"]
