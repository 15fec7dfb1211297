// The local rehearsal: stand-ins as pure functions, and the whole lifecycle end to end (prep, a spot
// interruption, the resume on a new node, teardown, the report) against the local S3 emulator.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveCampaign } from "../components/campaign/resolve";
import { trainSpec, prepSpec, status as statusSchema } from "../components/campaign/jobSpec";
import { loadPreset } from "../components/config/presets";
import { parseRehearseArgs } from "../scripts/rehearse";
import { applyStandIns, sampleRows } from "../scripts/rehearsal/standins";

const root = path.join(__dirname, "..");

function standInsFor(preset: string) {
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "campaign-standins-"));
    const campaign = resolveCampaign(loadPreset(preset));
    const tinyModels = { "causal-lm": "/tiny/causal", seq2seq: "/tiny/seq2seq" };
    return { campaign, workDir, result: applyStandIns(campaign, { root, workDir, tinyModels, maxSteps: 10, sampleRows: 50 }) };
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
    assert.equal(spec.prepHash, result.prepSpec.prepHash, "the run trains on the stand-in prep");
    assert.ok(result.substitutions.some((s) => /hf:\/\/socratesft\/SocSci210 cannot be reached/.test(s)));
    assert.ok(result.substitutions.some((s) => /qlora -> lora/.test(s)));
    assert.ok(result.substitutions.some((s) => /170\/20\/20 groups of study_id scaled to 8\/2\/2/.test(s)));
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
    assert.throws(() => parseRehearseArgs(["--interrupt-at", "0"]), /--interrupt-at needs a whole number >= 1, got "0"/);
    assert.throws(() => parseRehearseArgs(["--interrupt-at", "30"]), /must be below the rehearsal's 24 steps/);
    assert.throws(() => parseRehearseArgs(["--stak", "dev"]), /unknown argument "--stak"/);
});

test("the dev campaign rehearsed end to end: prep, spot notice, resume on a new node, teardown, report", { timeout: 600_000 }, () => {
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const run = spawnSync(tsx, ["scripts/rehearse.ts", "--stack", "dev", "--max-steps", "30", "--interrupt-at", "3"], { cwd: root, encoding: "utf8", timeout: 580_000 });
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
