// Cross-field checks: problems no single field shows. Each names the path, the numbers and the fix.
import type { Experiment } from "../config/schema";
import type { ResolvedRun } from "./types";
import type { Problem } from "../config/problems";
import { getInstance, isGpuInstance } from "../plan/catalog";
import { findModel } from "../plan/models";
import { evaluationEstimate, runEstimates } from "../plan/runEstimates";
import { capacityProblems, fallbackProblems } from "../plan/capacity";

function at(run: ResolvedRun, field: string): string {
    return run.path ? `${run.path}.${field}` : field;
}

const error = (path: string, message: string): Problem => ({ severity: "error", path, message });
const warning = (path: string, message: string): Problem => ({ severity: "warning", path, message });

/** Checks of one run after its overrides are merged. */
export function checkRun(experiment: Experiment, run: ResolvedRun): Problem[] {
    const problems: Problem[] = [];
    const t = run.training;
    const label = experiment.runs || experiment.sweep ? ` (run ${run.name})` : "";

    if ((t.epochs === undefined) === (t.maxSteps === undefined)) {
        problems.push(error(at(run, "training"), `set exactly one of epochs or maxSteps${label}; got ${t.epochs === undefined ? "neither" : "both"}`));
    }
    if (t.warmupRatio !== undefined && t.warmupSteps !== undefined) {
        problems.push(error(at(run, "training.warmupSteps"), `set warmupRatio or warmupSteps, not both${label} (a ratio adapts when the batch changes, as the SocratiQ campaign found)`));
    }
    if (experiment.data.tokenize.enabled && t.maxSeqLength !== experiment.data.tokenize.maxLength) {
        problems.push(error(at(run, "training.maxSeqLength"), `is ${t.maxSeqLength} but data.tokenize.maxLength is ${experiment.data.tokenize.maxLength}${label}; prep tokenizes to a fixed length, so make them equal`));
    }
    if (run.method.kind === "qlora" && t.precision === "fp32") {
        problems.push(error(at(run, "training.precision"), `qlora computes in bf16 or fp16 on 4-bit weights; got fp32${label}: use bf16`));
    }
    if (t.earlyStopping && t.saveSteps % t.evalSteps !== 0) {
        problems.push(error(at(run, "training.saveSteps"), `is ${t.saveSteps} but early stopping keeps the best checkpoint, so it must be a multiple of evalSteps (${t.evalSteps})${label}: e.g. saveSteps ${t.evalSteps * Math.max(1, Math.round(t.saveSteps / t.evalSteps))}`));
    }
    if (t.earlyStopping && validationShare(experiment) === 0) {
        problems.push(error(at(run, "training.earlyStopping"), `needs a validation split, but data.split gives validation nothing${label}`));
    }

    // Instance facts.
    let gpus = 0;
    try {
        const instance = getInstance(run.instanceType);
        if (!isGpuInstance(instance)) {
            problems.push(error(at(run, run.path ? "compute.instanceType" : "compute.instanceType"), `${run.instanceType} has no GPU; training needs a GPU type such as g5.2xlarge or p4de.24xlarge${label}`));
        } else {
            gpus = instance.gpuCount;
            if (t.precision === "bf16" && !instance.bf16) {
                problems.push(error(at(run, "training.precision"), `bf16 needs an Ampere or newer GPU; ${run.instanceType} has ${instance.gpuModel}${label}: use fp16`));
            }
        }
    } catch (e) {
        problems.push(error(run.path ? `${run.path}.compute.instanceType` : "compute.instanceType", (e as Error).message));
    }

    if (gpus > 0 && t.globalBatch !== undefined) {
        const product = gpus * t.perDeviceBatch * t.gradientAccumulation;
        if (product !== t.globalBatch) {
            const fix = t.globalBatch % (gpus * t.perDeviceBatch) === 0 ? `; gradientAccumulation ${t.globalBatch / (gpus * t.perDeviceBatch)} gives it` : "";
            problems.push(error(at(run, "training.globalBatch"), `is ${t.globalBatch} but ${gpus} GPU(s) x perDeviceBatch ${t.perDeviceBatch} x gradientAccumulation ${t.gradientAccumulation} = ${product}${label}${fix}`));
        }
    }
    if (gpus === 1 && t.zeroStage > 0) {
        problems.push(warning(at(run, "training.zeroStage"), `ZeRO-${t.zeroStage} shards across GPUs, and ${run.instanceType} has one${label}: it only adds overhead`));
    }

    // The model: a family that contradicts what we know of it, LoRA modules it does not have.
    const known = findModel(run.model.id);
    if (known && known.family !== run.model.family) {
        problems.push(error(at(run, "model.family"), `is ${run.model.family} but ${run.model.id} is a ${known.family} model${label}; set family: ${known.family}`));
    }
    if (gpus > 0 && problems.every((p) => p.severity !== "error")) problems.push(...estimateChecks(experiment, run, label));
    return problems;
}

