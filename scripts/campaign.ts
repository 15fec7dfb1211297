// npm run campaign -- <command> --stack <name> [options]
//
//   preflight  whether AWS will give the campaign what it declares (quotas, zones, AMI, network, bucket), one line a check
//   up       the plan summary, the preflight, a confirmation (--yes skips it), then `pulumi up`
//   watch    progress bars per run from status.json, each run's loss as a sparkline, and the tail of the logs, until
//            every run has ended
//   status   one table of the campaign's jobs and nodes, then each run's task metrics beside the base model's
//   run      up, watch, then a reconciling up that removes finished nodes; --destroy also destroys the stack
//   down     stop every node gracefully and wait (bounded) until each has synced and ended, then destroy, saying what
//            was kept and what it costs per month (--now: destroy at once; each node still saves on the OS path)
//   stop     ask the campaign's nodes (or --run R's) to save a checkpoint, sync and end; wait until they have
//            (--no-wait: do not wait); the stopped runs get no node on the next up until `continue`
//   continue clear the stops, so the next up (campaign up, pulumi up) gives the runs new nodes that resume
//   report   one self-contained HTML file: every run's curves side by side, the plan against what happened (--out FILE;
//            --bucket NAME reads that bucket without the Pulumi CLI, e.g. a rehearsal's emulator with AWS_ENDPOINT_URL)
//
// Real campaigns through the Pulumi Automation API: it needs the Pulumi CLI and AWS credentials.
// State goes to the backend you are logged in to, else to a local file backend under .pulumi/.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline/promises";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { resolveCampaign } from "../components/campaign/resolve";
import type { ResolvedCampaign } from "../components/campaign/types";
import { getInstance } from "../components/plan/catalog";
import { campaignControlKey, PREP_RUN, runKeys } from "../components/campaign/layout";
import { CONTROL_POLL_SECONDS } from "../components/node/runnerSettings";
import { buildPlan, renderPlan } from "../components/plan/plan";
import { composeExperiment, resolveStack } from "../components/config/presets";
import { ConfigError } from "../components/config/problems";
import { readEvaluations, renderEvaluation } from "./cli/evaluation";
import { isTerminal, renderAttempts, renderProgress, renderStatusTable, type JobView } from "./cli/progress";
import { readStatus, readText } from "./cli/s3Read";
import { lossSparklines, readReportInput, writeReport } from "./cli/report";
import { clearControl, renderStopResult, waitForStopped, writeControl, type StopScope } from "./cli/stop";
import { runPreflight, sdkReads } from "./cli/preflight";
import { preflightExitCode, renderPreflight } from "../components/plan/preflight";

export const commands = ["preflight", "up", "watch", "status", "run", "down", "stop", "continue", "report"] as const;
export type Command = (typeof commands)[number];

export interface CliArgs {
    readonly command: Command;
    readonly stack: string;
    readonly yes: boolean;
    readonly destroy: boolean;
    readonly intervalSeconds: number;
    /** report: where the HTML goes (default campaign-report-<stack>.html) and, optionally, the bucket to read. */
    readonly out?: string;
    readonly bucket?: string;
    /** stop, continue: only these runs (repeatable --run); absent: the whole campaign. */
    readonly runs?: readonly string[];
    /** stop: write the request and return; down: destroy at once, without the graceful stop. */
    readonly noWait?: boolean;
    readonly now?: boolean;
    /** stop, down: how long to wait for the nodes to end (--timeout seconds). */
    readonly timeoutSeconds?: number;
}

