"""What the job's docker image needs on disk, known before it is pulled: docker's data root (which file system it
lands on) and the image's compressed size from its manifest in ECR (`aws ecr batch-get-image`: BatchGetImage, the
same registry read a pull makes, so the node's role needs nothing more). The pure parts are functions the tests call
directly."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .aws import AwsCli
from .job import ecr_registry

# Docker keeps an image's layers unpacked; the containerd image store (Docker Engine 29's default on fresh installs)
# keeps the compressed blobs beside them, and the classic store holds each compressed download while it unpacks it.
# No published ratio of unpacked to compressed size was found: 3 is a conservative figure for layers of binaries and
# Python packages (docs/node-runner.md, "Free space"). So an image needs its compressed size 1 + 3 times.
UNPACK_FACTOR = 3
DOCKER_TIMEOUT = 120


def disk_bytes(compressed: int) -> int:
    """What an image of `compressed` bytes (its layers in the registry) needs on docker's file system."""
    return compressed * (1 + UNPACK_FACTOR)


def docker_arch(machine: str) -> str:
    """The OCI architecture name of `uname -m`."""
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def manifest_size(doc: Any, arch: str) -> Tuple[Optional[int], Optional[str]]:
    """An image manifest: (its layers' and config's compressed bytes, None). An index (multi-platform, or with
    attestations): (None, the digest of its linux/<arch> manifest), to be inspected next. Anything else: (None, None)."""
    if isinstance(doc, dict) and isinstance(doc.get("layers"), list):
        sizes = [layer.get("size") for layer in doc["layers"] if isinstance(layer, dict)]
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        sizes.append(config.get("size", 0))
        if all(isinstance(s, int) and s >= 0 for s in sizes):
            return sum(sizes), None
        return None, None
    if isinstance(doc, dict) and isinstance(doc.get("manifests"), list):
        for m in doc["manifests"]:
            p = m.get("platform") if isinstance(m, dict) else None
            if isinstance(p, dict) and p.get("os") == "linux" and p.get("architecture") == arch and isinstance(m.get("digest"), str):
                return None, m["digest"]
    return None, None


def repository_of(image: str) -> str:
    """The image reference without its tag or digest: `host/repo:tag` and `host/repo@sha256:...` give `host/repo`."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def existing_ancestor(path: str) -> str:
    """The nearest existing directory at or above `path`: its file system is where `path` will be created."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


@dataclass(frozen=True)
class ImageNeed:
    """The image's estimated bytes on docker's file system (0 when it is already there)."""
    image: str
    root_dir: str
    compressed: int
    present: bool

    @property
    def size(self) -> int:
        return 0 if self.present else disk_bytes(self.compressed)

    def describe(self) -> str:
        return "the image %s (%.2f GiB compressed, about %.2f GiB with its layers unpacked)" % (
            self.image, self.compressed / 1024 ** 3, disk_bytes(self.compressed) / 1024 ** 3)


MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json")


def image_id(image: str) -> str:
    """The ECR image id of a reference: `imageDigest=sha256:...` for `repo@sha256:...`, else `imageTag=<tag>`."""
    if "@" in image:
        return "imageDigest=" + image.split("@", 1)[1]
    repo = repository_of(image)
    return "imageTag=" + (image[len(repo) + 1:] or "latest")


def _docker(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(["docker", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=DOCKER_TIMEOUT, check=False)


def measure(image: str, aws: AwsCli, cancel: threading.Event) -> Tuple[Optional[ImageNeed], str]:
    """(what the image needs, "") or (None, why it cannot be known before the pull)."""
    ecr = ecr_registry(image)
    if ecr is None:
        return None, "%s is not in ECR, whose manifest gives its size" % image
    registry, region = ecr
    try:
        info = _docker("info", "--format", "{{.DockerRootDir}}")
        if info.returncode != 0 or not info.stdout.strip():
            return None, "docker info did not name its data root: %s" % (info.stderr.strip()[-300:] or "no output")
        root = info.stdout.strip()
        if _docker("image", "inspect", "--format", "{{.Id}}", image).returncode == 0:
            return ImageNeed(image, root, 0, True), ""
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "docker could not be asked: %s" % e
    repository = repository_of(image)[len(registry) + 1:]
    arch = docker_arch(platform.machine())
    wanted = image_id(image)
    for _ in range(2):  # an index names the platform's manifest, which is read next
        res = aws.run(["ecr", "batch-get-image", "--region", region, "--repository-name", repository, "--image-ids", wanted,
                       "--accepted-media-types", *MANIFEST_TYPES, "--output", "json"], timeout=DOCKER_TIMEOUT, cancel=cancel)
        if not res.ok:
            return None, "ecr batch-get-image %s failed: %s" % (image, res.brief())
        try:
            images = json.loads(res.stdout).get("images") or []
            doc = json.loads(images[0]["imageManifest"])
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None, "ECR returned no manifest for %s (%s)" % (image, wanted)
        size, follow = manifest_size(doc, arch)
        if size is not None:
            return ImageNeed(image, root, size, False), ""
        if follow is None:
            return None, "the manifest of %s lists neither layers nor a linux/%s image" % (image, arch)
        wanted = "imageDigest=" + follow
    return None, "the manifest of %s is an index of indexes" % image
