// Stop and continue, rehearsed on the dev preset against the local S3 emulator: `campaign down` at a step (the
// graceful stop through the campaign's control object, the wait until the node has synced and ended, the destroy),
// then `pulumi up` again: a new node resumes from the stop's checkpoint and the run finishes. At most 4 examples per
// step; 30 steps, like the dev rehearsal's spot interruption, so the stop lands well before the last step.
//
//   node --import tsx --test test/rehearsal/stopContinue.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { status as statusSchema } from "../../components/campaign/jobSpec";
import { parseRehearseArgs } from "../../scripts/rehearse";

const root = path.join(__dirname, "..", "..");

test("--destroy-at: a step below the rehearsal's steps, and one stop per rehearsal", () => {
    assert.deepEqual(parseRehearseArgs(["--destroy-at", "2", "--max-steps", "8"]), { stack: "dev", interruptAt: undefined, destroyAt: 2, maxSteps: 8 });
    assert.throws(() => parseRehearseArgs(["--destroy-at", "8", "--max-steps", "8"]), /--destroy-at 8 must be below the rehearsal's 8 steps/);
    assert.throws(() => parseRehearseArgs(["--destroy-at", "2", "--interrupt-at", "3"]), /one stop per rehearsal/);
});

test("the dev campaign stopped by campaign down at step 3, then up again: resumed from the checkpoint, finished", { timeout: 1_500_000 }, () => {
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const run = spawnSync(tsx, ["scripts/rehearse.ts", "--stack", "dev", "--max-steps", "30", "--max-batch", "4", "--destroy-at", "3"], {
        cwd: root,
        encoding: "utf8",
        timeout: 1_450_000, // minutes on an idle machine; a loaded one (load 24 on 2 cores) took over 15
    });
    const out = `${run.stdout}\n${run.stderr}`;
    assert.equal(run.status, 0, out);
    assert.match(out, /\*\* campaign down at step \d+: a graceful stop for every node \(runs\/dev\/control\.json, action restart\), then the wait \*\*/);
    assert.match(out, /waiting for 1 node\(s\) to save, sync and end: main/, "the wait shows progress");
    const ended = /main: interrupted with (checkpoint-(\d+)) in S3 \(stopped on request \(restart in s3:\/\/campaign-rehearsal\/runs\/dev\/control\.json\); job exit 75/.exec(out);
    assert.ok(ended, `the node saved, synced and ended on the request, before its last step\n${out}`);
    assert.match(out, /Every working node has ended/);
    assert.match(out, /up again: `pulumi up` reads main's status \(interrupted\) and the control object \(restart\): a new node/);
    assert.match(out, /main \(node 1\) +shutdown called 1 time\(s\) \("shutdown -h now"\), final phase interrupted/);
    assert.match(out, /main \(node 2\) +shutdown called 1 time\(s\) \("shutdown -h now"\), final phase succeeded/);

    // The new node started from the stop's checkpoint, not from step 0, and answered the restart it found as done.
    const mirror = path.join(root, ".rehearsal", "dev", "s3", "campaign-rehearsal", "runs", "dev", "main");
    const status = statusSchema.parse(JSON.parse(fs.readFileSync(path.join(mirror, "status.json"), "utf8")));
    assert.equal(status.phase, "succeeded");
    assert.equal(status.progress?.step, 30);
    const log = fs.readFileSync(path.join(mirror, "logs", "runner.log"), "utf8");
    assert.match(log, new RegExp(`restored ${ended![1]} in `), "the second node restored the stop's checkpoint");
    assert.match(log, /asks for a restart that was there before this node's runner started/);
});