export const usage = `usage: npm run campaign -- <${commands.join("|")}> --stack <name> [--yes] [--destroy] [--interval <seconds>]
  preflight  quotas, zones, AMI, network, bucket in AWS, one line a check (exit 1 on a failure)
  up      plan, preflight, confirm, pulumi up   watch   progress until every run has ended
  status  one table of jobs and nodes       run     up + watch + reconciling up (--destroy: then destroy)
  down    graceful stop of every node (bounded wait), then pulumi destroy (artifacts kept as the config says) [--now] [--timeout <seconds>]
  stop    save, sync and end the nodes [--run <run>]... [--no-wait] [--timeout <seconds>]; held until continue
  continue  clear the stops [--run <run>]...: the next up resumes the runs
  report  one HTML file: curves, metrics, timeline, cost, memory, throughput against the plan [--out FILE] [--bucket NAME]`;

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[]): CliArgs {
    const [command, ...rest] = argv;
    if (!command || command === "--help" || command === "-h") throw new UsageError(usage);
    if (!(commands as readonly string[]).includes(command)) {
        throw new UsageError(`unknown command "${command}"; commands: ${commands.join(", ")}\n${usage}`);
    }
    let stack: string | undefined;
    let yes = false;
    let destroy = false;
    let intervalSeconds = 15;
    let out: string | undefined;
    let bucket: string | undefined;
    const runs: string[] = [];
    let noWait = false;
    let now = false;
    let timeoutSeconds: number | undefined;
    for (let i = 0; i < rest.length; i++) {
        const arg = rest[i];
        const value = (): string => {
            const v = rest[++i];
            if (v === undefined || v.startsWith("-")) throw new UsageError(`${arg} needs a value\n${usage}`);
            return v;
        };
        if (arg === "--stack" || arg === "-s") stack = value();
        else if (arg === "--yes" || arg === "-y") yes = true;
        else if (arg === "--destroy") destroy = true;
        else if (arg === "--out" && command === "report") out = value();
        else if (arg === "--bucket" && command === "report") bucket = value();
        else if (arg === "--run" && (command === "stop" || command === "continue")) runs.push(value());
        else if (arg === "--no-wait" && command === "stop") noWait = true;
        else if (arg === "--now" && command === "down") now = true;
        else if (arg === "--timeout" && (command === "stop" || command === "down")) {
            const raw = value();
            timeoutSeconds = Number(raw);
            if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 1) throw new UsageError(`--timeout must be a number of seconds >= 1, got "${raw}"`);
        } else if (arg === "--interval") {
            const raw = value();
            intervalSeconds = Number(raw);
            if (!Number.isFinite(intervalSeconds) || intervalSeconds < 1) throw new UsageError(`--interval must be a number of seconds >= 1, got "${raw}"`);
        } else throw new UsageError(`unknown option "${arg}"\n${usage}`);
    }
    if (!stack) throw new UsageError(`--stack is required\n${usage}`);
    if (destroy && command !== "run") throw new UsageError(`--destroy goes with "run" (use "down" to destroy a stack)`);
    const stopOptions = {
        ...(runs.length > 0 ? { runs } : {}),
        ...(noWait ? { noWait } : {}),
        ...(now ? { now } : {}),
        ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
    };
    return { command: command as Command, stack, yes, destroy, intervalSeconds, ...stopOptions, ...(out ? { out } : {}), ...(bucket ? { bucket } : {}) };
}

// The pinned AWS SDK supports Node 20; its notice about future releases' Node requirement is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const root = path.join(__dirname, "..");

/** The message for a machine without the Pulumi CLI, or undefined when it is there. */
export function pulumiCliProblem(pulumiBinary = "pulumi"): string | undefined {
    const probe = spawnSync(pulumiBinary, ["version"], { encoding: "utf8" });
    if (!probe.error) return undefined;
    return [
        "The Pulumi CLI is not installed (or not on PATH); `npm run campaign` drives real campaigns through it.",
        "Install it: curl -fsSL https://get.pulumi.com | sh   (or: brew install pulumi/tap/pulumi)",
        "then open a new shell and check: pulumi version",
        "Without it you can still read the plan (npm run plan -- --stack <name>) and rehearse locally (npm start).",
    ].join("\n");
}

/** The backend: the one you are logged in to, else a file backend under .pulumi/ (needs a passphrase). */
export function backendEnv(env: NodeJS.ProcessEnv, loggedIn: boolean): { env: Record<string, string>; problem?: string } {
    if (env.PULUMI_BACKEND_URL || loggedIn) return { env: {} };
    const dir = path.join(root, ".pulumi");
    const extra = { PULUMI_BACKEND_URL: `file://${dir}` };
    if (!env.PULUMI_CONFIG_PASSPHRASE && !env.PULUMI_CONFIG_PASSPHRASE_FILE) {
        return {
            env: extra,
            problem:
                `No Pulumi backend is logged in, so state goes to ${dir} (a local file backend).\n` +
                "Its secrets (HF token, W&B key) are encrypted with a passphrase: export PULUMI_CONFIG_PASSPHRASE=<passphrase>\n" +
                "(or PULUMI_CONFIG_PASSPHRASE_FILE=<file>), and keep it: the stack cannot be updated or destroyed without it.\n" +
                "Or log in to another backend first: pulumi login (Pulumi Cloud) or pulumi login s3://<bucket>.",
        };
    }
    return { env: extra };
}

