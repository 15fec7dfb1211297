// The evaluation stage from the TypeScript side: the config's errors, what the specs carry (and what changes the
// prep hash), who computes each baseline, `campaign status`'s task metrics read from the S3 emulator, and the
// rehearsals of socratiq-t5-lora and agnews-qwen7b-full ending with eval.json (ROUGE-L, accuracy) beside the baseline's.
//
//   node --import tsx --test test/rehearsal/evaluation.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { resolveCampaign } from "../../components/campaign/resolve";
import { baselineOwners } from "../../components/campaign/baseline";
import { baselineEvaluationKeys, evaluationKeys } from "../../components/campaign/layout";
import { mergeConfig, loadPreset } from "../../components/config/presets";
import { ConfigError } from "../../components/config/problems";
import { startMoto } from "../../scripts/local/moto";
import { bestRun, readEvaluations, renderEvaluation } from "../../scripts/cli/evaluation";
import { rehearseCampaign } from "../../scripts/rehearse";
import { S3Helper } from "../helpers/aws";

const root = path.join(__dirname, "..", "..");

function problemsOf(raw: unknown): string[] {
    try {
        resolveCampaign(raw);
    } catch (e) {
        if (e instanceof ConfigError) return e.problems.filter((p) => p.severity === "error").map((p) => `${p.path}: ${p.message}`);
        throw e;
    }
    return [];
}

const devWith = (evaluation: unknown, more: Record<string, unknown> = {}) => mergeConfig(loadPreset("dev"), { evaluation, ...more });

test("evaluation errors name the field and the fix", () => {
    assert.deepEqual(problemsOf(devWith({ answer: { shape: "label" }, metrics: ["accuracy"] })), [
        "evaluation.answer.shape: is label, but data.format (seq2seq) has no label list: use data.format.kind classification with labels, or answer.shape text",
    ]);
    const mismatch = problemsOf(devWith({ answer: { shape: "text" }, metrics: ["rouge", "pearson"] }));
    assert.equal(mismatch.length, 1);
    assert.match(mismatch[0], /^evaluation\.metrics\[1\]: pearson scores number or json answers, but answer\.shape is text: remove pearson or set answer\.shape to number/);
    const noTest = problemsOf(devWith({ answer: { shape: "text" }, metrics: ["rouge"] }, { data: { split: { kind: "random", seed: 1, ratios: { train: 0.9, validation: 0.1, test: 0 } } } }));
    assert.deepEqual(noTest, ["evaluation.split: is test, but data.split.ratios.test gives it nothing: give the test split a share (e.g. 0.05 of the rows) or evaluate another split"]);
    const agnews = mergeConfig(loadPreset("agnews-qwen7b-full"), { evaluation: { answer: { shape: "json", key: "label" } } });
    assert.deepEqual(problemsOf(agnews), ['evaluation.answer.key: is "label" but the answers are rendered as {"category": ...} (data.format.answerKey): set key: category']);
    assert.match(problemsOf(devWith({ answer: { shape: "text" }, metrics: [] }))[0], /^evaluation\.metrics/);
    assert.match(problemsOf(devWith({ answer: { shape: "json" }, metrics: ["exact_match"] }))[0], /^evaluation\.answer\.key/);
});

test("the prep spec carries the rows to set apart (in its hash); the train specs carry how to score them", () => {
    const base = resolveCampaign(loadPreset("socsci210-qwen14b-qlora"));
    assert.deepEqual(base.prepSpec.evaluation, { split: "test", rows: 5000, seed: 42, groupBy: "study_id" });
    const spec = base.trainSpecs[0];
    assert.deepEqual(spec.evaluation?.answer, { shape: "number" });
    assert.deepEqual(spec.evaluation?.metrics, ["pearson", "mae", "rmse", "parse_rate"]);
    assert.equal(spec.evaluation?.computeBaseline, true);
    const hashWith = (evaluation: unknown) => resolveCampaign(mergeConfig(loadPreset("socsci210-qwen14b-qlora"), { evaluation })).prepSpec.prepHash;
    assert.notEqual(hashWith({ rows: 100 }), base.prepSpec.prepHash, "other rows: another prepared dataset");
    assert.notEqual(hashWith({ groupBy: "country" }), base.prepSpec.prepHash, "another group column: another prepared dataset");
    assert.equal(hashWith({ generation: { maxNewTokens: 4 } }), base.prepSpec.prepHash, "generation settings do not touch the data");
    const agnews = resolveCampaign(loadPreset("agnews-qwen7b-full")).trainSpecs[0];
    assert.deepEqual(agnews.evaluation?.labels, ["World", "Sports", "Business", "Sci/Tech"]);
    assert.equal(resolveCampaign(mergeConfig(loadPreset("dev"), { evaluation: null })).trainSpecs[0].evaluation, undefined);
});

