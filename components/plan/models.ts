// Known model architectures: one source of truth for parameter counts, LoRA sizes and the shapes the
// memory and time estimates need. Instruct variants share their base model's architecture.
import type { modelFamilies } from "../config/schema";
import { didYouMean } from "../config/suggest";

export type ModelFamily = (typeof modelFamilies)[number];

/** A decoder-only transformer with GQA attention and a gated (SwiGLU) FFN: Qwen2.5, Llama 3. */
export interface DecoderArchitecture {
    readonly kind: "decoder";
    readonly hiddenSize: number;
    readonly intermediateSize: number;
    readonly layers: number;
    readonly heads: number;
    readonly kvHeads: number;
    readonly headDim: number;
    readonly vocabSize: number;
    readonly tiedEmbeddings: boolean;
    /** q/k/v projections carry a bias (Qwen2 does, Llama does not). */
    readonly qkvBias: boolean;
    /** Attention runs through SDPA / FlashAttention, so no batch x heads x seq^2 tensor is kept. */
    readonly fusedAttention: boolean;
}

/** An encoder-decoder T5: relative position bias, no biases in linears, RMS-style layer norms. */
export interface T5Architecture {
    readonly kind: "t5";
    readonly dModel: number;
    readonly dFf: number;
    readonly dKv: number;
    readonly heads: number;
    readonly encoderLayers: number;
    readonly decoderLayers: number;
    readonly vocabSize: number;
    /** FLAN-T5 / T5 v1.1: gated-GELU FFN with wi_0, wi_1, wo. T5 v1.0: ReLU FFN with wi, wo. */
    readonly gatedFfn: boolean;
    readonly tiedEmbeddings: boolean;
    readonly relativeAttentionBuckets: number;
    /** HF's T5Attention adds a position bias to explicit scores: the seq^2 scores are materialised. */
    readonly fusedAttention: boolean;
}

export type Architecture = DecoderArchitecture | T5Architecture;

export interface ModelInfo {
    /** Hub id of the base model. */
    readonly id: string;
    readonly family: ModelFamily;
    readonly architecture: Architecture;
    /** Total parameters as published (model card or safetensors metadata); the tests check countParams against it. */
    readonly publishedParams: number;
    readonly source: string;
}

// ---------------------------------------------------------------- the catalog

const QWEN_SOURCE = "config.json of the Qwen/Qwen2.5-* repositories on the Hugging Face Hub; Qwen2.5 technical report (arXiv:2412.15115) Table 1";

function qwen(
    size: string,
    hiddenSize: number,
    intermediateSize: number,
    layers: number,
    heads: number,
    kvHeads: number,
    vocabSize: number,
    tiedEmbeddings: boolean,
    publishedParams: number,
): ModelInfo {
    return {
        id: `Qwen/Qwen2.5-${size}`,
        family: "causal-lm",
        architecture: { kind: "decoder", hiddenSize, intermediateSize, layers, heads, kvHeads, headDim: hiddenSize / heads, vocabSize, tiedEmbeddings, qkvBias: true, fusedAttention: true },
        publishedParams,
        source: QWEN_SOURCE,
    };
}

function t5(
    id: string,
    dModel: number,
    dFf: number,
    heads: number,
    layers: number,
    gatedFfn: boolean,
    publishedParams: number,
    source: string,
): ModelInfo {
    return {
        id,
        family: "seq2seq",
        architecture: {
            kind: "t5",
            dModel,
            dFf,
            dKv: 64,
            heads,
            encoderLayers: layers,
            decoderLayers: layers,
            vocabSize: 32_128,
            gatedFfn,
            // T5 v1.0 ties the LM head to the shared embedding; FLAN-T5 (v1.1 recipe) does not.
            tiedEmbeddings: !gatedFfn,
            relativeAttentionBuckets: 32,
            fusedAttention: false,
        },
        publishedParams,
        source,
    };
}

const FLAN_SOURCE = "config.json of google/flan-t5-* on the Hugging Face Hub (d_model, d_ff, d_kv, num_heads, num_layers, gated-gelu)";
const T5_SOURCE = "config.json of google-t5/t5-* on the Hugging Face Hub (relu FFN, tied LM head); Raffel et al. 2020 Table 14";