function validationShare(experiment: Experiment): number {
    const split = experiment.data.split;
    if (split.kind === "random") return split.ratios.validation;
    return split.counts ? split.counts.validation : (split.ratios?.validation ?? 0);
}

function estimateChecks(experiment: Experiment, run: ResolvedRun, label: string): Problem[] {
    const problems: Problem[] = [];
    let estimates;
    try {
        estimates = runEstimates(experiment, run);
    } catch (e) {
        return [error(at(run, "method.lora.targetModules"), `${(e as Error).message}${label}`)];
    }
    if (!estimates) {
        return [warning(at(run, "model.id"), `${run.model.id} is not in components/plan/models.ts: GPU memory and time are not estimated${label}`)];
    }
    const { memory, time, instance } = estimates;
    if (!memory.fits) {
        problems.push(
            error(
                at(run, "compute.instanceType"),
                `${run.model.id} ${run.method.kind} needs about ${memory.totalGiB.toFixed(1)} GiB per GPU ` +
                    `(weights ${memory.weightsGiB.toFixed(1)}, gradients ${memory.gradientsGiB.toFixed(1)}, optimizer ${memory.optimizerGiB.toFixed(1)}, ` +
                    `activations ${memory.activationsGiB.toFixed(1)}, overhead ${memory.overheadGiB.toFixed(1)}) ` +
                    `but ${run.instanceType} has ${memory.gpuMemoryGiB.toFixed(1)} GiB per GPU${label}: ` +
                    `lower training.perDeviceBatch, enable training.gradientCheckpointing, use ZeRO-3, LoRA/QLoRA, or a larger GPU`,
            ),
        );
    }
    if (experiment.compute.market === "spot" && !experiment.customJob && run.training.saveSteps >= time.steps) {
        problems.push(
            error(
                at(run, "training.saveSteps"),
                `is ${run.training.saveSteps} but the run has about ${time.steps} steps, so it never checkpoints; on spot an interruption loses all of it${label}: ` +
                    `set saveSteps below ${time.steps} or compute.market: on-demand`,
            ),
        );
    }
    // The evaluation after training runs on the same node under the same cap. Whether this run computes the
    // campaign's baseline depends on the other runs, so the check takes the longer case (it does).
    const evaluationHours = evaluationEstimate(experiment, run, experiment.evaluation?.baseline === true)?.hours ?? 0;
    const hours = time.hours + evaluationHours;
    if (hours > experiment.compute.maxHours) {
        const evaluation = evaluationHours > 0 ? `, of which ${evaluationHours.toFixed(1)} h the evaluation after training` : "";
        problems.push(
            warning(
                "compute.maxHours",
                `is ${experiment.compute.maxHours} h but ${run.name} needs about ${hours.toFixed(1)} h on ${instance.gpuCount}x ${instance.gpuModel} ` +
                    `(MFU ${(time.mfu * 100).toFixed(0)}% assumed${evaluation}); the runner will stop it at the cap (with a checkpoint): raise maxHours to ${Math.ceil(hours * 1.2)} or expect to resume`,
            ),
        );
    }
    return problems;
}

/** Characters per token for English text, as the storage estimate assumes (runEstimates.ts). */
const CHARS_PER_TOKEN = 4;

/**
 * Prep refuses an empty dataset and an empty split the config gives a share (containers/prep/nonempty.py);
 * these say so before anything runs, from the config's own size estimate and cleaning rules.
 */
