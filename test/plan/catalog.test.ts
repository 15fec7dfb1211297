// The instance catalog, the model catalog with its LoRA counts, and name suggestions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { INSTANCES, INSTANCE_TYPES, findInstance, getInstance, isGpuInstance } from "../../components/plan/catalog";
import { MODELS, countParams, findModel, linearModules, loraTrainableParams, validTargetModules } from "../../components/plan/models";
import { didYouMean, editDistance, nearest, unknownNameMessage } from "../../components/config/suggest";
import { optimizers, schedulers } from "../../components/config/schema";

// ---------------------------------------------------------------- instances

test("every brief-listed type is in the catalog, names are unique", () => {
    const wanted = [
        "g5.2xlarge", "g5.12xlarge", "g5.48xlarge", "g6e.xlarge", "g6e.12xlarge", "p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge",
        "c6i.2xlarge", "c6i.4xlarge", "c6i.8xlarge", "m6i.2xlarge", "m6i.4xlarge", "c7i.2xlarge",
    ];
    for (const t of wanted) assert.ok(findInstance(t), `${t} missing`);
    assert.equal(new Set(INSTANCE_TYPES).size, INSTANCE_TYPES.length);
});

test("GPU types: GPUs, memory, TFLOP/s, a sourced price", () => {
    const gpus = INSTANCES.filter((i) => i.kind === "gpu");
    assert.ok(gpus.length >= 8);
    for (const i of gpus) {
        assert.ok(i.gpuCount > 0, i.type);
        assert.ok(i.gpuModel, i.type);
        assert.ok(i.gpuMemoryGiB > 20, i.type);
        assert.ok(i.bf16DenseTflops > 0 && i.tflopsSource, i.type);
        assert.ok(i.onDemandUsdPerHour > 0, i.type);
        assert.match(i.priceSource, /zz_generated\.pricing_aws\.go/);
        assert.match(i.priceSource, /\d{4}-\d{2}-\d{2}/, "price source carries a date");
        assert.ok(i.computeCapability, i.type);
        assert.ok(i.vcpus > 0 && i.memoryGiB > 0, i.type);
        assert.equal(isGpuInstance(i), true);
        assert.equal(isGpuInstance(i.type), true);
    }
});

test("CPU types have no GPU and a sourced price", () => {
    const cpus = INSTANCES.filter((i) => i.kind === "cpu");
    assert.ok(cpus.length >= 6);
    for (const i of cpus) {
        assert.equal(i.gpuCount, 0, i.type);
        assert.equal(i.gpuModel, undefined);
        assert.equal(i.gpuMemoryGiB, 0);
        assert.equal(i.bf16DenseTflops, 0);
        assert.equal(isGpuInstance(i), false);
        assert.ok(i.onDemandUsdPerHour > 0 && i.onDemandUsdPerHour < 2, i.type);
        assert.match(i.priceSource, /2026-02-09/);
    }
});

test("p4de is 8x A100 80 GB and p4d 8x A100 40 GB; A10G and H100 facts", () => {
    const p4de = getInstance("p4de.24xlarge");
    const p4d = getInstance("p4d.24xlarge");
    assert.equal(p4de.gpuModel, "A100-80GB");
    assert.equal(p4de.gpuCount, 8);
    assert.equal(p4de.gpuMemoryGiB, 80);
    assert.equal(p4d.gpuModel, "A100-40GB");
    assert.equal(p4d.gpuMemoryGiB, 40);
    assert.equal(p4d.bf16DenseTflops, 312);
    assert.equal(p4de.onDemandUsdPerHour, 27.44705);
    assert.equal(p4d.onDemandUsdPerHour, 21.957642);
    const g5 = getInstance("g5.2xlarge");
    assert.equal(g5.gpuModel, "A10G");
    assert.equal(g5.computeCapability, "8.6");
    assert.ok(Math.abs(g5.gpuMemoryGiB - 22_888 / 1024) < 1e-9);
    assert.equal(g5.onDemandUsdPerHour, 1.212);
    assert.equal(getInstance("p5.48xlarge").bf16DenseTflops, 989);
    assert.equal(getInstance("g6e.xlarge").bf16DenseTflops, 362);
    assert.equal(getInstance("c6i.2xlarge").onDemandUsdPerHour, 0.34);
    // Per-GPU price sanity: an A100-80GB GPU-hour on AWS on-demand.
    assert.ok(Math.abs(p4de.onDemandUsdPerHour / 8 - 3.43) < 0.01);
});

