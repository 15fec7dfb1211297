// The experiment config: presets validate, the merge rule, and a table of bad configs each rejected
// with the path and message a person needs.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveCampaign, MAX_RUNS } from "../../components/campaign/resolve";
import { ConfigError } from "../../components/config/problems";
import { composeExperiment, listPresets, loadPreset, mergeConfig, readStackFile, resolveStack } from "../../components/config/presets";

const dev = loadPreset("dev") as Record<string, unknown>;

/** The dev preset with an override merged by the documented rule. */
function devWith(override: unknown): unknown {
    return mergeConfig(dev, override);
}

function problemsOf(raw: unknown): ConfigError {
    try {
        resolveCampaign(raw, "test config");
    } catch (e) {
        if (e instanceof ConfigError) return e;
        throw e;
    }
    assert.fail("expected a ConfigError");
}

test("every preset validates and renders specs", () => {
    const presets = listPresets();
    assert.ok(presets.length >= 5, `presets: ${presets.join(", ")}`);
    for (const name of presets) {
        const campaign = resolveCampaign(loadPreset(name), `stacks/${name}.yaml`);
        assert.ok(campaign.runs.length >= 1, name);
        assert.equal(campaign.trainSpecs.length, campaign.runs.length, name);
        for (const spec of campaign.trainSpecs) {
            assert.equal(spec.prepHash, campaign.prepSpec.prepHash, `${name}: every run trains on the one prepared dataset`);
            assert.match(spec.specHash, /^[0-9a-f]{16}$/);
        }
        const errors = campaign.warnings.filter((w) => w.severity === "error");
        assert.deepEqual(errors, [], name);
    }
});

test("socratiq-t5-lora: the three-model comparison is one campaign with three runs over one prep", () => {
    const campaign = resolveCampaign(loadPreset("socratiq-t5-lora"));
    assert.deepEqual(campaign.runs.map((r) => r.name), ["flan-t5-small", "flan-t5-base", "t5-base"]);
    assert.deepEqual(campaign.runs.map((r) => r.model.id), ["google/flan-t5-small", "google/flan-t5-base", "t5-base"]);
    // The override of one list replaces it; the other settings come from the base.
    assert.deepEqual(campaign.runs[2].method.lora.targetModules, ["q", "k", "v", "o", "wi", "wo"]);
    assert.equal(campaign.runs[2].method.lora.r, 16);
    assert.equal(campaign.runs[0].training.gradientCheckpointing, false);
    assert.equal(campaign.runs[1].training.gradientCheckpointing, true);
    assert.equal(new Set(campaign.trainSpecs.map((s) => s.specHash)).size, 3);
    assert.equal(campaign.prepSpec.stageModels.length, 3);
});

test("a sweep grid expands to every combination with stable names", () => {
    const campaign = resolveCampaign(devWith({ sweep: { grid: { "training.learningRate": [5e-6, 1e-5], "method.lora.r": [16, 32] } } }));
    assert.deepEqual(
        campaign.runs.map((r) => r.name),
        ["lr-0-000005-r-16", "lr-0-000005-r-32", "lr-0-00001-r-16", "lr-0-00001-r-32"],
    );
    assert.deepEqual(campaign.runs.map((r) => [r.training.learningRate, r.method.lora.r]), [[5e-6, 16], [5e-6, 32], [1e-5, 16], [1e-5, 32]]);
});

test("the merge rule: objects merge, lists and values replace, null resets to the default", () => {
    const base = { a: { b: 1, c: [1, 2], d: "x" }, e: true };
    assert.deepEqual(mergeConfig(base, { a: { b: 2, c: [3] } }), { a: { b: 2, c: [3], d: "x" }, e: true });
    assert.deepEqual(mergeConfig(base, { a: { d: null } }), { a: { b: 1, c: [1, 2] }, e: true });
    assert.deepEqual(mergeConfig(base, { f: { g: 1 } }), { ...base, f: { g: 1 } });
    // null resets a field so the schema's default applies again.
    const campaign = resolveCampaign(devWith({ training: { perDeviceBatch: null } }));
    assert.equal(campaign.runs[0].training.perDeviceBatch, 8);
});

