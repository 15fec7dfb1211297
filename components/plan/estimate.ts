// Estimates behind `npm run plan`: GPU memory per device, training time, and dollars.
// Pure functions. Each result carries the assumptions it rests on, as sentences a plan can print:
// these are models, not measurements, and the user should see what they take for granted.
import type { MethodKind, optimizers } from "../config/schema";
import {
    type Architecture,
    blockLinearParams,
    countParams,
    embeddingParams,
    linearModules,
    loraTrainableParams,
    matmulParams,
    selectedModules,
} from "./models";
import { EBS_GP3_USD_PER_GB_MONTH, HOURS_PER_MONTH, S3_STANDARD_USD_PER_GB_MONTH, getInstance } from "./catalog";

export type Precision = "bf16" | "fp16" | "fp32";
export type Optimizer = (typeof optimizers)[number];
export type ZeroStage = 0 | 1 | 2 | 3;

const GiB = 1024 ** 3;

// ---------------------------------------------------------------- memory: stated constants

/** CUDA context, cuBLAS/cuDNN workspaces and NCCL buffers per GPU: a round 1 GiB (a bare CUDA context is ~0.3-0.5 GiB). */
export const CUDA_OVERHEAD_GIB = 1;

/**
 * QLoRA NF4 with double quantisation (Dettmers et al. 2023, bitsandbytes defaults): 4 bits per weight,
 * one 8-bit absmax per 64-weight block, one fp32 second-level constant per 256 blocks.
 */
export const NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256);

/** LoRA adapters are kept in fp32 (PEFT's default under autocast): weight, gradient, two Adam moments. */
const ADAPTER_BYTES = 4;

function elementBytes(p: Precision): number {
    return p === "fp32" ? 4 : 2;
}

// ---------------------------------------------------------------- memory

export interface MemoryInput {
    readonly architecture: Architecture;
    readonly method: MethodKind;
    /** Required for lora and qlora. */
    readonly lora?: { readonly r: number; readonly targetModules: readonly string[] };
    readonly perDeviceBatch: number;
    /**
     * Tokens per sequence. For seq2seq models this is the source length; the target length is
     * `targetLength` when given, else the same number (the config has one maxSeqLength, and assuming
     * full-length targets errs on the safe side).
     */
    readonly seqLength: number;
    readonly targetLength?: number;
    /** Weights are loaded in this dtype ("bf16" = model in bf16, not fp32 masters under autocast). */
    readonly precision: Precision;
    readonly gradientCheckpointing: boolean;
    readonly zeroStage: ZeroStage;
    readonly optimizer: Optimizer;
    /** Data-parallel GPUs the run shards over (one node). */
    readonly gpus: number;
    readonly gpuMemoryGiB: number;
}

export interface MemoryEstimate {
    readonly weightsGiB: number;
    readonly gradientsGiB: number;
    readonly optimizerGiB: number;
    readonly activationsGiB: number;
    readonly overheadGiB: number;
    readonly totalGiB: number;
    readonly gpuMemoryGiB: number;
    readonly fits: boolean;
    /** gpuMemoryGiB - totalGiB; negative when it does not fit. */
    readonly headroomGiB: number;
    readonly trainableParams: number;
    readonly totalParams: number;
    readonly assumptions: string[];
}

/** Optimizer state bytes per trainable parameter whose dtype takes `paramBytes`. */
function optimizerStateBytes(optimizer: Optimizer, paramBytes: number): number {
    switch (optimizer) {
        case "adamw_torch":
        case "adamw_torch_fused":
        case "paged_adamw_32bit":
            return 2 * paramBytes; // exp_avg and exp_avg_sq, allocated like the parameter
        case "adamw_8bit":
        case "paged_adamw_8bit":
            return 2; // two 8-bit moments (block-wise constants are ~1% more)
        case "adafactor":
            return 0; // factored: computed per matrix by adafactorStateBytes
        case "sgd":
            return 0; // the Trainer's SGD has no momentum buffer by default
    }
}

/** Adafactor keeps one row and one column vector per matrix (no first moment, the Trainer default). */
function adafactorStateBytes(matrices: readonly { rows: number; cols: number; count: number }[], vectorParams: number): number {
    const factored = matrices.reduce((sum, m) => sum + (m.rows + m.cols) * m.count, 0);
    return 4 * (factored + vectorParams);
}


