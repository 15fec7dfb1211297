// The campaign CLI: argument errors, the missing-CLI message, the backend choice, and the progress
// renderer on a recorded sequence of status.json files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import type { Status } from "../../components/campaign/jobSpec";
import { resolveCampaign } from "../../components/campaign/resolve";
import { runKeys } from "../../components/campaign/layout";
import { loadPreset } from "../../components/config/presets";
import { backendEnv, parseArgs, pulumiCliProblem, readJobViews } from "../../scripts/campaign";
import { startMoto } from "../../scripts/local/moto";
import { S3Helper } from "../helpers/aws";
import { bar, duration, isTerminal, renderProgress, renderStatusTable, spendSoFar, type JobView } from "../../scripts/cli/progress";

const root = path.join(__dirname, "..", "..");

test("arguments: commands, flags and the errors that name them", () => {
    assert.deepEqual(parseArgs(["run", "--stack", "dev", "--yes", "--destroy"]), { command: "run", stack: "dev", yes: true, destroy: true, intervalSeconds: 15 });
    assert.deepEqual(parseArgs(["watch", "-s", "dev", "--interval", "5"]).intervalSeconds, 5);
    assert.throws(() => parseArgs([]), /usage: npm run campaign/);
    assert.throws(() => parseArgs(["launch", "--stack", "dev"]), /unknown command "launch"; commands: preflight, up, watch, status, run, down/);
    assert.throws(() => parseArgs(["up"]), /--stack is required/);
    assert.throws(() => parseArgs(["up", "--stack"]), /--stack needs a value/);
    assert.throws(() => parseArgs(["up", "--stack", "dev", "--force"]), /unknown option "--force"/);
    assert.throws(() => parseArgs(["up", "--stack", "dev", "--destroy"]), /--destroy goes with "run"/);
    assert.throws(() => parseArgs(["watch", "--stack", "dev", "--interval", "0"]), /--interval must be a number of seconds >= 1, got "0"/);
});

test("without the Pulumi CLI it says so, how to install it, and exits non-zero", () => {
    assert.match(pulumiCliProblem("pulumi-does-not-exist-here") ?? "", /Pulumi CLI is not installed.*\n.*get\.pulumi\.com/);
    assert.equal(pulumiCliProblem(process.execPath), undefined, "a binary that exists is found");
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const run = spawnSync(tsx, ["scripts/campaign.ts", "up", "--stack", "dev", "--yes"], {
        cwd: root,
        encoding: "utf8",
        env: { ...process.env, PATH: path.dirname(process.execPath) },
    });
    assert.equal(run.status, 3, run.stderr);
    assert.match(run.stderr, /The Pulumi CLI is not installed/);
    assert.match(run.stderr, /npm run plan -- --stack <name>/);
});

test("bad stacks fail before anything else, naming the fix", () => {
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const run = spawnSync(tsx, ["scripts/campaign.ts", "status", "--stack", "devv"], { cwd: root, encoding: "utf8" });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /did you mean "dev"\?/);
});

test("backend: a logged-in backend is used as is; otherwise a file backend that needs a passphrase", () => {
    assert.deepEqual(backendEnv({}, true), { env: {} });
    assert.deepEqual(backendEnv({ PULUMI_BACKEND_URL: "s3://x" }, false), { env: {} });
    const noPass = backendEnv({}, false);
    assert.match(noPass.env.PULUMI_BACKEND_URL, /^file:\/\/.*\.pulumi$/);
    assert.match(noPass.problem ?? "", /export PULUMI_CONFIG_PASSPHRASE=/);
    assert.equal(backendEnv({ PULUMI_CONFIG_PASSPHRASE: "x" }, false).problem, undefined);
});

function status(over: Partial<Status> & Pick<Status, "phase">): Status {
    return {
        campaign: "dev",
        run: "main",
        role: "train",
        updatedAt: "2026-11-22T10:10:00Z",
        instanceId: "i-0abc",
        instanceType: "g5.2xlarge",
        progress: null,
        exitCode: null,
        reason: null,
        lastCheckpoint: null,
        timings: { nodeBoot: "2026-11-22T10:00:00Z", inputsReady: null, firstStep: null, jobEnd: null, shutdown: null },
        ...over,
    };
}

