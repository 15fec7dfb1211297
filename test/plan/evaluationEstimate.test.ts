// The evaluation's generation time in the plan: rows x (prompt prefill + maxNewTokens decode), decode bound by the
// GPU's memory bandwidth; the run that computes a base model's baseline evaluates twice; the plan counts it in the
// run's hours and cost and prints it.
//
//   node --import tsx --test test/plan/evaluationEstimate.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveCampaign } from "../../components/campaign/resolve";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import { getInstance } from "../../components/plan/catalog";
import { DECODE_BANDWIDTH_EFFICIENCY, estimateGeneration, type GenerationInput } from "../../components/plan/estimate";
import { findModel } from "../../components/plan/models";
import { buildPlan, renderPlan } from "../../components/plan/plan";
import { evaluationEstimate, runEstimates } from "../../components/plan/runEstimates";

const qwen7b = findModel("Qwen/Qwen2.5-7B-Instruct")!.architecture;
const a100 = getInstance("p4de.24xlarge");
const base: GenerationInput = {
    architecture: qwen7b,
    rows: 1000,
    promptTokens: 200,
    maxNewTokens: 64,
    batchSize: 16,
    weightBytesPerParam: 2,
    memoryBandwidthGBs: a100.memoryBandwidthGBs,
    peakTflops: a100.bf16DenseTflops,
};

test("more rows, longer answers or longer prompts take longer; a faster memory decodes faster", () => {
    const t = estimateGeneration(base);
    assert.ok(estimateGeneration({ ...base, rows: 2000 }).hours > t.hours);
    assert.ok(estimateGeneration({ ...base, maxNewTokens: 128 }).decodeSeconds > t.decodeSeconds);
    assert.ok(estimateGeneration({ ...base, promptTokens: 400 }).prefillSeconds > t.prefillSeconds);
    const h200 = getInstance("p5en.48xlarge");
    assert.ok(estimateGeneration({ ...base, memoryBandwidthGBs: h200.memoryBandwidthGBs }).decodeSeconds < t.decodeSeconds);
});

test("a decode step of a small batch reads every weight once at the stated share of the bandwidth", () => {
    const t = estimateGeneration({ ...base, rows: 16, batchSize: 16, maxNewTokens: 1, promptTokens: 1 });
    const weightBytes = 7.62e9 * 2; // Qwen2.5-7B in bf16
    const expected = weightBytes / (a100.memoryBandwidthGBs * 1e9 * DECODE_BANDWIDTH_EFFICIENCY);
    assert.ok(Math.abs(t.decodeSeconds - expected) / expected < 0.02, `${t.decodeSeconds} s vs ${expected} s`);
    // batching: the same rows in one batch instead of sixteen decode sixteen times fewer steps
    const oneByOne = estimateGeneration({ ...base, rows: 16, batchSize: 1, maxNewTokens: 1, promptTokens: 1 });
    assert.ok(Math.abs(oneByOne.decodeSeconds / t.decodeSeconds - 16) < 1e-9);
    assert.match(t.assumptions.join(" "), /2,039 GB\/s/);
});

/** The SocratiQ campaign with a fourth run on flan-t5-small: it compares against the baseline its first run computes. */
function campaignWith(override: Record<string, unknown>) {
    const preset = loadPreset("socratiq-t5-lora") as { runs: unknown[] };
    return resolveCampaign(mergeConfig(preset, { runs: [...preset.runs, { name: "small-lr", training: { learningRate: 1e-4 } }], ...override }));
}

test("the run that computes its base model's baseline evaluates twice; the others once", () => {
    const campaign = campaignWith({});
    const owners = campaign.trainSpecs.map((s) => s.evaluation!.computeBaseline);
    assert.ok(owners.includes(true) && owners.includes(false), "the preset has baseline owners and runs that compare against them");
    campaign.runs.forEach((run, i) => {
        const e = evaluationEstimate(campaign.experiment, run, owners[i]!)!;
        const once = evaluationEstimate(campaign.experiment, run, false)!;
        assert.equal(e.evaluations, owners[i] ? 2 : 1);
        assert.ok(Math.abs(e.hours - once.hours * e.evaluations) < 1e-12);
    });
});

test("more evaluation rows -> more hours in the plan; the plan counts the evaluation in the run and prints it", () => {
    const small = campaignWith({ evaluation: { rows: 100 } });
    const large = campaignWith({ evaluation: { rows: 1000 } });
    const [p1, p2] = [buildPlan(small), buildPlan(large)];
    p1.runs.forEach((r, i) => {
        assert.ok(r.evaluation && p2.runs[i]!.evaluation, r.run);
        assert.ok(p2.runs[i]!.evaluation!.hours > r.evaluation.hours, r.run);
        assert.ok(p2.runs[i]!.estimatedHours! > r.estimatedHours!, r.run);
        // the node's hours are the training estimate plus the evaluation
        const training = runEstimates(small.experiment, small.runs[i]!)!.time.hours;
        assert.ok(Math.abs(r.estimatedHours! - (training + r.evaluation.hours)) < 1e-12, r.run);
        assert.equal(r.evaluation.rows, 100);
    });
    const text = renderPlan(p1, "stacks/socratiq-t5-lora.yaml");
    assert.match(text, /: evaluation after training, on the same node: the trained model and its base model \(the baseline\), 100 rows x up to \d+ new tokens each: about /);
    assert.match(text, /: evaluation after training, on the same node: the trained model, 100 rows x up to \d+ new tokens: about /);
    assert.match(text, /evaluation: rows x \(prompt prefill .* memory bandwidth, 600 GB\/s/);
});

test("a campaign without an evaluation plans none", () => {
    const campaign = campaignWith({ evaluation: null });
    const plan = buildPlan(campaign);
    for (const r of plan.runs) assert.equal(r.evaluation, null);
    assert.doesNotMatch(renderPlan(plan, "x"), /evaluation after training/);
});

test("training.selectBy adds its generation at every evalSteps to the run's evaluation, more with more rows", () => {
    const plain = campaignWith({});
    const select = (rows: number) => campaignWith({ training: { selectBy: { metric: "rouge", rows } } });
    const [p0, p1, p2] = [buildPlan(plain), buildPlan(select(64)), buildPlan(select(256))];
    p0.runs.forEach((r, i) => {
        const [a, b] = [p1.runs[i]!.evaluation!, p2.runs[i]!.evaluation!];
        assert.equal(r.evaluation!.selection, null);
        assert.equal(a.selection!.rows, 64);
        assert.equal(a.selection!.samplings, Math.floor(r.steps! / select(64).runs[i]!.training.evalSteps));
        assert.ok(a.hours > r.evaluation!.hours && b.hours > a.hours, r.run);
    });
    assert.match(renderPlan(p1, "x"), /and during training 64 validation rows at each of \d+ evaluations \(training\.selectBy\)/);
});
