// training.selectBy: the best checkpoint (and early stopping) by a task metric on validation rows. The config takes
// the metric and the rows, the checks refuse what cannot work with the fix, prep is told to set validation rows
// apart, and the selection's settings are part of the training hash.
//
//   node --import tsx --test test/config/selectBy.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveCampaign } from "../../components/campaign/resolve";
import { ConfigError } from "../../components/config/problems";

const base = {
    name: "select",
    region: "us-east-1",
    data: {
        source: "./data/train.jsonl",
        format: { kind: "alpaca" },
        split: { kind: "random", ratios: { train: 0.8, validation: 0.1, test: 0.1 } },
        estimate: { trainExamples: 1000, meanTokens: 200 },
    },
    model: { id: "Qwen/Qwen2.5-0.5B-Instruct", family: "causal-lm" },
    training: { maxSteps: 100, saveSteps: 50, evalSteps: 25, maxSeqLength: 512, perDeviceBatch: 4, selectBy: { metric: "mae" } },
    compute: { instanceType: "g5.2xlarge", market: "on-demand" },
    evaluation: { answer: { shape: "number" }, metrics: ["exact_match", "mae"], rows: 64 },
};

function problemsOf(config: object): string[] {
    try {
        resolveCampaign(config);
        return [];
    } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        return e.problems.filter((p) => p.severity === "error").map((p) => `${p.path}: ${p.message}`);
    }
}

test("selectBy defaults to 64 rows, reaches the train spec, and makes prep set validation rows apart", () => {
    const campaign = resolveCampaign(base);
    assert.deepEqual(campaign.trainSpecs[0]!.training.selectBy, { metric: "mae", rows: 64 });
    assert.equal(campaign.prepSpec.evaluation?.selectionRows, 64);
    const without = resolveCampaign({ ...base, training: { ...base.training, selectBy: undefined } });
    assert.equal(without.prepSpec.evaluation?.selectionRows, undefined);
});

test("prep sets apart the most any run samples", () => {
    const fit = { maxSeqLength: 512, perDeviceBatch: 4 };
    const runs = [{ name: "by-loss" }, { name: "wide", training: { ...fit, selectBy: { metric: "exact_match", rows: 200 } } }, { name: "narrow", training: { ...fit, selectBy: { metric: "mae", rows: 32 } } }];
    const campaign = resolveCampaign({ ...base, training: { ...base.training, selectBy: undefined }, runs });
    assert.equal(campaign.prepSpec.evaluation?.selectionRows, 200);
    assert.equal(campaign.trainSpecs[0]!.training.selectBy, undefined);
    assert.deepEqual(campaign.trainSpecs[2]!.training.selectBy, { metric: "mae", rows: 32 });
});

test("the checks name the field and the fix", () => {
    const cases: Array<[object, RegExp]> = [
        [{ ...base, evaluation: undefined }, /^training\.selectBy: scores generated answers as the evaluation does, but the experiment has no evaluation: add evaluation/],
        [{ ...base, training: { ...base.training, selectBy: { metric: "rmse" } } }, /^training\.selectBy\.metric: is rmse, which evaluation\.metrics \(exact_match, mae\) does not compute: add rmse to evaluation\.metrics/],
        [{ ...base, data: { ...base.data, split: { kind: "random", ratios: { train: 0.9, validation: 0, test: 0.1 } } } }, /^training\.selectBy: samples validation rows at every evaluation, but data\.split\.ratios\.validation gives the validation split nothing/],
        [{ ...base, training: { ...base.training, saveSteps: 30 } }, /^training\.saveSteps: is 30 but selectBy keeps the checkpoint with the best mae, so every saved step must be an evaluated one: make saveSteps a multiple of evalSteps \(25\), e\.g\. 25/],
        [{ ...base, training: { ...base.training, selectBy: { metric: "mae", rows: 0 } } }, /training\.selectBy\.rows/],
        [{ ...base, training: { ...base.training, selectBy: { metric: "loss" } } }, /training\.selectBy\.metric/],
    ];
    for (const [config, expected] of cases) {
        const problems = problemsOf(config);
        assert.ok(problems.some((p) => expected.test(p)), `${expected}\n got: ${problems.join("\n")}`);
    }
    assert.deepEqual(problemsOf(base), []);
});

test("the selection's generation settings change the training hash; other evaluation settings do not", () => {
    const hash = (config: object) => resolveCampaign(config).trainSpecs[0]!.specHash;
    const before = hash(base);
    assert.notEqual(hash({ ...base, evaluation: { ...base.evaluation, generation: { maxNewTokens: 16 } } }), before, "the answers selectBy scores change");
    assert.notEqual(hash({ ...base, training: { ...base.training, selectBy: { metric: "mae", rows: 128 } } }), before);
    assert.equal(hash({ ...base, evaluation: { ...base.evaluation, rows: 500 } }), before, "the test rows the final evaluation reads do not shape training");
    assert.equal(hash({ ...base, evaluation: { ...base.evaluation, metrics: ["exact_match", "mae", "rmse"] } }), before);
    const plain = { ...base, training: { ...base.training, selectBy: undefined } };
    assert.equal(hash({ ...plain, evaluation: { ...base.evaluation, generation: { maxNewTokens: 16 } } }), hash(plain), "without selectBy the generation settings are evaluation only");
});
