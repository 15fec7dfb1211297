// The plan a person reads before paying: the stages in order (prep before any GPU), each node's instance
// and price, memory fit per run, estimated hours and dollars with their assumptions, the worst case the
// max-hours caps allow, and what `pulumi destroy` leaves behind. Pure: no AWS, no Pulumi.
import type { ResolvedCampaign } from "../campaign/types";
import { getInstance, type InstanceSpec } from "./catalog";
import { estimateCost } from "./estimate";
import type { Problem } from "../config/problems";
import { evaluationEstimate, runEstimates, prepEstimate, storageEstimate } from "./runEstimates";
import { calibrationFor, type MeasuredFigures } from "./calibration";
import { capacityNotes, runFallbackTypes, usesFallbackLaunch } from "./capacity";
import { imageBuildPlan, type ImageBuildPlan } from "./imageBuild";

export interface PrepStagePlan {
    readonly stage: "prep";
    readonly runOn: "ec2" | "local";
    readonly instanceType: string | null;
    readonly usdPerHour: number;
    readonly estimatedHours: number;
    readonly estimatedUsd: number;
    readonly maxHours: number;
    readonly worstCaseUsd: number;
    readonly prepHash: string;
}

export interface MemoryPlan {
    readonly totalGiB: number;
    readonly gpuMemoryGiB: number;
    readonly fits: boolean;
    readonly weightsGiB: number;
    readonly gradientsGiB: number;
    readonly optimizerGiB: number;
    readonly activationsGiB: number;
    readonly overheadGiB: number;
    readonly trainableParams: number;
    readonly totalParams: number;
}

export interface TrainStagePlan {
    readonly stage: "train";
    readonly run: string;
    readonly model: string;
    readonly method: string;
    readonly instanceType: string;
    readonly gpus: string;
    readonly market: "spot" | "on-demand";
    readonly usdPerHour: number;
    /** Null when the model is not in components/plan/models.ts. */
    readonly memory: MemoryPlan | null;
    readonly steps: number | null;
    readonly tokens: number | null;
    /** The task-metric evaluation on the run's node after training (and its base model's baseline); null without one. */
    readonly evaluation: EvaluationPlan | null;
    /** Training, setup and evaluation: the node's billed hours. */
    readonly estimatedHours: number | null;
    readonly estimatedUsd: number | null;
    readonly maxHours: number;
    readonly worstCaseUsd: number;
}

export interface EvaluationPlan {
    readonly rows: number;
    /** 1, or 2 when this run also evaluates its base model (the baseline). */
    readonly evaluations: number;
    readonly maxNewTokens: number;
    /** training.selectBy: validation rows generated for at every evalSteps, and how many times. */
    readonly selection: { readonly rows: number; readonly samplings: number } | null;
    readonly hours: number;
    readonly estimatedUsd: number;
}

export interface Plan {
    readonly campaign: string;
    readonly region: string;
    readonly prep: PrepStagePlan;
    /** The image builds, beside prep: the GPU nodes also wait for them. */
    readonly image: ImageBuildPlan;
    readonly runs: readonly TrainStagePlan[];
    readonly totals: { readonly estimatedUsd: number; readonly worstCaseUsd: number; readonly estimatedHours: number };
    readonly afterDestroy: {
        readonly keepArtifacts: boolean;
        readonly kept: readonly string[];
        readonly storedGb: number;
        readonly monthlyUsd: number;
    };
    /** Where the GPU nodes launch (zones, reservation) and what to do when a zone has no capacity. */
    readonly capacity: readonly string[];
    readonly assumptions: readonly string[];
    readonly warnings: readonly Problem[];
}

