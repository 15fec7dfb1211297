// Where the GPU nodes get their capacity: the ordered zones (compute.availabilityZones), a capacity reservation or
// a Capacity Block for ML (compute.capacityReservationId), the config errors between them, and what the plan says
// to do when a zone has no capacity. Pure.
import type { ResolvedCampaign } from "../campaign/types";
import type { ComputeConfig, Experiment } from "../config/schema";
import type { Problem } from "../config/problems";
import { compareInstances } from "./compare";

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
    if (c.capacityBlock && !c.capacityReservationId) {
        problems.push(error("compute.capacityBlock", "needs compute.capacityReservationId: the id (cr-...) of the Capacity Block for ML you purchased"));
    }
    return problems;
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
    // Alternatives per run: other types that fit, cheapest first, from the comparison.
    const alternatives = compareInstances(campaign)
        .runs.flatMap((r) => (r.options ?? []).filter((o) => !o.configured && !o.overCap).slice(0, 2).map((o) => `${r.run}: ${o.instanceType}`))
        .slice(0, 4);
    lines.push(
        "if EC2 has no capacity there (InsufficientInstanceCapacity), pulumi up stops with that node's error (nodes already created keep running): " +
            (rest.length ? `put ${rest[0]} first in compute.availabilityZones and run pulumi up again, ` : "set compute.availabilityZones to another zone and run pulumi up again, ") +
            `switch compute.market (now ${c.market}), use a capacity reservation or Capacity Block (compute.capacityReservationId)` +
            (alternatives.length ? `, or another type that fits (${alternatives.join(", ")}; npm run plan -- --compare)` : ""),
    );
    return lines;
}
