// npx tsx scripts/trainer-estimate.ts CASES.json
// The plan's estimates (components/plan/estimate.ts) for trainer benchmark cases, as JSON on stdout, so the
// GPU check and scripts/bench-trainer.py set measured memory and FLOPs next to the same numbers the plan uses.
// CASES.json: [{ "name", "model" (a hub id of components/plan/models.ts) or "architecture" (its DecoderArchitecture), "method", "lora"?: { "r", "targetModules" }, "perDeviceBatch",
// "seqLength", "precision", "gradientCheckpointing", "zeroStage", "optimizer", "gpus" }, ...]
// The output also lists each catalog GPU's dense bf16 peak, the denominator of MFU.
import { readFileSync } from "node:fs";
import { INSTANCES } from "../components/plan/catalog";
import type { MethodKind } from "../components/config/schema";
import { estimateMemory, estimateTrainingTime, type Optimizer, type Precision, type ZeroStage } from "../components/plan/estimate";
import { type Architecture, findModel } from "../components/plan/models";

interface BenchCase {
    readonly name: string;
    readonly model?: string;
    readonly architecture?: Architecture;
    readonly method: MethodKind;
    readonly lora?: { readonly r: number; readonly targetModules: readonly string[] };
    readonly perDeviceBatch: number;
    readonly seqLength: number;
    readonly precision: Precision;
    readonly gradientCheckpointing: boolean;
    readonly zeroStage: ZeroStage;
    readonly optimizer: Optimizer;
    readonly gpus: number;
}

function architectureOf(c: BenchCase): Architecture {
    if (c.architecture) return c.architecture;
    const info = c.model === undefined ? undefined : findModel(c.model);
    if (!info) throw new Error(`${c.name}: give "architecture", or a "model" listed in components/plan/models.ts (got ${c.model})`);
    return info.architecture;
}

function estimate(c: BenchCase, architecture: Architecture): Record<string, number> {
    const memory = estimateMemory({ ...c, architecture, gpuMemoryGiB: 0 });
    // FLOPs per token do not depend on the data sizes; one step of one token asks for them alone.
    const time = estimateTrainingTime({
        architecture,
        method: c.method,
        gradientCheckpointing: c.gradientCheckpointing,
        trainExamples: 1,
        meanTokens: 1,
        maxSteps: 1,
        globalBatch: 1,
        packing: false,
        maxLength: 1,
        gpus: 1,
        peakTflopsPerGpu: 1,
    });
    return {
        weightsGiB: memory.weightsGiB,
        gradientsGiB: memory.gradientsGiB,
        optimizerGiB: memory.optimizerGiB,
        activationsGiB: memory.activationsGiB,
        overheadGiB: memory.overheadGiB,
        totalGiB: memory.totalGiB,
        totalParams: memory.totalParams,
        trainableParams: memory.trainableParams,
        flopsPerToken: time.flopsPerToken,
    };
}

function main(): void {
    const file = process.argv[2];
    if (!file) throw new Error("usage: npx tsx scripts/trainer-estimate.ts CASES.json");
    const cases = JSON.parse(readFileSync(file, "utf8")) as BenchCase[];
    const peaks: Record<string, number> = {};
    for (const i of INSTANCES) if (i.gpuModel) peaks[i.gpuModel] = i.bf16DenseTflops;
    const out = { source: "components/plan/estimate.ts", gpuPeakBf16Tflops: peaks, cases: cases.map((c) => {
        const architecture = architectureOf(c);
        return { ...c, architecture, estimate: estimate(c, architecture) };
    }) };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main();
