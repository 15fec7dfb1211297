"""The node runner's pure decisions (scripts/node-runner/campaign_runner): settings, checkpoints, watchdogs,
exit classification and status transitions. The end-to-end runs are in test/node/runner.test.ts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

import runner_path  # noqa: F401  (puts the runner's package on sys.path)
from campaign_runner import checkpoints
from campaign_runner.contract import CHECKPOINT_MARKER, EXIT_CODES, PHASES, TERMINAL_PHASES
from campaign_runner.datavolume import device_link, mounted_at
from campaign_runner.imds import Answer
from campaign_runner.job import JobLayout, docker_run_argv, ecr_registry
from campaign_runner.outcome import StopDetail, StopKind, before_job_reason, classify, describe_exit, runner_exit_code
from campaign_runner.settings import SettingsError, load_settings, read_env_file
from campaign_runner.image import ImageNeed, docker_arch, existing_ancestor, image_id, manifest_size, repository_of
from campaign_runner.staging import Need, space_problem, space_problems
from campaign_runner.status import Phase, StatusBook, TransitionError, parse_progress
from campaign_runner.watchdogs import GpuIdle, MaxRuntime, ProgressStall, busiest_gpu

BASE = {
    "CAMPAIGN_ROLE": "train", "CAMPAIGN_NAME": "c", "CAMPAIGN_RUN": "r1", "AWS_REGION": "us-east-1",
    "CAMPAIGN_SPEC_URI": "s3://bucket-a/runs/c/r1/spec.json", "CAMPAIGN_STATUS_URI": "s3://bucket-a/runs/c/r1/status.json",
    "CAMPAIGN_LOGS_URI": "s3://bucket-a/runs/c/r1/logs/", "CAMPAIGN_OUTPUT_URI": "s3://bucket-a/runs/c/r1/output/",
    "CAMPAIGN_MAX_RUNTIME_SECONDS": "3600", "CAMPAIGN_DATA_URI": "s3://bucket-a/datasets/0123/",
    "CAMPAIGN_JOB_MODE": "process", "CAMPAIGN_JOB_COMMAND": "python3 -m trainer --flag 'two words'",
}


def settings_with(**changes: Optional[str]):
    env: Dict[str, str] = dict(BASE)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return load_settings(env)


# ---------------------------------------------------------------- settings


def test_settings_defaults_and_command_split_like_a_shell() -> None:
    s = settings_with()
    assert s.job_argv == ("python3", "-m", "trainer", "--flag", "two words")
    assert (s.keep_checkpoints, s.status_interval_seconds, s.spot_poll_seconds) == (2, 10, 5)
    assert (s.stop_grace_seconds, s.spot_grace_seconds, s.gpu_idle_seconds) == (300, 80, 0)
    assert s.stall_seconds == 30 * 60, "compute.stallMinutes defaults to 30"
    assert settings_with(CAMPAIGN_STALL_MINUTES="0").stall_seconds == 0, "0 turns the stall watchdog off"
    assert settings_with(CAMPAIGN_GPU_IDLE_MINUTES="20").gpu_idle_seconds == 1200


def test_settings_report_every_problem_naming_the_variable() -> None:
    with pytest.raises(SettingsError) as e:
        settings_with(CAMPAIGN_NAME=None, AWS_REGION=None, CAMPAIGN_ROLE="trainer", CAMPAIGN_KEEP_CHECKPOINTS="two",
                      CAMPAIGN_OUTPUT_URI="https://example.com/x", CAMPAIGN_SECRET_PARAMETERS="HF_TOKEN=hf_abc def",
                      CAMPAIGN_DATA_VOLUME_ID="vol-xyz")
    text = str(e.value)
    for expected in ("missing settings: CAMPAIGN_NAME AWS_REGION", "CAMPAIGN_ROLE must be prep or train, not 'trainer'",
                     "CAMPAIGN_KEEP_CHECKPOINTS must be a whole number", "CAMPAIGN_OUTPUT_URI is not an s3:// URI",
                     "CAMPAIGN_SECRET_PARAMETERS entry 'HF_TOKEN' is not NAME=/ssm/parameter/name",
                     "CAMPAIGN_DATA_VOLUME_ID must be an EBS volume id"):
        assert expected in text
    assert "hf_abc" not in text, "a malformed secret entry is named by its variable, never echoed"


@pytest.mark.parametrize("changes, problem", [
    ({"CAMPAIGN_JOB_MODE": "docker"}, "CAMPAIGN_IMAGE is required in docker mode"),
    ({"CAMPAIGN_JOB_COMMAND": None}, "CAMPAIGN_JOB_COMMAND is required in process mode"),
    ({"CAMPAIGN_JOB_COMMAND": "python3 'unclosed"}, "CAMPAIGN_JOB_COMMAND does not parse"),
    ({"CAMPAIGN_DATA_URI": None}, "CAMPAIGN_DATA_URI is required for train"),
    ({"CAMPAIGN_GPU_IDLE_THRESHOLD": "-1"}, "CAMPAIGN_GPU_IDLE_THRESHOLD must be a non-negative number"),
    ({"CAMPAIGN_JOB_MODE": "k8s"}, "CAMPAIGN_JOB_MODE must be docker or process"),
])
def test_settings_refuse(changes: Dict[str, Optional[str]], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        settings_with(**changes)


def test_env_file_reads_what_user_data_renders(tmp_path: Path) -> None:
    path = tmp_path / "runner.env"
    path.write_text("# comment\nCAMPAIGN_JOB_COMMAND='python3 -c '\"'\"'print(1)'\"'\"''\nCAMPAIGN_NAME='a b'\n")
    assert read_env_file(str(path)) == {"CAMPAIGN_JOB_COMMAND": "python3 -c 'print(1)'", "CAMPAIGN_NAME": "a b"}
    path.write_text("not a setting\n")
    with pytest.raises(SettingsError, match="line 1 is not KEY='value'"):
        read_env_file(str(path))


# ---------------------------------------------------------------- checkpoints


def listing(*keys: str) -> Dict[int, bool]:
    return checkpoints.remote_steps(keys)


def test_remote_steps_tell_complete_from_partial() -> None:
    steps = listing("checkpoint-2/weights.bin", "checkpoint-2/" + CHECKPOINT_MARKER, "checkpoint-4/weights.bin",
                    "checkpoint-x/" + CHECKPOINT_MARKER, "other/file", "checkpoint-6/")
    assert steps == {2: True, 4: False}


def test_restore_takes_the_newest_complete_of_this_spec_and_passes_partial_and_foreign_ones() -> None:
    steps = listing("checkpoint-2/" + CHECKPOINT_MARKER, "checkpoint-4/" + CHECKPOINT_MARKER, "checkpoint-6/w",
                    "checkpoint-8/" + CHECKPOINT_MARKER)
    markers = {2: {"specHash": "aaaa"}, 4: {"specHash": "aaaa"}, 8: {"specHash": "bbbb"}}
    asked = []

    def marker_of(step: int):
        asked.append(step)
        return markers[step]

    choice = checkpoints.choose_restore(steps, marker_of, "aaaa")
    assert choice.step == 4
    assert asked == [8, 4], "markers are read newest first, only as far as needed"
    assert list(choice.partial_above) == [6]
    assert choice.refused == ("checkpoint-8: it belongs to spec bbbb, this run's is aaaa",)


def test_restore_without_a_usable_checkpoint_starts_from_scratch() -> None:
    steps = listing("checkpoint-3/w", "checkpoint-5/" + CHECKPOINT_MARKER)
    choice = checkpoints.choose_restore(steps, lambda step: None, "aaaa")
    assert choice.step is None
    assert "is not a JSON object" in choice.refused[0]
    assert list(choice.partial_above) == [3]
    # A marker without a spec hash (an older trainer) is not refused on that ground.
    assert checkpoints.choose_restore(steps, lambda step: {"step": step}, "aaaa").step == 5


def test_upload_order_is_newest_first_within_the_kept_window() -> None:
    assert checkpoints.upload_order({2, 4, 6, 8}, uploaded={4}, keep=2) == [8, 6]
    assert checkpoints.upload_order({2, 4, 6, 8}, uploaded={8}, keep=2) == [6]
    assert checkpoints.upload_order({2, 4, 6}, uploaded=set(), keep=0) == [6, 4, 2], "keep 0 uploads every one"
    assert checkpoints.upload_order(set(), uploaded={2}, keep=2) == []


def test_pruning_keeps_the_newest_complete_and_an_upload_in_progress() -> None:
    steps = listing(*("checkpoint-%d/%s" % (s, CHECKPOINT_MARKER) for s in (2, 4, 6, 8)), "checkpoint-3/w", "checkpoint-10/w")
    assert checkpoints.prune_victims(steps, keep=2) == [2, 3, 4], "the partial checkpoint-10 may be uploading now"
    assert checkpoints.prune_victims(steps, keep=0) == []
    assert checkpoints.prune_victims(listing("checkpoint-1/w"), keep=2) == []


# ---------------------------------------------------------------- watchdogs


def test_gpu_idle_needs_the_whole_window_under_the_threshold() -> None:
    w = GpuIdle(threshold=5, window_seconds=60)
    assert not w.observe(0, now=0)
    assert not w.observe(None, now=30), "a failed sample neither starts nor breaks the window"
    assert not w.observe(50, now=40), "one busy sample restarts the window"
    assert not w.observe(1, now=50)
    assert w.observe(4.9, now=110)
    assert busiest_gpu("3\n97\n[N/A]\n") == 97 and busiest_gpu("") is None


def test_progress_stall_counts_from_the_first_new_step_only() -> None:
    w = ProgressStall(window_seconds=600, restored_step=100)
    assert not w.observe(None, now=0) and not w.observe(progress(100), now=5000), "no clock before the first step past the restored one"
    assert not w.observe(progress(101), now=5000)
    assert not w.observe(progress(101), now=5599)
    assert w.observe(progress(101), now=5600), "the same step for the whole window: a stall (GPUs may be at 100%)"
    assert not w.observe(progress(102), now=5601), "a new step resets it"
    assert not ProgressStall(0, 0).observe(progress(1), 10 ** 9), "0 turns it off"
    assert MaxRuntime(started=10, limit_seconds=8).reached(18) and not MaxRuntime(10, 8).reached(17.9)


def evaluating(step: int, part: str, done: int, total: int = 200) -> dict:
    return {**progress(step), "phase": "evaluating",
            "evaluation": {"part": part, "done": done, "total": total, "updatedAt": "2026-01-01T01:00:00Z"}}


def test_progress_stall_counts_evaluation_rows_after_the_last_step() -> None:
    """Training ends at step 10; the evaluation after it (baseline, then the fine-tuned model) writes no step, only
    rows: any counter that advances is progress, and a generation that stops advancing is a stall."""
    w = ProgressStall(window_seconds=600, restored_step=0)
    assert not w.observe(progress(10), now=0)
    assert not w.observe(progress(10), now=500), "model saving and loading after the last step"
    assert not w.observe(evaluating(10, "baseline", 0), now=590), "the evaluation began: the clock restarts"
    assert not w.observe(evaluating(10, "baseline", 40), now=1100)
    assert not w.observe(evaluating(10, "baseline", 200), now=1650)
    assert not w.observe(evaluating(10, "fine-tuned", 0), now=2200), "the next part is progress even at 0 rows"
    for t in range(2200, 4000, 500):
        assert not w.observe(evaluating(10, "fine-tuned", (t - 2200) // 10), now=t), "a long evaluation that advances is never a stall"
    assert not w.observe(evaluating(10, "fine-tuned", 170), now=4000)
    assert not w.observe(evaluating(10, "fine-tuned", 170), now=4599)
    assert w.observe(evaluating(10, "fine-tuned", 170), now=4600), "no new row for the window: a stall"
    assert w.last is not None and w.last.where() == "in the evaluation of the fine-tuned model, at 170 of 200 rows generated"
    assert w.last_step == 10


def test_progress_stall_counts_the_batches_of_a_loss_pass_during_training() -> None:
    """A validation pass at evalSteps writes no step for as long as it runs: its batches are progress, a pass whose
    batches stop is a stall named as such, and the next training step after the pass is progress again."""
    w = ProgressStall(window_seconds=600, restored_step=0)
    assert not w.observe(progress(500), now=0)
    for t in range(100, 3000, 400):
        assert not w.observe(evaluating(500, "loss", t // 100, 40), now=t), "a loss pass that advances is never a stall"
    assert not w.observe(progress(501), now=3200), "training again"
    assert not w.observe(evaluating(1000, "loss", 7, 40), now=4000)
    assert w.observe(evaluating(1000, "loss", 7, 40), now=4600), "no new batch for the window: a stall"
    assert w.last is not None and w.last.where() == "in the loss pass over held-out rows after step 1000, at 7 of 40 batches"
    stop = StopDetail(StopKind.STALL, stall_seconds=600, stalled_at_step=1000, stalled_in_evaluation=w.last.where())
    assert (classify(75, stop, "", None).reason or "").startswith("stopped by the progress-stall watchdog: no new batch for 600 s in the loss pass "
                                            "over held-out rows after step 1000, at 7 of 40 batches (a hung collective or data loader?)")


def test_progress_stall_counts_an_evaluation_that_follows_a_restored_last_step() -> None:
    """A node that resumed at the run's last step only evaluates: its step never passes the restored one, its rows
    start the clock."""
    w = ProgressStall(window_seconds=60, restored_step=500)
    assert not w.observe(progress(500), now=0) and not w.observe(progress(500), now=10 ** 4), "loading: not counted"
    assert not w.observe(evaluating(500, "fine-tuned", 0), now=10 ** 4)
    assert w.observe(evaluating(500, "fine-tuned", 0), now=10 ** 4 + 60)
    assert w.last is not None and w.last.where() == "in the evaluation of the fine-tuned model, at 0 of 200 rows generated"
    base = ProgressStall(window_seconds=60, restored_step=0)
    base.observe(evaluating(3, "baseline", 7), now=0)
    assert base.observe(evaluating(3, "baseline", 7), now=60) and base.last is not None
    assert base.last.where() == "in the evaluation of the base model, at 7 of 200 rows generated"


# ---------------------------------------------------------------- how a run ends


def test_exit_classification() -> None:
    assert classify(0, StopDetail(StopKind.SPOT, notice="{}"), "", None).phase == "uploading", "exit 0 finished its work"
    interrupted = EXIT_CODES["interrupted"]
    spot = classify(interrupted, StopDetail(StopKind.SPOT, notice='{"action":"terminate"}'), "", None)
    assert (spot.phase, spot.reason) == ("interrupted", 'spot interruption notice: {"action":"terminate"}; job exit 75 (stopped after saving a checkpoint)')
    stall = classify(interrupted, StopDetail(StopKind.STALL, stall_seconds=1800, stalled_at_step=42), "", None)
    assert stall.phase == "failed" and "no new step for 1800 s after step 42" in (stall.reason or "")
    in_eval = classify(interrupted, StopDetail(StopKind.STALL, stall_seconds=1800, stalled_at_step=42,
                                               stalled_in_evaluation="in the evaluation of the base model, at 7 of 200 rows generated"), "", None)
    assert in_eval.reason == ("stopped by the progress-stall watchdog: no new evaluation row for 1800 s in the evaluation of "
                              "the base model, at 7 of 200 rows generated (a hung generation?); job exit 75 (stopped after saving a checkpoint)")
    idle = classify(137, StopDetail(StopKind.GPU_IDLE, gpu_threshold=5.0, gpu_window_seconds=120), "", None)
    assert idle.reason == "stopped by the GPU-idle watchdog: utilisation under 5% for 120 s; job exit 137 (killed)"
    assert "max runtime of 60 s" in (classify(75, StopDetail(StopKind.MAX_RUNTIME, max_runtime_seconds=60), "", None).reason or "")
    assert "stopped by SIGTERM" in (classify(143, StopDetail(StopKind.SIGNAL, signal_name="TERM"), "", None).reason or "")
    crash = classify(1, None, "RuntimeError: boom", "the work volume /w is out of space (no space left on device: 0.0 MiB free of 8.0 MiB)")
    assert crash.reason == ("the job exited with code 1 (failure); the work volume /w is out of space (no space left on device: "
                            "0.0 MiB free of 8.0 MiB): RuntimeError: boom")
    assert describe_exit(EXIT_CODES["dataError"]) == "data refused" and describe_exit(EXIT_CODES["configError"]) == "configuration error"
    assert [runner_exit_code(p) for p in ("succeeded", "noop", "interrupted", "failed")] == [0, 0, 75, 1]
    assert before_job_reason(StopDetail(StopKind.SPOT, notice="n")).phase == "interrupted"
    assert "before the job ran" in (before_job_reason(StopDetail(StopKind.SIGNAL, signal_name="TERM")).reason or "")


def test_free_space_is_checked_per_file_system_with_the_image_on_dockers() -> None:
    gib = 1024 ** 3
    nvme, root = 1, 2
    dataset = Need("dataset", "/opt/dlami/nvme/campaign/job/data", nvme, 300 * gib)
    model = Need("base model", "/opt/dlami/nvme/campaign/job/model", nvme, 30 * gib)
    trainer = ImageNeed("123.dkr.ecr.us-east-1.amazonaws.com/t@sha256:ab", "/var/lib/docker", 10 * gib, False)
    assert trainer.size == 40 * gib, "compressed blobs kept plus layers unpacked at 3x"
    on_root = Need(trainer.describe(), "/var/lib", root, trainer.size)
    assert space_problems([dataset, model, on_root], {nvme: 3500 * gib, root: 150 * gib}) == [], "each file system holds its own"
    problems = space_problems([dataset, model, on_root], {nvme: 3500 * gib, root: 30 * gib})
    assert len(problems) == 1 and "/var/lib" in problems[0] and "40.00 GiB needed, 30.00 GiB free" in problems[0]
    assert "10.00 GiB compressed" in problems[0], problems
    # Without local NVMe the work dir is on the root volume too: inputs and image compete for the same space.
    shared = [Need("dataset", "/var/lib/campaign/job/data", root, 80 * gib), Need(trainer.describe(), "/var/lib", root, trainer.size)]
    assert space_problems(shared[:1], {root: 100 * gib}) == [] and space_problems(shared[1:], {root: 100 * gib}) == []
    together = space_problems(shared, {root: 100 * gib})
    assert len(together) == 1 and "120.00 GiB needed, 100.00 GiB free" in together[0] and together[0].count("dataset and the image") == 1
    assert ImageNeed("i", "/var/lib/docker", 10 * gib, True).size == 0, "an image already pulled needs nothing more"


def test_image_size_from_its_manifest_before_the_pull() -> None:
    manifest = {"schemaVersion": 2, "config": {"size": 7}, "layers": [{"size": 100}, {"size": 250}]}
    assert manifest_size(manifest, "amd64") == (357, None)
    index = {"manifests": [{"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
                           {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
                           {"digest": "sha256:x86", "platform": {"os": "linux", "architecture": "amd64"}}]}
    assert manifest_size(index, "amd64") == (None, "sha256:x86"), "an index (e.g. with attestations) names the platform's manifest"
    assert manifest_size(index, "riscv64") == (None, None)
    assert manifest_size({"layers": [{"size": "big"}]}, "amd64") == (None, None)
    assert docker_arch("x86_64") == "amd64" and docker_arch("aarch64") == "arm64"
    assert repository_of("1.dkr.ecr.us-east-1.amazonaws.com/repo/t:tag") == "1.dkr.ecr.us-east-1.amazonaws.com/repo/t"
    assert repository_of("host:5000/repo@sha256:ab") == "host:5000/repo" and repository_of("host:5000/repo") == "host:5000/repo"
    ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign/trainer"
    assert [image_id(ecr + "@sha256:ab"), image_id(ecr + ":v1"), image_id(ecr)] == ["imageDigest=sha256:ab", "imageTag=v1", "imageTag=latest"]
    assert existing_ancestor("/proc/self/no/such/dir") == "/proc/self"


def test_space_problem_names_the_numbers() -> None:
    assert space_problem(10, 20, "/w", "dataset") is None
    problem = space_problem(3 * 1024 ** 3, 1024 ** 3, "/w/job/data", "dataset and base model")
    assert problem is not None and "3.00 GiB needed, 1.00 GiB free" in problem and "/w/job/data" in problem


# ---------------------------------------------------------------- status


def test_phases_are_the_contracts_and_transitions_follow_the_order() -> None:
    assert tuple(p.value for p in Phase) == PHASES
    assert {p.value for p in Phase if p.is_terminal()} == set(TERMINAL_PHASES)
    book = StatusBook("c", "r1", "train")
    with pytest.raises(TransitionError, match="staged cannot follow pending"):
        book.staged()
    book.preparing()
    book.staged()
    book.starting()
    book.observe_progress(parse_progress(json.dumps(progress(5))), restored_step=5)
    assert book.phase is Phase.STARTING and book.timings["firstStep"] is None, "the restored step is not a first step"
    book.observe_progress(parse_progress(json.dumps(progress(6))), restored_step=5)
    assert book.phase is Phase.TRAINING and book.timings["firstStep"] is not None
    book.failed("the job exited with code 1 (failure)")
    with pytest.raises(TransitionError, match="already failed"):
        book.succeeded()
    doc = book.render()
    assert doc["reason"] == "the job exited with code 1 (failure)"
    assert [e["phase"] for e in doc["events"] if e["kind"] == "phase"] == ["preparing", "staged", "starting", "training", "failed"]
    assert doc["events"][-1]["reason"] == "the job exited with code 1 (failure)"
    assert all(e["at"].endswith("Z") for e in doc["events"])


def test_first_step_is_set_even_when_the_job_ended_between_samples() -> None:
    book = StatusBook("c", "r1", "train")
    book.preparing(), book.staged(), book.starting()
    book.job_ended(0)
    book.observe_progress(parse_progress(json.dumps(progress(6))), restored_step=0)
    assert book.timings["firstStep"] is not None


def test_warnings_are_events_that_keep_the_phase() -> None:
    book = StatusBook("c", "r1", "train")
    book.warn("starting the CloudWatch agent failed")
    assert book.phase is Phase.PENDING
    assert book.render()["events"] == [{"at": book.events[0]["at"], "kind": "warning", "phase": "pending",
                                        "reason": "starting the CloudWatch agent failed"}]


def progress(step: int) -> dict:
    return {"step": step, "totalSteps": 10, "epoch": 0.5, "loss": 1.0, "learningRate": None, "tokensPerSec": 3.0,
            "etaSeconds": None, "updatedAt": "2026-01-01T00:00:00Z"}


def test_progress_that_does_not_match_the_schema_is_skipped() -> None:
    assert parse_progress(json.dumps(progress(3)))["step"] == 3
    assert parse_progress('{"step": 3') is None
    assert parse_progress(json.dumps({**progress(3), "step": -1})) is None
    assert parse_progress(json.dumps({**progress(3), "loss": float("nan")}).replace("NaN", "1e999")) is None
    assert parse_progress(json.dumps(evaluating(3, "baseline", 5)))["evaluation"] == {
        "part": "baseline", "done": 5, "total": 200, "updatedAt": "2026-01-01T01:00:00Z"}
    assert parse_progress(json.dumps({**progress(3), "phase": "training", "evaluation": None}))["evaluation"] is None
    assert parse_progress(json.dumps({**progress(3), "phase": "resting"})) is None
    bad_part = evaluating(3, "baseline", 5)
    bad_part["evaluation"]["part"] = "validation"
    assert parse_progress(json.dumps(bad_part)) is None
    assert parse_progress(json.dumps({**evaluating(3, "baseline", 5), "evaluation": {"part": "baseline", "done": -1}})) is None


def test_an_evaluation_in_progress_shows_in_the_status_and_counts_as_the_job_at_work() -> None:
    book = StatusBook("c", "r1", "train")
    book.preparing(), book.staged(), book.starting()
    book.observe_progress(parse_progress(json.dumps(progress(500))), restored_step=500)
    assert book.phase is Phase.STARTING
    book.observe_progress(parse_progress(json.dumps(evaluating(500, "fine-tuned", 16))), restored_step=500)
    assert book.phase is Phase.TRAINING and book.timings["firstStep"] is None, "evaluating is at work, but no step was made"
    shown = book.render()["progress"]
    assert shown["phase"] == "evaluating" and shown["evaluation"]["done"] == 16 and shown["step"] == 500


# ---------------------------------------------------------------- job, metadata, data volume


def test_docker_run_passes_secrets_by_name_and_mounts_the_data_volume() -> None:
    layout = JobLayout("/w/job", "/mnt/campaign-data/data")
    argv = docker_run_argv("campaign-job", "img:1", ["python3", "-m", "trainer"], layout, True, ["HF_TOKEN"])
    line = " ".join(argv)
    assert "--gpus all" in line and "-v /w/job:/job" in line and "-v /mnt/campaign-data/data:/job/data" in line
    assert "-e HF_TOKEN img:1 python3 -m trainer" in line
    assert layout.host_env()["CAMPAIGN_DATA_DIR"] == "/mnt/campaign-data/data"
    assert layout.host_env()["CAMPAIGN_PROGRESS_FILE"] == "/w/job/progress.json"
    assert ecr_registry("123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:1") == ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1")
    assert ecr_registry("docker.io/library/python:3") is None


def test_only_a_metadata_value_is_a_notice() -> None:
    assert Answer(body="{}").found
    assert not Answer(missing=True).found and not Answer(problem="HTTP 500").found


def test_data_volume_device_link_and_mount_check() -> None:
    assert device_link("/dev/disk/by-id", "vol-0123456789abcdef0") == "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
    mounts = "/dev/nvme1n1 /mnt/campaign-data ext4 rw 0 0\n"
    assert mounted_at("/mnt/campaign-data", mounts) and not mounted_at("/mnt/other", mounts)


# ---------------------------------------------------------------- the built file


def test_the_built_runner_is_current_and_runs_isolated() -> None:
    build = runner_path.RUNNER_DIR / "build_runner.py"
    check = subprocess.run([sys.executable, str(build), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    bundle = runner_path.RUNNER_DIR / "dist" / "campaign-runner.py"
    assert bundle.read_text().startswith("#!/usr/bin/python3 -I\n")
    helped = subprocess.run(["python3", "-I", str(bundle), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "shutdown -h now" in helped.stdout


def test_upload_snapshot_survives_rotation_and_skips_a_vanished_checkpoint(tmp_path: Path) -> None:
    from campaign_runner.sync import CheckpointSync

    local, snaps = tmp_path / "checkpoints", tmp_path / "snapshots"
    ckpt = local / "checkpoint-4"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "weights.bin").write_bytes(b"w" * 10)
    (ckpt / "sub" / "optim.bin").write_bytes(b"o")
    (ckpt / CHECKPOINT_MARKER).write_text('{"step": 4}')
    sync = CheckpointSync(aws=None, local_dir=str(local), snapshot_dir=str(snaps), uri="s3://b/c/", keep=2,  # type: ignore[arg-type]
                          log=lambda m: None, on_uploaded=lambda n, s: None)
    assert sync.local_complete() == {4}
    snap = sync.snapshot("checkpoint-4")
    assert snap is not None
    import shutil

    shutil.rmtree(ckpt)  # the trainer rotates it away mid-upload
    assert (Path(snap) / "weights.bin").read_bytes() == b"w" * 10, "hard links keep the files"
    assert (Path(snap) / "sub" / "optim.bin").exists() and (Path(snap) / CHECKPOINT_MARKER).exists()
    assert sync.snapshot("checkpoint-4") is None, "a checkpoint already gone is skipped"
