"""The node runner's upload of the training history: whole lines only, each attempt under its own key, nothing
re-sent when nothing changed."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import List, Optional, Tuple

import runner_path  # noqa: F401

from campaign_runner.history import HistoryUpload, whole_lines


class Answer:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def brief(self) -> str:
        return "refused"


class RecordingAws:
    """Stands in for AwsCli.put_bytes: records what went where; `fail` makes the next put fail."""

    def __init__(self) -> None:
        self.puts: List[Tuple[str, bytes]] = []
        self.fail = False

    def put_bytes(self, data: bytes, uri: str, content_type: str, timeout: Optional[float] = None,
                  cancel: Optional[threading.Event] = None) -> Answer:
        if self.fail:
            self.fail = False
            return Answer(False)
        self.puts.append((uri, data))
        return Answer(True)


def test_whole_lines_leaves_out_a_line_still_being_written() -> None:
    assert whole_lines(b'{"step":1}\n{"step":2}\n{"ste') == b'{"step":1}\n{"step":2}\n'
    assert whole_lines(b'{"ste') == b""
    assert whole_lines(b"") == b""


def test_each_attempt_uploads_its_own_file_when_it_grew_and_its_final_status(tmp_path: Path) -> None:
    aws = RecordingAws()
    logs: List[str] = []
    local = tmp_path / "metrics.jsonl"
    up = HistoryUpload(aws, str(local), "s3://b/runs/c/r/metrics/", "20261130T120000Z-i-1", logs.append)  # type: ignore[arg-type]
    assert up.upload() and aws.puts == []  # nothing logged yet
    local.write_bytes(b'{"step":1}\n{"st')
    assert up.upload()
    assert aws.puts == [("s3://b/runs/c/r/metrics/20261130T120000Z-i-1.jsonl", b'{"step":1}\n')]
    assert up.upload() and len(aws.puts) == 1  # the partial line alone is no reason to upload again
    local.write_bytes(b'{"step":1}\n{"step":2}\n')
    aws.fail = True
    assert not up.upload() and "will retry" in logs[-1]
    assert up.upload() and aws.puts[-1][1] == b'{"step":1}\n{"step":2}\n'
    up.upload_final(b'{"phase":"succeeded"}\n', timeout=5)
    assert aws.puts[-1] == ("s3://b/runs/c/r/metrics/20261130T120000Z-i-1.status.json", b'{"phase":"succeeded"}\n')
    assert len(aws.puts) == 3  # the history had not changed since


def test_a_rerun_on_the_same_node_starts_a_fresh_history(tmp_path: Path) -> None:
    local = tmp_path / "metrics.jsonl"
    local.write_text('{"step":9}\n')
    HistoryUpload(RecordingAws(), str(local), "s3://b/m/", "a2", print).remove_local()  # type: ignore[arg-type]
    assert not local.exists()
