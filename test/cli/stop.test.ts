// `campaign stop` / `campaign down` against the S3 emulator: the control objects written and cleared, and the bounded
// wait: a node that ends is confirmed; a node that never ends makes the wait give up at its bound and say which runs
// did not confirm. The wait's clock is the test's own, so nothing here depends on how fast the machine is.
//
//   node --import tsx --test test/cli/stop.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { controlRequest } from "../../components/campaign/contract";
import { campaignControlKey, runKeys, s3Uri } from "../../components/campaign/layout";
import type { Status } from "../../components/campaign/jobSpec";
import { parseArgs } from "../../scripts/campaign";
import { readStatus } from "../../scripts/cli/s3Read";
import { clearControl, renderStopResult, waitForStopped, writeControl } from "../../scripts/cli/stop";
import type { JobView } from "../../scripts/cli/progress";
import { S3Helper } from "../helpers/aws";
import { startMoto, type Moto } from "../../scripts/local/moto";

const BUCKET = "campaign-stop-tests";
const CAMPAIGN = "stopper";
let moto: Moto;
let s3: S3Helper;

before(async () => {
    moto = await startMoto();
    s3 = S3Helper.forEndpoint(moto.endpoint);
    await s3.createBucket(BUCKET);
});

after(async () => moto?.stop());

function status(run: string, phase: Status["phase"], reason: string | null = null): Status {
    const at = "2026-11-30T12:00:00.000Z";
    return {
        campaign: CAMPAIGN, run, role: "train", phase, updatedAt: at, instanceId: "i-0", instanceType: "g5.2xlarge",
        progress: { step: 12, totalSteps: 24, epoch: 0.5, loss: 1, learningRate: null, tokensPerSec: null, etaSeconds: null, updatedAt: at },
        exitCode: phase === "interrupted" ? 75 : null, reason, lastCheckpoint: phase === "interrupted" ? "checkpoint-12" : null,
        timings: { nodeBoot: at, inputsReady: null, firstStep: null, jobEnd: null, shutdown: null },
    };
}

async function putStatus(st: Status): Promise<void> {
    await s3.put(s3Uri(BUCKET, runKeys(CAMPAIGN, st.run).status), JSON.stringify(st));
}

function reader(runs: readonly string[]): () => Promise<JobView[]> {
    return async () => Promise.all(runs.map(async (run) => ({ run, usdPerHour: 1, ...(await readStatus(s3.client, BUCKET, CAMPAIGN, run)) })));
}

/** A clock the wait advances by sleeping: the bound is reached after exactly timeout / interval polls. */
function fakeClock(): { now: () => number; sleep: (ms: number) => Promise<void>; slept: number[] } {
    let t = 0;
    const slept: number[] = [];
    return { now: () => t, sleep: async (ms) => void slept.push((t += ms)), slept };
}

test("stop writes a valid request into the campaign's object or each named run's; continue clears them", async () => {
    const all = await writeControl(s3.client, BUCKET, CAMPAIGN, { all: true }, "restart", "tester", new Date("2026-11-30T12:00:00Z"));
    assert.deepEqual(all, [campaignControlKey(CAMPAIGN)]);
    assert.deepEqual(controlRequest.parse(await s3.getJson(s3Uri(BUCKET, all[0]!))), { action: "restart", requestedAt: "2026-11-30T12:00:00.000Z", requestedBy: "tester" });
    const one = await writeControl(s3.client, BUCKET, CAMPAIGN, { runs: ["a"] }, "stop", undefined);
    assert.deepEqual(one, [runKeys(CAMPAIGN, "a").control]);
    assert.equal((await s3.getJson<{ action: string }>(s3Uri(BUCKET, one[0]!)))?.action, "stop");
    const cleared = await clearControl(s3.client, BUCKET, CAMPAIGN, { all: true }, ["a", "b"]);
    assert.equal(cleared.length, 3, "the campaign's object and every run's");
    assert.equal(await s3.getJson(s3Uri(BUCKET, all[0]!)), undefined);
    assert.equal(await s3.getJson(s3Uri(BUCKET, one[0]!)), undefined);
});