test("every preset is judged by its campaign's metrics", () => {
    const metricsOf = (preset: string) => resolveCampaign(loadPreset(preset)).experiment.evaluation;
    assert.deepEqual(metricsOf("socratiq-t5-lora")?.metrics.slice(0, 2), ["rouge", "bleu"]);
    assert.deepEqual(metricsOf("agnews-qwen7b-full")?.answer, { shape: "json", key: "category" });
    assert.equal(metricsOf("agnews-qwen7b-full")?.metrics[0], "accuracy");
    assert.equal(metricsOf("socsci210-qwen14b-qlora")?.groupBy, "study_id");
    assert.deepEqual(metricsOf("reasoning-qwen7b-lora")?.metrics, ["exact_match", "parse_rate"]);
    for (const preset of ["dev", "socratiq-t5-lora", "agnews-qwen7b-full", "socsci210-qwen14b-qlora", "reasoning-qwen7b-lora"]) {
        assert.equal(metricsOf(preset)?.baseline, true, preset);
    }
});

test("each base model is evaluated once: the first run that trains it computes the baseline", () => {
    const sweep = resolveCampaign(mergeConfig(loadPreset("dev"), { sweep: { grid: { "training.learningRate": [1e-4, 3e-4, 1e-3] } } }));
    assert.equal(sweep.runs.length, 3);
    assert.deepEqual(sweep.trainSpecs.map((s) => s.evaluation?.computeBaseline), [true, false, false]);
    // Three different models (the SocratiQ campaign): three baselines, one per model, each by its own run.
    const socratiq = resolveCampaign(loadPreset("socratiq-t5-lora"));
    assert.deepEqual(socratiq.trainSpecs.map((s) => s.evaluation?.computeBaseline), [true, true, true]);
    assert.deepEqual(baselineOwners(socratiq.runs).map((o) => o.run), ["flan-t5-small", "flan-t5-base", "t5-base"]);
    const off = resolveCampaign(mergeConfig(loadPreset("dev"), { evaluation: { baseline: false } }));
    assert.equal(off.trainSpecs[0].evaluation?.computeBaseline, false);
});

function report(run: string, kind: "fine-tuned" | "base", metrics: Record<string, number | null>, parsed = 90) {
    return JSON.stringify({ run, model: { kind, id: "m" }, split: "test", rows: 100, counts: { rows: 100, scored: 100, parsed, unparsed: 100 - parsed }, metrics });
}

test("campaign status reads each run's eval.json and the baseline's from S3, and names the best run", async () => {
    const moto = await startMoto();
    try {
        const s3 = S3Helper.forEndpoint(moto.endpoint);
        await s3.createBucket("evals");
        const campaign = resolveCampaign(mergeConfig(loadPreset("dev"), { sweep: { grid: { "training.learningRate": [1e-4, 3e-4, 1e-3] } } }));
        const [a, b, c] = campaign.runs.map((r) => r.name);
        const put = (key: string, body: string) => s3.put(`s3://evals/${key}`, body);
        await put(baselineEvaluationKeys("dev", a).metrics, report(a, "base", { rougeL: 0.1, bleu: 1.5 }));
        await put(evaluationKeys("dev", a).metrics, report(a, "fine-tuned", { rougeL: 0.2, bleu: 4.25 }));
        await put(evaluationKeys("dev", b).metrics, report(b, "fine-tuned", { rougeL: 0.273, bleu: 6 }, 100));
        await put(evaluationKeys("dev", c).metrics, "{ not json");
        const result = await readEvaluations(s3.client, "evals", campaign);
        assert.deepEqual(result.runs.map((r) => [r.run, r.read.report?.metrics.rougeL ?? null, r.read.note ?? null]), [
            [a, 0.2, null],
            [b, 0.273, null],
            [c, null, "eval.json is not valid JSON"],
        ]);
        assert.equal(result.baselines.length, 1);
        assert.deepEqual(bestRun(campaign.experiment.evaluation!, result), { run: b, value: 0.273 });
        const text = renderEvaluation(campaign, result);
        assert.match(text, /^Task metrics on the test split \(text answers; unparsed answers count as wrong\):/);
        assert.match(text, /base google\/flan-t5-small +90\/100 parsed +0\.1000 +1\.50/);
        assert.match(text, new RegExp(`run ${b} +100/100 parsed +0\\.2730 +6\\.00 +\\+0\\.1730`));
        assert.match(text, new RegExp(`run ${c} +unreadable: eval\\.json is not valid JSON`));
        assert.match(text, new RegExp(`best run: ${b} \\(rougeL 0\\.2730, the highest of 2 evaluated\\)`));

        // Lower is better for errors: the best run by MAE is the smallest.
        const socsci = resolveCampaign(mergeConfig(loadPreset("socsci210-qwen14b-qlora"), { evaluation: { metrics: ["mae", "pearson"] }, runs: [{ name: "run-x" }, { name: "run-y" }] }));
        await put(evaluationKeys(socsci.experiment.name, "run-x").metrics, report("run-x", "fine-tuned", { mae: 0.9, pearson: 0.4 }));
        await put(evaluationKeys(socsci.experiment.name, "run-y").metrics, report("run-y", "fine-tuned", { mae: 0.7, pearson: 0.3 }));
        assert.deepEqual(bestRun(socsci.experiment.evaluation!, await readEvaluations(s3.client, "evals", socsci)), { run: "run-y", value: 0.7 });
    } finally {
        await moto.stop();
    }
});

