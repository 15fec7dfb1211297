"""The optional EBS data volume (compute.dataVolumeGb): found by its volume id, formatted once, mounted, and
used to stage the dataset, so a node that replaces an interrupted one re-stages only what changed.

On Nitro instances EBS volumes are NVMe devices whose names (/dev/nvme1n1 ...) follow discovery order, not the
device name given at attach time; udev links each one as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id
without the dash>, from the volume id in the NVMe serial number.
https://docs.aws.amazon.com/ebs/latest/userguide/identify-nvme-ebs-device.html
"""
from __future__ import annotations

import os
import subprocess
import time
from typing import Callable, List

BY_ID_PREFIX = "nvme-Amazon_Elastic_Block_Store_"
FILESYSTEM = "ext4"
LABEL = "campaign-data"


class DataVolumeError(Exception):
    pass


def device_link(by_id_dir: str, volume_id: str) -> str:
    """/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123... for vol-0123..."""
    return os.path.join(by_id_dir, BY_ID_PREFIX + volume_id.replace("-", "", 1))


def mounted_at(mountpoint: str, mounts_text: str) -> bool:
    target = os.path.realpath(mountpoint)
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].replace("\\040", " ") == target:
            return True
    return False


def _run(argv: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=600)


def prepare(volume_id: str, by_id_dir: str, mountpoint: str, log: Callable[[str], None],
            wait_seconds: float = 300, mounts_file: str = "/proc/mounts") -> str:
    """Mounts the volume at `mountpoint` (formatting it first if it has no filesystem); returns the mountpoint.

    The attachment may land after the runner starts, so the device link is awaited for up to `wait_seconds`."""
    link = device_link(by_id_dir, volume_id)
    deadline = time.monotonic() + wait_seconds
    while not os.path.exists(link):
        if time.monotonic() > deadline:
            raise DataVolumeError("data volume %s did not appear at %s within %.0f s (is it attached to this instance?)"
                                  % (volume_id, link, wait_seconds))
        time.sleep(2)
    with open(mounts_file, encoding="utf-8") as f:
        if mounted_at(mountpoint, f.read()):
            log("data volume %s already mounted at %s" % (volume_id, mountpoint))
            return mountpoint
    device = os.path.realpath(link)
    # blkid prints nothing and exits 2 for a device without a filesystem: a new volume.
    probe = _run(["blkid", "-o", "value", "-s", "TYPE", device])
    kind = probe.stdout.decode("utf-8", "replace").strip()
    if probe.returncode not in (0, 2):
        raise DataVolumeError("blkid %s failed (exit %d): %s" % (device, probe.returncode, kind))
    if not kind:
        made = _run(["mkfs.%s" % FILESYSTEM, "-q", "-L", LABEL, device])
        if made.returncode != 0:
            raise DataVolumeError("formatting data volume %s (%s) failed: %s"
                                  % (volume_id, device, made.stdout.decode("utf-8", "replace").strip()[-300:]))
        log("data volume %s (%s) formatted as %s" % (volume_id, device, FILESYSTEM))
    os.makedirs(mountpoint, exist_ok=True)
    mounted = _run(["mount", device, mountpoint])
    if mounted.returncode != 0:
        raise DataVolumeError("mounting data volume %s (%s) at %s failed: %s"
                              % (volume_id, device, mountpoint, mounted.stdout.decode("utf-8", "replace").strip()[-300:]))
    log("data volume %s (%s, %s) mounted at %s" % (volume_id, device, kind or FILESYSTEM, mountpoint))
    return mountpoint
