// The node runner (scripts/node-runner/run-job.sh) run for real: bash and the AWS CLI against moto_server
// on loopback and a fake IMDSv2, with `shutdown`, `docker`, `nvidia-smi` and the CloudWatch agent's ctl
// replaced by recorders (scripts/local/bin) and a small job (test/fixtures/fake-job.py) that writes
// progress and checkpoints.
// Every scenario checks the final status.json against the zod schema and that `shutdown -h now` was
// called exactly once.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { CreateRepositoryCommand, ECRClient, PutImageCommand } from "@aws-sdk/client-ecr";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { status as statusSchema, type Status } from "../../components/campaign/jobSpec";
import { CHECKPOINT_MARKER, SUCCESS_MARKER, datasetPrefix, modelPrefix, runKeys, s3Uri } from "../../components/campaign/layout";
import type { RunnerSettings } from "../../components/node/runnerSettings";
import { CLOUDWATCH_AGENT_CONFIG_PATH } from "../../components/node/userData";
import { S3Helper, putSecureParameter } from "../helpers/aws";
import { startFakeImds, type FakeImds } from "../../scripts/local/fakeImds";
import { fakeAwsEnv, freePort, startMoto, type Moto } from "../../scripts/local/moto";
import { fakeJob, faultyAwsBin, localRunSettings, runRunner, runnerBaseDir, type RunnerResult } from "../../scripts/local/nodeRunner";

const BUCKET = "campaign-runner-tests";
const PREP_HASH = "0123456789abcdef";
const DATA_URI = s3Uri(BUCKET, datasetPrefix(PREP_HASH));
const MODEL_URI = s3Uri(BUCKET, modelPrefix("tiny", "main"));

let moto: Moto;
let s3: S3Helper;
const imdsServers: FakeImds[] = [];

before(async () => {
    moto = await startMoto();
    s3 = S3Helper.forEndpoint(moto.endpoint);
    await s3.createBucket(BUCKET);
    await s3.put(`${DATA_URI}train.jsonl`, '{"text":"a"}\n{"text":"b"}\n');
    await s3.put(`${DATA_URI}manifest.json`, '{"rows":2}');
    await s3.put(`${DATA_URI}${SUCCESS_MARKER}`, "");
    await s3.put(`${MODEL_URI}config.json`, '{"tiny":true}');
});

after(async () => {
    await Promise.all(imdsServers.map((s) => s.stop()));
    await moto?.stop();
});

async function imds(): Promise<FakeImds> {
    const server = await startFakeImds();
    imdsServers.push(server);
    return server;
}

interface Scenario {
    readonly campaign: string;
    readonly run: string;
    readonly keys: ReturnType<typeof runKeys>;
    readonly secret: string;
    readonly settings: RunnerSettings;
    uri(key: string): string;
}

/** Switches the spot notice on once the job has made `step` steps (read from its local progress file). */
async function spotNoticeAtStep(meta: FakeImds, progressFile: string, step: number): Promise<void> {
    const deadline = Date.now() + 600_000; // staging on a loaded machine can take minutes
    while (Date.now() < deadline) {
        try {
            if ((JSON.parse(readFileSync(progressFile, "utf8")) as { step: number }).step >= step) break;
        } catch {
            // not written yet
        }
        await new Promise((r) => setTimeout(r, 100));
    }
    meta.setSpotNotice(true);
}

/** A train run of its own campaign, with its spec and secret in the emulator. */
async function scenario(name: string, overrides: Partial<RunnerSettings> = {}, spec?: string): Promise<Scenario> {
    const campaign = `t-${name}`;
    const run = "r1";
    const keys = runKeys(campaign, run);
    const uri = (key: string) => s3Uri(BUCKET, key);
    const secret = `hf_secret_${createHash("sha256").update(name).digest("hex").slice(0, 20)}`;
    const parameter = `/campaign/${campaign}/hf-token`;
    await putSecureParameter(moto.endpoint, parameter, secret);
    const role = overrides.role ?? "train";
    await s3.put(uri(keys.spec), spec ?? JSON.stringify({ schemaVersion: 1, kind: role, campaign, run }));
    const settings = localRunSettings(BUCKET, campaign, run, DATA_URI, { role, modelUri: MODEL_URI, secretParameters: { HF_TOKEN: parameter }, ...overrides });
    return { campaign, run, keys, secret, settings, uri };
}

async function finalStatus(sc: Scenario): Promise<Status> {
    const raw = await s3.getJson(sc.uri(sc.keys.status));
    assert.ok(raw, "status.json is in S3");
    return statusSchema.parse(raw);
}

function assertOneShutdown(result: RunnerResult): void {
    assert.deepEqual(result.shutdownCalls, ["-h now"], `shutdown called exactly once\n${result.output}`);
}

/** Checkpoint steps in S3 with their marker. */
async function completeCheckpoints(sc: Scenario): Promise<number[]> {
    const keys = await s3.list(sc.uri(sc.keys.checkpoints));
    return keys
        .map((k) => new RegExp(`^checkpoint-(\\d+)/${CHECKPOINT_MARKER.replace(".", "\\.")}$`).exec(k))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => Number(m[1]))
        .sort((a, b) => a - b);
}

const fast = { FAKE_STEPS: "6", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "2" };

/** How a GPU node's runner starts the CloudWatch agent (components/node/userData.ts sets the config path). */
const AGENT_START = `-a fetch-config -m ec2 -s -c file:${CLOUDWATCH_AGENT_CONFIG_PATH}`;