function loadCampaign(stack: string): { campaign: ResolvedCampaign; source: string } {
    const { settings, source } = resolveStack(stack, root);
    return { campaign: resolveCampaign(composeExperiment(settings), source), source };
}

// ---------------------------------------------------------------- S3 reads for watch and status

export async function readJobViews(client: S3Client, bucket: string, campaign: ResolvedCampaign): Promise<JobView[]> {
    const { experiment } = campaign;
    const jobs = [
        { run: PREP_RUN, usdPerHour: experiment.prep.runOn === "ec2" ? getInstance(experiment.prep.instanceType).onDemandUsdPerHour : 0 },
        ...campaign.runs.map((r) => ({ run: r.name, usdPerHour: getInstance(r.instanceType).onDemandUsdPerHour })),
    ];
    return Promise.all(
        jobs.map(async (job) => {
            return { ...job, ...(await readStatus(client, bucket, experiment.name, job.run)) };
        }),
    );
}

async function logTail(client: S3Client, bucket: string, campaign: string, run: string, lines: number): Promise<string[]> {
    const prefix = runKeys(campaign, run).logs;
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    const job = (listed.Contents ?? []).find((o) => o.Key?.endsWith("job.log")) ?? listed.Contents?.[0];
    if (!job?.Key) return [];
    const text = (await readText(client, bucket, job.Key)) ?? "";
    return text.trimEnd().split("\n").slice(-lines);
}

async function watch(client: S3Client, bucket: string, campaign: ResolvedCampaign, intervalSeconds: number): Promise<JobView[]> {
    for (;;) {
        const views = await readJobViews(client, bucket, campaign);
        const now = new Date();
        console.log(`\n${now.toISOString()}  campaign ${campaign.experiment.name}`);
        console.log(renderProgress(views, now));
        const curves = await lossSparklines(client, bucket, campaign);
        if (curves) console.log(curves);
        const active = views.find((v) => v.status && !isTerminal(v));
        if (active) for (const line of await logTail(client, bucket, campaign.experiment.name, active.run, 5)) console.log(`  | ${line}`);
        const trainViews = views.filter((v) => v.run !== PREP_RUN);
        const prep = views.find((v) => v.run === PREP_RUN);
        if (prep?.status?.phase === "failed") return views;
        if (trainViews.every(isTerminal)) return views;
        await new Promise((r) => setTimeout(r, intervalSeconds * 1000));
    }
}

// ---------------------------------------------------------------- main

async function confirm(question: string): Promise<boolean> {
    if (!process.stdin.isTTY) return false;
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question(question);
    rl.close();
    return /^y(es)?$/i.test(answer.trim());
}