/** Bytes per token of one decoder layer's saved activations (Korthikanti et al. 2022 style, adapted). */
function decoderLayerBytesPerToken(arch: Extract<Architecture, { kind: "decoder" }>, e: number, seq: number, lora: readonly { inFeatures: number; count: number }[], loraR: number): number {
    const h = arch.hiddenSize;
    const q = arch.heads * arch.headDim;
    const kv = arch.kvHeads * arch.headDim;
    const I = arch.intermediateSize;
    let bytes = 0;
    bytes += e * (h + (q + 2 * kv) + q); // norm output into q/k/v, q/k/v kept by SDPA, attention output into o_proj
    bytes += e * (h + 4 * I); // norm output into gate/up, gate, up, act(gate), product into down_proj
    bytes += 2 * 4 * h; // two RMSNorms keep an fp32 copy of their input
    if (!arch.fusedAttention) bytes += arch.heads * seq * (2 * e + 1); // scores, softmax, dropout mask
    const perLayer = lora.reduce((sum, m) => sum + (m.count / arch.layers) * (e * m.inFeatures + e * loraR), 0);
    return bytes + perLayer; // LoRA: dropout copy of each adapted input and the rank-r intermediate
}

interface T5LayerBytes {
    encoderPerToken: number;
    decoderPerToken: number;
    /** Cross-attention k/v per source token per decoder layer. */
    crossKvPerSourceToken: number;
}

function t5LayerBytes(arch: Extract<Architecture, { kind: "t5" }>, e: number, src: number, tgt: number, lora: readonly { name: string; inFeatures: number }[], loraR: number): T5LayerBytes {
    const d = arch.dModel;
    const inner = arch.heads * arch.dKv;
    const f = arch.dFf;
    const scores = (len: number) => (arch.fusedAttention ? 0 : arch.heads * len * (2 * e + 1)); // scores, softmax, dropout mask
    const ffn = e * (d + (arch.gatedFfn ? 4 * f : 2 * f)); // norm output, wi outputs, activation, product into wo
    const selfAttn = (len: number) => e * (d + 3 * inner + inner) + scores(len);
    const loraOf = (names: readonly string[]) => lora.filter((m) => names.includes(m.name)).reduce((s, m) => s + e * m.inFeatures + e * loraR, 0);
    const attnLora = loraOf(["q", "k", "v", "o"]);
    const ffnLora = loraOf(["wi", "wi_0", "wi_1", "wo"]);
    const encoderPerToken = selfAttn(src) + ffn + 2 * 4 * d + attnLora + ffnLora;
    const crossQ = e * (d + inner + inner) + scores(src); // norm output into q, q, attention output
    const decoderPerToken = selfAttn(tgt) + crossQ + ffn + 3 * 4 * d + 2 * attnLora + ffnLora;
    return { encoderPerToken, decoderPerToken, crossKvPerSourceToken: e * 2 * inner };
}