describe("node runner", () => {
    test("success: stages, trains, syncs checkpoints, uploads output and logs, shuts down once", async () => {
        const sc = await scenario("success", { metricsAgentConfig: CLOUDWATCH_AGENT_CONFIG_PATH });
        const meta = await imds();
        const base = runnerBaseDir();
        const runs = join(base, "runs.txt");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: meta.endpoint,
            baseDir: base,
            env: { ...fast, FAKE_RUNS_FILE: runs },
        });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "succeeded");
        assert.equal(st.exitCode, 0);
        assert.equal(st.reason, null);
        assert.equal(st.instanceId, "i-0123456789abcdef0");
        assert.equal(st.instanceType, "g5.2xlarge");
        assert.equal(st.progress?.step, 6);
        assert.equal(st.progress?.totalSteps, 6);
        for (const [name, value] of Object.entries(st.timings)) assert.ok(value, `timings.${name} is set`);
        assert.equal(st.lastCheckpoint, "checkpoint-6");
        assert.deepEqual(await completeCheckpoints(sc), [4, 6], "only keepCheckpoints=2 are kept");
        const output = await s3.list(sc.uri(sc.keys.output));
        assert.deepEqual(output, [SUCCESS_MARKER, "adapter.bin", "metrics.json"].sort());
        const metrics = (await s3.getJson<{ resumedFrom: number; secretSha256: string }>(sc.uri(`${sc.keys.output}metrics.json`)))!;
        assert.equal(metrics.resumedFrom, 0);
        assert.equal(metrics.secretSha256, createHash("sha256").update(sc.secret).digest("hex"), "the job got the SSM secret");
        const runnerLog = (await s3.getText(sc.uri(`${sc.keys.logs}runner.log`)))!;
        const jobLog = (await s3.getText(sc.uri(`${sc.keys.logs}job.log`)))!;
        assert.match(runnerLog, /staged dataset: \d+ files/);
        assert.match(jobLog, /saved checkpoint-6/);
        assert.ok((await s3.list(sc.uri(sc.keys.logs))).some((k) => k.startsWith("attempts/") && k.endsWith("/runner.log")));
        for (const text of [runnerLog, jobLog, result.output, JSON.stringify(st)]) {
            assert.ok(!text.includes(sc.secret), "the secret value never appears in logs or status");
        }
        assert.equal(meta.unauthorized(), 0, "every metadata GET carried an IMDSv2 token");
        assert.ok(meta.requests.includes("PUT /latest/api/token"));
        assert.ok(meta.requests.includes("GET /latest/meta-data/spot/instance-action"));
        assert.equal(readFileSync(runs, "utf8"), "run\n");
        // The CloudWatch agent starts once, after staging and the pull and before the job's first step, so
        // the GPU-idle alarm never sees the idle boot.
        assert.deepEqual(result.agentCalls.map((c) => c.args), [AGENT_START], `the agent ctl is called exactly once\n${result.output}`);
        const agentAt = Date.parse(result.agentCalls[0]!.at);
        assert.ok(agentAt >= Date.parse(st.timings.inputsReady!), `agent started at ${result.agentCalls[0]!.at}, after inputs were ready at ${st.timings.inputsReady}`);
        assert.ok(agentAt <= Date.parse(st.timings.firstStep!), `agent started at ${result.agentCalls[0]!.at}, before the first step at ${st.timings.firstStep}`);
        assert.match(runnerLog, /CloudWatch agent started with /);

        // Restart after success: nothing changes, the node ends at once.
        const before = await s3.getText(sc.uri(sc.keys.status));
        const again = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: meta.endpoint,
            env: { ...fast, FAKE_RUNS_FILE: runs },
        });
        assert.equal(again.code, 0, again.output);
        assertOneShutdown(again);
        assert.match(again.output, /already succeeded/);
        assert.equal(await s3.getText(sc.uri(sc.keys.status)), before, "status.json is untouched");
        assert.equal(readFileSync(runs, "utf8"), "run\n", "the job did not run again");
        assert.deepEqual(again.agentCalls, [], "no agent for a job that does not run");
    });

    test("job failure: status failed with the exit code and the job's last lines", async () => {
        const sc = await scenario("job-failure");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            env: { ...fast, FAKE_FAIL_AT: "3" },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, 1);
        assert.match(st.reason ?? "", /exited with code 1 .*boom at step 3/);
        assert.ok(st.timings.jobEnd && st.timings.shutdown);
        assert.deepEqual(await completeCheckpoints(sc), [2], "the checkpoint saved before the failure is in S3");
        assert.match((await s3.getText(sc.uri(`${sc.keys.logs}job.log`))) ?? "", /boom at step 3/);
        assert.deepEqual(await s3.list(sc.uri(sc.keys.output)), [], "no output from a failed run");
        assert.deepEqual(result.agentCalls, [], "without CAMPAIGN_METRICS_AGENT_CONFIG the agent is never started");
    });

    test("spot notice mid-run: checkpoint synced, status interrupted; a second start resumes and finishes", async () => {
        const sc = await scenario("spot");
        const meta = await imds();
        const env = { FAKE_STEPS: "30", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "5" };
        const base = runnerBaseDir();
        const progressFile = join(base, "work", "job", "progress.json");
        let noticeAt = 0;
        const flip = spotNoticeAtStep(meta, progressFile, 3).then(() => {
            noticeAt = Date.now();
        });
        const result = await runRunner({ settings: sc.settings, awsEndpoint: moto.endpoint, imdsEndpoint: meta.endpoint, baseDir: base, env });
        await flip;
        assert.equal(result.code, 75, result.output);
        assertOneShutdown(result);
        assert.ok(Date.now() - noticeAt < 60_000, "the runner ended well within the two minutes");
        const st = await finalStatus(sc);
        assert.equal(st.phase, "interrupted");
        assert.equal(st.exitCode, 75);
        assert.match(st.reason ?? "", /spot interruption notice/);
        const m = /^checkpoint-(\d+)$/.exec(st.lastCheckpoint ?? "");
        assert.ok(m, `lastCheckpoint is set: ${st.lastCheckpoint}`);
        const saved = Number(m[1]);
        assert.ok(saved >= 3 && saved < 30, `interrupted mid-run at ${saved}`);
        assert.ok((await completeCheckpoints(sc)).includes(saved), "the SIGTERM checkpoint is complete in S3");

        // A new node (fresh work dir, no notice) resumes from it.
        const again = await runRunner({ settings: sc.settings, awsEndpoint: moto.endpoint, imdsEndpoint: (await imds()).endpoint, env });
        assert.equal(again.code, 0, again.output);
        assertOneShutdown(again);
        const st2 = await finalStatus(sc);
        assert.equal(st2.phase, "succeeded");
        const metrics = (await s3.getJson<{ resumedFrom: number; finalStep: number }>(sc.uri(`${sc.keys.output}metrics.json`)))!;
        assert.equal(metrics.resumedFrom, saved);
        assert.equal(metrics.finalStep, 30);
        const logs = await s3.list(sc.uri(sc.keys.logs));
        assert.equal(logs.filter((k) => k.startsWith("attempts/") && k.endsWith("/job.log")).length, 2, "both attempts' logs are kept");
        // The second node carried the first node's attempt forward: the run's history across nodes, in order.
        const specHash = (await s3.getJson<{ specHash?: string }>(sc.uri(sc.keys.spec)))?.specHash ?? null;
        assert.deepEqual(
            st2.attempts?.map((a) => [a.outcome, a.exitCode, a.specHash]),
            [
                ["interrupted", 75, specHash],
                ["succeeded", 0, specHash],
            ],
        );
        assert.match(st2.attempts?.[0]?.reason ?? "", /spot interruption notice/);
        assert.ok(st2.attempts!.every((a) => a.startedAt && a.endedAt), "both attempts have their times");
    });

    test("a spot notice as the job finishes: it exits 0, its output is uploaded and the run succeeds", async () => {
        const sc = await scenario("spot-at-end");
        const meta = await imds();
        const base = runnerBaseDir();
        const progressFile = join(base, "work", "job", "progress.json");
        const flip = spotNoticeAtStep(meta, progressFile, 3);
        const env = { FAKE_STEPS: "12", FAKE_STEP_SECONDS: "0.3", FAKE_CHECKPOINT_EVERY: "4", FAKE_FINISH_ON_TERM: "1" };
        const result = await runRunner({ settings: sc.settings, awsEndpoint: moto.endpoint, imdsEndpoint: meta.endpoint, baseDir: base, env });
        await flip;
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        assert.match(result.output, /spot interruption notice/);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "succeeded", "finished work is not redone on a new node");
        assert.equal(st.exitCode, 0);
        const metrics = (await s3.getJson<{ finalStep: number }>(sc.uri(`${sc.keys.output}metrics.json`)))!;
        assert.equal(metrics.finalStep, 12);
    });

    test("max runtime: the job is stopped gracefully, its checkpoint synced, status failed naming the limit", async () => {
        const sc = await scenario("max-runtime", { maxRuntimeSeconds: 8, metricsAgentConfig: CLOUDWATCH_AGENT_CONFIG_PATH });
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            // No CloudWatch agent on this node: logged, not fatal.
            env: { FAKE_STEPS: "1000", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "1000", CAMPAIGN_METRICS_AGENT_CTL: "/nonexistent/amazon-cloudwatch-agent-ctl" },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, 75);
        assert.match(st.reason ?? "", /max runtime of 8 s/);
        assert.match(result.output, /\/nonexistent\/amazon-cloudwatch-agent-ctl is not installed: no GPU metrics in CloudWatch/);
        assert.deepEqual(result.agentCalls, []);
        assert.ok(st.lastCheckpoint, "the checkpoint saved on SIGTERM was synced");
        assert.deepEqual(await completeCheckpoints(sc), [Number(st.lastCheckpoint!.split("-")[1])]);
    });

    test("SIGTERM to the runner (systemd stopping the unit): the job saves, the checkpoint is synced, status interrupted", async () => {
        const sc = await scenario("runner-sigterm");
        const base = runnerBaseDir();
        const progressFile = join(base, "work", "job", "progress.json");
        let pid = 0;
        const kill = (async () => {
            const deadline = Date.now() + 600_000; // staging on a loaded machine can take minutes
            while (Date.now() < deadline) {
                try {
                    if ((JSON.parse(readFileSync(progressFile, "utf8")) as { step: number }).step >= 2) break;
                } catch {
                    // not written yet
                }
                await new Promise((r) => setTimeout(r, 100));
            }
            process.kill(pid, "SIGTERM");
        })();
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            env: { FAKE_STEPS: "1000", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "1000" },
            onStart: (p) => (pid = p),
        });
        await kill;
        assert.equal(result.code, 75, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "interrupted", "resumable: the next up gives the run a new node");
        assert.equal(st.exitCode, 75);
        assert.equal(st.reason, "the runner was stopped by SIGTERM; job exit 75 (stopped after saving a checkpoint)");
        assert.ok(st.lastCheckpoint, "the checkpoint saved on SIGTERM was synced");
    });

    test("GPU idle: utilisation under the threshold for the window ends the job the same way", async () => {
        const sc = await scenario("gpu-idle", { gpuIdleMinutes: 1, gpuIdleThreshold: 5 });
        const base = runnerBaseDir();
        const util = join(base, "gpu-util");
        writeFileSync(util, "0\n");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            env: {
                FAKE_STEPS: "1000",
                FAKE_STEP_SECONDS: "0.2",
                FAKE_CHECKPOINT_EVERY: "1000",
                FAKE_GPU_UTIL_FILE: util,
                CAMPAIGN_GPU_IDLE_SECONDS: "2",
            },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, 75);
        assert.match(st.reason ?? "", /GPU-idle watchdog: utilisation under 5% for 2 s/);
        assert.ok(st.lastCheckpoint);
    });

    test("a partial checkpoint in S3 is ignored; the newest complete one is restored", async () => {
        const sc = await scenario("partial-checkpoint");
        const ckpt = (step: number, file: string) => sc.uri(`${sc.keys.checkpoints}checkpoint-${step}/${file}`);
        await s3.put(ckpt(2, "weights.bin"), "w2");
        await s3.put(ckpt(2, "state.json"), '{"step":2}');
        await s3.put(ckpt(2, CHECKPOINT_MARKER), '{"step":2}');
        await s3.put(ckpt(4, "weights.bin"), "half"); // no marker: a partial upload
        await s3.put(ckpt(4, "leftover.bin"), "junk");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            env: fast,
        });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        assert.match(result.output, /restored checkpoint-2/);
        assert.match(result.output, /ignoring partial checkpoints above checkpoint-2/);
        const metrics = (await s3.getJson<{ resumedFrom: number }>(sc.uri(`${sc.keys.output}metrics.json`)))!;
        assert.equal(metrics.resumedFrom, 2);
        assert.equal((await finalStatus(sc)).phase, "succeeded");
        const four = await s3.list(sc.uri(`${sc.keys.checkpoints}checkpoint-4/`));
        assert.deepEqual(four, [CHECKPOINT_MARKER, "state.json", "weights.bin"].sort(), "the re-uploaded checkpoint-4 holds no leftovers");
        assert.deepEqual(await completeCheckpoints(sc), [4, 6]);
    });

    test("S3 unreachable at start: a clear failure and shutdown", async () => {
        const sc = await scenario("s3-unreachable");
        const closed = `http://127.0.0.1:${await freePort()}`;
        const base = runnerBaseDir();
        const runs = join(base, "runs.txt");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: closed,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            env: { ...fast, FAKE_RUNS_FILE: runs },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const local = statusSchema.parse(JSON.parse(readFileSync(join(result.workDir, "status.json"), "utf8")));
        assert.equal(local.phase, "failed");
        assert.match(local.reason ?? "", /S3 unreachable.*Could not connect/);
        assert.ok(local.timings.shutdown);
        assert.ok(!existsSync(runs), "the job never ran");
        assert.equal(await s3.getText(sc.uri(sc.keys.status)), undefined);
    });

    test("a corrupt spec: a clear failure and shutdown, the job never runs", async () => {
        const sc = await scenario("corrupt-spec", {}, "{ this is not json");
        const base = runnerBaseDir();
        const runs = join(base, "runs.txt");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            env: { ...fast, FAKE_RUNS_FILE: runs },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, null);
        assert.match(st.reason ?? "", /job spec is not valid JSON/);
        assert.ok(!existsSync(runs), "the job never ran");
        assert.ok(await s3.getText(sc.uri(`${sc.keys.logs}runner.log`)), "the runner's log is uploaded");
    });

    test("the runner's own error (a tool fails mid-staging): reported with its line, status failed, shutdown once", async () => {
        const sc = await scenario("runner-error");
        const base = runnerBaseDir();
        const broken = join(base, "broken-bin");
        mkdirSync(broken);
        writeFileSync(join(broken, "du"), "#!/bin/sh\necho 'du: simulated failure' >&2\nexit 3\n", { mode: 0o755 });
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            pathPrepend: [broken],
            env: fast,
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.match(st.reason ?? "", /^runner error \(exit 3\) at line \d+: .*du -sb/);
        assert.ok(st.timings.shutdown);
        assert.ok(await s3.getText(sc.uri(`${sc.keys.logs}runner.log`)));
    });

    test("docker mode: ECR login, pull, and docker run with the GPU flags, the /job mount and secrets by name", async () => {
        const image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign-trainer:test";
        const sc = await scenario("docker", { jobMode: "docker", image, metricsAgentConfig: CLOUDWATCH_AGENT_CONFIG_PATH });
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            // The agent fails to start: logged, and the job runs anyway.
            env: { ...fast, FAKE_AGENT_CTL_EXIT: "1" },
        });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "succeeded");
        // This image is not in the emulator's ECR: its size is unknown before the pull, which the status says.
        assert.ok((st.events ?? []).some((e) => e.kind === "warning" && /the image's size is unknown before its pull \(ecr batch-get-image/.test(e.reason ?? "")), JSON.stringify(st.events));
        assert.deepEqual(result.agentCalls.map((c) => c.args), [AGENT_START]);
        assert.match(result.output, /starting the CloudWatch agent failed \(carrying on without GPU metrics\)/);
        const verbs = result.dockerCalls.map((c) => c[0]);
        assert.ok(verbs.includes("login") && verbs.includes("pull") && verbs.includes("run"), verbs.join(","));
        const run = result.dockerCalls.find((c) => c[0] === "run")!;
        const line = run.join(" ");
        for (const flag of ["--gpus all", "--ipc=host", "--ulimit memlock=-1", "--ulimit stack=67108864", `-v ${result.workDir}/job:/job`, "-e CAMPAIGN_SPEC=/job/spec.json", "-e HF_TOKEN "]) {
            assert.ok(line.includes(flag), `docker run has ${flag}: ${line}`);
        }
        assert.ok(line.includes(`${image} python3 ${fakeJob}`), line);
        assert.ok(verbs.indexOf("pull") < verbs.indexOf("run"));
        assert.ok(!line.includes(sc.secret), "no secret value on the docker command line");
        const metrics = (await s3.getJson<{ secretSha256: string }>(sc.uri(`${sc.keys.output}metrics.json`)))!;
        assert.equal(metrics.secretSha256, createHash("sha256").update(sc.secret).digest("hex"));
    });

    test("prep role: stages the input, uploads the dataset with _SUCCESS and each staged model to its own models/<id>/<revision>/", async () => {
        const inputUri = s3Uri(BUCKET, "inputs/abc/raw.jsonl");
        await s3.put(inputUri, '{"q":1}\n{"q":2}\n{"q":3}\n');
        const prepHash = "fedcba9876543210";
        const outputUri = s3Uri(BUCKET, datasetPrefix(prepHash));
        const modelOutputUri = s3Uri(BUCKET, "models/");
        const sc = await scenario("prep", {
            role: "prep",
            run: "prep",
            inputUri,
            outputUri,
            modelOutputUri,
            dataUri: undefined,
            modelUri: undefined,
            checkpointsUri: undefined,
            secretParameters: {},
        }, JSON.stringify({
            schemaVersion: 1,
            kind: "prep",
            run: "prep",
            // The fake job stages tiny@main only; the second model has no staged folder (a job that skipped it).
            stageModels: [
                { id: "tiny", revision: "main", family: "t5" },
                { id: "org/not-staged", revision: "v1", family: "t5" },
            ],
        }));
        const base = runnerBaseDir();
        const result = await runRunner({ settings: sc.settings, awsEndpoint: moto.endpoint, imdsEndpoint: (await imds()).endpoint, baseDir: base, pathPrepend: [faultyAwsBin] });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        assert.equal((await finalStatus(sc)).phase, "succeeded");
        assert.deepEqual(await s3.list(outputUri), [SUCCESS_MARKER, "manifest.json", "train.jsonl"].sort());
        assert.equal(JSON.parse((await s3.getText(`${outputUri}manifest.json`))!).rows, 3);
        assert.ok(await s3.getText(`${modelOutputUri}tiny/main/config.json`));
        // One sync per staged model, into its own folder: the prep role may list and write only models/<id>/<revision>/.
        const calls = awsCalls(join(base, "rec"));
        const modelCalls = calls.filter((c) => c.argv.some((a) => a.startsWith(modelOutputUri)));
        assert.deepEqual(modelCalls.map((c) => [c.argv.slice(c.argv.indexOf("s3"), c.argv.indexOf("s3") + 2).join(" "), c.argv.find((a) => a.startsWith("s3://"))]), [["s3 sync", `${modelOutputUri}tiny/main/`]]);
        assert.ok(!calls.some((c) => c.argv.includes(modelOutputUri)), "nothing lists or writes all of models/");
        assert.deepEqual(await s3.list(modelOutputUri), ["tiny/main/config.json"]);
        assert.match(result.output, /no staged folder \S+org\/not-staged\/v1: nothing to upload/);
        assert.deepEqual(result.agentCalls, [], "a prep node (no GPU) never starts the agent");
    });
});

