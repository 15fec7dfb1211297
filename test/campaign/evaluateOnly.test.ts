// Evaluation settings have their own hash: a finished run whose evaluation changed is evaluated again from its
// saved model on an evaluate-only node, never retrained; a change of training settings keeps the old rules.
//
//   node --import tsx --test test/campaign/evaluateOnly.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { relaunchDecision, type RunRecord } from "../../components/campaign/relaunch";
import { declarations, StaticCampaignState, readCampaignState } from "../../components/campaign/state";
import { resolveCampaign } from "../../components/campaign/resolve";

const TRAIN = "aaaaaaaaaaaaaaaa";
const OTHER_TRAIN = "bbbbbbbbbbbbbbbb";
const EVAL = "cccccccccccccccc";
const OLD_EVAL = "dddddddddddddddd";

const target = { hash: EVAL, computeBaseline: false };
const withBaseline = { hash: EVAL, computeBaseline: true };

const table: Array<[string, RunRecord, typeof target | undefined, boolean, string]> = [
    // what S3 says -> declared, why
    ["succeeded, same evaluation", { phase: "succeeded", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN, evaluatedHash: EVAL }, target, false, "succeeded"],
    ["succeeded, other evaluation", { phase: "succeeded", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN, evaluatedHash: OLD_EVAL }, target, true, "evaluate"],
    ["succeeded, never evaluated (evaluation added)", { phase: "succeeded", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN }, target, true, "evaluate"],
    ["succeeded, its baseline is of other settings", { phase: "succeeded", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN, evaluatedHash: EVAL, baselineEvaluatedHash: OLD_EVAL }, withBaseline, true, "evaluate"],
    ["succeeded, run and baseline current", { phase: "succeeded", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN, evaluatedHash: EVAL, baselineEvaluatedHash: EVAL }, withBaseline, false, "succeeded"],
    ["succeeded, no evaluation asked", { phase: "succeeded", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN, evaluatedHash: OLD_EVAL }, undefined, false, "succeeded"],
    // other training settings: the saved model is not the one these settings train, so there is nothing to evaluate
    ["succeeded, other training hash", { phase: "succeeded", lastSpecHash: OTHER_TRAIN, failures: 0, outputSpecHash: OTHER_TRAIN, evaluatedHash: OLD_EVAL }, target, false, "succeeded"],
    ["failed, other training hash", { phase: "failed", lastSpecHash: OTHER_TRAIN, failures: 1, lastEvaluationHash: OLD_EVAL }, target, true, "changed"],
    ["failed in the evaluation, evaluation changed", { phase: "failed", lastSpecHash: TRAIN, failures: 1, lastEvaluationHash: OLD_EVAL }, target, true, "changed"],
    ["failed evaluate-only node, evaluation changed", { phase: "failed", lastSpecHash: TRAIN, failures: 1, lastEvaluationHash: OLD_EVAL, outputSpecHash: TRAIN, evaluatedHash: OLD_EVAL }, target, true, "evaluate"],
    ["failed, nothing changed", { phase: "failed", lastSpecHash: TRAIN, failures: 1, lastEvaluationHash: EVAL }, target, false, "failed"],
    // resume of interrupted training is untouched: no saved model of these settings yet
    ["interrupted while training", { phase: "interrupted", lastSpecHash: TRAIN, failures: 0, lastEvaluationHash: OLD_EVAL }, target, true, "resume"],
    ["interrupted evaluate-only node", { phase: "interrupted", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN, evaluatedHash: OLD_EVAL }, target, true, "evaluate"],
    ["evaluate-only node at work", { phase: "training", lastSpecHash: TRAIN, failures: 0, outputSpecHash: TRAIN, evaluatedHash: OLD_EVAL }, target, true, "evaluate"],
    ["training node at work", { phase: "training", lastSpecHash: TRAIN, failures: 0 }, target, true, "running"],
];

for (const [name, record, evaluation, declare, why] of table) {
    test(`${name} -> ${declare ? "node" : "no node"} (${why})`, () => {
        const d = relaunchDecision("r", record, TRAIN, 0, evaluation);
        assert.equal(d.declare, declare, d.reason);
        assert.equal(d.why, why, d.reason);
        if (why === "evaluate") assert.match(d.reason, /evaluate-only mode/);
    });
}

