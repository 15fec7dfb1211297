"""Instance metadata over IMDSv2: a session token by PUT, then GETs that carry it.

Three answers are kept apart: a value (200), "no such item" (404) and "the service did not answer" (anything
else). Only a value is ever read as a spot notice: a metadata service that fails for a while must never stop a
job. https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html
"""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional

TOKEN_TTL_SECONDS = 21600
SPOT_ACTION_PATH = "latest/meta-data/spot/instance-action"


@dataclass(frozen=True)
class Answer:
    """found: the body; missing: 404; otherwise unavailable, with why."""
    body: Optional[str] = None
    missing: bool = False
    problem: Optional[str] = None

    @property
    def found(self) -> bool:
        return self.body is not None


class Imds:
    def __init__(self, endpoint: str, timeout_seconds: float = 2.0):
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout_seconds
        self._token: Optional[str] = None
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, headers: dict) -> "tuple[int, str]":
        req = urllib.request.Request("%s/%s" % (self.endpoint, path.lstrip("/")), method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return res.status, res.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, ""

    def _fresh_token(self) -> Optional[str]:
        status, body = self._request("PUT", "latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
        return body.strip() if status == 200 and body.strip() else None

    def get_once(self, path: str) -> Answer:
        """One GET (and a token when there is none, or it was refused)."""
        try:
            with self._lock:
                if self._token is None:
                    self._token = self._fresh_token()
                token = self._token
            if token is None:
                return Answer(problem="no IMDSv2 token from %s" % self.endpoint)
            status, body = self._request("GET", path, {"X-aws-ec2-metadata-token": token})
        except (OSError, ValueError) as e:  # URLError, timeouts, refused connections
            return Answer(problem="%s unreachable: %s" % (self.endpoint, e))
        if status == 200:
            return Answer(body=body)
        if status == 404:
            return Answer(missing=True)
        if status == 401:
            with self._lock:
                self._token = None  # expired or unknown: the next call asks for a new one
        return Answer(problem="HTTP %d for %s" % (status, path))

    def get(self, path: str, attempts: int = 3, pause_seconds: float = 0.5) -> Answer:
        """GET with retries on "unavailable"; a 404 or a value is final."""
        answer = Answer(problem="not tried")
        for attempt in range(attempts):
            answer = self.get_once(path)
            if answer.found or answer.missing:
                return answer
            if attempt + 1 < attempts:
                time.sleep(pause_seconds * (attempt + 1))
        return answer