async function main(argv: readonly string[]): Promise<number> {
    let args: CliArgs;
    try {
        args = parseArgs(argv);
    } catch (e) {
        console.error((e as Error).message);
        return 2;
    }
    let loaded;
    try {
        loaded = loadCampaign(args.stack);
    } catch (e) {
        console.error(e instanceof ConfigError ? e.message : (e as Error).message);
        return 1;
    }
    const { campaign, source } = loaded;
    const plan = buildPlan(campaign);

    // Preflight asks AWS only: it needs no Pulumi CLI, and up/run run it before asking to create anything.
    const preflight = async (): Promise<boolean> => {
        const results = await runPreflight(campaign, args.stack, sdkReads({ region: campaign.experiment.region, ...(process.env.AWS_ENDPOINT_URL ? { endpoint: process.env.AWS_ENDPOINT_URL } : {}) }));
        console.log(renderPreflight(results, `Preflight for campaign "${campaign.experiment.name}" in ${campaign.experiment.region}:`));
        return preflightExitCode(results) === 0;
    };
    if (args.command === "preflight") return (await preflight()) ? 0 : 1;
    // The report reads S3 only: with --bucket it needs no Pulumi CLI (a rehearsal's bucket, or a stack long gone).
    if (args.command === "report" && args.bucket) return writeCampaignReport(reportClient(campaign.experiment.region), args.bucket, campaign, plan, source, args);

    const missing = pulumiCliProblem();
    if (missing) {
        console.error(missing);
        return 3;
    }
    const loggedIn = spawnSync("pulumi", ["whoami"], { encoding: "utf8" }).status === 0;
    const backend = backendEnv(process.env, loggedIn);
    if (backend.problem) {
        console.error(backend.problem);
        return 2;
    }
    if (backend.env.PULUMI_BACKEND_URL) fs.mkdirSync(path.join(root, ".pulumi"), { recursive: true });

    const { LocalWorkspace } = await import("@pulumi/pulumi/automation");
    const stack = await LocalWorkspace.createOrSelectStack({ stackName: args.stack, workDir: root }, { envVars: backend.env });
    const print = (out: string) => process.stdout.write(out);
    // Every update refreshes first: nodes terminate themselves, and Pulumi must see that they are gone
    // before it decides what to declare again (an interrupted run's new node, a finished run's removal).
    const up = async (): Promise<boolean> => {
        console.log(renderPlan(plan, source));
        console.log("");
        if (!(await preflight())) {
            console.error("Preflight failed; nothing was created. Fix the failures above, then run this again.");
            return false;
        }
        if (!args.yes && !(await confirm(`\nCreate these resources for "${campaign.experiment.name}" (worst case $${plan.totals.worstCaseUsd.toFixed(2)})? [y/N] `))) {
            console.error("Not confirmed; nothing was created. Pass --yes to skip the question.");
            return false;
        }
        await stack.up({ onOutput: print, refresh: true });
        return true;
    };
    const bucketOf = async (): Promise<string> => {
        const outputs = await stack.outputs();
        const bucket = outputs.bucketName?.value ?? outputs.bucket?.value;
        if (typeof bucket !== "string") throw new Error(`stack ${args.stack} has no bucket output yet: run "npm run campaign -- up --stack ${args.stack}" first`);
        return bucket;
    };
    const client = new S3Client({ region: campaign.experiment.region });

    switch (args.command) {
        case "up":
            return (await up()) ? 0 : 1;
        case "watch": {
            const views = await watch(client, await bucketOf(), campaign, args.intervalSeconds);
            return views.every((v) => v.run === PREP_RUN || v.status?.phase === "succeeded") ? 0 : 1;
        }
        case "status": {
            const bucket = await bucketOf();
            const views = await readJobViews(client, bucket, campaign);
            console.log(renderStatusTable(views, new Date()));
            // Every node's attempt at each run, with how it ended (status.json's attempts).
            const attempts = renderAttempts(views);
            if (attempts) console.log(`\n${attempts}`);
            // Each run's task metrics beside its base model's, and the best run (scripts/cli/evaluation.ts).
            if (campaign.experiment.evaluation) console.log(`\n${renderEvaluation(campaign, await readEvaluations(client, bucket, campaign))}`);
            return 0;
        }
        case "run": {
            if (!(await up())) return 1;
            const views = await watch(client, await bucketOf(), campaign, args.intervalSeconds);
            console.log("\nEvery run has ended: reconciling, so finished nodes leave the stack.");
            await stack.up({ onOutput: print, refresh: true });
            if (args.destroy) {
                await stack.destroy({ onOutput: print, refresh: true });
                console.log(keptMessage(plan));
            }
            return views.every((v) => v.run === PREP_RUN || v.status?.phase === "succeeded") ? 0 : 1;
        }
        case "down": {
            // Gracefully first: every node saves, syncs and ends, so nothing is cut off mid-upload. The campaign-wide
            // request is a restart: the runs stay resumable, and the next up continues them as after a plain destroy.
            if (!args.now) {
                const bucket = await bucketOf().catch(() => undefined);
                if (bucket) await gracefulStop(client, bucket, campaign, { all: true }, "restart", args.timeoutSeconds ?? DOWN_WAIT_SECONDS, args.intervalSeconds);
                else console.log("No bucket output yet: nothing can be running; destroying.");
            }
            await stack.destroy({ onOutput: print, refresh: true });
            console.log(keptMessage(plan));
            return 0;
        }
        case "stop": {
            const bucket = await bucketOf();
            const scope: StopScope = args.runs ? { runs: args.runs } : { all: true };
            unknownRuns(campaign, args.runs);
            if (args.noWait) {
                const keys = await writeControl(client, bucket, campaign.experiment.name, scope, "stop", process.env.USER);
                console.log(`Stop requested in ${keys.map((k) => `s3://${bucket}/${k}`).join(", ")}; the nodes read it within ${CONTROL_POLL_SECONDS} s.`);
                console.log(`Until \`npm run campaign -- continue --stack ${args.stack}\`, the next up gives the stopped runs no node.`);
                return 0;
            }
            const done = await gracefulStop(client, bucket, campaign, scope, "stop", args.timeoutSeconds ?? DOWN_WAIT_SECONDS, args.intervalSeconds);
            console.log(`Until \`npm run campaign -- continue --stack ${args.stack}\`, the next up gives the stopped runs no node.`);
            return done ? 0 : 1;
        }
        case "continue": {
            const bucket = await bucketOf();
            unknownRuns(campaign, args.runs);
            const keys = await clearControl(client, bucket, campaign.experiment.name, args.runs ? { runs: args.runs } : { all: true }, campaign.runs.map((r) => r.name));
            console.log(`Cleared ${keys.map((k) => `s3://${bucket}/${k}`).join(", ")}.`);
            if (args.runs && (await readText(client, bucket, campaignControlKey(campaign.experiment.name)))?.includes('"stop"')) {
                console.log(`The campaign-wide stop (s3://${bucket}/${campaignControlKey(campaign.experiment.name)}) still holds every run: continue without --run to clear it.`);
            }
            console.log(`The next up (npm run campaign -- up --stack ${args.stack}, or pulumi up) gives the unfinished runs new nodes that resume from their newest checkpoint.`);
            return 0;
        }
        case "report":
            return writeCampaignReport(client, await bucketOf(), campaign, plan, source, args);
    }
}

/** How long `down` and `stop` wait for the nodes by default: a save of up to 5 minutes and the sync of a large checkpoint. */
const DOWN_WAIT_SECONDS = 1200;

/** Writes the request, then waits with a line per poll; false when some run did not confirm within the bound. */
async function gracefulStop(client: S3Client, bucket: string, campaign: ResolvedCampaign, scope: StopScope, action: "stop" | "restart",
    timeoutSeconds: number, intervalSeconds: number): Promise<boolean> {
    const name = campaign.experiment.name;
    const keys = await writeControl(client, bucket, name, scope, action, process.env.USER);
    console.log(`${action === "stop" ? "Stop" : "Graceful stop (restart)"} requested in ${keys.map((k) => `s3://${bucket}/${k}`).join(", ")}; ` +
        `each node reads it within ${CONTROL_POLL_SECONDS} s, saves a checkpoint, syncs it and ends. Waiting up to ${timeoutSeconds} s:`);
    const runs = "all" in scope ? [PREP_RUN, ...campaign.runs.map((r) => r.name)] : [...scope.runs];
    const result = await waitForStopped(() => readJobViews(client, bucket, campaign), runs, { timeoutSeconds, intervalSeconds, log: (l) => console.log(l) });
    console.log(renderStopResult(result, timeoutSeconds));
    return result.unconfirmed.length === 0;
}

function unknownRuns(campaign: ResolvedCampaign, runs: readonly string[] | undefined): void {
    const known = campaign.runs.map((r) => r.name);
    const unknown = (runs ?? []).filter((r) => !known.includes(r));
    if (unknown.length > 0) throw new UsageError(`unknown run(s) ${unknown.join(", ")}; the campaign's runs: ${known.join(", ")}`);
}

/** An S3 client for the report; AWS_ENDPOINT_URL (an emulator) gets path-style addressing. */
function reportClient(region: string): S3Client {
    const endpoint = process.env.AWS_ENDPOINT_URL;
    return new S3Client({ region, ...(endpoint ? { endpoint, forcePathStyle: true } : {}) });
}

async function writeCampaignReport(client: S3Client, bucket: string, campaign: ResolvedCampaign, plan: ReturnType<typeof buildPlan>, source: string, args: CliArgs): Promise<number> {
    const file = writeReport(await readReportInput(client, bucket, campaign, plan, source), args.out ?? `campaign-report-${args.stack}.html`);
    console.log(`Report: ${file}`);
    return 0;
}

function keptMessage(plan: ReturnType<typeof buildPlan>): string {
    return plan.afterDestroy.keepArtifacts
        ? `Destroyed. Kept in S3 (storage.keepOnDestroy): about ${plan.afterDestroy.storedGb.toFixed(1)} GB, $${plan.afterDestroy.monthlyUsd.toFixed(2)}/month:\n${plan.afterDestroy.kept.map((k) => `  - ${k}`).join("\n")}`
        : "Destroyed. Nothing was kept (storage.keepOnDestroy: false): no charge remains.";
}

if (require.main === module) {
    main(process.argv.slice(2)).then(
        (code) => (process.exitCode = code),
        (e) => {
            console.error(`campaign: ${(e as Error).message}`);
            process.exitCode = 1;
        },
    );
}
