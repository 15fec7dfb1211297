// Where the GPU nodes get their capacity: the ordered zones (compute.availabilityZones), the fallback instance types
// (compute.fallbackInstanceTypes), a capacity reservation or a Capacity Block for ML (compute.capacityReservationId),
// the config errors between them, the order in which preflight tries zones and types, and what the plan says to do
// when a zone has no capacity. Pure.
import type { ResolvedCampaign, ResolvedRun } from "../campaign/types";
import type { ComputeConfig, Experiment } from "../config/schema";
import type { Problem } from "../config/problems";
import { findInstance, getInstance } from "./catalog";
import { compareInstances } from "./compare";
import { runEstimates } from "./runEstimates";

/** The zone the nodes launch in: the first preferred zone, else the one zone; undefined lets EC2 (or the subnet) choose. */
export function nodeZone(compute: ComputeConfig): string | undefined {
    return compute.availabilityZones?.[0] ?? compute.availabilityZone;
}

/** What the GPU nodes' instances carry for a reservation; undefined without one. */
export function reservationTarget(compute: ComputeConfig): { readonly capacityReservationId: string; readonly capacityBlock: boolean } | undefined {
    if (!compute.capacityReservationId) return undefined;
    return { capacityReservationId: compute.capacityReservationId, capacityBlock: compute.capacityBlock ?? false };
}

const error = (path: string, message: string): Problem => ({ severity: "error", path, message });

export function capacityProblems(experiment: Experiment): Problem[] {
    const c = experiment.compute;
    const problems: Problem[] = [];
    const zones = c.availabilityZones ?? [];
    for (const [i, zone] of zones.entries()) {
        if (!zone.startsWith(experiment.region)) problems.push(error(`compute.availabilityZones.${i}`, `${zone} is not a zone of the campaign's region ${experiment.region}`));
    }
    if (c.availabilityZone && !c.availabilityZone.startsWith(experiment.region)) {
        problems.push(error("compute.availabilityZone", `${c.availabilityZone} is not a zone of the campaign's region ${experiment.region}`));
    }
    if (c.availabilityZone && zones.length && zones[0] !== c.availabilityZone) {
        problems.push(error("compute.availabilityZone", `is ${c.availabilityZone} but compute.availabilityZones starts with ${zones[0]}: the nodes launch in the first zone of the list; remove availabilityZone`));
    }
    if (c.subnetId && zones.length > 1) {
        problems.push(error("compute.availabilityZones", `a subnet lies in one zone, so compute.subnetId fixes the zone: give compute.subnetId or the zones, not both`));
    }
    if (c.capacityReservationId && c.market === "spot") {
        problems.push(error("compute.capacityReservationId", "a capacity reservation or Capacity Block runs on-demand instances: set compute.market: on-demand"));
    }
    if (c.dataVolumeGb !== undefined && zones.length > 1) {
        problems.push(error("compute.dataVolumeGb", `the dataset volume lives in one zone and attaches only to a node there, but compute.availabilityZones lets the node launch in ${zones.length} zones: keep one zone (compute.availabilityZones: [${zones[0]}]; fallback instance types still apply) or remove dataVolumeGb`));
    }
    if (c.capacityBlock && !c.capacityReservationId) {
        problems.push(error("compute.capacityBlock", "needs compute.capacityReservationId: the id (cr-...) of the Capacity Block for ML you purchased"));
    }
    return problems;
}

// ---------------------------------------------------------------- fallback instance types

/**
 * Why `instanceType` cannot stand in for the run's own type, or undefined when it can. It must have the same GPU count
 * (the job spec carries the GPU count, so the global batch, the spec hash and the run's checkpoints stay the same),
 * bf16 when the run trains in bf16, and room for the run: the memory estimate when the model is known, else at least
 * the GPU memory of the run's own type.
 */
export function fallbackRefusal(experiment: Experiment, run: ResolvedRun, instanceType: string): string | undefined {
    const own = getInstance(run.instanceType);
    const other = findInstance(instanceType);
    if (!other) return `${instanceType} is not in the catalog (components/plan/catalog.ts)`;
    if (other.gpuCount === 0) return `${instanceType} has no GPU`;
    if (other.gpuCount !== own.gpuCount) {
        return `${instanceType} has ${other.gpuCount} GPU(s), ${run.instanceType} has ${own.gpuCount}: the job spec (global batch, spec hash, checkpoints) would change; list types with ${own.gpuCount} GPU(s)`;
    }
    if (run.training.precision === "bf16" && !other.bf16) return `${instanceType} (${other.gpuModel}) has no bf16 and the run trains in bf16`;
    const estimate = runEstimates(experiment, { ...run, instanceType });
    if (estimate && !estimate.memory.fits) {
        return `the run needs about ${estimate.memory.totalGiB.toFixed(1)} GiB per GPU and ${instanceType} has ${estimate.memory.gpuMemoryGiB.toFixed(1)} GiB`;
    }
    if (!estimate && other.gpuMemoryGiB < own.gpuMemoryGiB) {
        return `the model is not in components/plan/models.ts, so its memory is unknown, and ${instanceType} has less GPU memory (${other.gpuMemoryGiB} GiB) than ${run.instanceType} (${own.gpuMemoryGiB} GiB)`;
    }
    return undefined;
}

