// An evaluate-only node (CAMPAIGN_EVALUATE_ONLY=1, components/campaign/relaunch.ts): the runner runs although the
// run's status says succeeded, stages the run's saved output instead of restoring checkpoints, refuses to start the
// job when the output is not the trained model of the spec, and uploads the new eval.json with the output.
// The runner runs for real against moto_server, with a stand-in job (test/fixtures/evaluate-only-job.py).
//
//   node --import tsx --test test/node/evaluateOnly.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { status as statusSchema } from "../../components/campaign/jobSpec";
import { CHECKPOINT_MARKER, SUCCESS_MARKER, datasetPrefix, runKeys, s3Uri } from "../../components/campaign/layout";
import type { RunnerSettings } from "../../components/node/runnerSettings";
import { S3Helper } from "../helpers/aws";
import { startFakeImds, type FakeImds } from "../../scripts/local/fakeImds";
import { startMoto, type Moto } from "../../scripts/local/moto";
import { localRunSettings, repoRoot, runRunner } from "../../scripts/local/nodeRunner";

const BUCKET = "campaign-evaluate-only-tests";
const PREP_HASH = "0123456789abcdef";
const TRAINED = "1111111111111111";
const NEW_EVALUATION = "2222222222222222";
const job = join(repoRoot, "test", "fixtures", "evaluate-only-job.py");

let moto: Moto;
let meta: FakeImds;
let s3: S3Helper;

before(async () => {
    moto = await startMoto();
    meta = await startFakeImds();
    s3 = S3Helper.forEndpoint(moto.endpoint);
    await s3.createBucket(BUCKET);
    const data = s3Uri(BUCKET, datasetPrefix(PREP_HASH));
    await s3.put(`${data}manifest.json`, '{"rows":2}');
    await s3.put(`${data}${SUCCESS_MARKER}`, "");
});

after(async () => {
    await meta?.stop();
    await moto?.stop();
});

/** A run that succeeded with the model of spec `saved`, and its spec now (same training hash, new evaluation). */
async function succeededRun(campaign: string, saved: string): Promise<{ settings: RunnerSettings; keys: ReturnType<typeof runKeys> }> {
    const keys = runKeys(campaign, "r1");
    const uri = (key: string) => s3Uri(BUCKET, key);
    await s3.put(uri(keys.spec), JSON.stringify({ schemaVersion: 1, kind: "train", campaign, run: "r1", specHash: TRAINED, evaluationHash: NEW_EVALUATION }));
    await s3.put(uri(keys.status), JSON.stringify({ phase: "succeeded" }));
    await s3.put(uri(`${keys.output}metrics.json`), JSON.stringify({ specHash: saved }));
    await s3.put(uri(`${keys.output}adapter.bin`), "weights");
    await s3.put(uri(`${keys.output}${SUCCESS_MARKER}`), "");
    await s3.put(uri(`${keys.checkpoints}checkpoint-4/weights.bin`), "old");
    await s3.put(uri(`${keys.checkpoints}checkpoint-4/${CHECKPOINT_MARKER}`), JSON.stringify({ step: 4, specHash: TRAINED }));
    const settings = localRunSettings(BUCKET, campaign, "r1", s3Uri(BUCKET, datasetPrefix(PREP_HASH)), { command: `python3 ${job}`, evaluateOnly: true });
    return { settings, keys };
}

test("a succeeded run is evaluated again from its saved output: no checkpoint restored, eval.json uploaded", async () => {
    const { settings, keys } = await succeededRun("t-evaluate", TRAINED);
    const result = await runRunner({ settings, awsEndpoint: moto.endpoint, imdsEndpoint: meta.endpoint });
    assert.equal(result.code, 0, result.output);
    assert.deepEqual(result.shutdownCalls, ["-h now"], result.output);
    assert.match(result.output, /evaluate-only node: the run succeeded before/);
    assert.match(result.output, /staged saved output: \d+ files/);
    const jobLog = (await s3.getText(s3Uri(BUCKET, `${keys.logs}job.log`))) ?? "";
    assert.match(jobLog, /checkpoints on this node: none/, "no checkpoint is restored on an evaluate-only node");
    assert.match(jobLog, /evaluated the saved model of spec 1111111111111111/);
    const evaluation = await s3.getJson<{ evaluationHash: string }>(s3Uri(BUCKET, `${keys.output}eval.json`));
    assert.equal(evaluation?.evaluationHash, NEW_EVALUATION);
    assert.equal(await s3.getText(s3Uri(BUCKET, `${keys.output}adapter.bin`)), "weights", "the saved model is kept as it was");
    const status = statusSchema.parse(await s3.getJson(s3Uri(BUCKET, keys.status)));
    assert.equal(status.phase, "succeeded");
});

test("an output that is not the trained model of the spec fails the node before the job: nothing is trained", async () => {
    const { settings, keys } = await succeededRun("t-evaluate-stale", "9999999999999999");
    const result = await runRunner({ settings, awsEndpoint: moto.endpoint, imdsEndpoint: meta.endpoint });
    assert.equal(result.code, 1, result.output);
    const status = statusSchema.parse(await s3.getJson(s3Uri(BUCKET, keys.status)));
    assert.equal(status.phase, "failed");
    assert.match(status.reason ?? "", /evaluate-only node: the saved output .* is not the trained model of spec 1111111111111111 \(its metrics.json names 9999999999999999\)/);
    assert.equal(await s3.getText(s3Uri(BUCKET, `${keys.output}eval.json`)), undefined, "the job never ran");
});