/** Per-GPU memory for training one model with one method; the numbers and what they assume. */
export function estimateMemory(input: MemoryInput): MemoryEstimate {
    const { architecture: arch, method, precision, zeroStage, optimizer } = input;
    if (!(input.gpus >= 1) || !Number.isInteger(input.gpus)) throw new Error(`gpus must be a positive integer; got ${input.gpus}`);
    if (!(input.perDeviceBatch >= 1) || !(input.seqLength >= 1)) throw new Error("perDeviceBatch and seqLength must be positive");
    if (method !== "full" && !input.lora) throw new Error(`method ${method} needs lora { r, targetModules }`);
    if (method === "qlora" && precision === "fp32") throw new Error("qlora computes in bf16 or fp16 on 4-bit weights; fp32 is not a qlora precision");

    const assumptions: string[] = [];
    const n = input.gpus;
    const e = elementBytes(precision);
    const totalParams = countParams(arch);
    const trainableParams = method === "full" ? totalParams : loraTrainableParams(arch, input.lora!.targetModules, input.lora!.r);
    const shardOpt = zeroStage >= 1 ? n : 1;
    const shardGrad = zeroStage >= 2 ? n : 1;
    const shardWeights = zeroStage >= 3 ? n : 1;

    // Weights.
    let weightBytes: number;
    if (method === "full") {
        weightBytes = totalParams * e;
        assumptions.push(`weights: ${totalParams.toLocaleString("en-US")} parameters x ${e} B (${precision})`);
    } else if (method === "lora") {
        weightBytes = totalParams * e + trainableParams * ADAPTER_BYTES;
        assumptions.push(`weights: frozen base ${totalParams.toLocaleString("en-US")} x ${e} B (${precision}) + LoRA adapters ${trainableParams.toLocaleString("en-US")} x 4 B (fp32)`);
    } else {
        const quantized = blockLinearParams(arch);
        weightBytes = quantized * NF4_BYTES_PER_PARAM + (totalParams - quantized) * e + trainableParams * ADAPTER_BYTES;
        assumptions.push(
            `weights: ${quantized.toLocaleString("en-US")} block linear weights in NF4 with double quantisation (${NF4_BYTES_PER_PARAM.toFixed(4)} B each); ` +
                `embeddings, LM head and norms (${(totalParams - quantized).toLocaleString("en-US")}) stay ${precision}; adapters fp32`,
        );
    }
    weightBytes /= shardWeights;

    // ZeRO-3 gathers the weights of the blocks in flight: about two layers, or the embedding table when larger.
    let gatherBytes = 0;
    if (zeroStage === 3 && n > 1) {
        const layers = arch.kind === "decoder" ? arch.layers : arch.encoderLayers + arch.decoderLayers;
        const perLayer = blockLinearParams(arch) / layers;
        const gatheredBytesPerParam = method === "qlora" ? NF4_BYTES_PER_PARAM : e;
        gatherBytes = Math.max(2 * perLayer * gatheredBytesPerParam, embeddingParams(arch) * e);
        weightBytes += gatherBytes;
        assumptions.push(`ZeRO-3: weights sharded over ${n} GPUs plus ${(gatherBytes / GiB).toFixed(2)} GiB of gathered weights in flight (two layers or the embedding table)`);
    }

    // Gradients and optimizer state.
    let gradBytes: number;
    let optBytes: number;
    if (method === "full") {
        gradBytes = totalParams * e;
        if (zeroStage >= 1 && e < 4) {
            // DeepSpeed's bf16/fp16 optimizers keep fp32 master weights and fp32 states (ZeRO paper's K = 12 for Adam).
            const states = optimizer === "adafactor" ? adafactorStateBytes(matricesOf(arch), vectorParams(arch)) / totalParams : optimizerStateBytes(optimizer, 4);
            optBytes = totalParams * (4 + states);
            assumptions.push(`optimizer: ${optimizer} under DeepSpeed keeps fp32 master weights + states (${(4 + states).toFixed(1)} B/param), sharded over ${shardOpt} GPU(s)`);
        } else {
            const states = optimizer === "adafactor" ? adafactorStateBytes(matricesOf(arch), vectorParams(arch)) / totalParams : optimizerStateBytes(optimizer, e);
            optBytes = totalParams * states;
            assumptions.push(`optimizer: ${optimizer} states in the parameter dtype (${states.toFixed(2)} B/param; AdamW = 2 moments; no fp32 master copy when the model is loaded in ${precision})`);
        }
        assumptions.push(`gradients: one per parameter in ${precision} (${e} B)`);
    } else {
        gradBytes = trainableParams * ADAPTER_BYTES;
        const mods = selectedModules(arch, input.lora!.targetModules);
        const r = input.lora!.r;
        const states =
            optimizer === "adafactor"
                ? adafactorStateBytes(
                      mods.flatMap((m) => [
                          { rows: r, cols: m.inFeatures, count: m.count },
                          { rows: m.outFeatures, cols: r, count: m.count },
                      ]),
                      0,
                  )
                : trainableParams * optimizerStateBytes(optimizer, ADAPTER_BYTES);
        optBytes = states;
        assumptions.push(`gradients and ${optimizer} state only for the ${trainableParams.toLocaleString("en-US")} fp32 adapter parameters; frozen weights get none`);
    }
    // DDP (no ZeRO) on several GPUs keeps gradient buckets the size of the gradients.
    if (zeroStage === 0 && n > 1) {
        gradBytes *= 2;
        assumptions.push("DDP on several GPUs: gradient buckets double the gradient memory (gradient_as_bucket_view off, the PyTorch default)");
    }
    gradBytes /= shardGrad;
    optBytes /= shardOpt;
    if (zeroStage > 0) assumptions.push(`ZeRO-${zeroStage} over ${n} GPU(s): optimizer state${zeroStage >= 2 ? " and gradients" : ""}${zeroStage >= 3 ? " and weights" : ""} divided by ${n}`);
    if (optimizer.startsWith("paged_")) assumptions.push(`${optimizer}: counted in full, though paged state can spill to CPU memory under pressure`);

    // Activations.
    const activationBytes = activationBytesFor(input, e, assumptions);

    const overheadGiB = CUDA_OVERHEAD_GIB;
    assumptions.push(`overhead: ${CUDA_OVERHEAD_GIB} GiB per GPU for the CUDA context, library workspaces and NCCL buffers; allocator fragmentation is not modelled, keep ~10% headroom`);

    const weightsGiB = weightBytes / GiB;
    const gradientsGiB = gradBytes / GiB;
    const optimizerGiB = optBytes / GiB;
    const activationsGiB = activationBytes / GiB;
    const totalGiB = weightsGiB + gradientsGiB + optimizerGiB + activationsGiB + overheadGiB;
    return {
        weightsGiB,
        gradientsGiB,
        optimizerGiB,
        activationsGiB,
        overheadGiB,
        totalGiB,
        gpuMemoryGiB: input.gpuMemoryGiB,
        fits: totalGiB <= input.gpuMemoryGiB,
        headroomGiB: input.gpuMemoryGiB - totalGiB,
        trainableParams,
        totalParams,
        assumptions,
    };
}