/** calibrateFrom: the measured figures of an earlier campaign and a label for them (`npm run plan -- --calibrate-from`). */
export function buildPlan(campaign: ResolvedCampaign, calibrateFrom?: { readonly measured: MeasuredFigures; readonly label: string }): Plan {
    const { experiment } = campaign;
    const assumptions = new Set<string>();
    const add = (list: readonly string[]) => list.forEach((a) => assumptions.add(a));

    const prepFacts = prepEstimate(experiment);
    add(prepFacts.assumptions);
    const calibrations = campaign.runs.map((run) => (calibrateFrom ? calibrationFor(calibrateFrom.measured, calibrateFrom.label, { name: run.name, model: run.model.id, instanceType: run.instanceType }) : undefined));
    calibrations.forEach((c) => c && assumptions.add(c.note));
    const estimates = campaign.runs.map((run, i) => runEstimates(experiment, run, calibrations[i] ?? {}));
    estimates.forEach((e) => {
        if (e) add([...e.memory.assumptions, ...e.time.assumptions]);
    });
    // The evaluation runs on the same node after training, so its hours are the node's too.
    const evaluations = campaign.runs.map((run, i) => evaluationEstimate(experiment, run, campaign.trainSpecs[i]?.evaluation?.computeBaseline ?? false));
    evaluations.forEach((e) => {
        if (e) add(e.assumptions);
    });
    const nodeHours = (i: number): number | undefined => (estimates[i] ? estimates[i]!.time.hours + (evaluations[i]?.hours ?? 0) : undefined);
    const storage = storageEstimate(campaign);
    add(storage.assumptions);
    const keep = experiment.storage.keepOnDestroy || experiment.storage.existingBucket !== undefined;

    // The runner stops a run at its cap, so no run is billed past maxHours.
    const cost = estimateCost({
        runs: campaign.runs.map((run, i) => ({
            name: run.name,
            instanceType: run.instanceType,
            hours: Math.min(nodeHours(i) ?? 0, experiment.compute.maxHours),
            maxHours: experiment.compute.maxHours,
            volumeGb: experiment.compute.rootVolumeGb + (experiment.compute.dataVolumeGb ?? 0),
            ...(usesFallbackLaunch(experiment, run) ? { fallbackInstanceTypes: runFallbackTypes(experiment, run) } : {}),
        })),
        prep:
            experiment.prep.runOn === "ec2"
                ? { instanceType: experiment.prep.instanceType, hours: Math.min(prepFacts.hours, experiment.prep.maxHours), maxHours: experiment.prep.maxHours, volumeGb: experiment.prep.rootVolumeGb }
                : undefined,
        keptS3Gb: keep ? storage.keptGb : 0,
    });
    add(cost.assumptions);
    const image = imageBuildPlan(experiment);
    add(image.assumptions);

    const prep: PrepStagePlan = {
        stage: "prep",
        runOn: experiment.prep.runOn,
        instanceType: cost.prep?.instanceType ?? null,
        usdPerHour: cost.prep?.usdPerHour ?? 0,
        estimatedHours: prepFacts.hours,
        estimatedUsd: cost.prep?.usd ?? 0,
        maxHours: experiment.prep.maxHours,
        worstCaseUsd: cost.prep?.worstCaseUsd ?? 0,
        prepHash: campaign.prepSpec.prepHash,
    };
    const runs = campaign.runs.map((run, i): TrainStagePlan => {
        const e = estimates[i];
        const c = cost.runs[i];
        const ev = evaluations[i];
        return {
            stage: "train",
            run: run.name,
            model: run.model.id,
            method: run.method.kind === "full" ? "full" : `${run.method.kind} r=${run.method.lora.r}`,
            instanceType: run.instanceType,
            gpus: gpuLabel(getInstance(run.instanceType)),
            market: experiment.compute.market,
            usdPerHour: c.usdPerHour,
            memory: e ? pickMemory(e.memory) : null,
            steps: e ? e.time.steps : null,
            tokens: e ? e.time.tokens : null,
            evaluation:
                e && ev
                    ? {
                          rows: ev.rows,
                          evaluations: ev.evaluations,
                          maxNewTokens: experiment.evaluation!.generation.maxNewTokens,
                          selection: ev.selection ? { rows: ev.selection.rows, samplings: ev.selection.samplings } : null,
                          hours: ev.hours,
                          estimatedUsd: ev.hours * c.usdPerHour,
                      }
                    : null,
            estimatedHours: nodeHours(i) ?? null,
            estimatedUsd: e ? c.usd : null,
            maxHours: experiment.compute.maxHours,
            worstCaseUsd: c.worstCaseUsd,
        };
    });

    const kept = keep
        ? [
              `prepared data datasets/${campaign.prepSpec.prepHash}/`,
              ...(campaign.prepSpec.stageModels.length ? ["staged base weights models/"] : []),
              `runs/${experiment.name}/ (final outputs, logs, status; checkpoints expire after ${experiment.storage.checkpointExpiryDays} days)`,
          ]
        : [];
    return {
        campaign: experiment.name,
        region: experiment.region,
        prep,
        image,
        runs,
        totals: {
            estimatedUsd: cost.usd + image.estimatedUsd,
            worstCaseUsd: cost.worstCaseUsd + image.worstCaseUsd,
            estimatedHours: prep.estimatedHours + runs.reduce((sum, r) => sum + (r.estimatedHours ?? 0), 0),
        },
        afterDestroy: { keepArtifacts: keep, kept, storedGb: keep ? storage.keptGb : 0, monthlyUsd: cost.storageUsdPerMonth },
        capacity: capacityNotes(campaign),
        assumptions: [...assumptions],
        warnings: campaign.warnings,
    };
}

