// The report's S3 reads against the local emulator: a run's attempts found under metrics/, merged in time order,
// the live status.json given to the attempt still running; `campaign watch`'s sparklines from the same reads; and
// the HTML written from them.
//
//   node --import tsx --test test/cli/report.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveCampaign } from "../../components/campaign/resolve";
import { runKeys } from "../../components/campaign/layout";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import { buildPlan } from "../../components/plan/plan";
import { lossSparklines, readReportInput, readRunHistory, writeReport } from "../../scripts/cli/report";
import { startMoto, type Moto } from "../../scripts/local/moto";
import { S3Helper } from "../helpers/aws";

const BUCKET = "report-test";
let moto: Moto;
let s3: S3Helper;
before(async () => {
    moto = await startMoto();
    s3 = S3Helper.forEndpoint(moto.endpoint);
    await s3.createBucket(BUCKET);
});
after(async () => moto?.stop());

const campaign = resolveCampaign(mergeConfig(loadPreset("socratiq-t5-lora"), {}));
const name = campaign.experiment.name;
const uri = (key: string) => `s3://${BUCKET}/${key}`;
const train = (step: number, loss: number) => JSON.stringify({ kind: "train", step, epoch: 0, at: `2026-11-30T12:00:${String(step).padStart(2, "0")}Z`, loss, learningRate: 1e-4, gradNorm: 1, tokensPerSec: 500, tokens: step * 100 }) + "\n";
function status(phase: "interrupted" | "training", boot: string) {
    return JSON.stringify({
        campaign: name, run: "flan-t5-small", role: "train", phase, updatedAt: boot, instanceId: "i-1", instanceType: "g5.2xlarge", progress: null,
        exitCode: phase === "interrupted" ? 75 : null, reason: phase === "interrupted" ? "spot interruption notice" : null, lastCheckpoint: null,
        timings: { nodeBoot: boot, inputsReady: null, firstStep: null, jobEnd: null, shutdown: phase === "interrupted" ? "2026-11-30T12:30:00Z" : null },
        events: [{ at: boot, kind: "phase", phase: "preparing", reason: null }],
    });
}

test("attempts merged in time order; the running attempt gets the live status; sparklines and the page from the same reads", async () => {
    const keys = runKeys(name, "flan-t5-small");
    await s3.put(uri(`${keys.metrics}20261130T120000Z-i-1.jsonl`), train(1, 4) + train(2, 3) + train(3, 2.9) + '{"kind":"tr');
    await s3.put(uri(`${keys.metrics}20261130T120000Z-i-1.status.json`), status("interrupted", "2026-11-30T12:00:00Z"));
    await s3.put(uri(`${keys.metrics}20261130T124000Z-i-2.jsonl`), train(3, 2.5) + train(4, 2) + train(5, 1));
    await s3.put(uri(keys.status), status("training", "2026-11-30T12:40:00Z"));
    await s3.put(uri(`${keys.metrics}notes/ignored.txt`), "not an attempt");

    const history = await readRunHistory(s3.client, BUCKET, name, "flan-t5-small");
    assert.deepEqual(history.train.map((t) => [t.step, t.loss]), [[1, 4], [2, 3], [3, 2.5], [4, 2], [5, 1]]);
    assert.deepEqual(history.attempts.map((a) => [a.id, a.status?.phase, a.skipped.length]), [
        ["20261130T120000Z-i-1", "interrupted", 1],
        ["20261130T124000Z-i-2", "training", 0],
    ]);

    const lines = await lossSparklines(s3.client, BUCKET, campaign);
    assert.equal(lines, "  flan-t5-small  loss █▆▅▃▁  4.000 -> 1.000 (5 logged steps)", "runs without a history are left out");

    const input = await readReportInput(s3.client, BUCKET, campaign, buildPlan(campaign), "stacks/socratiq-t5-lora.yaml");
    const file = writeReport(input, path.join(fs.mkdtempSync(path.join(os.tmpdir(), "campaign-report-")), "r.html"));
    const html = fs.readFileSync(file, "utf8");
    assert.match(html, /<polyline class="raw" data-run="flan-t5-small" data-points="5"/);
    assert.match(html, /flan-t5-small<span|flan-t5-small <span class="win"/);
    assert.ok(html.includes(`s3://${BUCKET}/runs/socratiq-t5/flan-t5-small/metrics/`), "the artifacts table names the objects' S3 URIs");
    assert.ok(!/<script|https?:\/\//.test(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, "")), "no script and no external URL");
});

test("campaign report's arguments: --out and --bucket belong to report only", async () => {
    const { parseArgs } = await import("../../scripts/campaign");
    assert.deepEqual(parseArgs(["report", "--stack", "dev", "--out", "r.html", "--bucket", "campaign-rehearsal"]), {
        command: "report", stack: "dev", yes: false, destroy: false, intervalSeconds: 15, out: "r.html", bucket: "campaign-rehearsal",
    });
    assert.deepEqual(parseArgs(["report", "--stack", "dev"]).out, undefined);
    assert.throws(() => parseArgs(["status", "--stack", "dev", "--out", "r.html"]), /unknown option "--out"/);
});
