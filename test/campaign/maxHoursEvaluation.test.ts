// compute.maxHours bounds the whole node, and the evaluation after training runs on the same node: the cap's warning
// counts the evaluation's hours (the baseline's included), not the training's alone.
//
//   node --import tsx --test test/campaign/maxHoursEvaluation.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveCampaign } from "../../components/campaign/resolve";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import { evaluationEstimate, runEstimates } from "../../components/plan/runEstimates";

const preset = loadPreset("socsci210-qwen14b-qlora");

function hours(): { training: number; evaluation: number } {
    const campaign = resolveCampaign(preset);
    const run = campaign.runs[0]!;
    const training = runEstimates(campaign.experiment, run)!.time.hours;
    const evaluation = evaluationEstimate(campaign.experiment, run, true)!.hours;
    return { training, evaluation };
}

test("a cap that covers the training but not its evaluation warns, naming the evaluation's share", () => {
    const { training, evaluation } = hours();
    assert.ok(evaluation > 0.05, `the preset's evaluation takes ${evaluation} h`);
    const cap = Math.round((training + evaluation / 2) * 100) / 100;
    assert.ok(cap > training && cap < training + evaluation);
    const warned = resolveCampaign(mergeConfig(preset, { compute: { maxHours: cap } })).warnings.find((p) => p.path === "compute.maxHours");
    assert.ok(warned, `no warning at a cap of ${cap} h (training ${training} h, evaluation ${evaluation} h)`);
    assert.match(warned.message, new RegExp(`needs about ${(training + evaluation).toFixed(1)} h on 8x A100`));
    assert.match(warned.message, new RegExp(`of which ${evaluation.toFixed(1)} h the evaluation after training`));
});

test("a cap that covers both is quiet; without an evaluation only the training counts", () => {
    const { training, evaluation } = hours();
    const roomy = Math.ceil((training + evaluation) * 10 + 1) / 10;
    assert.equal(resolveCampaign(mergeConfig(preset, { compute: { maxHours: roomy } })).warnings.filter((p) => p.path === "compute.maxHours").length, 0);
    const justTraining = Math.ceil(training * 100 + 1) / 100;
    const noEvaluation = resolveCampaign(mergeConfig(preset, { evaluation: null, compute: { maxHours: justTraining } }));
    assert.equal(noEvaluation.experiment.evaluation, undefined);
    assert.equal(noEvaluation.warnings.filter((p) => p.path === "compute.maxHours").length, 0);
});