/** A preset rehearsed in the short form npm test uses (2 steps, at most 4 examples a step), with 16 evaluation rows,
 *  in a work dir of its own (.rehearsal/evaluation-<preset>/). */
async function rehearse(preset: string, override: Record<string, unknown> = {}): Promise<{ out: string; mirror: string }> {
    const stack = `evaluation-${preset}`;
    const source = `stacks/${preset}.yaml, 16 evaluation rows${Object.keys(override).length ? ` + ${JSON.stringify(override)}` : ""}`;
    const campaign = resolveCampaign(mergeConfig(loadPreset(preset), { evaluation: { rows: 16 }, ...override }), source);
    const lines: string[] = [];
    const log = console.log;
    console.log = (...args: unknown[]) => {
        lines.push(args.map(String).join(" "));
    };
    let code: number;
    try {
        code = await rehearseCampaign(campaign, source, { stack, maxSteps: 2, maxBatch: 4 });
    } finally {
        console.log = log;
    }
    const out = lines.join("\n");
    assert.equal(code, 0, out);
    return { out, mirror: path.join(root, ".rehearsal", stack, "s3", "campaign-rehearsal") };
}

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"));

test("the socratiq-t5-lora rehearsal ends with ROUGE-L for every run and its base model", { timeout: 1_200_000 }, async () => {
    // Two of its three runs (two base models, so two baselines): enough to name a best run, in half the time.
    const runs = [{ name: "flan-t5-small" }, { name: "flan-t5-base", model: { id: "google/flan-t5-base" }, training: { gradientCheckpointing: true } }];
    const { out, mirror } = await rehearse("socratiq-t5-lora", { runs });
    for (const run of runs) {
        const own = readJson(path.join(mirror, evaluationKeys("socratiq-t5", run.name).metrics));
        const base = readJson(path.join(mirror, baselineEvaluationKeys("socratiq-t5", run.name).metrics));
        for (const r of [own, base]) {
            assert.ok(typeof r.metrics.rougeL === "number" && r.metrics.rougeL >= 0 && r.metrics.rougeL <= 1, JSON.stringify(r.metrics));
            assert.ok(typeof r.metrics.bleu === "number");
            assert.equal(r.rows, 16, "the seeded sample of the held-out rows");
            assert.equal(r.counts.rows, 16);
        }
        assert.equal(own.model.kind, "fine-tuned");
        assert.equal(base.model.kind, "base");
        assert.equal(fs.readFileSync(path.join(mirror, evaluationKeys("socratiq-t5", run.name).predictions), "utf8").trim().split("\n").length, own.rows);
    }
    assert.match(out, /Task metrics on the test split/);
    assert.match(out, /best run: (flan-t5-small|flan-t5-base) \(rougeL \d\.\d{4}/);
});

test("the agnews-qwen7b-full rehearsal ends with the accuracy of the JSON label, beside the base model's", { timeout: 900_000 }, async () => {
    const { out, mirror } = await rehearse("agnews-qwen7b-full");
    const own = readJson(path.join(mirror, evaluationKeys("agnews-qwen7b", "main").metrics));
    const base = readJson(path.join(mirror, baselineEvaluationKeys("agnews-qwen7b", "main").metrics));
    for (const r of [own, base]) {
        assert.ok(typeof r.metrics.accuracy === "number" && r.metrics.accuracy >= 0 && r.metrics.accuracy <= 1, JSON.stringify(r.metrics));
        assert.equal(r.metrics.parse_rate, r.counts.parsed / r.counts.scored);
        assert.deepEqual(r.settings.answer, { shape: "json", key: "category" });
        assert.equal(r.settings.generation.paddingSide, "left");
        assert.equal(r.rows, 16);
    }
    // The references are the rendered JSON answers of the held-out rows.
    const predictions = fs.readFileSync(path.join(mirror, evaluationKeys("agnews-qwen7b", "main").predictions), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(predictions.every((p) => /^\{"category":"(World|Sports|Business|Sci\/Tech)"\}$/.test(p.reference)), predictions[0]?.reference);
    assert.match(out, /best run: main \(accuracy \d\.\d{4}/);
});