function matricesOf(arch: Architecture): { rows: number; cols: number; count: number }[] {
    const d = arch.kind === "decoder" ? arch.hiddenSize : arch.dModel;
    const m = linearModules(arch).map((l) => ({ rows: l.outFeatures, cols: l.inFeatures, count: l.count }));
    m.push({ rows: arch.vocabSize, cols: d, count: arch.tiedEmbeddings ? 1 : 2 });
    return m;
}

function vectorParams(arch: Architecture): number {
    const embed = embeddingParams(arch) * (arch.tiedEmbeddings ? 1 : 2);
    return countParams(arch) - blockLinearParams(arch) - embed;
}

function activationBytesFor(input: MemoryInput, e: number, assumptions: string[]): number {
    const arch = input.architecture;
    const b = input.perDeviceBatch;
    const loraMods = input.method === "full" ? [] : selectedModules(arch, input.lora!.targetModules);
    const r = input.method === "full" ? 0 : input.lora!.r;
    // Logits: the LM head output, an fp32 copy for the loss, and fp32 log-softmax kept for backward.
    const logitsBytesPerElement = e + (e < 4 ? 4 : 0) + 4;
    const ckpt = input.gradientCheckpointing;
    let layerBytes: number;
    let logitsBytes: number;

    if (arch.kind === "decoder") {
        const s = input.seqLength;
        const tokens = b * s;
        const perLayer = tokens * decoderLayerBytesPerToken(arch, e, s, loraMods, r);
        layerBytes = ckpt ? arch.layers * tokens * arch.hiddenSize * e + perLayer : arch.layers * perLayer;
        logitsBytes = tokens * arch.vocabSize * logitsBytesPerElement;
        assumptions.push(`activations: batch ${b} x seq ${s} = ${tokens.toLocaleString("en-US")} tokens per GPU`);
    } else {
        const src = input.seqLength;
        const tgt = input.targetLength ?? input.seqLength;
        const t = t5LayerBytes(arch, e, src, tgt, loraMods, r);
        const enc = b * src * t.encoderPerToken;
        const dec = b * tgt * t.decoderPerToken + b * src * t.crossKvPerSourceToken;
        const encoderOut = b * src * arch.dModel * e; // kept for every decoder layer's cross-attention
        if (ckpt) {
            const inputs = arch.encoderLayers * b * src * arch.dModel * e + arch.decoderLayers * b * tgt * arch.dModel * e;
            layerBytes = inputs + encoderOut + Math.max(enc, dec);
        } else {
            layerBytes = arch.encoderLayers * enc + arch.decoderLayers * dec + encoderOut;
        }
        logitsBytes = b * tgt * arch.vocabSize * logitsBytesPerElement;
        assumptions.push(
            `activations: batch ${b}, source ${src} and target ${tgt} tokens${input.targetLength === undefined ? " (one length used for both: the safe side)" : ""}`,
        );
    }
    assumptions.push(
        ckpt
            ? "gradient checkpointing: every layer keeps its input; one layer's activations are rebuilt at a time during backward"
            : "no gradient checkpointing: every layer keeps all its activations until backward",
    );
    assumptions.push(
        "per-layer activations in the style of Korthikanti et al. 2022 (arXiv:2205.05198), adapted to GQA and gated FFNs; " +
            (arch.fusedAttention ? "SDPA/FlashAttention keeps no seq^2 scores" : "eager attention keeps heads x seq^2 scores, softmax and dropout mask") +
            "; hidden-state dropout masks not counted" +
            (input.method === "full" ? "" : "; LoRA keeps a dropout copy of each adapted input"),
    );
    assumptions.push(
        `logits: batch x seq x vocab ${arch.vocabSize.toLocaleString("en-US")} at ${logitsBytesPerElement} B (output + fp32 copy for the loss + fp32 log-softmax) = ${(logitsBytes / GiB).toFixed(2)} GiB`,
    );
    return layerBytes + logitsBytes;
}

