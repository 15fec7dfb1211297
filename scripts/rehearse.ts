// npm start  /  npm run rehearse -- --stack <name> [--interrupt-at STEP] [--destroy-at STEP] [--max-steps N]
//
// Rehearses a campaign on this machine with no AWS account: the same job specs the stack would render,
// the same node runner in process mode, a local S3 emulator, a fake instance-metadata service. Prep,
// then each training run, with status heartbeats and checkpoint sync into the emulator; --interrupt-at
// simulates a spot notice and shows the resume on a "new node"; --destroy-at runs `campaign down` at that step (the
// graceful stop through the campaign's control object, the wait until the node has synced and ended, the destroy)
// and then the next `pulumi up`, whose new node resumes from the stop's checkpoint. It ends with teardown, a report, and the HTML
// report (.rehearsal/<stack>/report.html).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { resolveCampaign } from "../components/campaign/resolve";
import type { ResolvedCampaign } from "../components/campaign/types";
import { S3CampaignState } from "../components/campaign/state";
import type { Status } from "../components/campaign/jobSpec";
import { datasetPrefix, datasetSuccessKey, inputKey, PREP_RUN, runKeys, s3Uri } from "../components/campaign/layout";
import { buildPlan } from "../components/plan/plan";
import { artifactGroups } from "../components/report/figures";
import { composeExperiment, resolveStack } from "../components/config/presets";
import { ConfigError } from "../components/config/problems";
import type { RunnerSettings } from "../components/node/runnerSettings";
import { readEvaluations, renderEvaluation } from "./cli/evaluation";
import { renderProgress } from "./cli/progress";
import { readReportInput, writeReport } from "./cli/report";
import { readStatus, readText } from "./cli/s3Read";
import { renderStopResult, waitForStopped, writeControl, type StopWaitResult } from "./cli/stop";
import { campaignControlKey } from "../components/campaign/layout";
import { relaunchDecision } from "../components/campaign/relaunch";
import { startFakeImds, type FakeImds } from "./local/fakeImds";
import { fakeAwsEnv, startMoto } from "./local/moto";
import { runRunner, runnerBaseDir, type RunnerResult } from "./local/nodeRunner";
import { applyStandIns, StandInError } from "./rehearsal/standins";
import { imageStandIns } from "../components/campaign/imageTag";

// The pinned AWS SDK supports Node 20; its notice about future releases' Node requirement is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const root = path.join(__dirname, "..");
const BUCKET = "campaign-rehearsal";

export interface RehearseArgs {
    readonly stack: string;
    readonly interruptAt?: number;
    /** `campaign down` at this step: graceful stop, wait, destroy; then `pulumi up` again resumes the run. */
    readonly destroyAt?: number;
    readonly maxSteps: number;
    /** At most this many examples per optimizer step (the short form npm test uses); unset keeps the preset's batch. */
    readonly maxBatch?: number;
}

export const usage = "usage: npm run rehearse -- [--stack <name>] [--interrupt-at STEP] [--destroy-at STEP] [--max-steps N] [--max-batch N]   (default stack: dev)";

export function parseRehearseArgs(argv: readonly string[]): RehearseArgs {
    let stack = "dev";
    let interruptAt: number | undefined;
    let destroyAt: number | undefined;
    let maxSteps = 24;
    let maxBatch: number | undefined;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const int = (name: string): number => {
            const raw = argv[++i];
            const n = Number(raw);
            if (raw === undefined || !Number.isInteger(n) || n < 1) throw new Error(`${name} needs a whole number >= 1, got ${raw === undefined ? "nothing" : `"${raw}"`}\n${usage}`);
            return n;
        };
        if (arg === "--stack" || arg === "-s") {
            const v = argv[++i];
            if (!v || v.startsWith("-")) throw new Error(`--stack needs a name\n${usage}`);
            stack = v;
        } else if (arg === "--interrupt-at") interruptAt = int("--interrupt-at");
        else if (arg === "--destroy-at") destroyAt = int("--destroy-at");
        else if (arg === "--max-steps") maxSteps = int("--max-steps");
        else if (arg === "--max-batch") maxBatch = int("--max-batch");
        else throw new Error(`unknown argument "${arg}"\n${usage}`);
    }
    if (destroyAt !== undefined && destroyAt >= maxSteps) {
        throw new Error(`--destroy-at ${destroyAt} must be below the rehearsal's ${maxSteps} steps (--max-steps)`);
    }
    if (destroyAt !== undefined && interruptAt !== undefined) throw new Error("--destroy-at and --interrupt-at: one stop per rehearsal");
    if (interruptAt !== undefined && interruptAt >= maxSteps) {
        throw new Error(`--interrupt-at ${interruptAt} must be below the rehearsal's ${maxSteps} steps (--max-steps)`);
    }
    return { stack, interruptAt, ...(destroyAt !== undefined ? { destroyAt } : {}), maxSteps, ...(maxBatch !== undefined ? { maxBatch } : {}) };
}

