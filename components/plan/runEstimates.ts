// The estimates of one campaign's nodes, from its config: the glue between the experiment and the pure
// formulas in estimate.ts. The checks and the plan both call these, so they never disagree.
import type { Experiment } from "../config/schema";
import type { ResolvedCampaign, ResolvedRun } from "../campaign/types";
import { getInstance, type InstanceSpec } from "./catalog";
import { NF4_BYTES_PER_PARAM, estimateGeneration, estimateMemory, estimateTrainingTime, type MemoryEstimate, type TimeEstimate } from "./estimate";
import { countParams, findModel, loraTrainableParams } from "./models";

export interface RunEstimates {
    readonly instance: InstanceSpec;
    readonly memory: MemoryEstimate;
    readonly time: TimeEstimate;
}

/** Sequence length the GPU sees: the prepared length when prep tokenizes, else the training cap. */
function sequenceLength(experiment: Experiment, run: ResolvedRun): number {
    return experiment.data.tokenize.enabled ? experiment.data.tokenize.maxLength : run.training.maxSeqLength;
}

/** Undefined when the model is not in components/plan/models.ts (nothing to estimate from). `measured`: an earlier
 *  campaign's MFU and setup hours for this run (calibration.ts), in place of the assumed ones. */
export function runEstimates(experiment: Experiment, run: ResolvedRun, measured: { readonly mfu?: number; readonly setupHours?: number } = {}): RunEstimates | undefined {
    const model = findModel(run.model.id);
    if (!model) return undefined;
    const instance = getInstance(run.instanceType);
    const t = run.training;
    const length = sequenceLength(experiment, run);
    const memory = estimateMemory({
        architecture: model.architecture,
        method: run.method.kind,
        lora: run.method.kind === "full" ? undefined : { r: run.method.lora.r, targetModules: run.method.lora.targetModules },
        perDeviceBatch: t.perDeviceBatch,
        seqLength: length,
        precision: t.precision,
        gradientCheckpointing: t.gradientCheckpointing,
        zeroStage: t.zeroStage,
        optimizer: t.optimizer,
        gpus: instance.gpuCount,
        gpuMemoryGiB: instance.gpuMemoryGiB,
    });
    const time = estimateTrainingTime({
        architecture: model.architecture,
        method: run.method.kind,
        gradientCheckpointing: t.gradientCheckpointing,
        trainExamples: experiment.data.estimate.trainExamples,
        meanTokens: experiment.data.estimate.meanTokens,
        ...(t.maxSteps !== undefined ? { maxSteps: t.maxSteps } : { epochs: t.epochs ?? 1 }),
        globalBatch: instance.gpuCount * t.perDeviceBatch * t.gradientAccumulation,
        packing: experiment.data.tokenize.packing,
        maxLength: length,
        gpus: instance.gpuCount,
        peakTflopsPerGpu: instance.bf16DenseTflops,
        // Measured figures of an earlier campaign (calibration.ts) replace the assumptions when given.
        ...(measured.mfu !== undefined ? { mfu: measured.mfu } : {}),
        ...(measured.setupHours !== undefined ? { setupHours: measured.setupHours } : {}),
    });
    return { instance, memory, time };
}

export interface EvaluationEstimate {
    /** Rows generated for in one evaluation. */
    readonly rows: number;
    /** Evaluations on the run's node: the trained model, plus its base model's baseline when this run computes it. */
    readonly evaluations: number;
    /** training.selectBy's generation at every evalSteps during training: rows each time, how often, and the hours. */
    readonly selection?: { readonly rows: number; readonly samplings: number; readonly hours: number };
    /** Every evaluation together, the selection's included. */
    readonly hours: number;
    readonly assumptions: string[];
}

/** The share of the rows (or groups) a split gets. */
function splitShare(experiment: Experiment, name: "train" | "validation" | "test"): number {
    const split = experiment.data.split;
    if (split.kind === "random") return split.ratios[name];
    if (split.counts) return split.counts[name] / (split.counts.train + split.counts.validation + split.counts.test);
    return split.ratios?.[name] ?? 0;
}

/**
 * The evaluation's generation time on one run's node (containers/trainer/evaluate.py): the trained model on the
 * evaluation rows, and once more for the base model when this run computes the campaign's baseline
 * (components/campaign/baseline.ts). Undefined without an evaluation, or for a model the table does not know.
 */