test("misspelled instance types name the nearest valid type", () => {
    assert.throws(() => getInstance("g5.2xlarg"), /did you mean g5\.2xlarge\?/);
    assert.throws(() => getInstance("p4d.24xl"), /did you mean p4d\.24xlarge\?/);
    assert.throws(() => getInstance("p4de.24xlarg"), /did you mean p4de\.24xlarge\?/);
    assert.throws(() => getInstance("c6i.2xlagre"), /did you mean c6i\.2xlarge\?/);
    assert.throws(() => getInstance("G5.2XLARGE"), /did you mean g5\.2xlarge\?/);
    assert.throws(() => getInstance("g5.12xlarg"), /did you mean g5\.12xlarge\?/);
    assert.throws(() => getInstance("quantum-computer"), (e: Error) => !/did you mean/.test(e.message) && /valid: g5\.2xlarge/.test(e.message));
    assert.throws(() => isGpuInstance("g5.2xlarg"), /did you mean g5\.2xlarge\?/);
});

// ---------------------------------------------------------------- suggestions

test("edit distance and nearest", () => {
    assert.equal(editDistance("kitten", "sitting"), 3);
    assert.equal(editDistance("ab", "ba"), 1, "adjacent transposition is one edit");
    assert.equal(editDistance("", "abc"), 3);
    assert.equal(nearest("adamw_torch_fuse", optimizers), "adamw_torch_fused");
    assert.equal(nearest("ADAFACTOR", optimizers), "adafactor");
    assert.equal(nearest("cosin", schedulers), "cosine");
    assert.equal(nearest("xyz", ["g5.2xlarge", "p4d.24xlarge"]), undefined);
    assert.equal(nearest("", ["a"]), undefined);
    assert.equal(didYouMean("seq2seqq", ["causal-lm", "seq2seq"]), "did you mean seq2seq?");
    assert.equal(didYouMean("zzzzzzzz", ["causal-lm", "seq2seq"]), "");
    assert.match(unknownNameMessage("optimizer", "adamw_8bitt", optimizers), /unknown optimizer "adamw_8bitt": did you mean adamw_8bit\?/);
});

// ---------------------------------------------------------------- models

test("findModel: case-insensitive, after the org, -Instruct ignored, unknown -> undefined", () => {
    assert.equal(findModel("Qwen/Qwen2.5-14B-Instruct")?.id, "Qwen/Qwen2.5-14B");
    assert.equal(findModel("qwen/QWEN2.5-7b")?.id, "Qwen/Qwen2.5-7B");
    assert.equal(findModel("google/flan-t5-small")?.family, "seq2seq");
    assert.equal(findModel("t5-small")?.id, "google-t5/t5-small");
    assert.equal(findModel("meta-llama/Llama-3.1-8B-Instruct")?.id, "meta-llama/Llama-3.1-8B");
    assert.equal(findModel("Qwen/Qwen2.5-7B-Instruct")?.family, "causal-lm");
    assert.equal(findModel("Qwen/Qwen2.5-7B-Instruct-AWQ"), undefined);
    assert.equal(findModel("someone/unknown-model"), undefined);
});

test("parameter counts from the architectures equal the published totals", () => {
    for (const m of MODELS) assert.equal(countParams(m.architecture), m.publishedParams, m.id);
    // The AG News campaign: Qwen2.5-7B-Instruct has 7.62B parameters, 7,615,616,512 updated in full fine-tuning.
    assert.equal(countParams(findModel("Qwen/Qwen2.5-7B-Instruct")!.architecture), 7_615_616_512);
});

test("LoRA: FLAN-T5-small r=16 on q,k,v,o,wi_0,wi_1,wo is 2,555,904 (socratiq-t5-lora)", () => {
    // d_model 512, inner = 6 heads x 64 = 384, d_ff 1024, 8 encoder + 8 decoder layers.
    // q, k, v: 16 x (512 + 384) = 14,336 each; o: 16 x (384 + 512) = 14,336 -> attention block 57,344.
    // wi_0, wi_1: 16 x (512 + 1024) = 24,576 each; wo: 16 x (1024 + 512) = 24,576 -> FFN 73,728.
    // encoder layer (self-attention + FFN): 131,072 x 8 = 1,048,576
    // decoder layer (self + cross attention + FFN): 188,416 x 8 = 1,507,328;  total 2,555,904.
    const arch = findModel("google/flan-t5-small")!.architecture;
    assert.equal(loraTrainableParams(arch, ["q", "k", "v", "o", "wi_0", "wi_1", "wo"], 16), 2_555_904);
    assert.equal(loraTrainableParams(arch, ["all-linear"], 16), 2_555_904);
    assert.equal(loraTrainableParams(arch, ["q", "v"], 8), 8 * (512 + 384) * 2 * (8 + 2 * 8));
});