test("the wait confirms a node that ended and gives up at its bound on one that never does, naming it", async () => {
    await putStatus(status("ended", "interrupted", "stopped on request (stop in s3://x); job exit 75 (stopped after saving a checkpoint)"));
    await putStatus(status("stuck", "training"));
    const clock = fakeClock();
    const lines: string[] = [];
    const result = await waitForStopped(reader(["ended", "stuck", "fresh"]), ["ended", "stuck", "fresh"], {
        timeoutSeconds: 30,
        intervalSeconds: 10,
        log: (l) => lines.push(l),
        now: clock.now,
        sleep: clock.sleep,
    });
    assert.deepEqual(result.unconfirmed.map((u) => [u.run, u.phase]), [["stuck", "training"]]);
    assert.deepEqual(result.ended.map((e) => e.run), ["ended"]);
    assert.deepEqual(result.notStarted, ["fresh"]);
    assert.deepEqual(clock.slept, [10_000, 20_000, 30_000], "bounded: three polls of 10 s, then it gives up at 30 s");
    assert.ok(lines.some((l) => /waiting for 1 node\(s\) to save, sync and end: stuck training step 12\/24/.test(l)), lines.join("\n"));
    const said = renderStopResult(result, 30);
    assert.match(said, /^Gave up waiting after 30 s: 1 run\(s\) did not confirm: stuck \(training, status updated 2026-11-30T12:00:00.000Z\)/);
    assert.match(said, /No status yet for fresh/);
});

test("a node that ends while the wait polls is confirmed with its checkpoint", async () => {
    await putStatus(status("late", "training"));
    const clock = fakeClock();
    const lines: string[] = [];
    const read = reader(["late"]);
    let polls = 0;
    const result = await waitForStopped(
        async () => {
            if (++polls === 2) await putStatus(status("late", "interrupted", "stopped on request (stop in s3://x); job exit 75 (stopped after saving a checkpoint)"));
            return read();
        },
        ["late"],
        { timeoutSeconds: 600, intervalSeconds: 10, log: (l) => lines.push(l), now: clock.now, sleep: clock.sleep },
    );
    assert.deepEqual(result.unconfirmed, []);
    assert.deepEqual(result.ended.map((e) => [e.run, e.phase]), [["late", "interrupted"]]);
    assert.ok(lines.some((l) => l.startsWith("  late: interrupted with checkpoint-12 in S3")), lines.join("\n"));
    assert.match(renderStopResult(result, 600), /^Every working node has ended/);
});

test("the command line: stop and continue take runs, stop --no-wait, down --now, a bound for the wait", () => {
    assert.deepEqual(parseArgs(["stop", "--stack", "dev", "--run", "a", "--run", "b", "--no-wait"]), {
        command: "stop", stack: "dev", yes: false, destroy: false, intervalSeconds: 15, runs: ["a", "b"], noWait: true,
    });
    assert.deepEqual(parseArgs(["down", "--stack", "dev", "--now", "--timeout", "60"]), {
        command: "down", stack: "dev", yes: false, destroy: false, intervalSeconds: 15, now: true, timeoutSeconds: 60,
    });
    assert.deepEqual(parseArgs(["continue", "--stack", "dev", "--run", "a"]).runs, ["a"]);
    assert.throws(() => parseArgs(["up", "--stack", "dev", "--run", "a"]), /unknown option "--run"/);
    assert.throws(() => parseArgs(["down", "--stack", "dev", "--no-wait"]), /unknown option "--no-wait"/);
    assert.throws(() => parseArgs(["stop", "--stack", "dev", "--timeout", "0"]), /--timeout must be a number of seconds >= 1, got "0"/);
});
