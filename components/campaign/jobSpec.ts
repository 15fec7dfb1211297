// The job spec: the only interface between the TypeScript side and the Python jobs. One schema, written
// here in zod; containers/schemas/*.schema.json are generated from it (scripts/gen-schemas.ts) and the
// Python jobs validate against those files. A test fails when the generated files are stale.
import { createHash } from "node:crypto";
import { z } from "zod";
import { attempt } from "./attempts";
import { customJob, data, evaluationFields, lora, methodKinds, model, training } from "../config/schema";
import { phases } from "./contract";

export const JOB_SPEC_VERSION = 1;

/** What prep needs of experiment.evaluation: which rows to set apart, and the column to group them by. */
export const evaluationSet = evaluationFields
    .pick({ split: true, rows: true, seed: true, groupBy: true })
    .extend({
        /** training.selectBy: validation rows set apart in selection/ (a seeded order, `seed`), the most any run
         *  samples; a run takes the first training.selectBy.rows of them. Absent: no run selects by a task metric. */
        selectionRows: z.number().int().positive().optional(),
    })
    .strict();
export type EvaluationSet = z.output<typeof evaluationSet>;

/** What the trainer needs of experiment.evaluation, plus the campaign's decisions about this run. */
export const trainEvaluation = evaluationFields
    .extend({
        /** This run evaluates its base model for the campaign (the first run of each base model does; components/campaign/baseline.ts). */
        computeBaseline: z.boolean(),
        /** data.format.labels of a classification format: the label shape's vocabulary and macro_f1's classes. */
        labels: z.array(z.string()).optional(),
    })
    .strict();
export type TrainEvaluation = z.output<typeof trainEvaluation>;

/** What the prep job needs: the data settings (less the plan-only size estimate) and the tokenizer. */
export const prepSpec = z
    .object({
        schemaVersion: z.literal(JOB_SPEC_VERSION),
        kind: z.literal("prep"),
        campaign: z.string(),
        /** Content hash of everything that shapes the prepared data; the dataset's S3 prefix. */
        prepHash: z.string().regex(/^[0-9a-f]{16}$/),
        data: data.omit({ estimate: true }),
        /** The tokenizer used when data.tokenize.enabled (all runs then share one base model). */
        tokenizer: model.optional(),
        /** Base models the prep job stages into S3, so GPU nodes read weights from S3, not the hub. */
        stageModels: z.array(model),
        /** The rows the trainer evaluates: prep writes them apart (evaluation/), with their prompts, reference
         *  answers and group column, untokenized and unpacked whatever the training data is. */
        evaluation: evaluationSet.optional(),
    })
    .strict();

/** What the trainer needs for one run. */
export const trainSpec = z
    .object({
        schemaVersion: z.literal(JOB_SPEC_VERSION),
        kind: z.literal("train"),
        campaign: z.string(),
        run: z.string(),
        /** The training hash: what shapes the trained weights (this spec without the evaluation and the two hashes,
         *  the prepared data's training content instead of prepHash; trainingHashOf). Checkpoints and the output's
         *  metrics.json carry it; the trainer refuses a checkpoint of another one. */
        specHash: z.string().regex(/^[0-9a-f]{16}$/),
        /** The evaluation hash: the evaluation settings (evaluationHashOf). eval.json records the one it was computed
         *  with, so a finished run whose evaluation changed is evaluated again from its saved model, not retrained. */
        evaluationHash: z.string().regex(/^[0-9a-f]{16}$/).optional(),
        /** The prepared dataset this run trains on; the trainer refuses data from another prep. */
        prepHash: z.string().regex(/^[0-9a-f]{16}$/),
        model,
        method: z.object({ kind: z.enum(methodKinds), lora }).strict(),
        training,
        /** How the prepared data looks: the trainer checks it instead of formatting on the GPU. */
        data: z
            .object({
                formatKind: z.enum(["alpaca", "chat", "seq2seq", "classification"]),
                tokenized: z.boolean(),
                packing: z.boolean(),
                maxLength: z.number().int().positive(),
            })
            .strict(),
        /** GPUs on the node: torchrun --nproc_per_node. */
        gpus: z.number().int().positive(),
        tracking: z.object({ wandbProject: z.string().optional() }).strict(),
        customJob: customJob.optional(),
        /** Task metrics on the evaluation rows after training (containers/trainer/evaluate.py). */
        evaluation: trainEvaluation.optional(),
    })
    .strict();

export const jobSpec = z.discriminatedUnion("kind", [prepSpec, trainSpec]);
export type PrepSpec = z.output<typeof prepSpec>;
export type TrainSpec = z.output<typeof trainSpec>;
export type JobSpec = z.output<typeof jobSpec>;

// ---------------------------------------------------------------- what jobs and the runner report

export const progressPhases = ["training", "evaluating"] as const;
/** The parts of an evaluation the progress file reports: the teacher-forced loss pass over a held-out split
 *  ("loss": the validation pass at every evalSteps during training, and the splits' losses after it, counted in
 *  batches), then the generation after training, in rows: the base model (when the run computes the campaign's
 *  baseline, output/baseline/), then the fine-tuned model. */
export const evaluationParts = ["loss", "baseline", "fine-tuned"] as const;

