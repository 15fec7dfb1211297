// The regional image build's step (scripts/image-build.ts) and the gate's wait for the image (scripts/gate.ts),
// for real against the local emulator where it serves the calls (ECR DescribeImages/PutImage, S3). Its CodeBuild
// answers StartBuild and BatchGetBuilds with timestamps as strings, which the SDK refuses ("Expected real
// number"), and reports every build SUCCEEDED at once; so a local endpoint (AWS_ENDPOINT_URL_CODEBUILD) answers
// those two calls as CodeBuild's JSON API does, with the build status each test needs.
//
//   node --import tsx --test --test-concurrency=1 test/resources/imageBuild.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as http from "node:http";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { CreateRepositoryCommand, ECRClient, PutImageCommand } from "@aws-sdk/client-ecr";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { datasetSuccessKey } from "../../components/campaign/layout";
import { gateCommand } from "../../components/campaign/gate";
import { parseBuildStart } from "../../components/campaign/imageTag";
import { S3Helper, s3Client } from "../helpers/aws";
import { fakeAwsEnv, startMoto, type Moto } from "../../scripts/local/moto";

const root = path.join(__dirname, "..", "..");
const HASH = "0123456789abcdef";
const TAG = "trainer-00112233445566aa";
let moto: Moto;
let s3: S3Helper;

const credentials = { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY };
const ecr = () => new ECRClient({ endpoint: moto.endpoint, region: fakeAwsEnv.AWS_REGION, credentials });

before(async () => {
    moto = await startMoto();
    s3 = S3Helper.forEndpoint(moto.endpoint);
});
after(async () => {
    await moto?.stop();
});

function run(command: string, env: Record<string, string> = {}): Promise<{ code: number; out: string; stdout: string }> {
    return new Promise((resolve) => {
        const child = spawn("bash", ["-c", command], { cwd: root, env: { ...process.env, ...fakeAwsEnv, AWS_ENDPOINT_URL: moto.endpoint, CAMPAIGN_GATE_LOG_LINES: "3", ...env } });
        let out = "";
        let stdout = "";
        child.stdout.on("data", (c: Buffer) => ((out += c.toString()), (stdout += c.toString())));
        child.stderr.on("data", (c: Buffer) => (out += c.toString()));
        child.on("close", (code) => resolve({ code: code ?? -1, out, stdout }));
    });
}

interface FakeBuild {
    buildStatus: string;
    currentPhase: string;
    logs?: { s3LogsArn: string };
    phases?: unknown[];
}