test("LoRA: Qwen2.5-14B r=32 on all seven projections is 137,625,600 (socsci210-qwen14b-qlora)", () => {
    // hidden 5120, 40 heads x 128 = 5120 for q, 8 KV heads x 128 = 1024 for k and v (GQA), intermediate 13824.
    // q: 32 x (5120 + 5120) = 327,680     k: 32 x (5120 + 1024) = 196,608     v: 196,608
    // o: 32 x (5120 + 5120) = 327,680     gate, up: 32 x (5120 + 13824) = 606,208 each     down: 606,208
    // per layer 2,867,200 x 48 layers = 137,625,600 (0.93% of 14.77B).
    const arch = findModel("Qwen/Qwen2.5-14B-Instruct")!.architecture;
    assert.equal(loraTrainableParams(arch, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 32), 137_625_600);
    // The config's default targets (attention only) at r=16 on Qwen2.5-7B: 28 x 16 x (2 x 7168 + 2 x 4096) = 10,092,544.
    const q7 = findModel("Qwen/Qwen2.5-7B")!.architecture;
    assert.equal(loraTrainableParams(q7, ["q_proj", "k_proj", "v_proj", "o_proj"], 16), 10_092_544);
});

test("LoRA: unknown target modules name the valid ones for the family", () => {
    const t5 = findModel("google/flan-t5-small")!.architecture;
    assert.throws(() => loraTrainableParams(t5, ["q_proj"], 16), /q, k, v, o, wi_0, wi_1, wo/);
    const t5v1 = findModel("t5-small")!.architecture;
    assert.deepEqual(validTargetModules(t5v1), ["q", "k", "v", "o", "wi", "wo"]);
    assert.throws(() => loraTrainableParams(t5v1, ["wi_0"], 16), /wi, wo/);
    const qwen = findModel("Qwen/Qwen2.5-7B")!.architecture;
    assert.throws(() => loraTrainableParams(qwen, ["q_prj"], 16), /did you mean q_proj\?.*gate_proj, up_proj, down_proj/);
    assert.throws(() => loraTrainableParams(qwen, ["q"], 16), /q_proj, k_proj/);
    assert.throws(() => loraTrainableParams(qwen, ["q_proj"], 0), /positive integer/);
});

test("GQA: k/v projections are kvHeads x headDim wide", () => {
    const q7 = findModel("Qwen/Qwen2.5-7B")!.architecture;
    const k = linearModules(q7).find((m) => m.name === "k_proj")!;
    assert.equal(k.outFeatures, 4 * 128);
    assert.equal(k.inFeatures, 3584);
});

test("current GPU families: L4 (g6), 8x L40S, H100 (p5) and H200 (p5en), each with its sources; spot figures are dated and below on-demand", () => {
    for (const t of ["g6.2xlarge", "g6.12xlarge", "g6.48xlarge", "g6e.48xlarge", "p5.4xlarge", "p5.48xlarge", "p5en.48xlarge"]) assert.ok(findInstance(t), `${t} missing`);
    const l4 = getInstance("g6.2xlarge");
    assert.deepEqual([l4.gpuModel, l4.gpuCount, l4.bf16DenseTflops, l4.computeCapability], ["L4", 1, 121, "8.9"]);
    assert.ok(Math.abs(l4.gpuMemoryGiB - 22_888 / 1024) < 1e-9);
    const h200 = getInstance("p5en.48xlarge");
    assert.deepEqual([h200.gpuModel, h200.gpuCount, h200.bf16DenseTflops, h200.onDemandUsdPerHour], ["H200", 8, 989, 63.296]);
    assert.equal(h200.gpuMemoryGiB, 141);
    assert.equal(getInstance("g6e.48xlarge").gpuCount, 8);
    assert.equal(getInstance("p5.4xlarge").onDemandUsdPerHour, 6.88);
    const spot = INSTANCES.filter((i) => i.typicalSpotUsdPerHour !== undefined);
    assert.ok(spot.length >= 2);
    for (const i of spot) {
        assert.ok(i.typicalSpotUsdPerHour! > 0 && i.typicalSpotUsdPerHour! < i.onDemandUsdPerHour, i.type);
        assert.match(i.spotSource!, /\d{4}-\d{2}-\d{2}/, `${i.type}: the spot figure carries a date`);
    }
    for (const i of INSTANCES.filter((x) => x.typicalSpotUsdPerHour === undefined)) assert.equal(i.spotSource, undefined);
    // The rehearsal checks one-process stand-ins against the first one-GPU type: still the g5.2xlarge.
    assert.equal(INSTANCES.find((i) => i.kind === "gpu" && i.gpuCount === 1)?.type, "g5.2xlarge");
});
