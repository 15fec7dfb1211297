// The alternatives to a run's configured instance (`npm run plan -- --stack X --compare`): every GPU type in the
// catalog whose memory fits the run by the same estimate the checks use, with its hours and its total cost on
// demand and at a typical spot price, cheapest first. Pure: the catalog and the estimates, no AWS.
import type { ResolvedCampaign, ResolvedRun } from "../campaign/types";
import type { Experiment } from "../config/schema";
import { EBS_GP3_USD_PER_GB_MONTH, HOURS_PER_MONTH, INSTANCES, SPOT_SOURCE, type InstanceSpec } from "./catalog";
import { runEstimates } from "./runEstimates";

export interface InstanceOption {
    readonly instanceType: string;
    readonly gpus: string;
    /** Estimated GiB per GPU and what the GPU has. */
    readonly memoryGiB: number;
    readonly gpuMemoryGiB: number;
    readonly hours: number;
    /** On-demand compute plus the node's volumes for those hours. */
    readonly onDemandUsd: number;
    /** The same at the catalog's typical spot price; null where the catalog has none. */
    readonly typicalSpotUsd: number | null;
    /** The run's configured instance type. */
    readonly configured: boolean;
    /** The run would hit compute.maxHours before it ends on this instance. */
    readonly overCap: boolean;
}

export interface RunComparison {
    readonly run: string;
    readonly model: string;
    readonly configured: string;
    /** Null when the model is not in components/plan/models.ts (nothing to estimate from). */
    readonly options: readonly InstanceOption[] | null;
    /** GPU types whose memory does not fit the run, with the GiB per GPU it would need there. */
    readonly rejected: readonly { readonly instanceType: string; readonly memoryGiB: number; readonly gpuMemoryGiB: number }[];
    /** Among the options that finish within compute.maxHours, when any does. */
    readonly cheapest: string | null;
    readonly fastest: string | null;
}

export interface Comparison {
    readonly campaign: string;
    readonly runs: readonly RunComparison[];
    readonly assumptions: readonly string[];
}

function gpuLabel(i: InstanceSpec): string {
    return `${i.gpuCount}x ${i.gpuModel} ${Math.round(i.gpuMemoryGiB)} GiB`;
}

function compareRun(experiment: Experiment, run: ResolvedRun): RunComparison {
    const volumeGb = experiment.compute.rootVolumeGb + (experiment.compute.dataVolumeGb ?? 0);
    const volumeUsdPerHour = (volumeGb * EBS_GP3_USD_PER_GB_MONTH) / HOURS_PER_MONTH;
    const options: InstanceOption[] = [];
    const rejected: { instanceType: string; memoryGiB: number; gpuMemoryGiB: number }[] = [];
    for (const instance of INSTANCES) {
        if (instance.kind !== "gpu") continue;
        const e = runEstimates(experiment, { ...run, instanceType: instance.type });
        if (!e) return { run: run.name, model: run.model.id, configured: run.instanceType, options: null, rejected: [], cheapest: null, fastest: null };
        if (!e.memory.fits) {
            rejected.push({ instanceType: instance.type, memoryGiB: e.memory.totalGiB, gpuMemoryGiB: e.memory.gpuMemoryGiB });
            continue;
        }
        const hours = e.time.hours;
        const spot = instance.typicalSpotUsdPerHour;
        options.push({
            instanceType: instance.type,
            gpus: gpuLabel(instance),
            memoryGiB: e.memory.totalGiB,
            gpuMemoryGiB: e.memory.gpuMemoryGiB,
            hours,
            onDemandUsd: hours * (instance.onDemandUsdPerHour + volumeUsdPerHour),
            typicalSpotUsd: spot === undefined ? null : hours * (spot + volumeUsdPerHour),
            configured: instance.type === run.instanceType,
            overCap: hours > experiment.compute.maxHours,
        });
    }
    // Cheapest first by the on-demand total (the price every type has); ties go to the faster one.
    options.sort((a, b) => a.onDemandUsd - b.onDemandUsd || a.hours - b.hours);
    // Named among the options that finish within compute.maxHours (the runner stops a run at its cap); all when none does.
    const finishing = options.some((o) => !o.overCap) ? options.filter((o) => !o.overCap) : options;
    const fastest = finishing.reduce<InstanceOption | null>((best, o) => (best === null || o.hours < best.hours ? o : best), null);
    return {
        run: run.name,
        model: run.model.id,
        configured: run.instanceType,
        options,
        rejected,
        cheapest: finishing[0]?.instanceType ?? null,
        fastest: fastest?.instanceType ?? null,
    };
}