/** CodeBuild's StartBuild and BatchGetBuilds (JSON 1.1, X-Amz-Target), recording what was asked. */
async function fakeCodeBuild(answer: (id: string) => FakeBuild): Promise<{ url: string; close: () => void; calls: Array<{ target: string; body: any }> }> {
    const calls: Array<{ target: string; body: any }> = [];
    let started = 0;
    const server = http.createServer((req, res) => {
        let text = "";
        req.on("data", (c: Buffer) => (text += c.toString()));
        req.on("end", () => {
            const target = String(req.headers["x-amz-target"]);
            const body = JSON.parse(text || "{}");
            calls.push({ target, body });
            const now = Date.now() / 1000;
            let reply: unknown;
            if (target === "CodeBuild_20161006.StartBuild") {
                reply = { build: { id: `${body.projectName}:build-${++started}`, buildStatus: "IN_PROGRESS", currentPhase: "QUEUED", startTime: now } };
            } else if (target === "CodeBuild_20161006.BatchGetBuilds") {
                reply = { builds: (body.ids as string[]).map((id) => ({ id, startTime: now, ...answer(id) })), buildsNotFound: [] };
            } else {
                res.writeHead(400, { "content-type": "application/x-amz-json-1.1" });
                res.end(JSON.stringify({ __type: "InvalidInputException", message: `not served here: ${target}` }));
                return;
            }
            res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
            res.end(JSON.stringify(reply));
        });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}`, close: () => server.close(), calls };
}

async function pushImage(repository: string, tag: string): Promise<string> {
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.docker.distribution.manifest.v2+json", config: { mediaType: "application/vnd.docker.container.image.v1+json", size: 1, digest: `sha256:${"c".repeat(64)}` }, layers: [] });
    const out = await ecr().send(new PutImageCommand({ repositoryName: repository, imageTag: tag, imageManifest: manifest }));
    return out.image!.imageId!.imageDigest!;
}

const imageStep = (repository: string) => `npx tsx scripts/image-build.ts --project ${repository} --repository ${repository} --tag ${TAG}`;

test("the image step starts a build when the tag is missing, and builds nothing once it exists", async () => {
    await ecr().send(new CreateRepositoryCommand({ repositoryName: "img-step" }));
    const cb = await fakeCodeBuild(() => ({ buildStatus: "IN_PROGRESS", currentPhase: "BUILD" }));
    try {
        const first = await run(imageStep("img-step"), { AWS_ENDPOINT_URL_CODEBUILD: cb.url });
        assert.equal(first.code, 0, first.out);
        assert.deepEqual(parseBuildStart(first.stdout), { kind: "started", buildId: "img-step:build-1" });
        assert.deepEqual(cb.calls.map((c) => [c.target, c.body.projectName]), [["CodeBuild_20161006.StartBuild", "img-step"]]);

        const digest = await pushImage("img-step", TAG);
        const second = await run(imageStep("img-step"), { AWS_ENDPOINT_URL_CODEBUILD: cb.url });
        assert.equal(second.code, 0, second.out);
        assert.deepEqual(parseBuildStart(second.stdout), { kind: "exists", digest });
        assert.match(second.stdout, /already in ECR: not rebuilt/);
        assert.equal(cb.calls.length, 1, "an unchanged image is never rebuilt: no second StartBuild");
    } finally {
        cb.close();
    }
});

test("the prep image's step waits for its build: a failed build exits 1 with the build's phase messages", async () => {
    await ecr().send(new CreateRepositoryCommand({ repositoryName: "img-wait" }));
    const cb = await fakeCodeBuild(() => ({ buildStatus: "FAILED", currentPhase: "BUILD", phases: [{ phaseType: "BUILD", phaseStatus: "FAILED", contexts: [{ statusCode: "COMMAND_EXECUTION_ERROR", message: "Error while executing command: docker push. Reason: exit status 1" }] }] }));
    try {
        const result = await run(`${imageStep("img-wait")} --wait --interval 1`, { AWS_ENDPOINT_URL_CODEBUILD: cb.url });
        assert.equal(result.code, 1, result.out);
        assert.match(result.out, /image-build: the build img-wait:build-1 ended FAILED in phase BUILD/);
        assert.match(result.out, /docker push\. Reason: exit status 1/);
    } finally {
        cb.close();
    }
});

test("the image step refuses bad arguments, naming the flag", async () => {
    const result = await run("npx tsx scripts/image-build.ts --project p --repository r");
    assert.equal(result.code, 2);
    assert.match(result.out, /--tag is required/);
});

function gate(bucket: string, campaign: string, image: { repository: string; buildId?: string }, env: Record<string, string> = {}) {
    const command = `${gateCommand({ bucket, prepHash: HASH, campaign, maxHours: 60 / 3600, image: { ...image, tag: TAG, timeoutMinutes: 0 } })} --interval 1`;
    return run(command, env);
}

test("the gate waits for the image as well as the data, and opens when both exist", async () => {
    await ecr().send(new CreateRepositoryCommand({ repositoryName: "img-gate" }));
    await s3.createBucket("img-gate-b");
    await s3.put(`s3://img-gate-b/${datasetSuccessKey(HASH)}`, "");
    const cb = await fakeCodeBuild(() => ({ buildStatus: "IN_PROGRESS", currentPhase: "BUILD" }));
    try {
        const waiting = gate("img-gate-b", "c1", { repository: "img-gate", buildId: "img-gate:build-1" }, { AWS_ENDPOINT_URL_CODEBUILD: cb.url });
        // Pushed once the gate has seen the build in progress at least once.
        for (let i = 0; i < 600 && !cb.calls.some((c) => c.target.endsWith("BatchGetBuilds")); i++) await new Promise((r) => setTimeout(r, 100));
        await pushImage("img-gate", TAG);
        const result = await waiting;
        assert.equal(result.code, 0, result.out);
        assert.match(result.out, /prepared dataset ready; waiting for the image: \d+s of at most \d+s; image build IN_PROGRESS \(BUILD\)/);
        assert.match(result.out, /prepared dataset and image ready/);
    } finally {
        cb.close();
    }
});

