// The local rehearsal: stand-ins as pure functions, and the whole lifecycle end to end (prep, a spot
// interruption, the resume on a new node, teardown, the report) against the local S3 emulator.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveCampaign } from "../../components/campaign/resolve";
import { trainSpec, prepSpec, status as statusSchema } from "../../components/campaign/jobSpec";
import { listPresets, loadPreset, mergeConfig } from "../../components/config/presets";
import { ConfigError } from "../../components/config/problems";
import { parseRehearseArgs, rehearseCampaign, type RehearsedNode } from "../../scripts/rehearse";
import { applyStandIns, checkSpecs, checkStandIns, sampleRows, StandInError } from "../../scripts/rehearsal/standins";

const root = path.join(__dirname, "..", "..");

function standInsFor(preset: string, override: unknown = {}, maxBatch?: number) {
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "campaign-standins-"));
    const campaign = resolveCampaign(mergeConfig(loadPreset(preset), override));
    const tinyModels = { "causal-lm": "/tiny/causal", seq2seq: "/tiny/seq2seq" };
    return { campaign, workDir, result: applyStandIns(campaign, { root, workDir, tinyModels, maxSteps: 10, maxBatch, sampleRows: 50 }) };
}

test("stand-ins for socsci210-qwen14b-qlora: sample data with scaled study groups, tiny causal LM, QLoRA -> LoRA on CPU", () => {
    const { result, workDir } = standInsFor("socsci210-qwen14b-qlora");
    assert.ok(prepSpec.safeParse(result.prepSpec).success);
    assert.equal(result.prepSpec.data.source, path.join(workDir, "sample-data.jsonl"));
    assert.deepEqual(result.prepSpec.data.split.kind === "group" && result.prepSpec.data.split.counts, { train: 8, validation: 2, test: 2 });
    const rows = fs.readFileSync(result.prepSpec.data.source, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(rows.length, 50);
    assert.equal(new Set(rows.map((r) => r.study_id)).size, 12, "as many groups as the scaled split asks for");
    assert.ok(rows.every((r) => typeof r.instruction === "string" && typeof r.output === "string"));
    const spec = result.trainSpecs[0];
    assert.ok(trainSpec.safeParse(spec).success);
    assert.equal(spec.model.id, "/tiny/causal");
    assert.equal(spec.method.kind, "lora");
    assert.equal(spec.training.precision, "fp32");
    assert.equal(spec.training.zeroStage, 0);
    assert.equal(spec.training.maxSteps, 10);
    assert.equal(spec.training.epochs, undefined);
    assert.equal(spec.gpus, 1);
    assert.equal(spec.training.globalBatch, 128, "1 process x perDeviceBatch 8 x gradientAccumulation 16, as the trainer's preflight checks");
    assert.equal(spec.training.globalBatch, spec.gpus * spec.training.perDeviceBatch * spec.training.gradientAccumulation);
    assert.equal(spec.prepHash, result.prepSpec.prepHash, "the run trains on the stand-in prep");
    assert.ok(result.substitutions.some((s) => /hf:\/\/socratesft\/SocSci210 cannot be reached/.test(s)));
    assert.ok(result.substitutions.some((s) => /qlora -> lora/.test(s)));
    assert.ok(result.substitutions.some((s) => /170\/20\/20 groups of study_id scaled to 8\/2\/2/.test(s)));
    assert.ok(
        result.substitutions.some((s) => s.includes("globalBatch 1024 -> 128 (1 process x perDeviceBatch 8 x gradientAccumulation 16, scaled with the device count 8 -> 1)")),
        result.substitutions.join("\n"),
    );
    assert.ok(result.substitutions.some((s) => s.includes("on 1 CPU process instead of 8 GPU(s) (checked as one g5.2xlarge GPU)")));
});

test("the short form caps the examples per step, and the global batch follows", () => {
    const { result } = standInsFor("socsci210-qwen14b-qlora", {}, 4);
    const t = result.trainSpecs[0].training;
    assert.deepEqual([t.perDeviceBatch, t.gradientAccumulation, t.globalBatch], [4, 1, 4]);
    assert.ok(result.substitutions.some((s) => s.includes("perDeviceBatch 8 x gradientAccumulation 16 -> 4 x 1 (at most 4 examples per step), globalBatch 1024 -> 4")), result.substitutions.join("\n"));
});

test("stand-in samples pass each preset's cleaning rules: reasoning traces of at least minChars, no short answer with the truncation marker, no duplicate", () => {
    const { result } = standInsFor("reasoning-qwen7b-lora");
    const rows = fs.readFileSync(result.prepSpec.data.source, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, string>);
    assert.ok(rows.length >= 50, "at least the rows asked for (more when a small split share needs them)");
    // The template is "{question}": the user text is the question alone; tooShort removes a row whose question and answer are both under 50.
    assert.ok(rows.every((r) => r.question.length >= 50 || r.answer.length >= 50), JSON.stringify(rows[0]));
    assert.ok(rows.every((r) => r.question.length + r.answer.length <= 4096));
    assert.ok(rows.every((r) => !r.answer.includes("...") || r.answer.length >= 100));
    assert.equal(new Set(rows.map((r) => `${r.question}\u0000${r.answer}`)).size, rows.length, "exact dedup would remove repeats");
});

test("a sample split by ratios gets enough rows for every share the preset asks for", () => {
    const { result } = standInsFor("agnews-qwen7b-full", { data: { split: { kind: "random", seed: 1, ratios: { train: 0.99, validation: 0.005, test: 0.005 } } } });
    const rows = fs.readFileSync(result.prepSpec.data.source, "utf8").trim().split("\n");
    assert.equal(rows.length, 201, "0.005 x 201 rounds to one row; 0.005 x 50 would round to none");
    assert.ok(result.substitutions.some((s) => s.includes("a generated sample of 201 rows")));
});

test("a stand-in that cannot keep an invariant says which and why", () => {
    // The sample's answers must reach minChars, and then user text + answer exceed maxChars.
    assert.throws(
        () => standInsFor("reasoning-qwen7b-lora", { data: { cleaning: { minChars: 4000, maxChars: 4010 } } }),
        (e: unknown) => e instanceof StandInError && /the generated sample cannot pass data\.cleaning: row 0 needs \d+ characters to pass data\.cleaning\.minChars 4000, over data\.cleaning\.maxChars 4010 \(tooLong\)/.test(e.message),
    );
});

test("stand-ins go through the real campaign's checks: an unscaled global batch fails at rehearsal start, not in the trainer", () => {
    const { campaign, result } = standInsFor("socsci210-qwen14b-qlora");
    const unscaled = result.runs.map((r) => ({ ...r, training: { ...r.training, globalBatch: 1024 } }));
    assert.throws(
        () => checkStandIns(campaign.experiment, result.experiment.data, unscaled),
        (e: unknown) => e instanceof StandInError && /training\.globalBatch: is 1024 but 1 GPU\(s\) x perDeviceBatch 8 x gradientAccumulation 16 = 128; gradientAccumulation 128 gives it/.test(e.message),
    );
    const spec = { ...result.trainSpecs[0], training: { ...result.trainSpecs[0].training, globalBatch: 1024 } };
    assert.throws(
        () => checkSpecs(result.prepSpec, [spec]),
        (e: unknown) => e instanceof StandInError && /run main: training\.globalBatch 1024 != gpus 1 x perDeviceBatch 8 x gradientAccumulation 16/.test(e.message),
    );
    // And the stand-ins as built pass both.
    assert.doesNotThrow(() => checkSpecs(result.prepSpec, result.trainSpecs));
});

test("the checks: cleaning that removes every row is an error; an estimate too small for a split's share is a warning", () => {
    assert.throws(
        () => resolveCampaign(mergeConfig(loadPreset("reasoning-qwen7b-lora"), { data: { cleaning: { minChars: 5000 } } })),
        (e: unknown) => e instanceof ConfigError && /data\.cleaning\.minChars: is 5000, above data\.cleaning\.maxChars 4096: every row is removed/.test(e.message),
    );
    const small = resolveCampaign(
        mergeConfig(loadPreset("dev"), {
            data: { estimate: { meanTokens: 10 }, cleaning: { minChars: 60 }, split: { kind: "random", seed: 42, ratios: { train: 0.8995, validation: 0.0005, test: 0.1 } } },
        }),
    );
    assert.deepEqual(
        small.warnings.filter((w) => w.path.startsWith("data.")).map((w) => `${w.severity} ${w.path}: ${w.message}`),
        [
            "warning data.cleaning.minChars: is 60 but data.estimate.meanTokens 10 is about 40 characters per example: most rows may be removed as too short, and prep refuses an empty split",
            "warning data.split.ratios.validation: is 0.0005 of about 1556 rows (data.estimate.trainExamples 1400 / train 0.8995): under one validation row, and prep refuses an empty validation split; raise it or set it to 0",
        ],
    );
    for (const preset of listPresets()) assert.deepEqual(resolveCampaign(loadPreset(preset)).warnings.filter((w) => w.path.startsWith("data.")), [], preset);
});

test("stand-ins keep a local data file and say nothing about data", () => {
    const { result } = standInsFor("dev");
    assert.equal(result.prepSpec.data.source, path.join(root, "stacks", "data", "socratiq-sample.jsonl"));
    assert.ok(!result.substitutions.some((s) => s.startsWith("data:")));
});

test("sample rows follow every data format's field names", () => {
    for (const preset of ["socratiq-t5-lora", "agnews-qwen7b-full", "reasoning-qwen7b-lora"]) {
        const { data } = resolveCampaign(loadPreset(preset)).experiment;
        const row = sampleRows(data, 3)[1];
        const f = data.format;
        const fields = f.kind === "alpaca" ? [f.instructionField, f.inputField, f.outputField] : f.kind === "seq2seq" ? [f.inputField, f.targetField] : f.kind === "classification" ? [f.textField, f.labelField] : [f.messagesField];
        for (const field of fields) assert.ok(field in row, `${preset}: ${field}`);
        if (f.kind === "classification") assert.ok(Number.isInteger(row[f.labelField]) && (row[f.labelField] as number) < f.labels.length);
    }
});

test("rehearsal arguments", () => {
    assert.deepEqual(parseRehearseArgs([]), { stack: "dev", interruptAt: undefined, maxSteps: 24 });
    assert.deepEqual(parseRehearseArgs(["--stack", "x", "--interrupt-at", "3", "--max-steps", "6"]), { stack: "x", interruptAt: 3, maxSteps: 6 });
    assert.deepEqual(parseRehearseArgs(["--max-batch", "8"]), { stack: "dev", interruptAt: undefined, maxSteps: 24, maxBatch: 8 });
    assert.throws(() => parseRehearseArgs(["--interrupt-at", "0"]), /--interrupt-at needs a whole number >= 1, got "0"/);
    assert.throws(() => parseRehearseArgs(["--interrupt-at", "30"]), /must be below the rehearsal's 24 steps/);
    assert.throws(() => parseRehearseArgs(["--stak", "dev"]), /unknown argument "--stak"/);
});

test("the dev campaign rehearsed end to end: prep, spot notice, resume on a new node, teardown, report", { timeout: 1_500_000 }, () => {
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const run = spawnSync(tsx, ["scripts/rehearse.ts", "--stack", "dev", "--max-steps", "30", "--interrupt-at", "3"], { cwd: root, encoding: "utf8", timeout: 1_450_000 }); // a hang guard: 4 min idle, over 10 at load 23 on 2 cores
    const out = run.stdout;
    assert.equal(run.status, 0, `${out}\n${run.stderr}`);
    assert.match(out, /\[5\/6\] prep on CPU, before any GPU/);
    assert.match(out, /gate open: _SUCCESS is in S3/);
    assert.match(out, /\*\* spot interruption notice for main at step \d+/);
    assert.match(out, /main was interrupted with checkpoint-\d+ in S3/);
    assert.match(out, /main \(node 1\) +shutdown called 1 time\(s\) \("shutdown -h now"\), final phase interrupted/);
    assert.match(out, /main \(node 2\) +shutdown called 1 time\(s\) \("shutdown -h now"\), final phase succeeded/);
    assert.match(out, /every run succeeded: the reconciling `pulumi up` declares no GPU node/);
    assert.match(out, /== Report: campaign "dev"/);
    assert.match(out, /What the same campaign costs on its configured instances/);
    assert.match(out, /google\/flan-t5-small -> tiny seq2seq model/);

    // What the emulator held at the end, mirrored on disk.
    const mirror = path.join(root, ".rehearsal", "dev", "s3", "campaign-rehearsal");
    const status = statusSchema.parse(JSON.parse(fs.readFileSync(path.join(mirror, "runs/dev/main/status.json"), "utf8")));
    assert.equal(status.phase, "succeeded");
    assert.equal(status.progress?.step, 30);
    assert.equal(status.exitCode, 0);
    const metrics = JSON.parse(fs.readFileSync(path.join(mirror, "runs/dev/main/output/metrics.json"), "utf8"));
    assert.equal(metrics.steps, 30);
    const checkpoints = fs.readdirSync(path.join(mirror, "runs/dev/main/checkpoints"));
    assert.ok(checkpoints.length >= 1 && checkpoints.every((c) => fs.existsSync(path.join(mirror, "runs/dev/main/checkpoints", c, "_COMPLETE.json"))), checkpoints.join(","));
    // The resumed node started from the interruption's checkpoint, not from step 0.
    const jobLog = fs.readFileSync(path.join(mirror, "runs/dev/main/logs/job.log"), "utf8");
    assert.match(jobLog, /resuming from checkpoint-([3-9]|1[0-9]|2[0-9]) \(spec [0-9a-f]{16}\)/);
    assert.match(out, /main: .*eval_loss \d+\.\d{4}/);
});

test("a campaign whose data no row survives: prep fails with its reason, the gate stays closed, no training node starts", { timeout: 600_000 }, async () => {
    // dev's own sample file with a cleaning minimum none of its rows reaches.
    const campaign = resolveCampaign(mergeConfig(loadPreset("dev"), { data: { cleaning: { minChars: 1000 } } }), "stacks/dev.yaml + data.cleaning.minChars 1000");
    const nodes: RehearsedNode[] = [];
    const code = await rehearseCampaign(campaign, "stacks/dev.yaml + data.cleaning.minChars 1000", { stack: "dev-no-rows", maxSteps: 3 }, nodes);
    assert.equal(code, 1);
    assert.deepEqual(nodes.map((n) => n.name), ["prep"], "no training node was started");
    const prep = nodes[0].status;
    assert.equal(prep?.phase, "failed");
    assert.equal(prep?.exitCode, 65);
    assert.match(
        prep?.reason ?? "",
        /prep failed: no example survived cleaning: read 2000 rows, 0 malformed, 2000 removed by cleaning: tooShort 2000 \(user text and answer both under data\.cleaning\.minChars = 1000\)/,
    );
    const mirrorless = path.join(root, ".rehearsal", "dev-no-rows", "s3");
    assert.ok(!fs.existsSync(mirrorless), "the rehearsal stopped at the gate, before its teardown mirror");
});

// Every preset rehearsed in a short form (the dev test above has the spot interruption): a preset that
// stops rehearsing fails here. Generated samples must pass the preset's cleaning whole and fill every split.
for (const preset of listPresets().filter((p) => p !== "dev")) {
    test(`the ${preset} preset rehearses end to end (short form)`, { timeout: 900_000 }, (t) => {
        const started = Date.now();
        const tsx = path.join(root, "node_modules", ".bin", "tsx");
        const run = spawnSync(tsx, ["scripts/rehearse.ts", "--stack", preset, "--max-steps", "2", "--max-batch", "4"], { cwd: root, encoding: "utf8", timeout: 880_000 });
        t.diagnostic(`${preset} rehearsed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
        const out = run.stdout;
        assert.equal(run.status, 0, `${out}\n${run.stderr}`);
        assert.match(out, /gate open: _SUCCESS is in S3/);
        assert.match(out, /every run succeeded: the reconciling `pulumi up` declares no GPU node/);
        const mirror = path.join(root, ".rehearsal", preset, "s3", "campaign-rehearsal");
        const [dataset] = fs.readdirSync(path.join(mirror, "datasets"));
        const manifest = JSON.parse(fs.readFileSync(path.join(mirror, "datasets", dataset, "manifest.json"), "utf8"));
        const counts = manifest.counts;
        if (/cannot be reached from here; a generated sample/.test(out)) {
            assert.equal(counts.kept, counts.read, `the generated sample passes the cleaning rules whole: ${JSON.stringify(counts)}`);
        }
        const split = manifest.spec.data.split;
        const asked = split.kind === "group" && split.counts ? split.counts : split.ratios;
        for (const name of ["train", "validation", "test"]) if (asked[name]) assert.ok(counts.splits[name] > 0, `${name}: ${JSON.stringify(counts.splits)}`);
        const runs = fs.readdirSync(path.join(mirror, "runs", manifest.campaign)).filter((r) => r !== "prep");
        for (const r of runs) assert.equal(statusSchema.parse(JSON.parse(fs.readFileSync(path.join(mirror, "runs", manifest.campaign, r, "status.json"), "utf8"))).phase, "succeeded", r);
    });
}