export function evaluationEstimate(experiment: Experiment, run: ResolvedRun, computesBaseline: boolean): EvaluationEstimate | undefined {
    const e = experiment.evaluation;
    const model = findModel(run.model.id);
    if (!e || !model) return undefined;
    const instance = getInstance(run.instanceType);
    const available = totalExamples(experiment) * splitShare(experiment, e.split);
    const rows = Math.max(1, Math.round(e.rows === "all" ? available : Math.min(e.rows, available)));
    const precisionBytes = run.training.precision === "fp32" ? 4 : 2;
    // One pass of generation over `count` prompts on the run's node, with the run's weights and the evaluation's settings.
    const generation = (count: number) =>
        estimateGeneration({
            architecture: model.architecture,
            rows: count,
            promptTokens: Math.min(experiment.data.estimate.meanTokens, run.training.maxSeqLength),
            maxNewTokens: e.generation.maxNewTokens,
            batchSize: e.generation.batchSize,
            weightBytesPerParam: run.method.kind === "qlora" ? NF4_BYTES_PER_PARAM : precisionBytes,
            memoryBandwidthGBs: instance.memoryBandwidthGBs,
            peakTflops: instance.bf16DenseTflops,
        });
    const one = generation(rows);
    const evaluations = computesBaseline ? 2 : 1;
    // training.selectBy: selectBy.rows validation rows generated for at every evaluation during training
    const select = run.training.selectBy;
    const steps = runEstimates(experiment, run)?.time.steps ?? 0;
    const samplings = select ? Math.floor(steps / run.training.evalSteps) : 0;
    const selectionHours = select ? samplings * generation(Math.min(select.rows, Math.max(1, Math.round(totalExamples(experiment) * splitShare(experiment, "validation"))))).hours : 0;
    return {
        rows,
        evaluations,
        selection: select ? { rows: select.rows, samplings, hours: selectionHours } : undefined,
        hours: one.hours * evaluations + selectionHours,
        assumptions: [
            ...one.assumptions,
            `evaluation rows: ${e.rows === "all" ? `all of the ${e.split} split` : `${e.rows} of the ${e.split} split`} (about ${rows.toLocaleString("en-US")}), prompts of data.estimate.meanTokens; the run that computes a base model's baseline evaluates twice` +
                (select ? `; training.selectBy generates for its validation rows at every evalSteps (steps / evalSteps times), on one GPU` : ""),
        ],
    };
}

/** Rows prep reads in all (train is one share of them). */
function totalExamples(experiment: Experiment): number {
    const split = experiment.data.split;
    const trainShare = split.kind === "random" ? split.ratios.train : split.ratios?.train ?? (split.counts ? split.counts.train / (split.counts.train + split.counts.validation + split.counts.test) : 0.9);
    return experiment.data.estimate.trainExamples / trainShare;
}

// Prep rates: the formatting + cleaning + split figure is below what scripts/bench-prep.py measures on
// 2 cores, so the estimate errs long; tokenization rates are the fast (Rust) tokenizers' usual range.
const PREP_ROWS_PER_SECOND = 50_000;
const TOKENIZE_ROWS_PER_SECOND_PER_VCPU = 2_000;
const PREP_SETUP_HOURS = 0.1;
const LOCAL_VCPUS = 4;

export function prepEstimate(experiment: Experiment): { hours: number; assumptions: string[] } {
    const rows = totalExamples(experiment);
    const vcpus = experiment.prep.runOn === "ec2" ? getInstance(experiment.prep.instanceType).vcpus : LOCAL_VCPUS;
    const formatSeconds = rows / PREP_ROWS_PER_SECOND;
    const tokenizeSeconds = experiment.data.tokenize.enabled ? rows / (TOKENIZE_ROWS_PER_SECOND_PER_VCPU * vcpus) : 0;
    return {
        hours: PREP_SETUP_HOURS + (formatSeconds + tokenizeSeconds) / 3600,
        assumptions: [
            `prep: ${PREP_SETUP_HOURS} h to boot and pull its image, formatting + cleaning + split at ${PREP_ROWS_PER_SECOND.toLocaleString("en-US")} rows/s` +
                (experiment.data.tokenize.enabled ? `, tokenizing at ${TOKENIZE_ROWS_PER_SECOND_PER_VCPU.toLocaleString("en-US")} rows/s per vCPU (${vcpus} vCPUs)` : "") +
                `; ${Math.round(rows).toLocaleString("en-US")} rows in all`,
        ],
    };
}

const GB = 1e9;

/** GB kept in S3 after destroy: prepared data, staged weights, outputs, checkpoints until they expire. */
export function storageEstimate(campaign: ResolvedCampaign): { keptGb: number; assumptions: string[] } {
    const { experiment } = campaign;
    const tokens = totalExamples(experiment) * experiment.data.estimate.meanTokens;
    // ~4 bytes of text per token; tokenized columns add int32 input_ids and labels. Parquet compression not counted.
    const datasetGb = (tokens * (4 + (experiment.data.tokenize.enabled ? 8 : 0))) / GB;
    let weightsGb = 0;
    for (const m of campaign.prepSpec.stageModels) {
        const info = findModel(m.id);
        if (info) weightsGb += (countParams(info.architecture) * 2) / GB;
    }
    let outputsGb = 0;
    for (const run of campaign.runs) {
        const info = findModel(run.model.id);
        if (!info) continue;
        const params = countParams(info.architecture);
        if (run.method.kind === "full") {
            // bf16 model out; each checkpoint also holds gradients-free optimizer moments (2 x bf16).
            outputsGb += (params * 2 + run.training.saveTotalLimit * params * (2 + 4)) / GB;
        } else {
            const trainable = loraTrainableParams(info.architecture, run.method.lora.targetModules, run.method.lora.r);
            outputsGb += (trainable * 4 + run.training.saveTotalLimit * trainable * (4 + 8)) / GB;
        }
    }
    return {
        keptGb: datasetGb + weightsGb + outputsGb,
        assumptions: [
            `storage: prepared data ~4 bytes of text per token (+8 when tokenized), staged weights in bf16, outputs plus ${experiment.storage.checkpointExpiryDays}-day checkpoints (saveTotalLimit each); Parquet compression not counted`,
        ],
    };
}
