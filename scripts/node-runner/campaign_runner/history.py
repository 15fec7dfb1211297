"""The training history's upload: this attempt's metrics.jsonl (CAMPAIGN_METRICS_FILE), whole, to
<CAMPAIGN_METRICS_URI><attempt>.jsonl beside the status heartbeat, and at the end the attempt's final status to
<attempt>.status.json. S3 objects cannot be appended to, so each attempt (node) owns its objects and never touches
another's; the file is small (one line per logged step), so a whole-file upload each time is cheap. A reader merges
the attempts in order (components/report/history.ts). Only whole lines go up: a line the trainer is still writing
waits for the next upload.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Optional

from .aws import AwsCli, as_prefix


def whole_lines(data: bytes) -> bytes:
    """`data` up to and including its last newline."""
    end = data.rfind(b"\n")
    return data[:end + 1] if end >= 0 else b""


class HistoryUpload:
    def __init__(self, aws: AwsCli, local_path: str, prefix_uri: str, attempt_id: str, log: Callable[[str], None]):
        self.aws = aws
        self.local_path = local_path
        self.history_uri = "%s%s.jsonl" % (as_prefix(prefix_uri), attempt_id)
        self.status_uri = "%s%s.status.json" % (as_prefix(prefix_uri), attempt_id)
        self.log = log
        self.uploaded_bytes = 0
        self._lock = threading.Lock()  # the heartbeat's upload and the final one never overlap

    def upload(self, timeout: Optional[float] = None, cancel: Optional[threading.Event] = None) -> bool:
        """Uploads the file when it has grown by whole lines since the last upload; True when S3 is up to date."""
        with self._lock:
            try:
                with open(self.local_path, "rb") as f:
                    data = whole_lines(f.read())
            except FileNotFoundError:
                return True  # the job has logged nothing yet
            except OSError as e:
                self.log("cannot read the training history %s (%s)" % (self.local_path, e))
                return False
            if len(data) == self.uploaded_bytes:
                return True
            res = self.aws.put_bytes(data, self.history_uri, "application/x-ndjson", timeout=timeout, cancel=cancel)
            if not res.ok:
                self.log("training history upload to %s failed (will retry): %s" % (self.history_uri, res.brief()))
                return False
            self.uploaded_bytes = len(data)
            return True

    def upload_final(self, status: bytes, timeout: Optional[float]) -> None:
        """The history's last lines and this attempt's final status (its timings, phase and reason), for the report."""
        self.upload(timeout=timeout)
        res = self.aws.put_bytes(status, self.status_uri, "application/json", timeout=timeout)
        if not res.ok:
            self.log("the attempt's status upload to %s failed: %s" % (self.status_uri, res.brief()))

    def remove_local(self) -> None:
        """A rerun on the same node starts its own history (a new attempt id)."""
        try:
            os.remove(self.local_path)
        except FileNotFoundError:
            pass