// ---------------------------------------------------------------- the hashes, from the config

const base = {
    name: "hashes",
    region: "us-east-1",
    data: {
        source: "./data/train.jsonl",
        format: { kind: "alpaca" },
        split: { kind: "random", ratios: { train: 0.8, validation: 0.1, test: 0.1 } },
        estimate: { trainExamples: 1000, meanTokens: 200 },
    },
    model: { id: "Qwen/Qwen2.5-0.5B-Instruct", family: "causal-lm" },
    training: { maxSteps: 100, saveSteps: 50, evalSteps: 50, maxSeqLength: 512, perDeviceBatch: 4 },
    compute: { instanceType: "g5.2xlarge", market: "on-demand" },
    evaluation: { answer: { shape: "number" }, metrics: ["exact_match", "mae"], rows: 64 },
};

function specOf(config: object) {
    return resolveCampaign(config).trainSpecs[0]!;
}

test("evaluation settings change the evaluation hash and the prep hash, never the training hash", () => {
    const before = specOf(base);
    for (const evaluation of [
        { ...base.evaluation, rows: 128 },
        { ...base.evaluation, metrics: ["exact_match"] },
        { ...base.evaluation, generation: { maxNewTokens: 32 } },
        { ...base.evaluation, baseline: false },
    ]) {
        const after = specOf({ ...base, evaluation });
        assert.equal(after.specHash, before.specHash, JSON.stringify(evaluation));
        assert.notEqual(after.evaluationHash, before.evaluationHash, JSON.stringify(evaluation));
    }
    // the rows prep sets apart are part of the dataset: a new prep, the same training data
    const rows = resolveCampaign({ ...base, evaluation: { ...base.evaluation, rows: 128 } });
    assert.notEqual(rows.prepSpec.prepHash, resolveCampaign(base).prepSpec.prepHash);
    assert.equal(rows.trainSpecs[0]!.specHash, before.specHash);
});

test("training settings change the training hash; a campaign without evaluation keeps the hash of its whole spec", () => {
    assert.notEqual(specOf({ ...base, training: { ...base.training, maxSteps: 200 } }).specHash, specOf(base).specHash);
    const { evaluation: _evaluation, ...plain } = base;
    const spec = specOf(plain);
    assert.equal(spec.evaluationHash, undefined);
    const { specHash, ...body } = spec;
    assert.equal(specHash, specOf(plain).specHash);
    assert.equal(typeof body.prepHash, "string");
});

test("declarations: an evaluate-only run gets a node, says so, and needs the dataset with the new evaluation rows", async () => {
    const campaign = resolveCampaign(base);
    const spec = campaign.trainSpecs[0]!;
    const state = await readCampaignState(
        new StaticCampaignState({
            phases: { main: "succeeded" },
            specHashes: { main: spec.specHash },
            outputSpecHashes: { main: spec.specHash },
            evaluatedHashes: { main: OLD_EVAL },
            baselineEvaluatedHashes: { main: OLD_EVAL },
        }),
        campaign,
    );
    const d = declarations(campaign, state);
    assert.deepEqual(d.runs.map((r) => r.name), ["main"]);
    assert.deepEqual(d.evaluateOnly, ["main"]);
    assert.equal(d.prep, "run", "the new evaluation rows are a new prepared dataset");
    assert.equal(d.warnings.length, 1);
    assert.match(d.warnings[0]!, /^main: succeeded, but its evaluation was computed with settings dddddddddddddddd and the baseline it computes was evaluated with settings dddddddddddddddd, not [0-9a-f]{16}; a node in evaluate-only mode/);

    const current = await readCampaignState(
        new StaticCampaignState({
            phases: { main: "succeeded" },
            specHashes: { main: spec.specHash },
            outputSpecHashes: { main: spec.specHash },
            evaluatedHashes: { main: spec.evaluationHash! },
            baselineEvaluatedHashes: { main: spec.evaluationHash! },
        }),
        campaign,
    );
    const none = declarations(campaign, current);
    assert.deepEqual(none.runs, []);
    assert.deepEqual(none.evaluateOnly, []);
    assert.deepEqual(none.finished, ["main"]);
});