export const evaluationProgress = z
    .object({
        part: z.enum(evaluationParts),
        /** Rows generated so far, and the part's rows in all (batches, for the loss pass). */
        done: z.number().int().min(0),
        total: z.number().int().min(0),
        updatedAt: z.string(),
    })
    .strict();
export type EvaluationProgress = z.output<typeof evaluationProgress>;

/** The job's own progress file, rewritten every few seconds; the runner merges it into status.json. */
export const progress = z
    .object({
        step: z.number().int().min(0),
        totalSteps: z.number().int().min(0),
        epoch: z.number().min(0),
        loss: z.number().nullable(),
        learningRate: z.number().nullable(),
        tokensPerSec: z.number().min(0).nullable(),
        etaSeconds: z.number().min(0).nullable(),
        updatedAt: z.string(),
        /** What the job is at: training steps, or the evaluation after training (containers/trainer/evaluate.py).
         *  Absent: training (jobs that do not evaluate need not write it). */
        phase: z.enum(progressPhases).optional(),
        /** The evaluation under way: rows generated so far of one part (the base model's, then the fine-tuned
         *  model's), rewritten as batches finish. The runner's stall watchdog counts a new step or a new row. */
        evaluation: evaluationProgress.nullable().optional(),
    })
    .strict();
export type Progress = z.output<typeof progress>;

const timestamp = z.string().nullable();

/** runs/<campaign>/<run>/status.json, written by the node runner. */
export const status = z
    .object({
        campaign: z.string(),
        run: z.string(),
        role: z.enum(["prep", "train"]),
        phase: z.enum(phases),
        updatedAt: z.string(),
        instanceId: z.string().nullable(),
        instanceType: z.string().nullable(),
        progress: progress.nullable(),
        exitCode: z.number().int().nullable(),
        reason: z.string().nullable(),
        /** Newest checkpoint known complete in S3, e.g. checkpoint-500. */
        lastCheckpoint: z.string().nullable(),
        timings: z
            .object({
                nodeBoot: timestamp,
                inputsReady: timestamp,
                firstStep: timestamp,
                jobEnd: timestamp,
                shutdown: timestamp,
            })
            .strict(),
        /** Every phase change, warning (e.g. no GPU metrics) and stop the runner acted on, oldest first, with
         *  its time: how the run got to its phase. Absent in statuses written before the runner kept them. */
        events: z
            .array(
                z
                    .object({
                        at: z.string(),
                        kind: z.enum(["phase", "warning", "event"]),
                        phase: z.enum(phases),
                        reason: z.string().nullable(),
                    })
                    .strict(),
            )
            .optional(),
        /** Every node's attempt at the run, oldest first, this node's last: each runner carries the earlier ones
         *  forward from the status.json it found (attempts.ts). Absent in statuses written before. */
        attempts: z.array(attempt).optional(),
    })
    .strict();
export type Status = z.output<typeof status>;

// ---------------------------------------------------------------- hashing

/** JSON with object keys sorted at every level, so equal content gives equal bytes. */
export function canonicalJson(value: unknown): string {
    return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(sortKeys);
    if (value !== null && typeof value === "object") {
        const out: Record<string, unknown> = {};
        for (const key of Object.keys(value as object).sort()) {
            const v = (value as Record<string, unknown>)[key];
            if (v !== undefined) out[key] = sortKeys(v);
        }
        return out;
    }
    return value;
}

export function shortHash(value: unknown): string {
    return createHash("sha256").update(canonicalJson(value)).digest("hex").slice(0, 16);
}

/** A train spec before its hashes are computed. */
export type TrainSpecBody = Omit<TrainSpec, "specHash" | "evaluationHash">;

/**
 * The training hash: everything that changes the trained weights, and nothing that only changes how they are
 * evaluated. The evaluation is left out, and so is prepHash, which also covers the evaluation rows prep sets apart:
 * `trainingDataHash` stands for the prepared training data instead (the prep identity without its evaluation).
 * Without an evaluation this equals the hash of the whole body, as before the split.
 */
export function trainingHashOf(body: TrainSpecBody, trainingDataHash: string): string {
    const { evaluation, prepHash, ...rest } = body;
    void prepHash;
    // training.selectBy picks the checkpoint by answers generated and scored as the evaluation does: those settings
    // shape the output model, so they are part of the training hash when it is set.
    const selection = body.training.selectBy && evaluation
        ? { answer: evaluation.answer, generation: evaluation.generation, labels: evaluation.labels, seed: evaluation.seed }
        : undefined;
    return shortHash({ ...rest, prepHash: trainingDataHash, ...(selection ? { selection } : {}) });
}

/** The evaluation hash: how the run is evaluated (the rows, the generation, the answer shape, the metrics). Whether
 *  this run also computes the baseline is not part of it: baseline/eval.json records the same hash. */
export function evaluationHashOf(evaluation: TrainEvaluation): string {
    const { computeBaseline: _computeBaseline, ...settings } = evaluation;
    return shortHash(settings);
}

/** The body with its two hashes. */
export function withHashes(body: TrainSpecBody, trainingDataHash: string): TrainSpec {
    return {
        ...body,
        specHash: trainingHashOf(body, trainingDataHash),
        ...(body.evaluation ? { evaluationHash: evaluationHashOf(body.evaluation) } : {}),
    };
}