/** The run's fallback types in the configured order, without its own type. */
export function runFallbackTypes(experiment: Experiment, run: ResolvedRun): string[] {
    return (experiment.compute.fallbackInstanceTypes ?? []).filter((t) => t !== run.instanceType);
}

/** compute.fallbackInstanceTypes against every run: each type must be able to stand in for each run's type. */
export function fallbackProblems(experiment: Experiment, runs: readonly ResolvedRun[]): Problem[] {
    const types = experiment.compute.fallbackInstanceTypes;
    if (!types) return [];
    if (experiment.compute.capacityReservationId) {
        return [error("compute.fallbackInstanceTypes", "a capacity reservation or Capacity Block holds one instance type in one zone, so there is nothing to fall back to: remove fallbackInstanceTypes or the reservation")];
    }
    const c = experiment.compute;
    const problems: Problem[] = [];
    if (!c.subnetId && !c.availabilityZone && !c.availabilityZones?.length) {
        problems.push(error("compute.fallbackInstanceTypes", "the fallback launch names the subnet of each place it tries: set compute.availabilityZones (zones in order of preference; their default subnets are used) or compute.subnetId"));
    }
    types.forEach((type, i) => {
        const path = `compute.fallbackInstanceTypes.${i}`;
        const spec = findInstance(type);
        if (!spec) {
            try {
                getInstance(type);
            } catch (err) {
                problems.push(error(path, (err as Error).message));
            }
            return;
        }
        for (const run of runs) {
            if (type === run.instanceType) continue;
            const why = fallbackRefusal(experiment, run, type);
            if (why) problems.push(error(path, `${type} cannot stand in for ${run.instanceType} in run ${run.name}: ${why}`));
        }
    });
    return problems;
}

export interface LaunchCandidate {
    readonly instanceType: string;
    /** Undefined: no zone is configured, EC2 (or the subnet) picks it. */
    readonly zone?: string;
}

/** The zones a node may use, in order: compute.availabilityZones, else the one zone, else the given subnet's zone. */
export function candidateZones(compute: ComputeConfig, subnetZone?: string): string[] {
    return compute.availabilityZones ?? (compute.availabilityZone ? [compute.availabilityZone] : subnetZone ? [subnetZone] : []);
}

/**
 * The order in which a run's node may get capacity: its own type in each zone, then each fallback type in each zone.
 * Type before zone: the type decides the price and the time the plan estimated, the zone does not.
 */
export function launchOrder(experiment: Experiment, run: ResolvedRun, zones: readonly string[]): LaunchCandidate[] {
    const types = [run.instanceType, ...runFallbackTypes(experiment, run)];
    return types.flatMap((instanceType) => (zones.length ? zones.map((zone) => ({ instanceType, zone })) : [{ instanceType }]));
}

/** The config that launches a run's node as `candidate`: the exact lines to set, for the message of preflight or the plan. */
export function configFor(campaign: ResolvedCampaign, run: ResolvedRun, candidate: LaunchCandidate, zones: readonly string[]): string {
    const parts: string[] = [];
    if (candidate.instanceType !== run.instanceType) {
        parts.push(
            campaign.runs.length > 1
                ? `compute.instanceType: ${candidate.instanceType} in run ${run.name}'s entry of runs (or compute.instanceType for every run)`
                : `compute.instanceType: ${candidate.instanceType}`,
        );
    }
    if (candidate.zone && candidate.zone !== zones[0]) parts.push(`compute.availabilityZones: [${[candidate.zone, ...zones.filter((z) => z !== candidate.zone)].join(", ")}]`);
    return parts.join(" and ");
}

