// The prep gate (scripts/gate.ts, deciding with components/campaign/gate.ts) and the S3 state reader, for real
// against a local S3 and EC2 emulator, and a local endpoint that refuses every request like S3 does for bad credentials.
//
//   node --import tsx --test --test-concurrency=1 test/cli/gate.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as http from "node:http";
import { DescribeImagesCommand, EC2Client, RunInstancesCommand, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import * as path from "node:path";
import { S3CampaignState } from "../../components/campaign/state";
import { datasetSuccessKey, runKeys } from "../../components/campaign/layout";
import { gateCommand } from "../../components/campaign/gate";
import { shellQuote } from "../../components/campaign/shell";
import { S3Helper, s3Client } from "../helpers/aws";
import { fakeAwsEnv, startMoto, type Moto } from "../../scripts/local/moto";

const root = path.join(__dirname, "..", "..");
const HASH = "0123456789abcdef";
let moto: Moto;
let s3: S3Helper;

before(async () => {
    moto = await startMoto();
    s3 = S3Helper.forEndpoint(moto.endpoint);
});
after(async () => {
    await moto?.stop();
});

function gate(bucket: string, campaign: string, maxSeconds: number, extra: string[] = [], endpoint?: string): Promise<{ code: number; out: string; seconds: number }> {
    const started = Date.now();
    return new Promise((resolve) => {
        const command = `${gateCommand({ bucket, prepHash: HASH, campaign, maxHours: maxSeconds / 3600 })} --max-seconds ${maxSeconds} --interval 1 ${extra.map(shellQuote).join(" ")}`;
        const child = spawn("bash", ["-c", command], {
            cwd: root,
            env: { ...process.env, ...fakeAwsEnv, AWS_ENDPOINT_URL: endpoint ?? moto.endpoint, CAMPAIGN_GATE_LOG_LINES: "3" },
        });
        let out = "";
        child.stdout.on("data", (c: Buffer) => (out += c.toString()));
        child.stderr.on("data", (c: Buffer) => (out += c.toString()));
        child.on("close", (code) => resolve({ code: code ?? -1, out, seconds: (Date.now() - started) / 1000 }));
    });
}

test("the gate opens when _SUCCESS appears", async () => {
    await s3.createBucket("gate-ok");
    const running = gate("gate-ok", "c1", 60);
    await new Promise((r) => setTimeout(r, 1500));
    await s3.put(`s3://gate-ok/${datasetSuccessKey(HASH)}`, "");
    const result = await running;
    assert.equal(result.code, 0, result.out);
    assert.match(result.out, /prepared dataset ready/);
});

test("the gate fails fast with the prep's last log lines when prep failed", async () => {
    await s3.createBucket("gate-fail");
    const keys = runKeys("c2", "prep");
    await s3.put(`s3://gate-fail/${keys.status}`, JSON.stringify({ phase: "failed", reason: "data refused" }));
    await s3.put(`s3://gate-fail/${keys.logs}job.log`, "line 1\nline 2\nline 3\nline 4\nTraceback: too many malformed rows\n");
    const result = await gate("gate-fail", "c2", 600);
    assert.equal(result.code, 1);
    assert.doesNotMatch(result.out, /waiting for the prepared dataset/, "decided on the first poll, without waiting");
    assert.match(result.out, /prep failed/);
    assert.match(result.out, /too many malformed rows/);
    assert.doesNotMatch(result.out, /line 1/, "only the last lines");
});

test("the gate fails with the prep's reason when prep refused an empty dataset", async () => {
    await s3.createBucket("gate-empty");
    const keys = runKeys("c6", "prep");
    // The status as the node runner writes it for a prep that exited 65: the reason ends with the job's last log line.
    const refusal =
        'no example survived cleaning: read 600 rows, 0 malformed, 600 removed by cleaning: tooShort 600 (user text and answer both under data.cleaning.minChars = 50); ' +
        "truncated 0 (answer holds data.cleaning.dropTruncated.marker '...' and is under its maxChars = 100)";
    const reason = `the job exited with code 65 (data refused): [2026-11-30T14:00:00Z] kept 0 of 600 rows "quoted" [2026-11-30T14:00:01Z] prep failed: ${refusal}`;
    await s3.put(`s3://gate-empty/${keys.status}`, JSON.stringify({ phase: "failed", exitCode: 65, reason }, null, 2));
    const result = await gate("gate-empty", "c6", 600);
    assert.equal(result.code, 1, result.out);
    const verdict = result.out.split("\n").find((l) => l.startsWith("gate: prep failed"));
    assert.equal(verdict, `gate: prep failed: ${reason} (s3://gate-empty/${keys.status}); no GPU node was requested. Fix the cause and run pulumi up --refresh`);
});

test("an earlier prep node's failure does not close the gate for the new node", async () => {
    await s3.createBucket("gate-retry");
    const keys = runKeys("c4", "prep");
    await s3.put(`s3://gate-retry/${keys.status}`, JSON.stringify({ phase: "failed", instanceId: "i-old" }, null, 2));
    const running = gate("gate-retry", "c4", 60, ["--instance-id", "i-new"]);
    await new Promise((r) => setTimeout(r, 2500));
    await s3.put(`s3://gate-retry/${datasetSuccessKey(HASH)}`, "");
    const result = await running;
    assert.equal(result.code, 0, result.out);
    // The new node's own failure does count.
    await s3.createBucket("gate-retry2");
    await s3.put(`s3://gate-retry2/${runKeys("c5", "prep").status}`, JSON.stringify({ phase: "failed", instanceId: "i-new" }));
    const failed = await gate("gate-retry2", "c5", 60, ["--instance-id", "i-new"]);
    assert.equal(failed.code, 1);
    assert.match(failed.out, /prep failed/);
});

test("the gate gives up at the cap", async () => {
    await s3.createBucket("gate-slow");
    const result = await gate("gate-slow", "c3", 2);
    assert.equal(result.code, 1);
    assert.match(result.out, /after 2s \(the prep cap\)/);
    assert.match(result.out, /waiting for the prepared dataset: \d+s of at most 2s, prep not started/, "progress while it waits");
});

test("the gate refuses bad arguments, naming the flag", async () => {
    let out = "";
    const result = await new Promise<number>((resolve) => {
        const child = spawn("npx", ["tsx", "scripts/gate.ts", "--marker", "b/datasets/x/_SUCCESS", "--status", "s3://b/runs/c/prep/status.json", "--logs", "s3://b/runs/c/prep/logs/", "--max-seconds", "1"], { cwd: root });
        child.stderr.on("data", (c: Buffer) => (out += c.toString()));
        child.on("close", (c) => resolve(c ?? -1));
    });
    assert.equal(result, 2);
    assert.match(out, /--marker must be an s3:\/\/bucket\/key URI, got 'b\/datasets\/x\/_SUCCESS'/);
});

test("the gate fails at once when the prep node is terminated without the marker, with its last status", async () => {
    const ec2 = new EC2Client({ endpoint: moto.endpoint, region: fakeAwsEnv.AWS_REGION, credentials: { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY } });
    const image = (await ec2.send(new DescribeImagesCommand({}))).Images![0]!.ImageId!;
    const instanceId = (await ec2.send(new RunInstancesCommand({ ImageId: image, InstanceType: "c6i.2xlarge", MinCount: 1, MaxCount: 1 }))).Instances![0]!.InstanceId!;
    await s3.createBucket("gate-dead");
    await s3.put(`s3://gate-dead/${runKeys("c7", "prep").status}`, JSON.stringify({ phase: "preparing", instanceId }));
    const running = gate("gate-dead", "c7", 600, ["--instance-id", instanceId]);
    await new Promise((r) => setTimeout(r, 1500));
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    const result = await running;
    assert.equal(result.code, 1, result.out);
    assert.match(result.out, new RegExp(`gate: the prep node ${instanceId} is (shutting-down|terminated) and s3://gate-dead/datasets/${HASH}/_SUCCESS does not exist \\(last status: preparing\\)`));
});

/** A local endpoint that answers every request as S3 does for refused credentials. */
async function refusingEndpoint(code: string, status: number): Promise<{ url: string; close: () => void; requests: () => number }> {
    let requests = 0;
    const server = http.createServer((_req, res) => {
        requests++;
        res.writeHead(status, { "content-type": "application/xml" });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>refused by the test endpoint</Message><RequestId>1</RequestId></Error>`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}`, close: () => server.close(), requests: () => requests };
}

for (const [code, status] of [["AccessDenied", 403], ["ExpiredToken", 400]] as const) {
    test(`the gate gives up after a few polls answered ${code}, naming the credentials`, async () => {
        const endpoint = await refusingEndpoint(code, status);
        try {
            const result = await gate("gate-creds", "c8", 600, [], endpoint.url);
            assert.equal(result.code, 1, result.out);
            assert.match(result.out, /gate: the credentials of this pulumi up cannot read s3:\/\/gate-creds\/datasets\/[0-9a-f]{16}\/_SUCCESS \(3 attempts\)/);
            assert.match(result.out, new RegExp(code));
            assert.match(result.out, /aws:profile \/ aws:assumeRoles/);
            assert.ok(endpoint.requests() >= 3);
        } finally {
            endpoint.close();
        }
    });
}

test("the S3 state reader: a missing bucket or key is a new campaign; a status is read", async () => {
    const client = s3Client(moto.endpoint);
    const missing = new S3CampaignState(client, "no-such-bucket-here", "c");
    assert.equal(await missing.prepSucceeded(HASH), false);
    assert.equal(await missing.runPhase("main"), undefined);

    await s3.createBucket("state-bucket");
    const reader = new S3CampaignState(client, "state-bucket", "c");
    assert.equal(await reader.prepSucceeded(HASH), false);
    await s3.put(`s3://state-bucket/${datasetSuccessKey(HASH)}`, "");
    assert.equal(await reader.prepSucceeded(HASH), true);
    await s3.put(`s3://state-bucket/${runKeys("c", "main").status}`, JSON.stringify({ phase: "succeeded" }));
    assert.equal(await reader.runPhase("main"), "succeeded");
    await s3.put(`s3://state-bucket/${runKeys("c", "odd").status}`, "not json");
    assert.equal(await reader.runPhase("odd"), undefined);
    // How many of a run's nodes have ended (the fallback node's launch key): from the attempts the runners carried.
    const attempt = (node: string, outcome: string | null) => ({ node, instanceType: "g5.2xlarge", specHash: HASH, startedAt: "2026-11-30T01:00:00Z", endedAt: outcome ? "2026-11-30T02:00:00Z" : null, outcome, reason: null, exitCode: null });
    await s3.put(`s3://state-bucket/${runKeys("c", "again").status}`, JSON.stringify({ phase: "training", attempts: [attempt("i-1", "interrupted"), attempt("i-2", null)] }));
    assert.equal((await reader.runRecord("again")).endedAttempts, 1);
    assert.equal((await reader.runRecord("never")).endedAttempts, 0);
    assert.equal((await reader.runRecord("again")).openNode, "i-2");
});

test("the state reader asks EC2 whether a node without a final status is gone: running no, terminated or unknown yes", async () => {
    const ec2 = new EC2Client({ endpoint: moto.endpoint, region: fakeAwsEnv.AWS_REGION, credentials: { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY } });
    const reader = new S3CampaignState(s3Client(moto.endpoint), "state-bucket", "c", ec2);
    const image = (await ec2.send(new DescribeImagesCommand({}))).Images![0]!.ImageId!;
    const id = (await ec2.send(new RunInstancesCommand({ ImageId: image, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }))).Instances![0]!.InstanceId!;
    assert.equal(await reader.nodeGone(id), false, "a running node is not gone");
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.equal(await reader.nodeGone(id), true, "a terminated node is gone");
    assert.equal(await reader.nodeGone("i-0123456789abcdef0"), true, "a node EC2 does not know is gone");
    // Without an EC2 client nothing is concluded.
    assert.equal(await new S3CampaignState(s3Client(moto.endpoint), "state-bucket", "c").nodeGone(id), false);
});