function gpuLabel(instance: InstanceSpec): string {
    return `${instance.gpuCount}x ${instance.gpuModel} ${Math.round(instance.gpuMemoryGiB)} GiB`;
}

function pickMemory(m: MemoryPlan): MemoryPlan {
    return {
        totalGiB: m.totalGiB,
        gpuMemoryGiB: m.gpuMemoryGiB,
        fits: m.fits,
        weightsGiB: m.weightsGiB,
        gradientsGiB: m.gradientsGiB,
        optimizerGiB: m.optimizerGiB,
        activationsGiB: m.activationsGiB,
        overheadGiB: m.overheadGiB,
        trainableParams: m.trainableParams,
        totalParams: m.totalParams,
    };
}

// ---------------------------------------------------------------- rendering for a terminal

const usd = (n: number): string => (n >= 100 ? `$${n.toFixed(0)}` : `$${n.toFixed(2)}`);
const hrs = (n: number): string => (n < 1 ? `${Math.max(1, Math.round(n * 60))} min` : `${n.toFixed(1)} h`);
const count = (n: number): string => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${n}`);

function table(rows: string[][]): string[] {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
}

export function renderPlan(plan: Plan, source: string): string {
    const out: string[] = [];
    out.push(`Plan for campaign "${plan.campaign}" (${source}, ${plan.region})`);
    out.push("");
    out.push("1. Prep and the image (CPU only; no GPU exists until the data and the image are ready)");
    const p = plan.prep;
    out.push(
        p.runOn === "local"
            ? `   on this machine (prep.runOn: local): about ${hrs(p.estimatedHours)}, $0 in AWS; dataset datasets/${p.prepHash}/`
            : `   ${p.instanceType} at ${usd(p.usdPerHour)}/h: about ${hrs(p.estimatedHours)}, ${usd(p.estimatedUsd)} (cap ${p.maxHours} h = ${usd(p.worstCaseUsd)}); dataset datasets/${p.prepHash}/`,
    );
    const img = plan.image;
    if (img.jobs.length > 0) {
        out.push(
            img.buildOn === "region"
                ? `   beside it, image build${img.jobs.length === 1 ? "" : "s"} (${img.jobs.join(", ")}) in ${plan.region} with CodeBuild ${img.computeType}: about ${img.estimatedMinutes} min, ${usd(img.estimatedUsd)} (timeouts = ${usd(img.worstCaseUsd)}); $0 when the content tag is already in ECR`
                : `   image build${img.jobs.length === 1 ? "" : "s"} (${img.jobs.join(", ")}) with this machine's Docker, pushed to ECR (images.buildOn: local)`,
        );
    }
    out.push("");
    out.push(`2. Training: ${plan.runs.length} run${plan.runs.length === 1 ? "" : "s"}, one GPU node each, started only after prep succeeded`);
    const rows = [["run", "model", "method", "node", "$/h", "memory/GPU", "steps", "time", "cost", "cap"]];
    for (const r of plan.runs) {
        rows.push([
            r.run,
            r.model,
            r.method,
            `${r.instanceType} ${r.market} (${r.gpus})`,
            usd(r.usdPerHour),
            r.memory ? `${r.memory.totalGiB.toFixed(1)}/${r.memory.gpuMemoryGiB.toFixed(1)} GiB ${r.memory.fits ? "fits" : "DOES NOT FIT"}` : "not estimated",
            r.steps === null ? "?" : count(r.steps),
            r.estimatedHours === null ? "?" : hrs(r.estimatedHours),
            r.estimatedUsd === null ? "?" : usd(r.estimatedUsd),
            `${r.maxHours} h = ${usd(r.worstCaseUsd)}`,
        ]);
    }
    out.push(...table(rows).map((l) => `   ${l}`));
    for (const r of plan.runs) {
        if (!r.evaluation) continue;
        const v = r.evaluation;
        out.push(
            `   ${r.run}: evaluation after training, on the same node: ${v.evaluations === 2 ? "the trained model and its base model (the baseline)" : "the trained model"}, ` +
                `${count(v.rows)} rows x up to ${v.maxNewTokens} new tokens${v.evaluations === 2 ? " each" : ""}` +
                (v.selection ? `, and during training ${v.selection.rows} validation rows at each of ${v.selection.samplings} evaluations (training.selectBy)` : "") +
                `: about ${hrs(v.hours)}, ${usd(v.estimatedUsd)} (in the run's time and cost)`,
        );
    }
    for (const r of plan.runs) {
        if (!r.memory) continue;
        const m = r.memory;
        out.push(
            `   ${r.run}: weights ${m.weightsGiB.toFixed(1)} + gradients ${m.gradientsGiB.toFixed(1)} + optimizer ${m.optimizerGiB.toFixed(1)} + activations ${m.activationsGiB.toFixed(1)} + overhead ${m.overheadGiB.toFixed(1)} GiB; ` +
                `trainable ${count(m.trainableParams)} of ${count(m.totalParams)} (${((100 * m.trainableParams) / m.totalParams).toFixed(2)}%)`,
        );
    }
    out.push("");
    out.push("Capacity:");
    for (const line of plan.capacity) out.push(`   - ${line}`);
    out.push("");
    out.push(`Estimated total: ${usd(plan.totals.estimatedUsd)} over about ${hrs(plan.totals.estimatedHours)} of node time`);
    out.push(`Worst case allowed by the max-hours caps: ${usd(plan.totals.worstCaseUsd)}`);
    out.push("");
    out.push("After `pulumi destroy`:");
    if (plan.afterDestroy.keepArtifacts) {
        out.push(`   kept (storage.keepOnDestroy): about ${plan.afterDestroy.storedGb.toFixed(1)} GB in S3 = ${usd(plan.afterDestroy.monthlyUsd)}/month`);
        for (const k of plan.afterDestroy.kept) out.push(`     - ${k}`);
    } else {
        out.push("   nothing: the bucket and every artifact are deleted (storage.keepOnDestroy: false)");
    }
    out.push("   every node, volume, alarm and parameter is removed; no compute charge remains");
    if (plan.warnings.length) {
        out.push("");
        out.push("Warnings:");
        for (const w of plan.warnings) out.push(`   - ${w.path}: ${w.message}`);
    }
    out.push("");
    out.push("Assumptions:");
    for (const a of plan.assumptions) out.push(`   - ${a}`);
    out.push("   - instance prices and their sources: components/plan/catalog.ts");
    return out.join("\n");
}
