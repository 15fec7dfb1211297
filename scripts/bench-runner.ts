// Figures for the node runner, printed, not asserted:
//   1. job exit -> `shutdown` call: how long a finished node keeps billing (default status interval), and the part
//      of it spent in AWS calls (the final checkpoint pass, the output and its marker, the final status, the logs),
//      read from the call log of scripts/local/faults/aws (no faults set: it only records), so the target "exit ->
//      shutdown <= 5 s plus the final upload" reads off directly even on a loaded machine;
//   2. stop latency while a large checkpoint uploads: a SIGTERM to the runner, and a spot notice, each while the
//      first checkpoint's upload takes two minutes; from the stop to the job's SIGTERM (target: 1 s);
//   3. staging throughput from S3 to local disk, against the local emulator (moto_server): 200 MB in
//      many files and in one file. The emulator is the bottleneck here; on AWS expect far more.
//
//   npx tsx scripts/bench-runner.ts [--mb 200] [--files 200] [--repeat 3] [--skip-staging]
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { datasetPrefix, runKeys, s3Uri } from "../components/campaign/layout";
import type { RunnerSettings } from "../components/node/runnerSettings";
import { S3Helper } from "../test/helpers/aws";
import { startFakeImds, type FakeImds } from "./local/fakeImds";
import { startMoto } from "./local/moto";
import { faultyAwsBin, localRunSettings, runRunner, runnerBaseDir } from "./local/nodeRunner";

function arg(name: string, fallback: number): number {
    const i = process.argv.indexOf(`--${name}`);
    const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
    return v;
}

const BUCKET = "campaign-bench";

function settings(campaign: string, dataUri: string): RunnerSettings {
    return localRunSettings(BUCKET, campaign, "r1", dataUri, { maxRuntimeSeconds: 3600 });
}

interface AwsCall {
    readonly start: number;
    readonly end: number;
    readonly argv: readonly string[];
}

/** Seconds within [from, to] covered by at least one call (calls side by side count once), and how many calls. */
function awsSeconds(calls: readonly AwsCall[], from: number, to: number): { seconds: number; calls: number } {
    const spans = calls
        .map((c) => [Math.max(c.start, from), Math.min(c.end, to)] as const)
        .filter(([a, b]) => b > a)
        .sort((x, y) => x[0] - y[0]);
    let seconds = 0;
    let reach = from;
    for (const [a, b] of spans) {
        if (b <= reach) continue;
        seconds += b - Math.max(a, reach);
        reach = b;
    }
    return { seconds, calls: spans.length };
}