test("a stack file names a preset and overrides it", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "campaign-stack-"));
    fs.mkdirSync(path.join(dir, "stacks"));
    fs.copyFileSync(path.join(__dirname, "..", "..", "stacks", "dev.yaml"), path.join(dir, "stacks", "dev.yaml"));
    fs.writeFileSync(path.join(dir, "Pulumi.exp1.yaml"), "config:\n  campaign:preset: dev\n  campaign:experiment:\n    name: exp1\n    training: { learningRate: 0.001 }\n");
    const { settings, source } = resolveStack("exp1", dir);
    assert.equal(source, "Pulumi.exp1.yaml");
    const campaign = resolveCampaign(composeExperiment(settings, path.join(dir, "stacks")));
    assert.equal(campaign.experiment.name, "exp1");
    assert.equal(campaign.runs[0].training.learningRate, 0.001);
    assert.equal(campaign.runs[0].training.perDeviceBatch, 16, "the rest comes from the preset");
    assert.throws(() => resolveStack("exp2", dir), /no Pulumi\.exp2\.yaml.*did you mean "exp1"/);
    assert.throws(() => composeExperiment({ preset: "dve" }, path.join(dir, "stacks")), /no preset named "dve".*did you mean "dev"/);
    fs.writeFileSync(path.join(dir, "Pulumi.bad.yaml"), "config:\n  campaign:preset: [dev]\n");
    assert.throws(() => readStackFile(path.join(dir, "Pulumi.bad.yaml")), /campaign:preset must be a preset name/);
});

test("the real Pulumi.dev.yaml uses the dev preset", () => {
    const { settings } = resolveStack("dev");
    assert.equal(settings.preset, "dev");
    const campaign = resolveCampaign(composeExperiment(settings));
    assert.equal(campaign.experiment.compute.maxHours, 1);
    assert.equal(campaign.experiment.compute.market, "spot");
});

test("prep hash: same data and prep settings give the same hash; any change gives another", () => {
    const a = resolveCampaign(dev).prepSpec.prepHash;
    assert.equal(resolveCampaign(devWith({ training: { learningRate: 0.01 } })).prepSpec.prepHash, a, "training settings do not change the data");
    assert.equal(resolveCampaign(devWith({ name: "other-campaign" })).prepSpec.prepHash, a, "another campaign over the same data reuses it");
    assert.notEqual(resolveCampaign(devWith({ data: { cleaning: { minChars: 10 } } })).prepSpec.prepHash, a);
    assert.notEqual(resolveCampaign(devWith({ data: { split: { seed: 1 } } })).prepSpec.prepHash, a);
});

test("spec hash changes with any training setting", () => {
    const a = resolveCampaign(dev).trainSpecs[0].specHash;
    assert.equal(resolveCampaign(dev).trainSpecs[0].specHash, a);
    assert.notEqual(resolveCampaign(devWith({ training: { learningRate: 0.01 } })).trainSpecs[0].specHash, a);
});

