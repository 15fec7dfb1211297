"""The runner's graceful-stop decisions, pure: what a control object's version asks, and how a stop ends the run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import runner_path  # noqa: F401  (puts the runner's package on sys.path)
from campaign_runner.contract import CONTROL_ACTIONS, EXIT_CODES
from campaign_runner.control import decide
from campaign_runner.outcome import StopDetail, StopKind, before_job_reason, classify
from campaign_runner.settings import load_settings

URI = "s3://bucket-x/runs/c/r1/control.json"
SCHEMA = Path(__file__).resolve().parents[2] / "containers" / "schemas" / "control.schema.json"


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_the_actions_come_from_the_contract() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert list(CONTROL_ACTIONS) == ["stop", "restart"]
    assert schema["properties"]["action"]["enum"] == list(CONTROL_ACTIONS)


@pytest.mark.parametrize("action", ["stop", "restart"])
def test_a_new_request_is_acted_on(action: str) -> None:
    decision = decide(URI, body({"action": action, "requestedAt": "2026-11-30T12:00:00Z"}), at_baseline=False)
    assert (decision.action, decision.warning) == (action, None)


def test_a_stop_already_there_at_start_is_acted_on_a_restart_is_not() -> None:
    # A stop written after the `pulumi up` that declared this node still means "stop"; a restart that was there before
    # the runner started was honoured by the node before: this node is the one it asked for.
    assert decide(URI, body({"action": "stop", "requestedAt": "t"}), at_baseline=True).action == "stop"
    restart = decide(URI, body({"action": "restart", "requestedAt": "t"}), at_baseline=True)
    assert restart.action is None and restart.warning is None and "this node is the restart" in (restart.note or "")


@pytest.mark.parametrize("raw, says", [
    (body({"action": "pause", "requestedAt": "t"}), 'asks for action "pause", which is not one of stop, restart; ignored'),
    (body({"requestedAt": "t"}), "asks for action null"),
    (body(["stop"]), "is not a JSON object; ignored"),
    (b"stop please", "is not JSON"),
    (b"\xff\xfe", "is not JSON"),
])
def test_anything_else_is_a_warning_never_a_stop(raw: bytes, says: str) -> None:
    decision = decide(URI, raw, at_baseline=False)
    assert decision.action is None
    assert decision.warning is not None and says in decision.warning and URI in decision.warning


def test_a_requested_stop_interrupts_the_run_with_its_reason() -> None:
    stop = StopDetail(StopKind.CONTROL, control_action="stop", control_uri=URI)
    saved = classify(EXIT_CODES["interrupted"], stop, "", None)
    assert saved.phase == "interrupted"
    assert saved.reason == "stopped on request (stop in %s); job exit 75 (stopped after saving a checkpoint)" % URI
    assert classify(0, stop, "", None).phase == "uploading", "a job that finished as the stop came succeeds"
    early = before_job_reason(StopDetail(StopKind.CONTROL, control_action="restart", control_uri=URI))
    assert (early.phase, early.reason) == ("interrupted", "stopped on request (restart in %s) before the job started" % URI)


def test_sigterm_leaves_the_run_resumable_and_says_whether_the_os_was_going_down() -> None:
    os_path = classify(EXIT_CODES["interrupted"], StopDetail(StopKind.SIGNAL, signal_name="TERM", system_stopping=True), "", None)
    assert os_path.phase == "interrupted"
    assert os_path.reason == ("the node is shutting down: instance terminated or stopped (SIGTERM from the OS); "
                              "job exit 75 (stopped after saving a checkpoint)")
    by_hand = classify(137, StopDetail(StopKind.SIGNAL, signal_name="TERM"), "", None)
    assert by_hand.phase == "interrupted" and by_hand.reason == "the runner was stopped by SIGTERM; job exit 137 (killed)"
    assert before_job_reason(StopDetail(StopKind.SIGNAL, signal_name="TERM", system_stopping=True)).phase == "interrupted"


def test_control_settings() -> None:
    env = {
        "CAMPAIGN_ROLE": "train", "CAMPAIGN_NAME": "c", "CAMPAIGN_RUN": "r1", "AWS_REGION": "us-east-1",
        "CAMPAIGN_SPEC_URI": "s3://bucket-x/runs/c/r1/spec.json", "CAMPAIGN_STATUS_URI": "s3://bucket-x/runs/c/r1/status.json",
        "CAMPAIGN_LOGS_URI": "s3://bucket-x/runs/c/r1/logs/", "CAMPAIGN_OUTPUT_URI": "s3://bucket-x/runs/c/r1/output/",
        "CAMPAIGN_DATA_URI": "s3://bucket-x/datasets/h/", "CAMPAIGN_MAX_RUNTIME_SECONDS": "60", "CAMPAIGN_JOB_MODE": "process",
        "CAMPAIGN_JOB_COMMAND": "true",
    }
    plain = load_settings(env)
    assert (plain.control_uris, plain.control_poll_seconds, plain.unit_stop_seconds) == ((), 30, 360)
    both = load_settings({**env, "CAMPAIGN_RUN_CONTROL_URI": URI, "CAMPAIGN_CAMPAIGN_CONTROL_URI": "s3://bucket-x/runs/c/control.json",
                          "CAMPAIGN_CONTROL_POLL_SECONDS": "5", "CAMPAIGN_UNIT_STOP_SECONDS": "200"})
    assert both.control_uris == (URI, "s3://bucket-x/runs/c/control.json")
    assert (both.control_poll_seconds, both.unit_stop_seconds) == (5, 200)
    with pytest.raises(Exception) as bad:
        load_settings({**env, "CAMPAIGN_RUN_CONTROL_URI": "https://example.com/control.json"})
    assert "CAMPAIGN_RUN_CONTROL_URI is not an s3:// URI" in str(bad.value)