// ---------------------------------------------------------------- time

/**
 * Model FLOPs utilisation assumed per method on A100/H100-class GPUs with bf16, for the plan.
 * - full and LoRA, ~0.35: DeepSpeed/FSDP fine-tuning of 7-14B models with FlashAttention reaches roughly
 *   35-45% of dense bf16 peak; the low end, because fine-tuning batches are short and padded.
 * - QLoRA, 0.25: every forward and backward dequantises the NF4 weights to bf16; QLoRA runs are commonly
 *   reported ~30-40% slower than bf16 LoRA at equal batch (0.35 / 1.4 = 0.25).
 * With these values the SocSci210 campaign (Qwen2.5-14B QLoRA, 2.47M examples, ~300 tokens each, 8x A100) comes to
 * about 28 hours, inside the authors' 25-30 hour estimate.
 */
export const MFU_BY_METHOD: Readonly<Record<MethodKind, number>> = Object.freeze({ full: 0.35, lora: 0.35, qlora: 0.25 });

/**
 * Models under a billion parameters keep GPUs busy far less (kernel launches and data loading dominate):
 * the SocratiQ campaign saw 45% GPU utilisation with FLAN-T5-small. Their MFU is taken at half the table above.
 */
export const SMALL_MODEL_PARAMS = 1e9;
export const SMALL_MODEL_MFU_FACTOR = 0.5;

/** Node boot, container image pull (~20 GB NGC image) and base weights from S3 before the first step. */
export const DEFAULT_SETUP_HOURS = 0.25;

export interface TimeInput {
    readonly architecture: Architecture;
    readonly method: MethodKind;
    readonly gradientCheckpointing: boolean;
    readonly trainExamples: number;
    /** Mean tokens per example (prompt + answer; for seq2seq, source + target). */
    readonly meanTokens: number;
    /** Exactly one of epochs and maxSteps. */
    readonly epochs?: number;
    readonly maxSteps?: number;
    /** Sequences per optimizer step over all GPUs. */
    readonly globalBatch: number;
    /** Examples packed into sequences of maxLength. */
    readonly packing: boolean;
    readonly maxLength: number;
    readonly gpus: number;
    /** Dense bf16 peak per GPU, TFLOP/s (catalog bf16DenseTflops). */
    readonly peakTflopsPerGpu: number;
    /** Overrides the MFU assumption. */
    readonly mfu?: number;
    /** Overrides DEFAULT_SETUP_HOURS. */
    readonly setupHours?: number;
}

