// A run's training history: the trainer appends one JSON line per record to CAMPAIGN_METRICS_FILE (every logged
// step, every evaluation, the peak GPU memory and the measured throughput when training ends), and the node
// runner uploads each attempt's file whole to runs/<campaign>/<run>/metrics/<attempt>.jsonl (layout.ts). S3
// objects cannot be appended to, so each node (attempt) owns its own object; the report merges them
// (components/report/history.ts). This file is the format's one source: scripts/gen-schemas.ts writes
// containers/schemas/metrics-history.schema.json from it, and the trainer's tests validate against that.
import { z } from "zod";

const step = z.number().int().min(0);
const at = z.string();
const nullableNumber = z.number().nullable();

/** One logged training step (training.loggingSteps): loss, learning rate, grad norm and tokens/s since the last log. */
export const trainRecord = z
    .object({
        kind: z.literal("train"),
        step,
        epoch: z.number().min(0),
        at,
        loss: nullableNumber,
        learningRate: nullableNumber,
        gradNorm: nullableNumber,
        /** Input tokens (non-padding) per second, all GPUs together, since the previous log of this attempt. */
        tokensPerSec: z.number().min(0).nullable(),
        /** Input tokens seen since the run began (restored from the checkpoint on a resume). */
        tokens: z.number().int().min(0).nullable(),
    })
    .strict();

/** One evaluation: during training (training.evalSteps, split validation) or the final ones (validation, test). */
export const evalRecord = z
    .object({
        kind: z.literal("eval"),
        step,
        epoch: z.number().min(0),
        at,
        split: z.enum(["validation", "test"]),
        /** The Trainer's metrics with their prefix (eval_loss, eval_token_accuracy, test_loss, ...), timings left out. */
        metrics: z.record(z.string(), z.number()),
    })
    .strict();

/** Peak memory of each GPU the job used, when training ends (torch.cuda.max_memory_allocated / max_memory_reserved). */
export const memoryRecord = z
    .object({
        kind: z.literal("memory"),
        step,
        at,
        /** Empty when the job ran without CUDA (the rehearsal). */
        devices: z.array(
            z
                .object({
                    device: z.number().int().min(0),
                    name: z.string(),
                    allocatedBytes: z.number().int().min(0),
                    reservedBytes: z.number().int().min(0),
                    totalBytes: z.number().int().min(0),
                })
                .strict(),
        ),
    })
    .strict();

/** The attempt's training ended (finished, or stopped to be resumed): its measured throughput. */
export const endRecord = z
    .object({
        kind: z.literal("end"),
        step,
        at,
        /** The steps this attempt trained (from its resume point), and how long they took. */
        firstStep: step,
        trainSeconds: z.number().min(0),
        tokens: z.number().int().min(0),
        tokensPerSec: z.number().min(0).nullable(),
        /** True when it ended before the run's last step: a stop request (the run resumes) or early stopping. */
        stopped: z.boolean(),
    })
    .strict();

export const metricsRecord = z.discriminatedUnion("kind", [trainRecord, evalRecord, memoryRecord, endRecord]);
export type MetricsRecord = z.output<typeof metricsRecord>;
export type TrainRecord = z.output<typeof trainRecord>;
export type EvalRecord = z.output<typeof evalRecord>;
export type MemoryRecord = z.output<typeof memoryRecord>;
export type EndRecord = z.output<typeof endRecord>;
