// The constants that TypeScript, the node runner and the Python jobs must agree on: status phases, exit
// codes, the paths a job sees, the marker files, and the prepared dataset's manifest. This file is their one
// source: scripts/gen-schemas.ts writes containers/schemas/contract.json and manifest.schema.json from it,
// the jobs and the runner read those, and `npm test` fails when the generated files are stale.
import { z } from "zod";

/** Status phases of a job, in order; the last three are terminal. */
export const phases = ["pending", "preparing", "staged", "starting", "training", "uploading", "succeeded", "failed", "interrupted"] as const;
export type Phase = (typeof phases)[number];
export const terminalPhases: readonly Phase[] = ["succeeded", "failed", "interrupted"];

/** Exit codes of the jobs (sysexits where one fits), read by the runner to pick the final phase. */
export const exitCodes = {
    success: 0,
    failure: 1,
    /** Refused data: not prepared for this spec, too many malformed rows, or an empty split. */
    dataError: 65,
    /** Stopped on SIGTERM after saving a checkpoint: resumable. */
    interrupted: 75,
    /** Bad spec or impossible setting (QLoRA without CUDA, a stale checkpoint). */
    configError: 78,
} as const;

/** Fixed paths the job sees inside its container; in process mode the runner maps them to host dirs. */
export const jobPaths = {
    CAMPAIGN_SPEC: "/job/spec.json",
    CAMPAIGN_INPUT_DIR: "/job/input",
    CAMPAIGN_DATA_DIR: "/job/data",
    CAMPAIGN_MODEL_DIR: "/job/model",
    CAMPAIGN_CHECKPOINT_DIR: "/job/checkpoints",
    CAMPAIGN_OUTPUT_DIR: "/job/output",
    CAMPAIGN_PROGRESS_FILE: "/job/progress.json",
    /** The training history, appended one JSON line per record (metricsHistory.ts); each attempt starts its own. */
    CAMPAIGN_METRICS_FILE: "/job/metrics.jsonl",
} as const;

/** Files whose presence means "complete": each is written last, after everything it vouches for. */
export const markers = {
    /** datasets/<prep-hash>/_SUCCESS: the prepared dataset is whole; the gate opens on it. */
    datasetComplete: "_SUCCESS",
    /** checkpoint-<step>/_COMPLETE.json: the checkpoint is whole and names the spec hash it belongs to. */
    checkpointComplete: "_COMPLETE.json",
    /** datasets/<prep-hash>/manifest.json: what prep produced (schema below). */
    manifest: "manifest.json",
} as const;

/** The evaluation's files: in a run's output directory, and for a base model under its baseline/ folder. */
export const evaluationFiles = {
    /** Metrics, counts, the per-group breakdown and the settings used. */
    metrics: "eval.json",
    /** One JSON line per evaluated row: input, reference, prediction, parsed answer, correct. */
    predictions: "predictions.jsonl",
    /** The base model's evaluation, beside the run's, in the output of the run that computes it. */
    baselineDir: "baseline",
    /** The evaluation rows prep sets apart in the prepared dataset (prompt, reference, group column). */
    datasetDir: "evaluation",
    /** The validation rows training.selectBy generates for during training, in a seeded order (prompt, reference). */
    selectionDir: "selection",
} as const;

/** The data splits prep writes, in order. */
export const splits = ["train", "validation", "test"] as const;

/** Bumped when the manifest's shape changes. */
export const MANIFEST_VERSION = 1;

const splitFiles = z.object({ examples: z.number().int().min(0), rows: z.number().int().min(0), files: z.array(z.unknown()) }).loose();

/**
 * datasets/<prep-hash>/manifest.json, written by the prep job before _SUCCESS and read by the trainer. The
 * fields the trainer and the campaign rely on are required; prep may add more (timings, token statistics).
 */
export const manifest = z
    .object({
        manifestVersion: z.literal(MANIFEST_VERSION),
        prepHash: z.string().min(1),
        campaign: z.string(),
        createdAt: z.string(),
        formatKind: z.string(),
        tokenized: z.boolean(),
        packing: z.boolean(),
        maxLength: z.number().int().positive().nullable(),
        columns: z.array(z.string()).min(1),
        counts: z
            .object({
                read: z.number().int().min(0),
                malformed: z.number().int().min(0),
                removed: z.record(z.string(), z.number().int().min(0)),
                kept: z.number().int().min(0),
                splits: z.object({ train: z.number().int().min(0), validation: z.number().int().min(0), test: z.number().int().min(0) }),
            })
            .loose(),
        splits: z.object({ train: splitFiles, validation: splitFiles, test: splitFiles }),
        contentHash: z.string(),
        /** The rows the trainer evaluates (containers/prep/evaluation.py); null when the spec asks for no evaluation. */
        evaluation: z
            .object({
                split: z.enum(["validation", "test"]),
                rows: z.number().int().positive(),
                ofRows: z.number().int().positive(),
                seed: z.number().int(),
                groupBy: z.string().nullable(),
                columns: z.array(z.string()).min(2),
                files: z.array(z.object({ path: z.string(), rows: z.number().int().min(0) }).loose()).min(1),
            })
            .strict()
            .nullable()
            .optional(),
        /** The validation rows for training.selectBy (containers/prep/evaluation.py); null when no run selects by a task metric. */
        selection: z
            .object({
                split: z.literal("validation"),
                rows: z.number().int().positive(),
                ofRows: z.number().int().positive(),
                seed: z.number().int(),
                columns: z.array(z.string()).min(2),
                files: z.array(z.object({ path: z.string(), rows: z.number().int().min(0) }).loose()).min(1),
            })
            .strict()
            .nullable()
            .optional(),
    })
    .loose();
export type Manifest = z.output<typeof manifest>;

/**
 * What a control object (runs/<campaign>/control.json for every run, runs/<campaign>/<run>/control.json for one; keys
 * in layout.ts) may ask of a node: both save a checkpoint (SIGTERM to the job), sync it, write the status
 * `interrupted` and end the node. They differ in what the next `pulumi up` does (components/campaign/relaunch.ts):
 * a `stop`ped run gets no node until the stop is cleared (`campaign continue`); a `restart`ed run gets a new node
 * that resumes. Neither ever touches a run that succeeded.
 */
export const controlActions = ["stop", "restart"] as const;
export type ControlAction = (typeof controlActions)[number];

/**
 * A control object as `campaign stop` writes it. The node runner acts on `action` only and logs a warning for any
 * action it does not know (never fatal); `requestedAt` (ISO 8601) and `requestedBy` say who asked, for people.
 * Every write is a new body (its time), so a new request always has a new ETag, which is how a node tells a new
 * request from one that was there before it started.
 */
export const controlRequest = z
    .object({
        action: z.enum(controlActions),
        requestedAt: z.string().min(1),
        requestedBy: z.string().optional(),
    })
    .strict();
export type ControlRequest = z.output<typeof controlRequest>;

/** Everything above that is plain data, as containers/schemas/contract.json carries it. */
export function contractJson(): Record<string, unknown> {
    return { phases, terminalPhases, exitCodes, jobPaths, markers, evaluationFiles, splits, manifestVersion: MANIFEST_VERSION, controlActions };
}