export interface TimeEstimate {
    readonly tokens: number;
    readonly flopsPerToken: number;
    readonly totalFlops: number;
    readonly steps: number;
    readonly mfu: number;
    readonly trainingHours: number;
    readonly setupHours: number;
    /** trainingHours + setupHours: what the node is billed for. */
    readonly hours: number;
    readonly assumptions: string[];
}

/** Training time from FLOPs: tokens x FLOPs/token / (GPUs x peak x MFU). */
export function estimateTrainingTime(input: TimeInput): TimeEstimate {
    const { architecture: arch, method } = input;
    if ((input.epochs === undefined) === (input.maxSteps === undefined)) throw new Error("give exactly one of epochs and maxSteps");
    if (!(input.globalBatch >= 1) || !(input.gpus >= 1) || !(input.peakTflopsPerGpu > 0)) throw new Error("globalBatch, gpus and peakTflopsPerGpu must be positive");
    const assumptions: string[] = [];

    // Tokens the GPUs process. Without packing a sequence is cut at maxLength.
    const perExample = Math.min(input.meanTokens, input.maxLength);
    let tokens: number;
    let steps: number;
    if (input.maxSteps !== undefined) {
        const perSequence = input.packing ? input.maxLength : perExample;
        tokens = input.maxSteps * input.globalBatch * perSequence;
        steps = input.maxSteps;
        assumptions.push(`tokens: ${input.maxSteps} steps x ${input.globalBatch} sequences x ${perSequence} tokens${input.packing ? " (packed to maxLength)" : " (mean per example)"}`);
    } else {
        const epochs = input.epochs!;
        tokens = input.trainExamples * perExample * epochs;
        const sequences = input.packing ? Math.ceil((input.trainExamples * perExample) / input.maxLength) : input.trainExamples;
        steps = Math.ceil((sequences * epochs) / input.globalBatch);
        assumptions.push(
            `tokens: ${input.trainExamples.toLocaleString("en-US")} examples x ${perExample} tokens x ${epochs} epoch(s)` +
                (input.packing ? `, packed into ${sequences.toLocaleString("en-US")} sequences of ${input.maxLength}` : "; dynamic padding assumed (padding waste not counted)"),
        );
    }

    // FLOPs per token: 2N forward, 2N backward through activations, 2N weight gradients (full only),
    // and one more forward (2N) when checkpointing recomputes it.
    const seq2seq = arch.kind === "t5";
    const n = seq2seq ? matmulParams(arch) / 2 : matmulParams(arch);
    const multiplier = (method === "full" ? 6 : 4) + (input.gradientCheckpointing ? 2 : 0);
    const flopsPerToken = multiplier * n;
    const totalFlops = tokens * flopsPerToken;
    assumptions.push(
        `FLOPs/token = ${multiplier}N with N = ${(n / 1e9).toFixed(2)}B matmul parameters` +
            (seq2seq ? " (half the model: a source token meets the encoder, a target token the decoder)" : " (the input embedding lookup costs none)") +
            `: ${method === "full" ? "6N for forward + backward" : "4N for LoRA (frozen weights get no weight gradients)"}` +
            (input.gradientCheckpointing ? " + 2N to recompute the forward" : "") +
            "; attention score FLOPs are not counted (small at these lengths)",
    );

    let mfu = input.mfu ?? MFU_BY_METHOD[method];
    if (input.mfu === undefined && countParams(arch) < SMALL_MODEL_PARAMS) {
        mfu *= SMALL_MODEL_MFU_FACTOR;
        assumptions.push(`MFU ${mfu.toFixed(3)}: ${MFU_BY_METHOD[method]} for ${method} halved for a model under 1B parameters (the SocratiQ campaign: 45% GPU utilisation)`);
    } else {
        assumptions.push(`MFU ${mfu.toFixed(2)} ${input.mfu === undefined ? `assumed for ${method}` : "given"} against ${input.peakTflopsPerGpu} TFLOP/s dense bf16 per GPU x ${input.gpus} GPU(s)`);
    }
    const seconds = totalFlops / (input.gpus * input.peakTflopsPerGpu * 1e12 * mfu);
    const trainingHours = seconds / 3600;
    const setupHours = input.setupHours ?? DEFAULT_SETUP_HOURS;
    assumptions.push(`setup: ${setupHours} h for boot, image pull and weights from S3 before the first step; checkpoint uploads not counted (the task-metric evaluation is estimated apart: estimateGeneration)`);
    return { tokens, flopsPerToken, totalFlops, steps, mfu, trainingHours, setupHours, hours: trainingHours + setupHours, assumptions };
}