function emptyDataChecks(experiment: Experiment): Problem[] {
    const { cleaning, estimate, split } = experiment.data;
    if (cleaning.minChars > cleaning.maxChars) {
        // A row kept by minChars has a text of at least minChars, so its total is over maxChars.
        return [error("data.cleaning.minChars", `is ${cleaning.minChars}, above data.cleaning.maxChars ${cleaning.maxChars}: every row is removed as too short or too long, and prep refuses an empty dataset; lower minChars or raise maxChars`)];
    }
    const problems: Problem[] = [];
    const meanChars = estimate.meanTokens * CHARS_PER_TOKEN;
    if (meanChars < cleaning.minChars) {
        problems.push(warning("data.cleaning.minChars", `is ${cleaning.minChars} but data.estimate.meanTokens ${estimate.meanTokens} is about ${meanChars} characters per example: most rows may be removed as too short, and prep refuses an empty split`));
    } else if (meanChars > cleaning.maxChars) {
        problems.push(warning("data.cleaning.maxChars", `is ${cleaning.maxChars} but data.estimate.meanTokens ${estimate.meanTokens} is about ${meanChars} characters per example: most rows may be removed as too long, and prep refuses an empty split`));
    }
    if (split.kind === "random") {
        const rows = estimate.trainExamples / split.ratios.train;
        for (const name of ["validation", "test"] as const) {
            const share = split.ratios[name];
            // Prep rounds rows x share half to even: under one row is likely none.
            if (share > 0 && rows * share < 1) {
                problems.push(warning(`data.split.ratios.${name}`, `is ${share} of about ${Math.round(rows)} rows (data.estimate.trainExamples ${estimate.trainExamples} / train ${split.ratios.train}): under one ${name} row, and prep refuses an empty ${name} split; raise it or set it to 0`));
            }
        }
    }
    return problems;
}

/** Checks across runs and stages. */
export function checkCampaign(experiment: Experiment, runs: readonly ResolvedRun[]): Problem[] {
    const problems: Problem[] = [];
    const d = experiment.data;
    if (d.tokenize.enabled) {
        const tokenizers = new Set(runs.map((r) => r.model.id));
        if (tokenizers.size > 1) {
            problems.push(error("data.tokenize.enabled", `prep tokenizes with one tokenizer, but the runs use ${[...tokenizers].join(", ")}: set data.tokenize.enabled: false (the trainer then tokenizes) or split the campaign`));
        }
    }
    if (d.split.kind === "group" && (d.split.counts === undefined) === (d.split.ratios === undefined)) {
        problems.push(error("data.split", `a group split needs exactly one of counts (groups per split, e.g. 170/20/20 in socsci210-qwen14b-qlora) or ratios; got ${d.split.counts ? "both" : "neither"}`));
    }
    problems.push(...emptyDataChecks(experiment));
    if (d.tokenize.packing && !d.tokenize.enabled) {
        problems.push(error("data.tokenize.packing", "packing happens during tokenization: set data.tokenize.enabled: true"));
    }
    if (experiment.prep.runOn === "ec2") {
        try {
            const prep = getInstance(experiment.prep.instanceType);
            if (isGpuInstance(prep)) problems.push(error("prep.instanceType", `${experiment.prep.instanceType} has GPUs; prep is CPU-only work: use a CPU type such as c6i.2xlarge`));
        } catch (e) {
            problems.push(error("prep.instanceType", (e as Error).message));
        }
    }
    if (experiment.region !== "us-east-1") {
        problems.push(warning("region", `prices in the plan are us-east-1 on-demand prices; ${experiment.region} may differ`));
    }
    if (experiment.storage.existingBucket && !experiment.storage.keepOnDestroy) {
        problems.push(warning("storage.keepOnDestroy", `false has no effect on an existing bucket (${experiment.storage.existingBucket}): the campaign never deletes a bucket it did not create`));
    }
    // Zones and capacity reservations (components/plan/capacity.ts).
    problems.push(...capacityProblems(experiment));
    problems.push(...fallbackProblems(experiment, runs));
    if (experiment.customJob && experiment.compute.market === "spot") {
        problems.push(warning("customJob", "on spot, your command must save checkpoints under $CAMPAIGN_CHECKPOINT_DIR (with _COMPLETE.json last) and exit on SIGTERM, or an interruption loses its work"));
    }
    return problems;
}