test("progress renderer follows a recorded run from boot to success", () => {
    const now = new Date("2026-11-22T10:30:00Z");
    const progress = (step: number) => ({ step, totalSteps: 200, epoch: step / 200, loss: 2 - step / 200, learningRate: 1e-4, tokensPerSec: 1234.4, etaSeconds: (200 - step) * 3, updatedAt: "2026-11-22T10:29:00Z" });
    const sequence: Status[] = [
        status({ phase: "starting" }),
        status({ phase: "training", progress: progress(50) }),
        status({ phase: "training", progress: progress(150), lastCheckpoint: "checkpoint-100" }),
        status({ phase: "succeeded", progress: progress(200), exitCode: 0, timings: { nodeBoot: "2026-11-22T10:00:00Z", inputsReady: null, firstStep: null, jobEnd: null, shutdown: "2026-11-22T10:20:00Z" } }),
    ];
    const frames = sequence.map((s) => renderProgress([{ run: "main", status: s, usdPerHour: 1.212 }], now));
    assert.match(frames[0], /main  starting +\[\.{24}\] +-  loss -/);
    assert.match(frames[1], /training +\[#{6}\.{18}\] +50\/200  loss 1\.7500  1234 tok\/s  ETA 7m30s  \$0\.61/);
    assert.match(frames[2], /150\/200/);
    // Billing stops at shutdown: 20 minutes at $1.212/h.
    assert.match(frames[3], /succeeded +\[#{24}\] +200\/200 .* \$0\.40\n +spent so far: \$0\.40/);
    assert.equal(isTerminal({ run: "main", status: sequence[3], usdPerHour: 1 }), true);
    assert.equal(isTerminal({ run: "main", status: sequence[2], usdPerHour: 1 }), false);
});

test("failures and interruptions show their reason; jobs without status wait", () => {
    const now = new Date("2026-11-22T10:30:00Z");
    const views: JobView[] = [
        { run: "prep", status: status({ phase: "succeeded", role: "prep", run: "prep" }), usdPerHour: 0 },
        { run: "lr-1e-5", status: status({ phase: "interrupted", reason: "spot interruption notice; checkpoint-500 saved", exitCode: 75 }), usdPerHour: 27.44705 },
        { run: "lr-2e-5", status: status({ phase: "failed", reason: "max runtime of 3600 s reached", exitCode: 75 }), usdPerHour: 27.44705 },
        { run: "lr-5e-6", status: null, usdPerHour: 27.44705 },
    ];
    const text = renderProgress(views, now);
    assert.match(text, /interrupted: spot interruption notice; checkpoint-500 saved/);
    assert.match(text, /failed: max runtime of 3600 s reached/);
    assert.match(text, /lr-5e-6  waiting/);
    const table = renderStatusTable(views, now);
    assert.match(table, /^job +phase +node/);
    assert.match(table, /lr-5e-6 +not started/);
    assert.equal(spendSoFar(views[3], now), 0);
});

test("an evaluation under way shows its part and rows in watch and status; a finished run no longer does", () => {
    const now = new Date("2026-11-22T10:30:00Z");
    const training = { step: 200, totalSteps: 200, epoch: 1, loss: 1.2, learningRate: 0, tokensPerSec: 900, etaSeconds: 0, updatedAt: "2026-11-22T10:29:00Z" };
    const evaluating = (part: "loss" | "baseline" | "fine-tuned", done: number, total: number) => ({
        ...training,
        phase: "evaluating" as const,
        evaluation: { part, done, total, updatedAt: "2026-11-22T10:29:30Z" },
    });
    const views: JobView[] = [
        { run: "base", status: status({ phase: "training", progress: evaluating("baseline", 64, 4694) }), usdPerHour: 1.212 },
        { run: "tuned", status: status({ phase: "training", progress: evaluating("fine-tuned", 128, 4694) }), usdPerHour: 1.212 },
        { run: "valid", status: status({ phase: "training", progress: evaluating("loss", 3, 40) }), usdPerHour: 1.212 },
        { run: "done", status: status({ phase: "succeeded", progress: evaluating("fine-tuned", 4694, 4694) }), usdPerHour: 1.212 },
        { run: "plain", status: status({ phase: "training", progress: training }), usdPerHour: 1.212 },
    ];
    const text = renderProgress(views, now);
    assert.match(text, /evaluating the base model 64\/4694 rows/);
    assert.match(text, /evaluating the fine-tuned model 128\/4694 rows/);
    assert.match(text, /loss pass 3\/40 batches/);
    assert.equal((text.match(/evaluating the|loss pass/g) ?? []).length, 3, "the finished and the training runs show no evaluation line");
    const table = renderStatusTable(views, now);
    assert.match(table, /tuned +training .* 200\/200, evaluating the fine-tuned model 128\/4694 rows/);
    assert.match(table, /done +succeeded .* 200\/200 /);
    assert.match(table, /plain +training .* 200\/200 /);
});

test("bars and durations", () => {
    assert.equal(bar(0.5, 10), "[#####.....]");
    assert.equal(bar(2, 4), "[####]");
    assert.equal(bar(Number.NaN, 4), "[....]");
    assert.equal(duration(59), "59s");
    assert.equal(duration(3725), "1h02m");
    assert.equal(duration(null), "-");
});

test("watch and status read every job's status.json from the campaign bucket; a missing one is waiting", async () => {
    const moto = await startMoto();
    try {
        const s3 = S3Helper.forEndpoint(moto.endpoint);
        await s3.createBucket("socratiq-t5-test");
        const campaign = resolveCampaign(loadPreset("socratiq-t5-lora"));
        const put = (run: string, st: Status) => s3.put(`s3://socratiq-t5-test/${runKeys("socratiq-t5", run).status}`, JSON.stringify(st));
        await put("prep", status({ phase: "succeeded", role: "prep", run: "prep", campaign: "socratiq-t5" }));
        await put("flan-t5-small", status({ phase: "training", run: "flan-t5-small", campaign: "socratiq-t5" }));
        await s3.put(`s3://socratiq-t5-test/${runKeys("socratiq-t5", "t5-base").status}`, "{ not json");
        const views = await readJobViews(s3.client, "socratiq-t5-test", campaign);
        assert.deepEqual(views.map((v) => [v.run, v.status?.phase ?? null, v.note ?? null]), [
            ["prep", "succeeded", null],
            ["flan-t5-small", "training", null],
            ["flan-t5-base", null, null],
            ["t5-base", null, "status.json is not valid JSON"],
        ]);
        assert.match(renderProgress(views, new Date()), /t5-base +unreadable .*status\.json is not valid JSON/);
        // Prices come from the catalog: a CPU prep node and g5.2xlarge runs.
        assert.deepEqual(views.map((v) => v.usdPerHour), [0.34, 1.212, 1.212, 1.212]);
        assert.equal(views.filter(isTerminal).length, 1);
    } finally {
        await moto.stop();
    }
});