// ---------------------------------------------------------------- cost

export interface NodeUsage {
    readonly instanceType: string;
    /** Expected billed hours of the node. */
    readonly hours: number;
    /** The node's hard cap: the most it can bill. */
    readonly maxHours: number;
    /** EBS gp3 volumes attached while it runs (root + data), GB. */
    readonly volumeGb?: number;
    /** Other types the node may launch as (compute.fallbackInstanceTypes): the worst case takes the dearest. Default: none. */
    readonly fallbackInstanceTypes?: readonly string[];
}

export interface CostInput {
    readonly runs: readonly (NodeUsage & { readonly name: string })[];
    /** Absent when prep runs locally. */
    readonly prep?: NodeUsage;
    /** What stays after `pulumi destroy`: S3 artifacts (datasets, adapters, models), GB. */
    readonly keptS3Gb: number;
    /** EBS volumes kept after destroy, GB (none by default). */
    readonly keptEbsGb?: number;
}

export interface NodeCost {
    readonly instanceType: string;
    readonly usdPerHour: number;
    readonly hours: number;
    readonly computeUsd: number;
    readonly volumeUsd: number;
    readonly usd: number;
    readonly maxHours: number;
    /** The cap times the price: the most the node can cost. */
    readonly worstCaseUsd: number;
}

export interface CostEstimate {
    readonly runs: readonly (NodeCost & { readonly name: string })[];
    readonly prep: NodeCost | undefined;
    /** Expected dollars for prep and every run. */
    readonly usd: number;
    /** Every node running to its cap. */
    readonly worstCaseUsd: number;
    /** Storage kept after destroy, per month. */
    readonly storageUsdPerMonth: number;
    readonly assumptions: string[];
}

function nodeCost(n: NodeUsage): NodeCost {
    const instance = getInstance(n.instanceType);
    const volumeUsdPerHour = ((n.volumeGb ?? 0) * EBS_GP3_USD_PER_GB_MONTH) / HOURS_PER_MONTH;
    const computeUsd = n.hours * instance.onDemandUsdPerHour;
    const volumeUsd = n.hours * volumeUsdPerHour;
    return {
        instanceType: n.instanceType,
        usdPerHour: instance.onDemandUsdPerHour,
        hours: n.hours,
        computeUsd,
        volumeUsd,
        usd: computeUsd + volumeUsd,
        maxHours: n.maxHours,
        // The cap at the dearest type the node may launch as: a fallback type can cost more than the first choice.
        worstCaseUsd: n.maxHours * (Math.max(instance.onDemandUsdPerHour, ...(n.fallbackInstanceTypes ?? []).map((t) => getInstance(t).onDemandUsdPerHour)) + volumeUsdPerHour),
    };
}

/** Dollars: node hours x on-demand price, volumes while nodes run, storage kept after destroy, and the caps' worst case. */
export function estimateCost(input: CostInput): CostEstimate {
    const runs = input.runs.map((r) => ({ name: r.name, ...nodeCost(r) }));
    const prep = input.prep ? nodeCost(input.prep) : undefined;
    const nodes: NodeCost[] = [...runs, ...(prep ? [prep] : [])];
    const usd = nodes.reduce((s, c) => s + c.usd, 0);
    const worstCaseUsd = nodes.reduce((s, c) => s + c.worstCaseUsd, 0);
    const storageUsdPerMonth = input.keptS3Gb * S3_STANDARD_USD_PER_GB_MONTH + (input.keptEbsGb ?? 0) * EBS_GP3_USD_PER_GB_MONTH;
    const assumptions = [
        "us-east-1 on-demand prices from the instance catalog; spot usually costs less but varies by hour and zone, so on-demand is shown as the ceiling",
        `EBS gp3 $${EBS_GP3_USD_PER_GB_MONTH}/GB-month (aws.amazon.com/ebs/pricing), billed per hour of a ${HOURS_PER_MONTH}-hour month while a node runs`,
        `S3 Standard $${S3_STANDARD_USD_PER_GB_MONTH}/GB-month (aws.amazon.com/s3/pricing, first 50 TB) for what is kept after destroy; requests and transfer out not counted`,
        "worst case: every node runs to its max-hours cap, as the dearest type it may launch as (its fallback types included)",
    ];
    return { runs, prep, usd, worstCaseUsd, storageUsdPerMonth, assumptions };
}