/** The plan's lines on capacity: where the nodes launch and what to do when a zone has none. */
export function capacityNotes(campaign: ResolvedCampaign): string[] {
    const c = campaign.experiment.compute;
    const reservation = reservationTarget(c);
    if (reservation) {
        return [
            `GPU nodes launch into ${reservation.capacityBlock ? "the Capacity Block for ML" : "the capacity reservation"} ${reservation.capacityReservationId} ` +
                `(on demand; its zone and instance type must match the runs'${reservation.capacityBlock ? "; a Capacity Block only runs between its start and end times" : ""})`,
        ];
    }
    const zone = nodeZone(c);
    const rest = c.availabilityZones?.slice(1) ?? [];
    const lines = [
        zone
            ? `GPU nodes launch in ${zone}${rest.length ? `; next in order: ${rest.join(", ")}` : ""} (compute.availabilityZones; campaign preflight checks each offers the type)`
            : c.subnetId
              ? `GPU nodes launch in the zone of ${c.subnetId}`
              : "GPU nodes launch where EC2 places them in the default VPC (set compute.availabilityZones to choose and order zones)",
    ];
    // The fallback order per run: what campaign preflight tries, in this order (one run per distinct type).
    const zones = candidateZones(c);
    const fallbackRuns = campaign.runs.filter((r, i) => runFallbackTypes(campaign.experiment, r).length && campaign.runs.findIndex((o) => o.instanceType === r.instanceType) === i);
    for (const run of fallbackRuns) {
        const where = zones.length ? ` in ${zones.join(", ")}` : "";
        const sameType = campaign.runs.filter((r) => r.instanceType === run.instanceType).map((r) => r.name);
        lines.push(
            `fallback order for ${sameType.length === campaign.runs.length ? "every run" : `run(s) ${sameType.join(", ")}`}: ` +
                [run.instanceType, ...runFallbackTypes(campaign.experiment, run)].map((t) => `${t} ($${getInstance(t).onDemandUsdPerHour}/h on demand)${where}`).join("; then ") +
                " (compute.fallbackInstanceTypes: one EC2 Fleet request tries them in this order and launches the first that has capacity)",
        );
    }
    // Alternatives per run: other types that fit, cheapest first, from the comparison.
    const alternatives = compareInstances(campaign)
        .runs.flatMap((r) => (r.options ?? []).filter((o) => !o.configured && !o.overCap).slice(0, 2).map((o) => `${r.run}: ${o.instanceType}`))
        .slice(0, 4);
    const fallbackLaunch = campaign.runs.some((r) => usesFallbackLaunch(campaign.experiment, r));
    if (fallbackLaunch) {
        lines.push(
            "with several zones or types, a GPU node launches through one EC2 Fleet request (type instant) over its launch order: EC2 takes the first that has capacity. " +
                "If none has (InsufficientInstanceCapacity in each), pulumi up stops with every candidate's reason (nodes already created keep running): run pulumi up again later, " +
                `switch compute.market (now ${c.market}), add zones or types, use a capacity reservation or Capacity Block (compute.capacityReservationId)` +
                (alternatives.length ? `, or another type that fits (${alternatives.join(", ")}; npm run plan -- --compare)` : ""),
        );
        return lines;
    }
    lines.push(
        "if EC2 has no capacity there (InsufficientInstanceCapacity), pulumi up stops with that node's error (nodes already created keep running): " +
            "set compute.availabilityZones to another zone and run pulumi up again, " +
            `switch compute.market (now ${c.market}), use a capacity reservation or Capacity Block (compute.capacityReservationId)` +
            (alternatives.length ? `, or another type that fits (${alternatives.join(", ")}; npm run plan -- --compare)` : "") +
            "; or give compute.availabilityZones more than one zone (or compute.fallbackInstanceTypes), and the launch tries them in order",
    );
    return lines;
}

// ---------------------------------------------------------------- the launch with fallback

/**
 * Whether a run's GPU node launches through the fallback step (an EC2 Fleet of type instant over its launch order)
 * rather than as one instance: when it has more than one place to try and no reservation.
 */
export function usesFallbackLaunch(experiment: Experiment, run: ResolvedRun): boolean {
    if (experiment.compute.capacityReservationId) return false;
    const zones = Math.max(1, candidateZones(experiment.compute).length); // a subnet, or EC2's choice, is one place
    return zones * (1 + runFallbackTypes(experiment, run).length) > 1;
}

/** What the launch's failure message suggests beside trying again: another market, a reservation, other types that fit. */
export function launchAlternatives(campaign: ResolvedCampaign, run: ResolvedRun): string[] {
    const c = campaign.experiment.compute;
    const tried = new Set([run.instanceType, ...runFallbackTypes(campaign.experiment, run)]);
    const others = (compareInstances(campaign).runs.find((r) => r.run === run.name)?.options ?? [])
        .filter((o) => !tried.has(o.instanceType) && !o.overCap)
        .slice(0, 3)
        .map((o) => `${o.instanceType} ($${o.onDemandUsd.toFixed(0)} on demand for the run)`);
    return [
        c.market === "spot" ? "set compute.market: on-demand (spot capacity is often the scarcer)" : "set compute.market: spot, when the run checkpoints (spot pools differ from on-demand capacity)",
        "add zones to compute.availabilityZones, or types to compute.fallbackInstanceTypes (npm run campaign -- preflight checks each is offered)",
        "buy capacity ahead: an On-Demand Capacity Reservation or a Capacity Block for ML (compute.capacityReservationId)",
        ...(others.length ? [`another type that fits the run: ${others.join(", ")} (npm run plan -- --compare)`] : []),
    ];
}