/** One call the faulty `aws` (scripts/local/faults/aws) saw: epoch seconds, argv, the fault it injected. */
interface AwsCall {
    readonly start: number;
    readonly end: number;
    readonly argv: string[];
    readonly fault: "slowdown" | "slow-start" | "slow" | null;
}

function awsCalls(recorderDir: string): AwsCall[] {
    const path = join(recorderDir, "aws.calls");
    if (!existsSync(path)) return [];
    return readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l) as AwsCall);
}

/** Resolves once `cond` holds (polled every 100 ms), failing after `ms`. */
async function until(what: string, cond: () => boolean, ms = 90_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

function stepOf(progressFile: string): number {
    try {
        return (JSON.parse(readFileSync(progressFile, "utf8")) as { step: number }).step;
    } catch {
        return -1;
    }
}

/** Epoch ms of the first status event whose reason matches. */
function eventAt(st: Status, reason: RegExp): number {
    const e = (st.events ?? []).find((ev) => reason.test(ev.reason ?? ""));
    assert.ok(e, `an event matching ${reason} in ${JSON.stringify(st.events)}`);
    return Date.parse(e.at);
}

function termTimes(file: string): number[] {
    return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => Number(l) * 1000) : [];
}

describe("node runner: limits, faults and the disk", () => {
    test("a stall with GPUs busy: no new step for the stall window stops the job gracefully, status failed naming it", async () => {
        const sc = await scenario("stall", { gpuIdleMinutes: 1, gpuIdleThreshold: 5, stallMinutes: 30 });
        const base = runnerBaseDir();
        const util = join(base, "gpu-util");
        writeFileSync(util, "100\n");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            env: { FAKE_STEPS: "1000", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "1000", FAKE_HANG_AT: "3", FAKE_GPU_UTIL_FILE: util, CAMPAIGN_GPU_IDLE_SECONDS: "2", CAMPAIGN_STALL_SECONDS: "3" },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, 75);
        assert.match(st.reason ?? "", /progress-stall watchdog: no new step for 3 s after step 3/);
        assert.equal(st.progress?.step, 3);
        assert.equal(st.lastCheckpoint, "checkpoint-3", "the checkpoint saved on SIGTERM was synced");
        assert.deepEqual(await completeCheckpoints(sc), [3]);
        eventAt(st, /stop requested: stall/);
    });

    test("a long evaluation after training that keeps advancing is not a stall; one whose rows stop is, named in the reason", async () => {
        // The trainer's evaluation writes rows, not steps (containers/trainer/evaluate.py): 24 rows at 0.5 s each
        // outlast the 4 s stall window three times over.
        const sc = await scenario("eval-advancing");
        const advancing = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: runnerBaseDir(),
            env: { ...fast, FAKE_STEPS: "4", FAKE_EVAL_ROWS: "24", FAKE_EVAL_ROW_SECONDS: "0.5", CAMPAIGN_STALL_SECONDS: "4" },
        });
        assert.equal(advancing.code, 0, advancing.output);
        assertOneShutdown(advancing);
        const done = await finalStatus(sc);
        assert.equal(done.phase, "succeeded", done.reason ?? "");
        assert.equal(done.progress?.phase, "evaluating");
        const evaluation = done.progress?.evaluation;
        assert.deepEqual([evaluation?.part, evaluation?.done, evaluation?.total], ["fine-tuned", 24, 24]);
        assert.equal(done.progress?.step, 4, "the training's last step is kept beside the evaluation");
        assert.ok(!(done.events ?? []).some((e) => /stall/.test(e.reason ?? "")), JSON.stringify(done.events));

        const hung = await scenario("eval-hung");
        const stopped = await runRunner({
            settings: hung.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: runnerBaseDir(),
            env: { ...fast, FAKE_STEPS: "4", FAKE_EVAL_ROWS: "50", FAKE_EVAL_ROW_SECONDS: "0.2", FAKE_EVAL_HANG_AT: "5", CAMPAIGN_STALL_SECONDS: "3" },
        });
        assert.equal(stopped.code, 1, stopped.output);
        assertOneShutdown(stopped);
        const st = await finalStatus(hung);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, 75, "SIGTERM ended the evaluation, which exits 75");
        assert.match(st.reason ?? "", /progress-stall watchdog: no new evaluation row for 3 s in the evaluation of the fine-tuned model, at 5 of 50 rows generated \(a hung generation\?\)/);
        assert.equal(st.progress?.evaluation?.done, 5);
        eventAt(st, /stop requested: stall/);
    });

    test("a spot notice while a large checkpoint uploads: the job gets SIGTERM within 1 s, the newest checkpoint goes up first", async () => {
        const sc = await scenario("spot-during-upload", { keepCheckpoints: 1 });
        const meta = await imds();
        const base = runnerBaseDir();
        const rec = join(base, "rec");
        const termFile = join(base, "term.txt");
        let flippedAt = 0;
        const slowStarted = () => awsCalls(rec).some((c) => c.fault === "slow-start");
        const flip = until("the slow upload to start", slowStarted).then(() => {
            meta.setSpotNotice(true);
            flippedAt = Date.now();
        });
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: meta.endpoint,
            baseDir: base,
            pathPrepend: [faultyAwsBin],
            timeoutMs: 400_000,
            // The first checkpoint upload takes two minutes.
            env: { FAKE_STEPS: "100000", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "2", FAKE_TERM_FILE: termFile, FAULT_SLOW_MATCH: "/checkpoints/checkpoint-", FAULT_SLOW_COUNT: "1", FAULT_SLOW_SECONDS: "120" },
        });
        await flip;
        assert.equal(result.code, 75, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "interrupted");
        const seen = eventAt(st, /stop requested: spot/);
        const slow = awsCalls(rec).find((c) => c.fault === "slow-start")!;
        assert.ok(slow.start * 1000 <= seen, "the upload was running when the notice was seen");
        assert.ok(!awsCalls(rec).some((c) => c.fault === "slow" && c.end * 1000 < seen), "and had not finished");
        const term = termTimes(termFile);
        assert.equal(term.length, 1, "one SIGTERM");
        assert.ok(term[0]! - seen <= 1000, `SIGTERM ${term[0]! - seen} ms after the notice was seen`);
        assert.ok(seen - flippedAt <= 1000 + 3000, `notice seen ${seen - flippedAt} ms after it appeared (poll 1 s)`);
        assert.ok(Date.now() < slow.start * 1000 + 120_000, "the runner did not wait for the slow upload");
        assert.equal(st.lastCheckpoint, `checkpoint-${st.progress?.step}`, "the checkpoint saved on SIGTERM went up first");
        assert.deepEqual(await completeCheckpoints(sc), [st.progress?.step]);
    });

    test("the max runtime while a large checkpoint uploads: acted on within 1 s", async () => {
        // The limit must fall after staging on a loaded machine, and inside the two-minute upload.
        const sc = await scenario("max-runtime-during-upload", { maxRuntimeSeconds: 90, keepCheckpoints: 1 });
        const base = runnerBaseDir();
        const rec = join(base, "rec");
        const termFile = join(base, "term.txt");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            pathPrepend: [faultyAwsBin],
            timeoutMs: 400_000,
            env: { FAKE_STEPS: "100000", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "2", FAKE_TERM_FILE: termFile, FAULT_SLOW_MATCH: "/checkpoints/checkpoint-", FAULT_SLOW_COUNT: "1", FAULT_SLOW_SECONDS: "240" },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.match(st.reason ?? "", /max runtime of 90 s/);
        const requested = eventAt(st, /stop requested: max-runtime/);
        const slow = awsCalls(rec).find((c) => c.fault === "slow-start");
        assert.ok(slow && slow.start * 1000 <= requested, "the large upload was running when the limit came");
        const term = termTimes(termFile);
        assert.equal(term.length, 1);
        assert.ok(term[0]! - requested <= 1000, `SIGTERM ${term[0]! - requested} ms after the limit`);
        assert.ok(!awsCalls(rec).some((c) => c.fault === "slow" && c.end * 1000 < requested), "and had not finished");
        assert.equal(st.lastCheckpoint, `checkpoint-${st.progress?.step}`, "the checkpoint saved on SIGTERM went up");
    });

    test("fast save-and-rotate: checkpoints reach S3 while the job runs although each one is rotated away before an upload ends", async () => {
        const sc = await scenario("rotate");
        const base = runnerBaseDir();
        const rec = join(base, "rec");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            pathPrepend: [faultyAwsBin],
            // A checkpoint every 0.3 s, only the newest kept; every checkpoint upload call takes 1.5 s longer.
            timeoutMs: 300_000,
            env: { FAKE_STEPS: "100", FAKE_STEP_SECONDS: "0.3", FAKE_CHECKPOINT_EVERY: "1", FAKE_ROTATE_KEEP: "1", FAULT_SLOW_MATCH: "/checkpoint-", FAULT_SLOW_SECONDS: "1.5" },
        });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "succeeded");
        const jobEnd = Date.parse(st.timings.jobEnd!);
        const during = awsCalls(rec).filter((c) => c.fault === "slow" && c.argv.includes("cp") && c.argv.some((a) => a.endsWith(`/${CHECKPOINT_MARKER}`)) && c.end * 1000 < jobEnd);
        assert.ok(during.length >= 1, `a checkpoint's marker reached S3 before the job ended\n${result.output}`);
        assert.deepEqual((await completeCheckpoints(sc)).at(-1), 100);
    });

    test("the CloudWatch agent is stopped after the job exits and before the final upload", async () => {
        const sc = await scenario("agent-stop", { metricsAgentConfig: CLOUDWATCH_AGENT_CONFIG_PATH });
        const base = runnerBaseDir();
        const rec = join(base, "rec");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            pathPrepend: [faultyAwsBin],
            env: { ...fast, FAULT_SLOW_MATCH: sc.uri(sc.keys.output), FAULT_SLOW_SECONDS: "1" },
        });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "succeeded");
        assert.deepEqual(result.systemctlCalls.map((c) => c.args), ["stop amazon-cloudwatch-agent"]);
        const stopped = Date.parse(result.systemctlCalls[0]!.at);
        assert.ok(stopped >= Date.parse(st.timings.jobEnd!), "after the job ended");
        const upload = awsCalls(rec).find((c) => c.argv.includes("sync") && c.argv.some((a) => a.startsWith(sc.uri(sc.keys.output))));
        assert.ok(upload && stopped <= upload.start * 1000, "before the output upload began");
        eventAt(st, /CloudWatch agent stopped/);
    });

    test("the data volume: found by its id under /dev/disk/by-id, formatted once, mounted, the dataset staged on it", async () => {
        const volume = "vol-0123456789abcdef0";
        const base = runnerBaseDir();
        const byId = join(base, "by-id");
        const device = join(base, "nvme1n1");
        const mount = join(base, "data-volume");
        const bin = join(base, "disk-bin");
        mkdirSync(byId);
        mkdirSync(bin);
        writeFileSync(device, "");
        symlinkSync(device, join(byId, "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"));
        const state = join(base, "disk-state");
        writeFileSync(join(bin, "blkid"), `#!/bin/sh\ncat "${state}" 2>/dev/null || exit 2\n`, { mode: 0o755 });
        writeFileSync(join(bin, "mkfs.ext4"), `#!/bin/sh\necho "$*" >> "$RECORDER_DIR/mkfs.calls"\necho ext4 > "${state}"\n`, { mode: 0o755 });
        writeFileSync(join(bin, "mount"), `#!/bin/sh\necho "$*" >> "$RECORDER_DIR/mount.calls"\n`, { mode: 0o755 });
        const env = { ...fast, CAMPAIGN_DISK_BY_ID_DIR: byId, CAMPAIGN_DATA_VOLUME_MOUNT: mount };
        for (const name of ["data-volume", "data-volume-again"]) {
            const sc = await scenario(name, { dataVolumeId: volume });
            const result = await runRunner({ settings: sc.settings, awsEndpoint: moto.endpoint, imdsEndpoint: (await imds()).endpoint, baseDir: base, pathPrepend: [bin], env });
            assert.equal(result.code, 0, result.output);
            assert.equal((await finalStatus(sc)).phase, "succeeded");
            assert.match(result.output, new RegExp(`data volume ${volume} \\(${device.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, ext4\\) mounted at ${mount}`));
        }
        const rec = join(base, "rec");
        assert.deepEqual(readFileSync(join(rec, "mkfs.calls"), "utf8").trim().split("\n"), [`-q -L campaign-data ${device}`], "formatted once");
        assert.deepEqual(readFileSync(join(rec, "mount.calls"), "utf8").trim().split("\n"), [`${device} ${mount}`, `${device} ${mount}`]);
        assert.ok(existsSync(join(mount, "data", SUCCESS_MARKER)), "the dataset was staged on the volume");
    });

    test("a disk that fills up during a checkpoint save: the final status still reaches S3 and names the full disk", async (t) => {
        const probe = spawnSync("unshare", ["-m", "true"], { encoding: "utf8" });
        if (probe.status !== 0) {
            t.skip(`unshare -m refused here (${(probe.stderr || probe.error?.message || "").trim()}): a private mount namespace needs root or CAP_SYS_ADMIN`);
            return;
        }
        const sc = await scenario("disk-full");
        const base = runnerBaseDir();
        const work = join(base, "work");
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            // A 24 MB tmpfs over the work dir, in a mount namespace of the runner's own.
            wrap: ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs -o size=24m campaign-full "$0" && exec "$@"', work],
            env: { FAKE_STEPS: "100", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "2", FAKE_CHECKPOINT_BYTES: String(8 * 1024 * 1024) },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed", "not left at training");
        assert.equal(st.exitCode, 1);
        assert.match(st.reason ?? "", /out of space \(no space left on device/);
        assert.ok(st.lastCheckpoint, "a checkpoint saved before the disk filled is in S3");
        assert.ok(await s3.getText(sc.uri(`${sc.keys.logs}runner.log`)), "the runner's log is uploaded");
    });

    test("S3 answering 503 SlowDown for a while: the runner retries with backoff and succeeds", async () => {
        const sc = await scenario("slowdown");
        const base = runnerBaseDir();
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            baseDir: base,
            pathPrepend: [faultyAwsBin],
            env: { ...fast, FAULT_SLOWDOWN_MATCH: sc.uri(sc.keys.output), FAULT_SLOWDOWN_COUNT: "3", CAMPAIGN_S3_RETRY_BASE_SECONDS: "0.2" },
        });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        assert.equal((await finalStatus(sc)).phase, "succeeded");
        assert.equal(awsCalls(join(base, "rec")).filter((c) => c.fault === "slowdown").length, 3, "three answers were SlowDown");
        assert.match(result.output, /S3 is throttling or failing \(.*SlowDown.*\): retry 1 of/);
        assert.deepEqual(await s3.list(sc.uri(sc.keys.output)), [SUCCESS_MARKER, "adapter.bin", "metrics.json"].sort());
    });

    test("the metadata service failing for a while: no false spot notice; a failed agent start is a warning in status.json", async () => {
        const sc = await scenario("imds-failing", { metricsAgentConfig: CLOUDWATCH_AGENT_CONFIG_PATH });
        const meta = await imds();
        meta.setFailing(true);
        const base = runnerBaseDir();
        const progressFile = join(base, "work", "job", "progress.json");
        const recover = until("step 3", () => stepOf(progressFile) >= 3).then(() => meta.setFailing(false));
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: meta.endpoint,
            baseDir: base,
            env: { FAKE_STEPS: "20", FAKE_STEP_SECONDS: "0.2", FAKE_CHECKPOINT_EVERY: "5", FAKE_AGENT_CTL_EXIT: "1" },
        });
        await recover;
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        assert.doesNotMatch(result.output, /spot interruption notice/);
        assert.match(result.output, /instance metadata unavailable/);
        assert.match(result.output, /instance metadata answers again/);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "succeeded");
        const warning = (st.events ?? []).find((e) => e.kind === "warning");
        assert.match(warning?.reason ?? "", /starting the CloudWatch agent failed/);
    });

    test("a failed image pull: status failed with docker's message, the job never runs", async () => {
        const image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign-trainer:missing";
        const sc = await scenario("pull-failure", { jobMode: "docker", image, metricsAgentConfig: CLOUDWATCH_AGENT_CONFIG_PATH });
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            env: { ...fast, FAKE_DOCKER_PULL_EXIT: "1" },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, null);
        assert.match(st.reason ?? "", /docker pull .*:missing failed \(exit 1\): .*manifest unknown/);
        assert.ok(!result.dockerCalls.some((c) => c[0] === "run"), "no docker run");
        assert.deepEqual(result.agentCalls, [], "no agent for a job that never ran");
    });

    test("an image that cannot fit on docker's file system: failed before the pull with the numbers, the job never runs", async () => {
        // The image's manifest in the emulator's ECR: two layers of 512 TiB compressed, as BatchGetImage returns it.
        const layer = (n: string) => ({ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", size: 2 ** 49, digest: `sha256:${n.repeat(64)}` });
        const manifest = {
            schemaVersion: 2,
            mediaType: "application/vnd.docker.distribution.manifest.v2+json",
            config: { mediaType: "application/vnd.docker.container.image.v1+json", size: 0, digest: `sha256:${"0".repeat(64)}` },
            layers: [layer("1"), layer("2")],
        };
        const ecr = new ECRClient({ endpoint: moto.endpoint, region: fakeAwsEnv.AWS_REGION, credentials: { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY } });
        await ecr.send(new CreateRepositoryCommand({ repositoryName: "huge-trainer" }));
        const put = await ecr.send(new PutImageCommand({ repositoryName: "huge-trainer", imageTag: "t1", imageManifest: JSON.stringify(manifest) }));
        const image = `123456789012.dkr.ecr.us-east-1.amazonaws.com/huge-trainer@${put.image!.imageId!.imageDigest!}`;
        const sc = await scenario("image-space", { jobMode: "docker", image });
        const result = await runRunner({
            settings: sc.settings,
            awsEndpoint: moto.endpoint,
            imdsEndpoint: (await imds()).endpoint,
            // Docker's data root is on the work dir's file system here, so the inputs count with it (one sentence).
            env: { ...fast },
        });
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, null);
        assert.match(st.reason ?? "", /not enough space in \S+ for (dataset and base model and )?the image \S+huge-trainer@sha256:[0-9a-f]+ \(1048576\.00 GiB compressed, about 4194304\.00 GiB with its layers unpacked\): 4194304\.\d\d GiB needed, [\d.]+ GiB free/);
        const verbs = result.dockerCalls.map((c) => c.slice(0, 2).join(" "));
        assert.ok(!verbs.some((v) => v.startsWith("pull") || v.startsWith("run")), `no pull, no run: ${verbs.join(",")}`);
    });
});
