"""The runner's log: one line per event to stderr (the journal and the serial console) and to runner.log.

A full disk must not stop the runner, so a failed write to runner.log is noted once and then skipped; stderr
still carries every line.
"""
from __future__ import annotations

import datetime
import sys
import threading
from typing import Callable, Optional, TextIO


def utc_now_iso() -> str:
    """UTC with milliseconds and a Z, the format of status.json's timings."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Log:
    def __init__(self, phase: Callable[[], str], stream: TextIO = sys.stderr):
        self._phase = phase
        self._stream = stream
        self._file: Optional[TextIO] = None
        self._file_failed = False
        self._lock = threading.Lock()

    def open_file(self, path: str) -> None:
        try:
            self._file = open(path, "a", encoding="utf-8")
        except OSError as e:
            self._note_file_failure(e)

    def __call__(self, message: str) -> None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = "%s run-job[%s]: %s\n" % (stamp, self._phase(), message)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr gone (the unit is stopping): runner.log still gets the line
            if self._file is not None and not self._file_failed:
                try:
                    self._file.write(line)
                    self._file.flush()
                except OSError as e:
                    self._note_file_failure(e)

    def _note_file_failure(self, error: OSError) -> None:
        self._file_failed = True
        try:
            self._stream.write("run-job: cannot write runner.log (%s); logging to stderr only\n" % error)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass
                self._file = None