// [what is wrong, override on the dev preset (or a whole raw config), expected path, expected message]
const badConfigs: Array<[string, unknown, string, RegExp]> = [
    ["name with capitals", { name: "My Campaign" }, "name", /lowercase letters/],
    ["name too long", { name: "a".repeat(41) }, "name", /2-40 characters/],
    ["unknown top-level key", { compte: { maxHours: 2 } }, "compte", /unknown setting; did you mean "compute"\?/],
    ["misspelled training key", { training: { learningrate: 0.1 } }, "training.learningrate", /did you mean "learningRate"\?/],
    ["learning rate as text", { training: { learningRate: "fast" } }, "training.learningRate", /got "fast" \(string\); expected a number/],
    ["learning rate of 2", { training: { learningRate: 2 } }, "training.learningRate", /less than 1/],
    ["scheduler misspelled", { training: { scheduler: "cosin" } }, "training.scheduler", /did you mean "cosine"\?/],
    ["precision unknown", { training: { precision: "bf8" } }, "training.precision", /allowed: "bf16", "fp16", "fp32"/],
    ["optimizer misspelled", { training: { optimizer: "adamw_torch_fuse" } }, "training.optimizer", /did you mean "adamw_torch_fused"\?/],
    ["zero stage 4", { training: { zeroStage: 4 } }, "training.zeroStage", /./],
    ["negative batch", { training: { perDeviceBatch: -1 } }, "training.perDeviceBatch", /must be greater than 0/],
    ["batch as float", { training: { perDeviceBatch: 1.5 } }, "training.perDeviceBatch", /integer|int/],
    ["epochs and maxSteps", { training: { maxSteps: 100 } }, "training", /exactly one of epochs or maxSteps; got both/],
    ["neither epochs nor maxSteps", { training: { epochs: null } }, "training", /got neither/],
    ["warmup ratio and steps", { training: { warmupSteps: 10 } }, "training.warmupSteps", /not both/],
    ["model family misspelled", { model: { family: "causal" } }, "model.family", /did you mean "causal-lm"\?/],
    ["model family contradicts the known model", { model: { family: "causal-lm" } }, "model.family", /google\/flan-t5-small is a seq2seq model/],
    ["method unknown", { method: { kind: "qlora2" } }, "method.kind", /did you mean "qlora"\?/],
    ["lora dropout of 1", { method: { lora: { dropout: 1 } } }, "method.lora.dropout", /less than 1/],
    ["lora modules the model lacks", { method: { lora: { targetModules: ["q_proj"] } } }, "method.lora.targetModules", /q_proj/],
    ["empty target modules", { method: { lora: { targetModules: [] } } }, "method.lora.targetModules", /at least 1 item/],
    ["instance type misspelled", { compute: { instanceType: "g5.2xlarg" } }, "compute.instanceType", /did you mean "?g5\.2xlarge"?\?/],
    ["a CPU instance for training", { compute: { instanceType: "c6i.2xlarge" } }, "compute.instanceType", /has no GPU/],
    ["market unknown", { compute: { market: "spots" } }, "compute.market", /did you mean "spot"\?/],
    ["max hours of zero", { compute: { maxHours: 0 } }, "compute.maxHours", /greater than 0/],
    ["root volume too small", { compute: { rootVolumeGb: 20 } }, "compute.rootVolumeGb", /at least 100/],
    ["bad availability zone", { compute: { availabilityZone: "east" } }, "compute.availabilityZone", /us-east-1a/],
    ["bad subnet", { compute: { subnetId: "sub-1" } }, "compute.subnetId", /subnet-0abc123/],
    ["bad region", { region: "useast1" }, "region", /us-east-1/],
    ["GPU type for prep", { prep: { runOn: "ec2", instanceType: "g5.2xlarge" } }, "prep.instanceType", /CPU type/],
    ["prep instance misspelled", { prep: { runOn: "ec2", instanceType: "c6i.2xlarg" } }, "prep.instanceType", /did you mean "?c6i\.2xlarge"?\?/],
    ["prep runOn unknown", { prep: { runOn: "laptop" } }, "prep.runOn", /allowed: "ec2", "local"/],
    ["data source nonsense", { data: { source: "ftp:data" } }, "data.source", /s3:\/\/bucket\/key or hf:\/\/owner\/dataset/],
    ["data format unknown", { data: { format: { kind: "alpacca" } } }, "data.format.kind", /did you mean "alpaca"\?/],
    ["split ratios not adding to 1", { data: { split: { ratios: { train: 0.8, validation: 0.3, test: 0 } } } }, "data.split.ratios", /add up to 1/],
    ["group split with neither counts nor ratios", { data: { split: { kind: "group", column: "study_id", ratios: null } } }, "data.split", /exactly one of counts/],
    ["malformed fraction over 1", { data: { maxMalformedFraction: 1.5 } }, "data.maxMalformedFraction", /at most 1/],
    ["packing without tokenizing", { data: { tokenize: { enabled: false, packing: true } } }, "data.tokenize.packing", /enabled: true/],
    ["tokenized length differs from the training length", { training: { maxSeqLength: 512 } }, "training.maxSeqLength", /data\.tokenize\.maxLength is 256/],
    ["global batch that does not add up", { training: { globalBatch: 64, perDeviceBatch: 16, gradientAccumulation: 2 } }, "training.globalBatch", /1 GPU\(s\) x perDeviceBatch 16 x gradientAccumulation 2 = 32; gradientAccumulation 4 gives it/],
    ["early stopping without validation", { training: { earlyStopping: { patience: 3 } }, data: { split: { ratios: { train: 0.9, validation: 0, test: 0.1 } } } }, "training.earlyStopping", /needs a validation split/],
    ["early stopping with saves off the eval grid", { training: { earlyStopping: { patience: 3 }, evalSteps: 20, saveSteps: 30 } }, "training.saveSteps", /must be a multiple of evalSteps \(20\).*saveSteps 40/],
    ["qlora in fp32", { method: { kind: "qlora" }, training: { precision: "fp32" } }, "training.precision", /use bf16/],
    ["spot without a checkpoint before the end", { training: { saveSteps: 100000 } }, "training.saveSteps", /never checkpoints; on spot/],
    ["a run named prep", { runs: [{ name: "prep" }] }, "runs[0].name", /reserved for the campaign's own folder runs\/<campaign>\/prep\/ \(the prep job\)/],
    ["a run named runner", { runs: [{ name: "runner" }] }, "runs[0].name", /reserved .*\(the node runner\)/],
    ["two runs with one name", { runs: [{ name: "run-a" }, { name: "run-a" }] }, "runs[1].name", /used twice/],
    ["a run override of an unknown key", { runs: [{ name: "run-a", training: { lr: 1 } }] }, "runs[0].training.lr", /unknown setting/],
    ["a run on a misspelled instance", { runs: [{ name: "run-a", compute: { instanceType: "p4de.24xlarg" } }] }, "runs[0].compute.instanceType", /did you mean "?p4de\.24xlarge"?\?/],
    ["a grid too large", { sweep: { grid: { "training.learningRate": [1, 2, 3, 4, 5, 6].map((i) => i * 1e-5), "training.seed": [1, 2, 3, 4, 5, 6] } } }, "sweep.grid", new RegExp(`36 runs.*at most ${MAX_RUNS}`)],
    ["a grid over compute", { sweep: { grid: { "compute.maxHours": [1, 2] } } }, "sweep.grid.compute.maxHours", /dotted path under model, method or training/],
    ["tokenizing for several models", { runs: [{ name: "run-a" }, { name: "run-b", model: { id: "google/flan-t5-base" } }] }, "data.tokenize.enabled", /one tokenizer/],
    ["budget without e-mails", { budget: { monthlyUsd: 100, emails: [] } }, "budget.emails", /at least 1 item/],
    ["budget e-mail invalid", { budget: { monthlyUsd: 100, emails: ["me-at-example"] } }, "budget.emails[0]", /./],
    ["bucket name invalid", { storage: { existingBucket: "My_Bucket" } }, "storage.existingBucket", /S3 bucket name/],
];

for (const [what, override, expectedPath, expectedMessage] of badConfigs) {
    test(`rejects: ${what}`, () => {
        const error = problemsOf(devWith(override));
        const match = error.problems.find((p) => p.severity === "error" && p.path === expectedPath);
        assert.ok(match, `expected a problem at ${expectedPath}; got:\n${error.message}`);
        assert.match(match.message, expectedMessage, error.message);
        assert.match(error.message, /nothing was created/);
    });
}

test("the table covers at least 30 bad configs", () => {
    assert.ok(badConfigs.length >= 30, `${badConfigs.length}`);
});

test("all problems are reported at once, not just the first", () => {
    const error = problemsOf(devWith({ name: "BAD", training: { scheduler: "cosin", perDeviceBatch: 0 }, compute: { market: "x" } }));
    const paths = error.problems.map((p) => p.path).sort();
    assert.deepEqual(paths, ["compute.market", "name", "training.perDeviceBatch", "training.scheduler"]);
});

test("a misspelt instance type is reported with the field problems, not after them", () => {
    const error = problemsOf(devWith({ training: { scheduler: "cosin" }, compute: { instanceType: "g5.2xlarg" }, runs: [{ name: "run-a", compute: { instanceType: "p4d" } }] }));
    const paths = error.problems.map((p) => p.path).sort();
    assert.deepEqual(paths, ["compute.instanceType", "runs[0].compute.instanceType", "training.scheduler"]);
    assert.match(error.message, /compute\.instanceType: unknown instance type "g5\.2xlarg": did you mean g5\.2xlarge\?/);
});

test("a missing required section names it", () => {
    const error = problemsOf({ name: "x1" });
    const paths = error.problems.map((p) => p.path);
    assert.ok(paths.includes("data"), error.message);
    assert.ok(paths.includes("model"), error.message);
    assert.match(error.message, /data: required/);
});

test("a GPU too small for the run fails with the memory estimate", () => {
    const error = problemsOf(
        mergeConfig(loadPreset("agnews-qwen7b-full"), { compute: { instanceType: "g5.2xlarge" }, training: { zeroStage: 0, globalBatch: null } }),
    );
    const memory = error.problems.find((p) => p.path === "compute.instanceType");
    assert.ok(memory, error.message);
    assert.match(memory.message, /needs about \d+\.\d GiB per GPU \(weights \d+\.\d, gradients/);
    assert.match(memory.message, /g5\.2xlarge has 2\d\.\d GiB per GPU/);
});

test("a max-hours cap shorter than the estimate is a warning with the numbers", () => {
    const campaign = resolveCampaign(mergeConfig(loadPreset("socsci210-qwen14b-qlora"), { compute: { maxHours: 2 } }));
    const w = campaign.warnings.find((p) => p.path === "compute.maxHours");
    assert.ok(w, JSON.stringify(campaign.warnings));
    assert.equal(w.severity, "warning");
    assert.match(w.message, /is 2 h but main needs about \d+\.\d h on 8x A100/);
});