/** Epoch ms once `file` has a line; the stop it measures is taken right after. */
async function waitForSlowUpload(rec: string, deadlineMs: number): Promise<void> {
    const calls = join(rec, "aws.calls");
    while (Date.now() < deadlineMs) {
        if (existsSync(calls) && readFileSync(calls, "utf8").includes('"slow-start"')) return;
        await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("the slow checkpoint upload never started");
}

/**
 * One run whose first checkpoint upload takes two minutes; once it is in flight, `stop` is applied. Returns
 * milliseconds from the stop to the job's SIGTERM, as the job recorded it.
 */
async function stopLatency(endpoint: string, imds: FakeImds, s3: S3Helper, campaign: string, stop: "sigterm" | "spot"): Promise<number> {
    await s3.put(s3Uri(BUCKET, runKeys(campaign, "r1").spec), JSON.stringify({ kind: "train" }));
    const base = runnerBaseDir("campaign-bench-");
    const rec = join(base, "rec");
    const term = join(base, "term.txt");
    let pid = 0;
    let stoppedAt = 0;
    const stopper = (async () => {
        await waitForSlowUpload(rec, Date.now() + 300_000);
        stoppedAt = Date.now();
        if (stop === "spot") imds.setSpotNotice(true);
        else process.kill(pid, "SIGTERM");
    })();
    const result = await runRunner({
        settings: { ...settings(campaign, s3Uri(BUCKET, datasetPrefix("0000000000000001"))), keepCheckpoints: 1 },
        awsEndpoint: endpoint,
        imdsEndpoint: imds.endpoint,
        baseDir: base,
        pathPrepend: [faultyAwsBin],
        timeoutMs: 600_000,
        onStart: (p) => (pid = p),
        env: {
            FAKE_STEPS: "100000",
            FAKE_STEP_SECONDS: "0.2",
            FAKE_CHECKPOINT_EVERY: "2",
            FAKE_TERM_FILE: term,
            FAULT_SLOW_MATCH: "/checkpoints/checkpoint-",
            FAULT_SLOW_COUNT: "1",
            FAULT_SLOW_SECONDS: "120",
            CAMPAIGN_SPOT_POLL_SECONDS: "1",
            AWS_MAX_ATTEMPTS: "5",
        },
    });
    await stopper;
    imds.setSpotNotice(false);
    if (!existsSync(term)) throw new Error(`the job never got SIGTERM:\n${result.output}`);
    const termAt = Number(readFileSync(term, "utf8").split("\n")[0]) * 1000;
    return termAt - stoppedAt;
}

async function main(): Promise<void> {
    const mb = arg("mb", 200);
    const files = arg("files", 200);
    const repeat = arg("repeat", 3);
    const moto = await startMoto();
    const imds = await startFakeImds();
    const s3 = S3Helper.forEndpoint(moto.endpoint);
    try {
        await s3.createBucket(BUCKET);
        const small = s3Uri(BUCKET, datasetPrefix("0000000000000001"));
        await s3.put(`${small}train.jsonl`, '{"text":"a"}\n');
        await s3.put(`${small}_SUCCESS`, "");

        // 1. job exit -> shutdown call, with the default status interval (10 s) and spot poll (5 s).
        console.log("job exit -> shutdown call (a 2-step job; default intervals; final checkpoint sync, output, status, logs):");
        const latencies: number[] = [];
        const rest: number[] = [];
        for (let i = 0; i < repeat; i++) {
            const campaign = `bench-exit-${i}`;
            await s3.put(s3Uri(BUCKET, runKeys(campaign, "r1").spec), JSON.stringify({ kind: "train" }));
            const base = runnerBaseDir("campaign-bench-");
            const result = await runRunner({
                settings: settings(campaign, small),
                awsEndpoint: moto.endpoint,
                imdsEndpoint: imds.endpoint,
                baseDir: base,
                pathPrepend: [faultyAwsBin], // records every AWS call with its times
                env: {
                    FAKE_STEPS: "2",
                    FAKE_STEP_SECONDS: "0.5",
                    FAKE_CHECKPOINT_EVERY: "2",
                    FAKE_EXIT_FILE: join(base, "job.exit"),
                    CAMPAIGN_STATUS_INTERVAL_SECONDS: "10",
                    CAMPAIGN_SPOT_POLL_SECONDS: "5",
                    AWS_MAX_ATTEMPTS: "5",
                },
            });
            if (result.code !== 0) throw new Error(`runner failed:\n${result.output}`);
            const exit = Number(readFileSync(join(base, "job.exit"), "utf8"));
            // The `shutdown` recorder (scripts/local/bin) notes when it was called.
            const shut = Number(readFileSync(join(base, "rec", "shutdown.times"), "utf8").split("\n")[0]);
            latencies.push(shut - exit);
            const calls = readFileSync(join(base, "rec", "aws.calls"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as AwsCall);
            const aws = awsSeconds(calls, exit, shut);
            rest.push(shut - exit - aws.seconds);
            console.log(`  run ${i + 1}: ${(shut - exit).toFixed(2)} s, of which ${aws.seconds.toFixed(2)} s in ${aws.calls} AWS calls, the rest ${(shut - exit - aws.seconds).toFixed(2)} s`);
        }
        const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
        console.log(`  median ${median(latencies).toFixed(2)} s over ${repeat} runs; without the AWS calls ${median(rest).toFixed(2)} s (target <= 5 s)`);

        // 2. stop latency while a large checkpoint uploads.
        console.log("stop -> the job's SIGTERM while a checkpoint upload is in flight (target: <= 1 s; a spot notice adds up to one 1 s poll):");
        for (const stop of ["sigterm", "spot"] as const) {
            const figures: number[] = [];
            for (let i = 0; i < repeat; i++) figures.push(await stopLatency(moto.endpoint, imds, s3, `bench-stop-${stop}-${i}`, stop));
            console.log(`  ${stop === "spot" ? "spot notice appears" : "SIGTERM to the runner"}: ${figures.map((f) => `${f.toFixed(0)} ms`).join(", ")}`);
        }
        if (process.argv.includes("--skip-staging")) return;

        // 3. staging throughput.
        const total = mb * 1024 * 1024;
        const many = s3Uri(BUCKET, datasetPrefix("0000000000000002"));
        const one = s3Uri(BUCKET, datasetPrefix("0000000000000003"));
        const per = Math.floor(total / files);
        for (let i = 0; i < files; i++) await s3.put(`${many}part-${String(i).padStart(5, "0")}.bin`, randomBytes(per));
        await s3.put(`${many}_SUCCESS`, "");
        await s3.put(`${one}data.bin`, randomBytes(total));
        await s3.put(`${one}_SUCCESS`, "");
        console.log(`staging from the emulator to local disk (${mb} MB):`);
        for (const [label, uri] of [
            [`${files} files of ${(per / 1048576).toFixed(1)} MB`, many],
            ["one file", one],
        ] as const) {
            for (let i = 0; i < repeat; i++) {
                const campaign = `bench-stage-${label.replace(/\W+/g, "-")}-${i}`;
                await s3.put(s3Uri(BUCKET, runKeys(campaign, "r1").spec), JSON.stringify({ kind: "train" }));
                const result = await runRunner({
                    settings: settings(campaign, uri),
                    awsEndpoint: moto.endpoint,
                    imdsEndpoint: imds.endpoint,
                    env: { FAKE_STEPS: "1", FAKE_STEP_SECONDS: "0.1", AWS_MAX_ATTEMPTS: "5" },
                });
                const line = /staged dataset: .*/.exec(result.output)?.[0];
                if (result.code !== 0 || !line) throw new Error(`runner failed:\n${result.output}`);
                console.log(`  ${label}, run ${i + 1}: ${line.replace(/ from s3:.*/, "")}`);
            }
        }
    } finally {
        await imds.stop();
        await moto.stop();
    }
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
