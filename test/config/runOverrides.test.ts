// A run's overrides change only the fields they name: every other field keeps the stack's value, and a default
// fills only what neither the stack nor the run sets. (A run overriding `training.seed` once reset the stack's batch
// size, sequence length and learning rate to the schema's defaults.)
//
//   node --import tsx --test test/config/runOverrides.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveCampaign } from "../../components/campaign/resolve";
import { ConfigError } from "../../components/config/problems";

const base = {
    name: "overrides",
    region: "us-east-1",
    data: {
        source: "./data/train.jsonl",
        format: { kind: "alpaca" },
        split: { kind: "random", ratios: { train: 0.9, validation: 0.1 } },
        estimate: { trainExamples: 1000, meanTokens: 200 },
    },
    model: { id: "Qwen/Qwen2.5-0.5B-Instruct", family: "causal-lm", revision: "abc123" },
    method: { kind: "lora", lora: { r: 32, alpha: 64, dropout: 0.05 } },
    training: { maxSteps: 100, saveSteps: 50, evalSteps: 50, maxSeqLength: 512, perDeviceBatch: 4, learningRate: 1e-4, earlyStopping: { patience: 3, threshold: 0.01 } },
    compute: { instanceType: "g5.2xlarge", market: "on-demand" },
};

test("a run that overrides one training field keeps the stack's other training fields", () => {
    const campaign = resolveCampaign({ ...base, runs: [{ name: "plain" }, { name: "seeded", training: { seed: 7 } }] });
    const [plain, seeded] = campaign.runs;
    assert.equal(seeded!.training.seed, 7);
    assert.equal(plain!.training.seed, 42, "the schema's default where nobody sets it");
    for (const field of ["perDeviceBatch", "maxSeqLength", "learningRate", "maxSteps", "saveSteps", "evalSteps"] as const) {
        assert.equal(seeded!.training[field], plain!.training[field], `training.${field}`);
    }
    assert.deepEqual(seeded!.training.earlyStopping, { patience: 3, threshold: 0.01 });
});

test("nested overrides merge: lora.r alone keeps the stack's alpha and dropout; earlyStopping.patience alone keeps its threshold", () => {
    const campaign = resolveCampaign({
        ...base,
        runs: [{ name: "rank8", method: { lora: { r: 8 } }, training: { earlyStopping: { patience: 5 } } }],
    });
    const run = campaign.runs[0]!;
    assert.deepEqual({ r: run.method.lora?.r, alpha: run.method.lora?.alpha, dropout: run.method.lora?.dropout }, { r: 8, alpha: 64, dropout: 0.05 });
    assert.deepEqual(run.training.earlyStopping, { patience: 5, threshold: 0.01 });
});

test("a model override keeps the stack's revision unless it names one; a new earlyStopping gets the default threshold", () => {
    const { earlyStopping: _dropped, ...trainingWithout } = base.training;
    const campaign = resolveCampaign({
        ...base,
        training: trainingWithout,
        runs: [
            { name: "same-rev", model: { id: "Qwen/Qwen2.5-1.5B-Instruct" } },
            { name: "new-rev", model: { id: "Qwen/Qwen2.5-1.5B-Instruct", revision: "def456" }, training: { earlyStopping: { patience: 2 } } },
        ],
    });
    assert.equal(campaign.runs[0]!.model.revision, "abc123");
    assert.equal(campaign.runs[1]!.model.revision, "def456");
    assert.equal(campaign.runs[0]!.training.earlyStopping, undefined);
    assert.deepEqual(campaign.runs[1]!.training.earlyStopping, { patience: 2, threshold: 0 });
});

test("an unknown key in a run's override is still refused with its path", () => {
    assert.throws(
        () => resolveCampaign({ ...base, runs: [{ name: "typo", training: { sed: 7 } }] }),
        (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.severity === "error" && p.path.startsWith("runs[0].training") && /sed/.test(`${p.path} ${p.message}`)),
    );
});