export function compareInstances(campaign: ResolvedCampaign): Comparison {
    const { experiment } = campaign;
    return {
        campaign: experiment.name,
        runs: campaign.runs.map((run) => compareRun(experiment, run)),
        assumptions: [
            "memory and hours by the same estimates as the plan (components/plan/estimate.ts), with the run's perDeviceBatch and gradientAccumulation on each type's GPU count; on another GPU count, keep training.globalBatch by changing gradientAccumulation (the hours depend on the tokens, not on the batch)",
            "on-demand: us-east-1 prices of the instance catalog, plus the node's gp3 volumes while it runs; the total is for the whole run, even where compute.maxHours would stop it first (marked 'over cap')",
            `typical spot: ${SPOT_SOURCE}; spot moves by the hour and by zone, and '-' means the catalog has no figure for the type (campaign preflight reads the current price per zone)`,
            "8-GPU types (p4d, p4de, p5, p5en) are often short of capacity on demand; Capacity Blocks for ML or a reservation (compute.capacityReservationId) are the usual way to get them",
        ],
    };
}

// ---------------------------------------------------------------- rendering

const usd = (n: number): string => (n >= 100 ? `$${n.toFixed(0)}` : `$${n.toFixed(2)}`);
const hrs = (n: number): string => (n < 1 ? `${Math.max(1, Math.round(n * 60))} min` : `${n.toFixed(1)} h`);

function table(rows: string[][]): string[] {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
}

export function renderComparison(c: Comparison, source: string): string {
    const out: string[] = [`Instance options for campaign "${c.campaign}" (${source}), cheapest first`];
    for (const r of c.runs) {
        out.push("");
        out.push(`Run ${r.run} (${r.model}), configured: ${r.configured}`);
        if (r.options === null) {
            out.push("   not estimated: the model is not in components/plan/models.ts");
            continue;
        }
        if (r.options.length === 0) {
            out.push("   no GPU type in the catalog fits this run's memory estimate");
        } else {
            const rows = [["", "instance", "GPUs", "memory/GPU", "time", "on-demand", "typical spot", ""]];
            for (const o of r.options) {
                rows.push([
                    o.configured ? "*" : "",
                    o.instanceType,
                    o.gpus,
                    `${o.memoryGiB.toFixed(1)}/${o.gpuMemoryGiB.toFixed(1)} GiB`,
                    hrs(o.hours),
                    usd(o.onDemandUsd),
                    o.typicalSpotUsd === null ? "-" : usd(o.typicalSpotUsd),
                    o.overCap ? "over cap" : "",
                ]);
            }
            out.push(...table(rows).map((l) => `   ${l}`));
            const cheapest = r.options.find((o) => o.instanceType === r.cheapest)!;
            const fastest = r.options.find((o) => o.instanceType === r.fastest)!;
            const capNote = r.options.some((o) => o.overCap) && r.options.some((o) => !o.overCap) ? " within compute.maxHours" : "";
            out.push(`   cheapest${capNote}: ${cheapest.instanceType} (${usd(cheapest.onDemandUsd)} on demand, ${hrs(cheapest.hours)})`);
            out.push(`   fastest${capNote}:  ${fastest.instanceType} (${hrs(fastest.hours)}, ${usd(fastest.onDemandUsd)} on demand)`);
            if (!r.options.some((o) => o.configured)) out.push(`   the configured ${r.configured} does not fit this run's memory estimate`);
        }
        if (r.rejected.length) out.push(`   does not fit: ${r.rejected.map((x) => `${x.instanceType} (${x.memoryGiB.toFixed(1)}/${x.gpuMemoryGiB.toFixed(1)} GiB)`).join(", ")}`);
    }
    out.push("");
    out.push("* the configured instance type");
    out.push("Assumptions:");
    for (const a of c.assumptions) out.push(`   - ${a}`);
    return out.join("\n");
}
