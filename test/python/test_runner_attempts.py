"""The runner carries a run's attempts across nodes: what it keeps from the status.json an earlier node left, and
the attempts list it renders (earlier nodes first, this node last), as relaunch (components/campaign/attempts.ts)
and `campaign status` read it. The status it renders is checked against containers/schemas/status.schema.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

import runner_path  # noqa: F401  (puts the runner package on sys.path)
from campaign_runner.attempts import MAX_ATTEMPTS, carried
from campaign_runner.status import StatusBook

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "containers" / "schemas" / "status.schema.json").read_text())


def attempt(node: str, outcome, spec: str = "a" * 16, reason=None) -> dict:
    return {"node": node, "instanceType": "g5.2xlarge", "specHash": spec, "startedAt": "2026-11-30T10:00:00Z",
            "endedAt": "2026-11-30T11:00:00Z" if outcome else None, "outcome": outcome, "reason": reason, "exitCode": 1 if outcome == "failed" else None}


def finished_book(node: str, previous: str = None) -> StatusBook:
    """A node that staged, started and failed, after carrying `previous` forward."""
    book = StatusBook("c", "main", "train")
    book.instance_id, book.instance_type = node, "g5.2xlarge"
    if previous is not None:
        book.carry_attempts(previous)
    book.spec_hash = "a" * 16
    book.preparing()
    book.staged()
    book.starting()
    book.job_ended(1)
    book.failed("CUDA out of memory")
    return book


def test_three_nodes_fail_in_turn_and_the_third_status_lists_all_three():
    first = finished_book("i-1").render_bytes().decode()
    second = finished_book("i-2", first).render_bytes().decode()
    third = finished_book("i-3", second).render()
    jsonschema.validate(third, SCHEMA)
    assert [(a["node"], a["outcome"], a["specHash"], a["exitCode"], a["reason"]) for a in third["attempts"]] == [
        ("i-1", "failed", "a" * 16, 1, "CUDA out of memory"),
        ("i-2", "failed", "a" * 16, 1, "CUDA out of memory"),
        ("i-3", "failed", "a" * 16, 1, "CUDA out of memory"),
    ]
    # The current attempt ends when its terminal phase was reached.
    failed_at = [e["at"] for e in third["events"] if e["phase"] == "failed"][-1]
    assert third["attempts"][-1]["endedAt"] == failed_at


def test_the_current_attempt_is_open_while_the_node_works():
    book = StatusBook("c", "main", "train")
    book.carry_attempts(json.dumps({"phase": "interrupted", "attempts": [attempt("i-1", "interrupted", reason="spot")]}))
    book.preparing()
    status = book.render()
    jsonschema.validate(status, SCHEMA)
    assert status["attempts"][0]["outcome"] == "interrupted"
    assert status["attempts"][1] == {"node": None, "instanceType": None, "specHash": None, "startedAt": book.started_at,
                                     "endedAt": None, "outcome": None, "reason": None, "exitCode": None}


def test_a_status_from_before_attempts_becomes_one_attempt():
    legacy = {"campaign": "c", "run": "main", "role": "train", "phase": "failed", "updatedAt": "2026-11-30T11:00:00Z",
              "instanceId": "i-old", "instanceType": "g5.2xlarge", "progress": None, "exitCode": 1, "reason": "OOM",
              "lastCheckpoint": None, "timings": {"nodeBoot": "2026-11-30T10:00:00Z", "inputsReady": None, "firstStep": None,
                                                   "jobEnd": None, "shutdown": None}, "events": []}
    assert carried(json.dumps(legacy)) == [{"node": "i-old", "instanceType": "g5.2xlarge", "specHash": None,
                                            "startedAt": "2026-11-30T10:00:00Z", "endedAt": "2026-11-30T11:00:00Z",
                                            "outcome": "failed", "reason": "OOM", "exitCode": 1}]


def test_a_node_that_ended_without_a_final_status_is_history_but_not_a_failure():
    previous = {"phase": "training", "attempts": [attempt("i-1", "failed"), attempt("i-2", None)]}
    kept = carried(json.dumps(previous))
    assert [a["outcome"] for a in kept] == ["failed", None]
    assert kept[-1]["reason"] == "ended without a final status (last seen training)"


def test_entries_that_are_not_attempts_are_dropped_and_the_list_is_capped():
    junk = [attempt("i-x", "exploded"), "text", 3, attempt("i-ok", "failed")]
    assert [a["node"] for a in carried(json.dumps({"phase": "failed", "attempts": junk}))] == ["i-ok"]
    many = [attempt("i-%d" % i, "failed") for i in range(MAX_ATTEMPTS + 10)]
    kept = carried(json.dumps({"phase": "failed", "attempts": many}))
    assert len(kept) == MAX_ATTEMPTS - 1 and kept[-1]["node"] == "i-%d" % (MAX_ATTEMPTS + 9)
    assert carried("not json") == [] and carried("[1, 2]") == []