const t0 = Date.now();
const say = (text: string) => console.log(text);
const clock = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
const stepLine = (n: number, total: number, text: string) => say(`\n[${n}/${total}] ${text}`);

function s3ClientFor(endpoint: string, region: string): S3Client {
    return new S3Client({
        region,
        endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY },
    });
}

const getText = (client: S3Client, key: string) => readText(client, BUCKET, key);
const readRunStatus = async (client: S3Client, campaign: string, run: string) => (await readStatus(client, BUCKET, campaign, run)).status;

async function listAll(client: S3Client, prefix = ""): Promise<Array<{ key: string; size: number }>> {
    const out: Array<{ key: string; size: number }> = [];
    let token: string | undefined;
    do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0 });
        token = page.NextContinuationToken;
    } while (token);
    return out;
}

/**
 * Runs one node's runner while printing its progress from status.json whenever it changes. `onStep`
 * sees the job's own progress file on the "node" (fresher than status.json, which is written every 2 s).
 */
async function runNode(
    client: S3Client,
    campaign: string,
    settings: RunnerSettings,
    endpoints: { aws: string; imds: FakeImds },
    python: string,
    onStep?: (step: number) => void,
): Promise<RunnerResult> {
    let last = "";
    let done = false;
    const baseDir = runnerBaseDir(`campaign-rehearsal-${settings.run}-`);
    const progressFile = path.join(baseDir, "work", "job", "progress.json");
    const watchSteps = (async () => {
        while (!done && onStep) {
            try {
                onStep((JSON.parse(fs.readFileSync(progressFile, "utf8")) as { step: number }).step);
            } catch {
                // not written yet, or being replaced
            }
            await new Promise((r) => setTimeout(r, 100));
        }
    })();
    const poll = (async () => {
        while (!done) {
            const s = await readRunStatus(client, campaign, settings.run);
            if (s) {
                const line = renderProgress([{ run: settings.run, status: s, usdPerHour: 0 }], new Date()).split("\n")[0];
                const key = `${s.phase} ${s.progress?.step ?? ""}`;
                if (key !== last) say(`${clock()}  ${line.replace(/\s+\$0\.00$/, "")}`);
                last = key;
            }
            await new Promise((r) => setTimeout(r, 700));
        }
    })();
    const result = await runRunner({
        settings,
        awsEndpoint: endpoints.aws,
        imdsEndpoint: endpoints.imds.endpoint,
        baseDir,
        timeoutMs: 15 * 60_000,
        // The recorders stay first on PATH (runRunner puts them there): the runner's `shutdown` never
        // reaches this machine's.
        pathPrepend: [path.dirname(python)],
        env: {
            CAMPAIGN_STATUS_INTERVAL_SECONDS: "2",
            CAMPAIGN_SPOT_POLL_SECONDS: "1",
            CAMPAIGN_PROGRESS_INTERVAL: "1",
            PYTHONUNBUFFERED: "1",
            TOKENIZERS_PARALLELISM: "false",
        },
    });
    done = true;
    await Promise.all([poll, watchSteps]);
    const final = await readRunStatus(client, campaign, settings.run);
    if (final) say(`${clock()}  ${renderProgress([{ run: settings.run, status: final, usdPerHour: 0 }], new Date()).split("\n").slice(0, -1).join("\n").replace(/\s+\$0\.00/, "")}`);
    return result;
}

async function main(argv: readonly string[]): Promise<number> {
    let args: RehearseArgs;
    try {
        args = parseRehearseArgs(argv);
    } catch (e) {
        console.error((e as Error).message);
        return 2;
    }
    const TOTAL = 6;
    stepLine(1, TOTAL, `config: stack ${args.stack}`);
    let campaign: ResolvedCampaign;
    let source: string;
    try {
        const stack = resolveStack(args.stack, root);
        source = stack.source;
        campaign = resolveCampaign(composeExperiment(stack.settings), source);
    } catch (e) {
        console.error(e instanceof ConfigError ? e.message : (e as Error).message);
        return 1;
    }
    return rehearseCampaign(campaign, source, args);
}