// ---------------------------------------------------------------- generation (the evaluation's time)

/**
 * Share of the peak memory bandwidth a Hugging Face generate() loop reaches while decoding: each new token of a
 * batch reads every weight once, and unfused kernels, launch gaps and the KV cache keep it well below peak. Half
 * is taken, so the estimate errs long.
 */
export const DECODE_BANDWIDTH_EFFICIENCY = 0.5;

/** MFU of the prompt's forward pass (prefill), compute-bound: the training figure for a full forward. */
export const PREFILL_MFU = 0.35;

export interface GenerationInput {
    readonly architecture: Architecture;
    /** Prompts generated for, in batches of batchSize. */
    readonly rows: number;
    /** Mean prompt length, tokens. */
    readonly promptTokens: number;
    /** evaluation.generation.maxNewTokens: every prompt is taken to generate them all (greedy to the cap). */
    readonly maxNewTokens: number;
    readonly batchSize: number;
    /** Bytes per weight as the evaluation loads the model: 2 in bf16/fp16, 4 in fp32, NF4 for QLoRA's base. */
    readonly weightBytesPerParam: number;
    /** The one GPU the evaluation runs on (evaluate.py: one process, one device). */
    readonly memoryBandwidthGBs: number;
    readonly peakTflops: number;
}

export interface GenerationEstimate {
    readonly prefillSeconds: number;
    readonly decodeSeconds: number;
    readonly hours: number;
    readonly assumptions: string[];
}

/**
 * One evaluation's generation time: rows x (prompt prefill + maxNewTokens decode). Prefill is compute-bound
 * (2N FLOPs per prompt token at PREFILL_MFU); each decode step of a batch is bound by reading the weights
 * (weight bytes / (bandwidth x DECODE_BANDWIDTH_EFFICIENCY)), or by its compute when the batch is large.
 */
export function estimateGeneration(input: GenerationInput): GenerationEstimate {
    if (!(input.memoryBandwidthGBs > 0) || !(input.peakTflops > 0) || !(input.batchSize >= 1)) throw new Error("memoryBandwidthGBs, peakTflops and batchSize must be positive");
    const arch = input.architecture;
    const seq2seq = arch.kind === "t5";
    // A seq2seq prompt meets the encoder and a new token the decoder: about half the model each.
    const n = seq2seq ? matmulParams(arch) / 2 : matmulParams(arch);
    const decodeBytes = countParams(arch) * (seq2seq ? 0.5 : 1) * input.weightBytesPerParam;
    const flops = input.peakTflops * 1e12 * PREFILL_MFU;
    const prefillSeconds = (input.rows * input.promptTokens * 2 * n) / flops;
    const batches = Math.ceil(input.rows / input.batchSize);
    const stepSeconds = Math.max(decodeBytes / (input.memoryBandwidthGBs * 1e9 * DECODE_BANDWIDTH_EFFICIENCY), (2 * n * input.batchSize) / flops);
    const decodeSeconds = batches * input.maxNewTokens * stepSeconds;
    return {
        prefillSeconds,
        decodeSeconds,
        hours: (prefillSeconds + decodeSeconds) / 3600,
        assumptions: [
            `evaluation: rows x (prompt prefill at 2N FLOPs per token, MFU ${PREFILL_MFU}, + maxNewTokens decode steps per batch, each reading the ` +
                `${seq2seq ? "decoder's " : ""}weights once at ${DECODE_BANDWIDTH_EFFICIENCY * 100}% of the GPU's memory bandwidth, ${input.memoryBandwidthGBs.toLocaleString("en-US")} GB/s (components/plan/catalog.ts)); ` +
                "every answer taken to run to maxNewTokens; KV-cache reads and the adapter's extra matmuls not counted; on one GPU",
        ],
    };
}
