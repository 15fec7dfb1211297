"""Graceful stop and restart through S3: the run's control.json and the campaign's, polled cheaply.

`npm run campaign -- stop` writes {"action": "stop" | "restart", "requestedAt": ...} (components/campaign/contract.ts,
controlRequest; containers/schemas/control.schema.json). Both actions end this node the same way (SIGTERM to the job,
which saves a checkpoint and exits 75, the final sync, status `interrupted` "stopped on request", shutdown); they
differ only in what the next `pulumi up` declares (components/campaign/relaunch.ts).

Each poll is one conditional GET per object: `aws s3api get-object --if-none-match <ETag>` answers "An error occurred
(304) when calling the GetObject operation: Not Modified" (exit 255) while the object is unchanged, so a poll moves no
body. https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (If-None-Match: "otherwise, return a 304
Not Modified error").

What was there when this node's runner started is its baseline: a `stop` there is acted on at once (it was written
after the `pulumi up` that declared this node read the state), a `restart` there is not (a node before this one
honoured it; this node is the new one it asked for). Every `campaign stop` writes a new body (its time), so a new
request always has a new ETag. An object that is not a request (not JSON, an unknown action) is a warning in
status.json, once per version, and never stops anything.
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from .aws import NOT_FOUND, AwsCli, Cancelled, bucket_of, key_of
from .contract import CONTROL_ACTIONS as ACTIONS

NOT_MODIFIED = re.compile(r"\(304\)|Not Modified")


@dataclass(frozen=True)
class ControlDecision:
    """What one version of a control object asks: an action to take now, a warning, or nothing."""
    action: Optional[str] = None
    warning: Optional[str] = None
    note: Optional[str] = None


def decide(uri: str, body: bytes, at_baseline: bool) -> ControlDecision:
    """Pure: a control object's body (one version of it) and whether it was already there when the runner started."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return ControlDecision(warning="control object %s is not JSON (%s); ignored" % (uri, e))
    if not isinstance(doc, dict):
        return ControlDecision(warning="control object %s is not a JSON object; ignored" % uri)
    action = doc.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        return ControlDecision(warning="control object %s asks for action %s, which is not one of %s; ignored"
                                       % (uri, json.dumps(action), ", ".join(ACTIONS)))
    if action == "restart" and at_baseline:
        return ControlDecision(note="control object %s asks for a restart that was there before this node's runner "
                                    "started: this node is the restart; nothing to do" % uri)
    return ControlDecision(action=action)


class ControlPoller:
    """Polls each control object every `poll_seconds` until a request is acted on or the runner finishes."""

    def __init__(self, aws: AwsCli, uris: Sequence[str], poll_seconds: float, state_dir: str,
                 log: Callable[[str], None], warn: Callable[[str], None],
                 on_request: Callable[[str, str], None], finished: threading.Event):
        self.aws = aws
        self.uris: List[str] = [u for u in uris if u]
        self.poll_seconds = poll_seconds
        self.state_dir = state_dir
        self.log = log
        self.warn = warn
        self.on_request = on_request
        self.finished = finished
        self._etags: Dict[str, Optional[str]] = {}
        self._failing: Dict[str, bool] = {}

    def run(self) -> None:
        """The poller thread: the first pass is the baseline."""
        at_baseline = True
        while not self.finished.is_set():
            for index, uri in enumerate(self.uris):
                try:
                    decision = self.check(uri, index, at_baseline)
                except Cancelled:
                    return
                if decision is None:
                    continue
                if decision.note:
                    self.log(decision.note)
                if decision.warning:
                    self.log(decision.warning)
                    self.warn(decision.warning)
                if decision.action:
                    self.log("control object %s asks for %s" % (uri, decision.action))
                    self.on_request(decision.action, uri)
                    return
            at_baseline = False
            if self.finished.wait(self.poll_seconds):
                return

    def check(self, uri: str, index: int, at_baseline: bool) -> Optional[ControlDecision]:
        """One conditional GET; a decision only for a version not seen before."""
        out = os.path.join(self.state_dir, "control-%d.json" % index)
        args = ["s3api", "get-object", "--bucket", bucket_of(uri), "--key", key_of(uri), "--output", "json"]
        known = self._etags.get(uri)
        if known:
            args += ["--if-none-match", known]
        res = self.aws.run(args + [out], cancel=self.finished, timeout=60)
        if not res.ok:
            if NOT_MODIFIED.search(res.stderr):
                return None
            if NOT_FOUND.search(res.stderr):
                self._etags[uri] = None  # deleted (a cleared stop): a later one is new
                return None
            if not self._failing.get(uri):
                self._failing[uri] = True
                self.log("cannot read control object %s (%s): polling on" % (uri, res.brief()[:300]))
            return None
        self._failing[uri] = False
        try:
            etag = json.loads(res.stdout).get("ETag")
        except (ValueError, AttributeError):
            etag = None
        self._etags[uri] = etag
        try:
            with open(out, "rb") as f:
                body = f.read()
        except OSError as e:
            self.log("cannot read the downloaded control object %s (%s)" % (uri, e))
            return None
        return decide(uri, body, at_baseline)