/** A node the rehearsal started, with its final status. */
export interface RehearsedNode {
    readonly name: string;
    readonly result: RunnerResult;
    readonly status: Status | null;
}

/**
 * Rehearses a resolved campaign (steps 1-6 and the report); `nodes` receives every node started, in order.
 * Returns the exit code: 0 when prep and every run succeeded.
 */
export async function rehearseCampaign(campaign: ResolvedCampaign, source: string, args: RehearseArgs, nodes: RehearsedNode[] = []): Promise<number> {
    const TOTAL = 6;
    const { experiment } = campaign;
    const plan = buildPlan(campaign);
    say(`    campaign "${experiment.name}" from ${source}: prep (${experiment.prep.runOn}), then ${campaign.runs.length} run(s) on ${[...new Set(campaign.runs.map((r) => r.instanceType))].join(", ")}`);
    for (const w of campaign.warnings) say(`    warning: ${w.path}: ${w.message}`);

    const workDir = path.join(root, ".rehearsal", args.stack);
    fs.rmSync(workDir, { recursive: true, force: true });
    fs.mkdirSync(workDir, { recursive: true });

    stepLine(2, TOTAL, "Python environment for the jobs (created on first use from containers/requirements-cpu.txt)");
    const python = execFileSync("bash", [path.join(root, "scripts", "python-env.sh")], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
    say(`    ${python}`);

    stepLine(3, TOTAL, "stand-ins for what cannot run here");
    const families = [...new Set(campaign.runs.map((r) => r.model.family))];
    const tinyModels = { "causal-lm": path.join(root, ".rehearsal", "models", "causal-lm"), seq2seq: path.join(root, ".rehearsal", "models", "seq2seq") };
    for (const family of families) {
        if (fs.existsSync(path.join(tinyModels[family], "config.json"))) continue;
        execFileSync(python, [path.join(root, "scripts", "make-tiny-model.py"), "--family", family, "--out", tinyModels[family]], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
    }
    let standIns: ReturnType<typeof applyStandIns>;
    try {
        standIns = applyStandIns(campaign, { root, workDir, tinyModels, maxSteps: args.maxSteps, maxBatch: args.maxBatch, sampleRows: 600 });
    } catch (e) {
        if (!(e instanceof StandInError)) throw e;
        say(`    a stand-in cannot keep an invariant of the real campaign, so nothing is rehearsed: ${e.message}`);
        return 1;
    }
    for (const s of [...standIns.substitutions, ...imageStandIns(campaign.experiment, path.join(root, "containers"))]) say(`    - ${s}`);
    if (!standIns.substitutions.length) say("    none: the campaign runs as configured");

    stepLine(4, TOTAL, "local AWS: S3 emulator and instance metadata on 127.0.0.1");
    const moto = await startMoto();
    const imds = await startFakeImds({ instanceId: "i-rehearsal", instanceType: campaign.runs[0]?.instanceType ?? "g5.2xlarge" });
    const client = s3ClientFor(moto.endpoint, experiment.region);
    try {
        await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
        say(`    s3://${BUCKET} at ${moto.endpoint}; metadata at ${imds.endpoint}`);
        const prepKeys = runKeys(experiment.name, PREP_RUN);
        const put = (key: string, body: string) => client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentType: "application/json" }));
        await put(prepKeys.spec, JSON.stringify(standIns.prepSpec, null, 2));
        for (const spec of standIns.trainSpecs) await put(runKeys(experiment.name, spec.run).spec, JSON.stringify(spec, null, 2));

        // The data file goes to S3 as it would for an EC2 prep node, and the runner stages it.
        const dataFile = standIns.prepSpec.data.source;
        const dataBytes = fs.readFileSync(dataFile);
        const inputObject = inputKey(createHash("sha256").update(dataBytes).digest("hex"), path.basename(dataFile));
        await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: inputObject, Body: dataBytes }));

        const common = { campaign: experiment.name, region: experiment.region, jobMode: "process" as const, gpuIdleMinutes: 0, gpuIdleThreshold: experiment.compute.gpuIdleThreshold, secretParameters: {} };
        stepLine(5, TOTAL, `prep on CPU, before any GPU: datasets/${standIns.prepSpec.prepHash}/`);
        const prepSettings: RunnerSettings = {
            ...common,
            role: "prep",
            run: PREP_RUN,
            specUri: s3Uri(BUCKET, prepKeys.spec),
            statusUri: s3Uri(BUCKET, prepKeys.status),
            logsUri: s3Uri(BUCKET, prepKeys.logs),
            outputUri: s3Uri(BUCKET, datasetPrefix(standIns.prepSpec.prepHash)),
            modelOutputUri: s3Uri(BUCKET, "models/"),
            inputUri: s3Uri(BUCKET, inputObject),
            command: `${python} containers/prep/main.py`,
            maxRuntimeSeconds: experiment.prep.maxHours * 3600,
            keepCheckpoints: 1,
        };
        const prep = await runNode(client, experiment.name, prepSettings, { aws: moto.endpoint, imds }, python);
        nodes.push({ name: PREP_RUN, result: prep, status: await readRunStatus(client, experiment.name, PREP_RUN) });
        // The gate: no GPU node starts until _SUCCESS is there.
        const ready = (await getText(client, datasetSuccessKey(standIns.prepSpec.prepHash))) !== undefined;
        if (!ready) {
            const prepStatus = nodes[nodes.length - 1].status;
            say(`\nPrep did not finish (exit ${prep.code}, phase ${prepStatus?.phase ?? "unknown"}); the gate stays closed and no GPU node starts.`);
            if (prepStatus?.reason) say(`    reason: ${prepStatus.reason}`);
            say(`Runner output:\n${prep.output.split("\n").slice(-25).join("\n")}`);
            return 1;
        }
        const manifest = JSON.parse((await getText(client, `${datasetPrefix(standIns.prepSpec.prepHash)}manifest.json`)) ?? "{}") as Record<string, unknown>;
        say(`    gate open: _SUCCESS is in S3; ${describeManifest(manifest)}`);

        stepLine(6, TOTAL, `training: ${standIns.trainSpecs.length} run(s), one node each, through the same runner`);
        let destroyRequested = false;
        for (const spec of standIns.trainSpecs) {
            const keys = runKeys(experiment.name, spec.run);
            const settings: RunnerSettings = {
                ...common,
                role: "train",
                run: spec.run,
                specUri: s3Uri(BUCKET, keys.spec),
                statusUri: s3Uri(BUCKET, keys.status),
                logsUri: s3Uri(BUCKET, keys.logs),
                outputUri: s3Uri(BUCKET, keys.output),
                checkpointsUri: s3Uri(BUCKET, keys.checkpoints),
                runControlUri: s3Uri(BUCKET, keys.control),
                campaignControlUri: s3Uri(BUCKET, campaignControlKey(experiment.name)),
                // A node polls every 30 s; here every second, so the stop shows within a step or two.
                controlPollSeconds: 1,
                // What a requested stop gives the job to save (a node's default is 300 s; the local runner's is 20 s,
                // too short for the trainer's save on a loaded machine).
                stopGraceSeconds: 120,
                metricsUri: s3Uri(BUCKET, keys.metrics),
                dataUri: s3Uri(BUCKET, datasetPrefix(standIns.prepSpec.prepHash)),
                command: `${python} containers/trainer/main.py`,
                maxRuntimeSeconds: experiment.compute.maxHours * 3600,
                keepCheckpoints: spec.training.saveTotalLimit,
            };
            let interrupted = false;
            let stopWait: Promise<StopWaitResult> | undefined;
            const onStep = (step: number) => {
                if (args.destroyAt !== undefined && !destroyRequested && step >= args.destroyAt) {
                    destroyRequested = interrupted = true;
                    say(`${clock()}  ** campaign down at step ${step}: a graceful stop for every node (${campaignControlKey(experiment.name)}, action restart), then the wait **`);
                    stopWait = writeControl(client, BUCKET, experiment.name, { all: true }, "restart", "rehearsal").then(() =>
                        waitForStopped(async () => [{ run: spec.run, usdPerHour: 0, ...(await readStatus(client, BUCKET, experiment.name, spec.run)) }], [spec.run], {
                            timeoutSeconds: 600,
                            intervalSeconds: 5,
                            log: (line) => say(`${clock()}  ${line.trim()}`),
                        }),
                    );
                }
                if (args.interruptAt !== undefined && !interrupted && step >= args.interruptAt) {
                    interrupted = true;
                    say(`${clock()}  ** spot interruption notice for ${spec.run} at step ${step} (two minutes to go) **`);
                    imds.setSpotNotice(true);
                }
            };
            const first = await runNode(client, experiment.name, settings, { aws: moto.endpoint, imds }, python, onStep);
            imds.setSpotNotice(false);
            let status = await readRunStatus(client, experiment.name, spec.run);
            nodes.push({ name: interrupted ? `${spec.run} (node 1)` : spec.run, result: first, status });
            if (interrupted && status?.phase === "succeeded") {
                say(`${clock()}  ${spec.run} finished its last steps before the notice could stop it: it succeeded, and nothing is redone`);
            }
            if (stopWait) {
                say(`${clock()}  ${renderStopResult(await stopWait, 600)}`);
                say(`${clock()}  destroy: the node has ended itself, so \`pulumi destroy\` only removes its (terminated) instance; the bucket and the checkpoints stay`);
                const record = { ...(await new S3CampaignState(client, BUCKET, experiment.name).runRecord(spec.run)), control: (await new S3CampaignState(client, BUCKET, experiment.name).control(spec.run)).action };
                const decision = relaunchDecision(spec.run, record, spec.specHash, experiment.compute.retries);
                say(`${clock()}  up again: \`pulumi up\` reads ${spec.run}'s status (${record.phase}) and the control object (${record.control ?? "none"}): ${decision.declare ? "a new node" : "no node"} (${decision.reason})`);
                stopWait = undefined;
            }
            if (status?.phase === "interrupted") {
                say(`${clock()}  ${spec.run} was interrupted with ${status.lastCheckpoint ?? "no checkpoint"} in S3; the next \`pulumi up\` declares a new node, which resumes:`);
                const second = await runNode(client, experiment.name, settings, { aws: moto.endpoint, imds }, python);
                status = await readRunStatus(client, experiment.name, spec.run);
                nodes.push({ name: `${spec.run} (node 2)`, result: second, status });
            }
        }

        // Teardown: every node called shutdown; the reconciling `pulumi up` declares only unfinished work.
        const state = new S3CampaignState(client, BUCKET, experiment.name);
        const phases = await Promise.all(standIns.trainSpecs.map(async (s) => [s.run, await state.runPhase(s.run)] as const));
        const remaining = phases.filter(([, phase]) => phase !== "succeeded");
        const mirror = path.join(workDir, "s3", BUCKET);
        const objects = await listAll(client);
        for (const o of objects) {
            const body = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: o.key }));
            const file = path.join(mirror, o.key);
            fs.mkdirSync(path.dirname(file), { recursive: true });
            fs.writeFileSync(file, Buffer.from(await body.Body!.transformToByteArray()));
        }
        const metrics = await Promise.all(standIns.trainSpecs.map(async (s) => [s.run, await getText(client, `${runKeys(experiment.name, s.run).output}metrics.json`)] as const));

        say("\n== Teardown");
        for (const n of nodes) {
            say(`    ${n.name.padEnd(24)} shutdown called ${n.result.shutdownCalls.length} time(s) ("shutdown ${n.result.shutdownCalls[0] ?? ""}"), final phase ${n.status?.phase ?? "?"}`);
        }
        say(
            remaining.length
                ? `    the reconciling \`pulumi up\` would keep ${remaining.length} node(s): ${remaining.map(([r, p]) => `${r} (${p ?? "no status"})`).join(", ")}`
                : "    every run succeeded: the reconciling `pulumi up` declares no GPU node, so nothing is left running or billing",
        );
        say(`    moto_server and the metadata service stop now; the bucket's contents are mirrored in ${path.relative(root, mirror)}/`);

        say(report(campaign, plan, nodes, metrics, objects, standIns.substitutions, mirror, source));
        // The task metrics, as `campaign status` shows them (scripts/cli/evaluation.ts).
        if (experiment.evaluation) say(`\n${renderEvaluation(campaign, await readEvaluations(client, BUCKET, campaign))}`);
        // The same HTML report `npm run campaign -- report` writes: every run's curves side by side, the plan against what happened.
        const notes = standIns.substitutions.length ? ["Rehearsed on this machine with stand-ins (the plan's figures are for the configured instances):", ...standIns.substitutions.map((s) => `- ${s}`)] : [];
        const reportFile = writeReport(await readReportInput(client, BUCKET, campaign, plan, source, notes), path.join(workDir, "report.html"));
        say(`\nReport: ${path.relative(process.cwd(), reportFile) || reportFile} (one self-contained HTML file: open it in a browser)`);
        return remaining.length === 0 && prep.code === 0 ? 0 : 1;
    } finally {
        await imds.stop();
        await moto.stop();
    }
}