/** The known models. Parameter totals: the published counts; the AG News campaign gives 7,615,616,512 for Qwen2.5-7B. */
export const MODELS: readonly ModelInfo[] = Object.freeze([
    //    size    hidden  inter   layers heads kv  vocab    tied   published
    qwen("0.5B", 896, 4_864, 24, 14, 2, 151_936, true, 494_032_768),
    qwen("1.5B", 1_536, 8_960, 28, 12, 2, 151_936, true, 1_543_714_304),
    qwen("3B", 2_048, 11_008, 36, 16, 2, 151_936, true, 3_085_938_688),
    qwen("7B", 3_584, 18_944, 28, 28, 4, 152_064, false, 7_615_616_512),
    qwen("14B", 5_120, 13_824, 48, 40, 8, 152_064, false, 14_770_033_664),
    qwen("32B", 5_120, 27_648, 64, 40, 8, 152_064, false, 32_763_876_352),
    {
        id: "meta-llama/Llama-3.1-8B",
        family: "causal-lm",
        architecture: { kind: "decoder", hiddenSize: 4_096, intermediateSize: 14_336, layers: 32, heads: 32, kvHeads: 8, headDim: 128, vocabSize: 128_256, tiedEmbeddings: false, qkvBias: false, fusedAttention: true },
        publishedParams: 8_030_261_248,
        source: "config.json of meta-llama/Llama-3.1-8B on the Hugging Face Hub; 8,030,261,248 from its safetensors index",
    },
    //   id                       d_model d_ff  heads layers gated published
    t5("google/flan-t5-small", 512, 1_024, 6, 8, true, 76_961_152, FLAN_SOURCE),
    t5("google/flan-t5-base", 768, 2_048, 12, 12, true, 247_577_856, FLAN_SOURCE),
    t5("google/flan-t5-large", 1_024, 2_816, 16, 24, true, 783_150_080, FLAN_SOURCE),
    t5("google-t5/t5-small", 512, 2_048, 8, 6, false, 60_506_624, T5_SOURCE),
    t5("google-t5/t5-base", 768, 3_072, 12, 12, false, 222_903_552, T5_SOURCE),
]);

function shortName(id: string): string {
    const trimmed = id.trim().replace(/\/+$/, "");
    const last = trimmed.slice(trimmed.lastIndexOf("/") + 1).toLowerCase();
    return last.replace(/-instruct$/, "");
}

const BY_SHORT: ReadonlyMap<string, ModelInfo> = new Map(MODELS.map((m) => [shortName(m.id), m]));

/**
 * The known model for a hub id, matched case-insensitively on the name after the org and ignoring an
 * "-Instruct" suffix: "Qwen/Qwen2.5-14B-Instruct", "qwen2.5-14b" and "t5-small" all match. Undefined otherwise.
 */
export function findModel(id: string): ModelInfo | undefined {
    return BY_SHORT.get(shortName(id));
}

/** The known model names (after the org), for suggestions. */
export const MODEL_NAMES: readonly string[] = MODELS.map((m) => m.id.slice(m.id.indexOf("/") + 1));

// ---------------------------------------------------------------- linear modules and parameter counts

/** One kind of linear layer: its PEFT target name, shape, and how many the model has. */
export interface LinearModule {
    readonly name: string;
    readonly inFeatures: number;
    readonly outFeatures: number;
    readonly count: number;
}

/**
 * The linear layers inside the transformer blocks, by the module name PEFT matches. In T5, "q" matches
 * the query projection of every attention block: encoder self-attention, decoder self- and cross-attention.
 * Embeddings and the LM head are not listed: LoRA targets and 4-bit quantisation leave them alone.
 */
export function linearModules(arch: Architecture): readonly LinearModule[] {
    if (arch.kind === "decoder") {
        const h = arch.hiddenSize;
        const q = arch.heads * arch.headDim;
        const kv = arch.kvHeads * arch.headDim; // GQA: k and v project to kvHeads x headDim
        const n = arch.layers;
        return [
            { name: "q_proj", inFeatures: h, outFeatures: q, count: n },
            { name: "k_proj", inFeatures: h, outFeatures: kv, count: n },
            { name: "v_proj", inFeatures: h, outFeatures: kv, count: n },
            { name: "o_proj", inFeatures: q, outFeatures: h, count: n },
            { name: "gate_proj", inFeatures: h, outFeatures: arch.intermediateSize, count: n },
            { name: "up_proj", inFeatures: h, outFeatures: arch.intermediateSize, count: n },
            { name: "down_proj", inFeatures: arch.intermediateSize, outFeatures: h, count: n },
        ];
    }
    const d = arch.dModel;
    const inner = arch.heads * arch.dKv;
    // Attention blocks: one per encoder layer, two (self + cross) per decoder layer.
    const attn = arch.encoderLayers + 2 * arch.decoderLayers;
    const ffn = arch.encoderLayers + arch.decoderLayers;
    const ffnModules: LinearModule[] = arch.gatedFfn
        ? [
              { name: "wi_0", inFeatures: d, outFeatures: arch.dFf, count: ffn },
              { name: "wi_1", inFeatures: d, outFeatures: arch.dFf, count: ffn },
              { name: "wo", inFeatures: arch.dFf, outFeatures: d, count: ffn },
          ]
        : [
              { name: "wi", inFeatures: d, outFeatures: arch.dFf, count: ffn },
              { name: "wo", inFeatures: arch.dFf, outFeatures: d, count: ffn },
          ];
    return [
        { name: "q", inFeatures: d, outFeatures: inner, count: attn },
        { name: "k", inFeatures: d, outFeatures: inner, count: attn },
        { name: "v", inFeatures: d, outFeatures: inner, count: attn },
        { name: "o", inFeatures: inner, outFeatures: d, count: attn },
        ...ffnModules,
    ];
}

