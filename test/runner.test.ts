// The node runner (scripts/node-runner/run-job.sh) run for real: bash and the AWS CLI against moto_server
// on loopback and a fake IMDSv2, with `shutdown`, `docker`, `nvidia-smi` and the CloudWatch agent's ctl
// replaced by recorders (scripts/local/bin) and a small job (test/fixtures/fake-job.py) that writes
// progress and checkpoints.
// Every scenario checks the final status.json against the zod schema and that `shutdown -h now` was
// called exactly once.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { status as statusSchema, type Status } from "../components/campaign/jobSpec";
import { CHECKPOINT_MARKER, SUCCESS_MARKER, datasetPrefix, modelPrefix, runKeys, s3Uri } from "../components/campaign/layout";
import type { RunnerSettings } from "../components/node/runnerSettings";
import { CLOUDWATCH_AGENT_CONFIG_PATH } from "../components/node/userData";
import { S3Helper, putSecureParameter } from "./helpers/aws";
import { startFakeImds, type FakeImds } from "../scripts/local/fakeImds";
import { freePort, startMoto, type Moto } from "../scripts/local/moto";
import { fakeJob, runRunner, runnerBaseDir, type RunnerResult } from "../scripts/local/nodeRunner";

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

/** A train run of its own campaign, with its spec and secret in the emulator. */
/** Switches the spot notice on once the job has made `step` steps (read from its local progress file). */
async function spotNoticeAtStep(meta: FakeImds, progressFile: string, step: number): Promise<void> {
    const deadline = Date.now() + 60_000;
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
    const settings: RunnerSettings = {
        role,
        campaign,
        run,
        region: "us-east-1",
        specUri: uri(keys.spec),
        statusUri: uri(keys.status),
        logsUri: uri(keys.logs),
        outputUri: uri(keys.output),
        checkpointsUri: uri(keys.checkpoints),
        dataUri: DATA_URI,
        modelUri: MODEL_URI,
        jobMode: "process",
        command: `python3 ${fakeJob}`,
        maxRuntimeSeconds: 600,
        gpuIdleMinutes: 0,
        gpuIdleThreshold: 5,
        keepCheckpoints: 2,
        secretParameters: { HF_TOKEN: parameter },
        ...overrides,
    };
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

    test("SIGTERM to the runner (systemd stopping the unit): the job saves, the checkpoint is synced, status failed", async () => {
        const sc = await scenario("runner-sigterm");
        const base = runnerBaseDir();
        const progressFile = join(base, "work", "job", "progress.json");
        let pid = 0;
        const kill = (async () => {
            const deadline = Date.now() + 60_000;
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
        assert.equal(result.code, 1, result.output);
        assertOneShutdown(result);
        const st = await finalStatus(sc);
        assert.equal(st.phase, "failed");
        assert.equal(st.exitCode, 75);
        assert.match(st.reason ?? "", /stopped by SIGTERM/);
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
        assert.equal((await finalStatus(sc)).phase, "succeeded");
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

    test("prep role: stages the input, uploads the dataset with _SUCCESS and the staged model", async () => {
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
        });
        const result = await runRunner({ settings: sc.settings, awsEndpoint: moto.endpoint, imdsEndpoint: (await imds()).endpoint });
        assert.equal(result.code, 0, result.output);
        assertOneShutdown(result);
        assert.equal((await finalStatus(sc)).phase, "succeeded");
        assert.deepEqual(await s3.list(outputUri), [SUCCESS_MARKER, "manifest.json", "train.jsonl"].sort());
        assert.equal(JSON.parse((await s3.getText(`${outputUri}manifest.json`))!).rows, 3);
        assert.ok(await s3.getText(`${modelOutputUri}tiny/main/config.json`));
        assert.deepEqual(result.agentCalls, [], "a prep node (no GPU) never starts the agent");
    });
});