function describeManifest(manifest: Record<string, unknown>): string {
    const counts = manifest.counts as Record<string, unknown> | undefined;
    if (!counts) return "manifest.json written";
    return `manifest.json: ${Object.entries(counts).map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : String(v)}`).join(", ")}`;
}

function at(iso: string | null | undefined): string {
    if (!iso) return "-";
    const seconds = (Date.parse(iso) - t0) / 1000;
    // The runner takes boot time from the machine's uptime; here the "node" is this machine, up long before.
    return seconds < -1 ? "(machine)" : `${seconds.toFixed(1)}s`;
}

function report(
    campaign: ResolvedCampaign,
    plan: ReturnType<typeof buildPlan>,
    nodes: Array<{ name: string; result: RunnerResult; status: Status | null }>,
    metrics: ReadonlyArray<readonly [string, string | undefined]>,
    objects: Array<{ key: string; size: number }>,
    substitutions: readonly string[],
    mirror: string,
    source: string,
): string {
    const out: string[] = ["", `== Report: campaign "${campaign.experiment.name}" (${source}), rehearsed in ${((Date.now() - t0) / 1000).toFixed(0)} s`, ""];
    out.push("Timeline per node (seconds since the rehearsal started):");
    const rows = [["node", "boot", "inputs ready", "first step", "job end", "teardown", "phase", "exit"]];
    for (const n of nodes) {
        const t = n.status?.timings;
        rows.push([n.name, at(t?.nodeBoot), at(t?.inputsReady), at(t?.firstStep), at(t?.jobEnd), at(t?.shutdown), n.status?.phase ?? "?", String(n.status?.exitCode ?? "-")]);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    out.push(...rows.map((r) => `   ${r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()}`));
    for (const n of nodes) if (n.status?.reason) out.push(`   ${n.name}: ${n.status.reason}`);
    out.push("", "Final metrics:");
    for (const [run, body] of metrics) {
        if (!body) {
            out.push(`   ${run}: no metrics.json`);
            continue;
        }
        const m = JSON.parse(body) as Record<string, unknown>;
        const numbers: Array<[string, number]> = [];
        for (const [k, v] of Object.entries(m)) {
            if (typeof v === "number") numbers.push([k, v]);
            else if (v && typeof v === "object" && !Array.isArray(v) && ["train", "eval", "test"].includes(k)) {
                for (const [k2, v2] of Object.entries(v)) if (typeof v2 === "number" && /loss|accuracy/.test(k2)) numbers.push([k2, v2]);
            }
        }
        const shown = numbers.map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(", ");
        out.push(`   ${run}: ${shown}`);
    }
    out.push("", `Artifacts (${objects.length} objects, mirrored in ${path.relative(root, mirror)}/):`);
    for (const g of artifactGroups(objects)) out.push(`   s3://${BUCKET}/${g.prefix.padEnd(50)} ${String(g.count).padStart(4)} files ${(g.bytes / 1024).toFixed(0).padStart(7)} KiB`);
    out.push("", `What the same campaign costs on its configured instances (npm run plan -- --stack ${campaign.experiment.name === "dev" ? "dev" : "<stack>"}):`);
    for (const r of plan.runs) {
        out.push(`   ${r.run}: ${r.instanceType} ${r.market} at $${r.usdPerHour.toFixed(3)}/h, about ${r.estimatedHours === null ? "?" : r.estimatedHours.toFixed(2)} h = $${r.estimatedUsd === null ? "?" : r.estimatedUsd.toFixed(2)} (cap ${r.maxHours} h = $${r.worstCaseUsd.toFixed(2)})`);
    }
    out.push(`   prep: ${plan.prep.runOn === "local" ? "on your machine, $0" : `${plan.prep.instanceType}, $${plan.prep.estimatedUsd.toFixed(2)}`}`);
    out.push(`   total about $${plan.totals.estimatedUsd.toFixed(2)}, worst case $${plan.totals.worstCaseUsd.toFixed(2)}; kept after destroy: $${plan.afterDestroy.monthlyUsd.toFixed(2)}/month`);
    if (substitutions.length) {
        out.push("", "Rehearsed with stand-ins (the real campaign uses the configured ones):");
        for (const s of substitutions) out.push(`   - ${s}`);
    }
    return out.join("\n");
}

if (require.main === module) {
    main(process.argv.slice(2)).then(
        (code) => (process.exitCode = code),
        (e) => {
            console.error(`rehearse: ${(e as Error).stack ?? (e as Error).message}`);
            process.exitCode = 1;
        },
    );
}
