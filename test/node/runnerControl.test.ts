// The node runner's graceful stop, run for real against moto_server and a fake IMDSv2 (as test/node/runner.test.ts):
// a control object (`campaign stop`) asking for stop or restart during training, an action it does not know, and a
// SIGTERM that comes with the OS going down (`pulumi destroy` terminating the instance: systemd stops the unit).
// The recorder `systemctl` plays the system's state (RECORDER_SYSTEM_STATE).
//
//   node --import tsx --test test/node/runnerControl.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { controlBody } from "../../components/campaign/control";
import { status as statusSchema, type Status } from "../../components/campaign/jobSpec";
import { CHECKPOINT_MARKER, SUCCESS_MARKER, campaignControlKey, datasetPrefix, modelPrefix, runKeys, s3Uri } from "../../components/campaign/layout";
import type { RunnerSettings } from "../../components/node/runnerSettings";
import { S3Helper } from "../helpers/aws";
import { startFakeImds, type FakeImds } from "../../scripts/local/fakeImds";
import { startMoto, type Moto } from "../../scripts/local/moto";
import { localRunSettings, runRunner, runnerBaseDir, type RunnerResult } from "../../scripts/local/nodeRunner";

const BUCKET = "campaign-control-tests";
const DATA_URI = s3Uri(BUCKET, datasetPrefix("0123456789abcdef"));
const MODEL_URI = s3Uri(BUCKET, modelPrefix("tiny", "main"));
/** A job long enough to be stopped mid-training, saving a checkpoint every 2 steps. */
const LONG = { FAKE_STEPS: "1000", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "2", CAMPAIGN_CONTROL_POLL_SECONDS: "1" };

let moto: Moto;
let s3: S3Helper;
const imdsServers: FakeImds[] = [];

before(async () => {
    moto = await startMoto();
    s3 = S3Helper.forEndpoint(moto.endpoint);
    await s3.createBucket(BUCKET);
    await s3.put(`${DATA_URI}train.jsonl`, '{"text":"a"}\n');
    await s3.put(`${DATA_URI}${SUCCESS_MARKER}`, "");
    await s3.put(`${MODEL_URI}config.json`, "{}");
});

after(async () => {
    await Promise.all(imdsServers.map((s) => s.stop()));
    await moto?.stop();
});

async function imds(): Promise<string> {
    const server = await startFakeImds();
    imdsServers.push(server);
    return server.endpoint;
}

async function settingsFor(campaign: string): Promise<RunnerSettings> {
    const keys = runKeys(campaign, "r1");
    const uri = (key: string) => s3Uri(BUCKET, key);
    await s3.put(uri(keys.spec), JSON.stringify({ schemaVersion: 1, kind: "train", campaign, run: "r1" }));
    return localRunSettings(BUCKET, campaign, "r1", DATA_URI, {
        modelUri: MODEL_URI,
        maxRuntimeSeconds: 3600,
        runControlUri: uri(keys.control),
        campaignControlUri: uri(campaignControlKey(campaign)),
    });
}

async function finalStatus(campaign: string, result: RunnerResult): Promise<Status> {
    const raw = await s3.getJson(s3Uri(BUCKET, runKeys(campaign, "r1").status));
    assert.ok(raw, `status.json is in S3\n${result.output}`);
    return statusSchema.parse(raw);
}

async function completeCheckpoints(campaign: string): Promise<number[]> {
    const keys = await s3.list(s3Uri(BUCKET, runKeys(campaign, "r1").checkpoints));
    return keys
        .map((k) => new RegExp(`^checkpoint-(\\d+)/${CHECKPOINT_MARKER.replace(".", "\\.")}$`).exec(k))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => Number(m[1]));
}