/** Parameters in the blocks' linear weights (what QLoRA stores in 4 bits). */
export function blockLinearParams(arch: Architecture): number {
    return linearModules(arch).reduce((sum, m) => sum + m.inFeatures * m.outFeatures * m.count, 0);
}

/** Parameters of the input embedding table (a lookup: no matmul FLOPs unless tied to the LM head). */
export function embeddingParams(arch: Architecture): number {
    return arch.vocabSize * (arch.kind === "decoder" ? arch.hiddenSize : arch.dModel);
}

/** Total parameters, from the architecture. */
export function countParams(arch: Architecture): number {
    const linears = blockLinearParams(arch);
    const embed = embeddingParams(arch);
    const head = arch.tiedEmbeddings ? 0 : embed;
    if (arch.kind === "decoder") {
        const q = arch.heads * arch.headDim;
        const kv = arch.kvHeads * arch.headDim;
        const bias = arch.qkvBias ? arch.layers * (q + 2 * kv) : 0;
        const norms = arch.layers * 2 * arch.hiddenSize + arch.hiddenSize; // two RMSNorms per layer + final
        return linears + embed + head + bias + norms;
    }
    const d = arch.dModel;
    const norms = arch.encoderLayers * 2 * d + arch.decoderLayers * 3 * d + 2 * d; // per sub-block + two finals
    const relBias = 2 * arch.relativeAttentionBuckets * arch.heads; // first encoder and first decoder self-attention
    return linears + embed + head + norms + relBias;
}

/** Parameters that take part in matmuls: all but an untied input embedding table. */
export function matmulParams(arch: Architecture): number {
    return countParams(arch) - (arch.tiedEmbeddings ? 0 : embeddingParams(arch));
}

// ---------------------------------------------------------------- LoRA

/** PEFT's shorthand for every linear layer but the output head. */
export const ALL_LINEAR = "all-linear";

/** The LoRA target module names this architecture has. */
export function validTargetModules(arch: Architecture): string[] {
    return linearModules(arch).map((m) => m.name);
}

/**
 * Trainable LoRA parameters for rank r on the named modules: r x (in + out) per adapted linear
 * (A is r x in, B is out x r; bias="none"). Unknown module names throw, naming the valid ones.
 */
export function loraTrainableParams(arch: Architecture, targetModules: readonly string[], r: number): number {
    if (!Number.isInteger(r) || r <= 0) throw new Error(`LoRA rank must be a positive integer; got ${r}`);
    const modules = linearModules(arch);
    const valid = modules.map((m) => m.name);
    const wanted = new Set<string>();
    for (const name of targetModules) {
        if (name === ALL_LINEAR) {
            valid.forEach((v) => wanted.add(v));
            continue;
        }
        if (!valid.includes(name)) {
            const hint = didYouMean(name, valid);
            const family = arch.kind === "decoder" ? "this decoder model" : arch.gatedFfn ? "this FLAN-T5 / T5 v1.1 model" : "this T5 v1.0 model";
            throw new Error(`unknown LoRA target module "${name}"${hint ? ` (${hint})` : ""}: ${family} has ${valid.join(", ")} (or ${ALL_LINEAR})`);
        }
        wanted.add(name);
    }
    return modules.filter((m) => wanted.has(m.name)).reduce((sum, m) => sum + r * (m.inFeatures + m.outFeatures) * m.count, 0);
}

/** The modules the LoRA targets select (for activation estimates). */
export function selectedModules(arch: Architecture, targetModules: readonly string[]): readonly LinearModule[] {
    const all = targetModules.includes(ALL_LINEAR);
    return linearModules(arch).filter((m) => all || targetModules.includes(m.name));
}
