"""The run's attempts across nodes, for status.json's `attempts` (components/campaign/attempts.ts reads them).

Each node that works on a run is one attempt. At start the runner reads the status.json an earlier node left
(check_previous_status) and carries that status's attempts forward; a status written before runners kept attempts
becomes one attempt of its own. The current node's attempt is rendered from the StatusBook each time, last.
Relaunch counts the failed attempts of the spec it would run (compute.retries), so a failure of every earlier node
counts, not only this node's. At most MAX_ATTEMPTS are kept, the newest.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from .contract import TERMINAL_PHASES

# Far more nodes than compute.retries ever allows; keeps status.json small if a run is relaunched for months.
MAX_ATTEMPTS = 50

ATTEMPT_KEYS = ("node", "instanceType", "specHash", "startedAt", "endedAt", "outcome", "reason", "exitCode")


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _clean(entry: Any) -> Optional[Dict[str, Any]]:
    """An attempt as status.json holds it; None when the entry is not one (it is dropped, never guessed at)."""
    if not isinstance(entry, dict):
        return None
    outcome = entry.get("outcome")
    if outcome is not None and outcome not in TERMINAL_PHASES:
        return None
    return {"node": _str(entry.get("node")), "instanceType": _str(entry.get("instanceType")), "specHash": _str(entry.get("specHash")),
            "startedAt": _str(entry.get("startedAt")), "endedAt": _str(entry.get("endedAt")), "outcome": outcome,
            "reason": _str(entry.get("reason")), "exitCode": _int(entry.get("exitCode"))}


def _from_status(status: Dict[str, Any]) -> Dict[str, Any]:
    """A status.json written before runners kept attempts, as the one attempt it describes."""
    phase = status.get("phase")
    terminal = phase in TERMINAL_PHASES
    timings = status.get("timings") if isinstance(status.get("timings"), dict) else {}
    return {"node": _str(status.get("instanceId")), "instanceType": _str(status.get("instanceType")), "specHash": None,
            "startedAt": _str(timings.get("nodeBoot")), "endedAt": _str(status.get("updatedAt")) if terminal else None,
            "outcome": phase if terminal else None, "reason": _str(status.get("reason")), "exitCode": _int(status.get("exitCode"))}


def carried(previous_text: str) -> List[Dict[str, Any]]:
    """The attempts to carry forward from the status.json an earlier node left (its text); [] when it is not a status.
    An attempt that never reached an outcome (its node ended without a final status) is kept with the phase it was
    last seen in as its reason: it is history, but not a failure."""
    try:
        status = json.loads(previous_text)
    except ValueError:
        return []
    if not isinstance(status, dict):
        return []
    listed = status.get("attempts")
    if isinstance(listed, list):
        attempts = [a for a in (_clean(e) for e in listed) if a is not None]
    elif "phase" in status:
        attempts = [_from_status(status)]
    else:
        attempts = []
    if attempts and attempts[-1]["outcome"] is None:
        last = dict(attempts[-1])
        last["reason"] = "ended without a final status (last seen %s)" % (_str(status.get("phase")) or "unknown")
        attempts[-1] = last
    return attempts[-(MAX_ATTEMPTS - 1):]


def current(book: Any) -> Dict[str, Any]:
    """This node's attempt, from the StatusBook (read under its lock by the caller)."""
    phase = book.phase.value
    terminal = phase in TERMINAL_PHASES
    ended = None
    if terminal:
        ended = next((e["at"] for e in reversed(book.events) if e.get("kind") == "phase" and e.get("phase") == phase), None)
    return {"node": book.instance_id, "instanceType": book.instance_type, "specHash": book.spec_hash, "startedAt": book.started_at,
            "endedAt": ended, "outcome": phase if terminal else None, "reason": book.reason if terminal else None,
            "exitCode": book.exit_code}


def history(book: Any) -> List[Dict[str, Any]]:
    """status.json's `attempts`: the carried ones, then this node's."""
    return [dict(a) for a in book.earlier_attempts] + [current(book)]