test("a build that says SUCCEEDED without the tag in ECR fails the gate: no GPU node", async () => {
    await ecr().send(new CreateRepositoryCommand({ repositoryName: "img-nopush" }));
    await s3.createBucket("img-nopush-b");
    await s3.put(`s3://img-nopush-b/${datasetSuccessKey(HASH)}`, "");
    const cb = await fakeCodeBuild(() => ({ buildStatus: "SUCCEEDED", currentPhase: "COMPLETED" }));
    try {
        const result = await gate("img-nopush-b", "c2", { repository: "img-nopush", buildId: "img-nopush:build-1" }, { AWS_ENDPOINT_URL_CODEBUILD: cb.url });
        assert.equal(result.code, 1, result.out);
        assert.match(result.out, /says SUCCEEDED but ECR has no img-nopush:trainer-00112233445566aa; no GPU node was requested/);
    } finally {
        cb.close();
    }
});

test("a failed build fails the gate at once with the build's last log lines (gzipped S3 log)", async () => {
    await ecr().send(new CreateRepositoryCommand({ repositoryName: "img-failed" }));
    await s3.createBucket("img-failed-b");
    const buildId = "img-failed:0f1e2d3c-0000-4000-8000-000000000000";
    const logKey = "runs/c3/image/logs/0f1e2d3c-0000-4000-8000-000000000000.gz";
    const log = "Step 1/9 : FROM nvcr.io/nvidia/pytorch:25.11-py3\nStep 2/9 : RUN pip install\nlines\nmore\nERROR: No matching distribution found for trl==99.0\n";
    await s3Client(moto.endpoint).send(new PutObjectCommand({ Bucket: "img-failed-b", Key: logKey, Body: gzipSync(Buffer.from(log)) }));
    const endpoint = await fakeCodeBuild(() => ({
        buildStatus: "FAILED",
        currentPhase: "BUILD",
        logs: { s3LogsArn: `arn:aws:s3:::img-failed-b/${logKey}` },
        phases: [{ phaseType: "BUILD", phaseStatus: "FAILED", contexts: [{ statusCode: "COMMAND_EXECUTION_ERROR", message: "Error while executing command: docker build. Reason: exit status 1" }] }],
    }));
    try {
        const result = await gate("img-failed-b", "c3", { repository: "img-failed", buildId }, { AWS_ENDPOINT_URL_CODEBUILD: endpoint.url });
        assert.equal(result.code, 1, result.out);
        assert.doesNotMatch(result.out, /waiting for the prepared dataset:/, "decided on the first poll");
        assert.match(result.out, /the image build img-failed:0f1e2d3c-0000-4000-8000-000000000000 ended FAILED in phase BUILD without pushing img-failed:trainer-00112233445566aa/);
        assert.match(result.out, /No matching distribution found for trl==99\.0/, "the build's last line");
        assert.doesNotMatch(result.out, /Step 1\/9/, "only the last lines");
        assert.match(result.out, /COMMAND_EXECUTION_ERROR|docker build\. Reason: exit status 1/);
        assert.deepEqual(endpoint.calls.map((c) => [c.target, c.body.ids]), [["CodeBuild_20161006.BatchGetBuilds", [buildId]]], "one poll, for this build");
    } finally {
        endpoint.close();
    }
});