/** Resolves once the job's local progress file shows `step`; staging on a loaded machine can take minutes. */
async function atStep(base: string, step: number): Promise<void> {
    const file = join(base, "work", "job", "progress.json");
    const deadline = Date.now() + 600_000;
    while (Date.now() < deadline) {
        try {
            if ((JSON.parse(readFileSync(file, "utf8")) as { step: number }).step >= step) return;
        } catch {
            // not written yet
        }
        await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the job never reached step ${step}`);
}

function assertOneShutdown(result: RunnerResult): void {
    assert.deepEqual(result.shutdownCalls, ["-h now"], `shutdown called exactly once\n${result.output}`);
}

/** The stop's checkpoint is the newest complete one in S3 and the one the final status names. */
async function assertCheckpointSynced(campaign: string, st: Status): Promise<void> {
    assert.ok(st.lastCheckpoint, "the final status names a checkpoint");
    const step = Number(st.lastCheckpoint!.split("-")[1]);
    assert.equal(Math.max(...(await completeCheckpoints(campaign))), step, "the checkpoint saved on the stop is complete in S3");
    assert.ok(step >= (st.progress?.step ?? 0), "nothing after the saved step was lost");
}

describe("node runner: graceful stop", () => {
    test("a run's control object asks for stop mid-training: SIGTERM, checkpoint synced, interrupted 'stopped on request', one shutdown", async () => {
        const campaign = "ctl-stop";
        const settings = await settingsFor(campaign);
        const base = runnerBaseDir();
        const write = atStep(base, 3).then(() => s3.put(settings.runControlUri!, controlBody("stop", "test", new Date())));
        const result = await runRunner({ settings, awsEndpoint: moto.endpoint, imdsEndpoint: await imds(), baseDir: base, env: LONG });
        await write;
        assert.equal(result.code, 75, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(campaign, result);
        assert.equal(st.phase, "interrupted");
        assert.equal(st.exitCode, 75);
        assert.equal(st.reason, `stopped on request (stop in ${settings.runControlUri}); job exit 75 (stopped after saving a checkpoint)`);
        assert.ok(st.events?.some((e) => e.kind === "event" && e.reason === "stop requested: control"));
        await assertCheckpointSynced(campaign, st);
    });

    test("the campaign's object asks for restart: the node stops the same way; the next node ignores that restart and resumes", async () => {
        const campaign = "ctl-restart";
        const settings = await settingsFor(campaign);
        const base = runnerBaseDir();
        const write = atStep(base, 3).then(() => s3.put(settings.campaignControlUri!, controlBody("restart", "test", new Date())));
        const first = await runRunner({ settings, awsEndpoint: moto.endpoint, imdsEndpoint: await imds(), baseDir: base, env: LONG });
        await write;
        assert.equal(first.code, 75, first.output);
        assertOneShutdown(first);
        const st = await finalStatus(campaign, first);
        assert.equal(st.phase, "interrupted");
        assert.match(st.reason ?? "", /^stopped on request \(restart in s3:\/\/campaign-control-tests\/runs\/ctl-restart\/control\.json\); job exit 75/);
        await assertCheckpointSynced(campaign, st);
        const saved = Number(st.lastCheckpoint!.split("-")[1]);

        // The next `pulumi up` declares a new node: the restart is still in S3, and it is the one this node answers.
        const second = await runRunner({
            settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: await imds(),
            env: { ...LONG, FAKE_STEPS: String(saved + 4) },
        });
        assert.equal(second.code, 0, second.output);
        assertOneShutdown(second);
        assert.match(second.output, /asks for a restart that was there before this node's runner started/);
        const done = await finalStatus(campaign, second);
        assert.equal(done.phase, "succeeded");
        assert.equal(done.progress?.step, saved + 4, "resumed from the stop's checkpoint and finished");
    });

    test("an action the runner does not know is a warning in status.json, and the run goes on to succeed", async () => {
        const campaign = "ctl-unknown";
        const settings = await settingsFor(campaign);
        await s3.put(settings.runControlUri!, JSON.stringify({ action: "pause", requestedAt: "2026-11-30T12:00:00Z" }));
        const result = await runRunner({
            settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: await imds(),
            env: { ...LONG, FAKE_STEPS: "8" },
        });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(campaign, result);
        assert.equal(st.phase, "succeeded");
        const warning = st.events?.find((e) => e.kind === "warning" && /asks for action "pause"/.test(e.reason ?? ""));
        assert.ok(warning, `a warning event names the action\n${JSON.stringify(st.events, null, 1)}`);
        assert.match(warning!.reason!, /which is not one of stop, restart; ignored/);
    });

    test("a stop in S3 never touches a run that already succeeded: the node ends at once, the status stays succeeded", async () => {
        const campaign = "ctl-done";
        const settings = await settingsFor(campaign);
        const done = { campaign, run: "r1", role: "train", phase: "succeeded", updatedAt: "2026-11-30T12:00:00.000Z", instanceId: "i-0",
            instanceType: null, progress: null, exitCode: 0, reason: null, lastCheckpoint: null,
            timings: { nodeBoot: null, inputsReady: null, firstStep: null, jobEnd: null, shutdown: null } };
        await s3.put(settings.statusUri, JSON.stringify(done));
        await s3.put(settings.runControlUri!, controlBody("stop", "test", new Date()));
        await s3.put(settings.campaignControlUri!, controlBody("stop", "test", new Date()));
        const result = await runRunner({ settings, awsEndpoint: moto.endpoint, imdsEndpoint: await imds(), env: LONG });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        assert.match(result.output, /this run already succeeded: nothing to do/);
        const st = await finalStatus(campaign, result);
        assert.equal(st.phase, "succeeded");
        assert.equal(st.updatedAt, done.updatedAt, "the status is left as it was");
    });

    test("SIGTERM as the OS goes down (instance terminated): checkpoint synced, interrupted with the reason, no second shutdown", async () => {
        const campaign = "ctl-os";
        const settings = await settingsFor(campaign);
        const base = runnerBaseDir();
        let pid = 0;
        const kill = atStep(base, 3).then(() => process.kill(pid, "SIGTERM"));
        const result = await runRunner({
            settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: await imds(),
            baseDir: base,
            env: { ...LONG, RECORDER_SYSTEM_STATE: "stopping" },
            onStart: (p) => (pid = p),
        });
        await kill;
        assert.equal(result.code, 75, result.output);
        assert.deepEqual(result.shutdownCalls, [], `the system is already going down: no shutdown call\n${result.output}`);
        const st = await finalStatus(campaign, result);
        assert.equal(st.phase, "interrupted", "never left at training");
        assert.equal(st.reason, "the node is shutting down: instance terminated or stopped (SIGTERM from the OS); job exit 75 (stopped after saving a checkpoint)");
        await assertCheckpointSynced(campaign, st);
        assert.match(result.output, /the OS path: \d+ s left to sync the newest checkpoint/);
    });
});
