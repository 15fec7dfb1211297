// A GPU node's launch over its launch order (capacity.ts launchOrder) as one EC2 Fleet request of type `instant`:
// what the request says, and what its answer means. EC2 tries the candidates in priority order and launches the
// first that has capacity; the answer lists the instance it launched and an error for each pool it could not use
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instant-fleet.html, API_CreateFleetError). The launch step
// (scripts/launch-node.ts) sends the request and reads the answer; this module is pure, so tests call it directly.
//
// Why our own step and not aws.ec2.Fleet: docs/aws.md, "Fallback across zones and types".

/** One place the node may launch: an instance type in a subnet (each subnet lies in one zone). */
export interface FleetCandidate {
    readonly instanceType: string;
    readonly subnetId: string;
    readonly zone: string;
}

/** What the launch step is given (CAMPAIGN_LAUNCH, JSON): everything it needs to launch, and to explain a failure. */
export interface LaunchRequest {
    /** The node, for messages and the launch tag: the Pulumi name of its JobNode. */
    readonly node: string;
    /** A new value is a new launch: the count of the run's attempts that ended (relaunch.ts launchKeyOf). */
    readonly launchKey: string;
    readonly region: string;
    readonly launchTemplateId: string;
    readonly launchTemplateVersion: string;
    readonly market: "spot" | "on-demand";
    /** In order of preference: the first is what the plan priced. */
    readonly candidates: readonly FleetCandidate[];
    /** What else a person can do when none launches (another market, a reservation, another type). */
    readonly alternatives: readonly string[];
}

/** The instance the launch step launched (its stdout, JSON): the node's record, which the delete step reads back. */
export interface LaunchRecord {
    readonly instanceId: string;
    readonly instanceType: string;
    readonly zone: string;
    readonly subnetId: string;
    /** The instant fleet that launched it; absent when an instance of an earlier try of this launch was adopted. */
    readonly fleetId?: string;
    readonly launchKey: string;
    /** The candidates EC2 could not use before this one, each with its error. */
    readonly skipped: readonly string[];
}

/** The tag that marks an instance as this node's launch `launchKey`: a retried step finds it instead of launching again. */
export const LAUNCH_TAG = "campaign-launch";

export function launchTagValue(node: string, launchKey: string): string {
    return `${node}/${launchKey}`;
}

/** The CreateFleet input (field names as the EC2 API and the AWS SDK spell them). */
export function createFleetInput(request: LaunchRequest) {
    if (request.candidates.length === 0) throw new Error(`${request.node}: a fleet launch needs at least one candidate`);
    const spot = request.market === "spot";
    return {
        Type: "instant" as const,
        TargetCapacitySpecification: { TotalTargetCapacity: 1, DefaultTargetCapacityType: request.market },
        // prioritized: on demand, EC2 uses the overrides in priority order. On spot, capacity-optimized-prioritized
        // honours the order on a best-effort basis, capacity first: the pool least likely to be interrupted wins.
        // One-time spot that terminates on interruption, as the single-instance node (the runner expects it).
        ...(spot
            ? { SpotOptions: { AllocationStrategy: "capacity-optimized-prioritized" as const, InstanceInterruptionBehavior: "terminate" as const } }
            : { OnDemandOptions: { AllocationStrategy: "prioritized" as const } }),
        LaunchTemplateConfigs: [
            {
                LaunchTemplateSpecification: { LaunchTemplateId: request.launchTemplateId, Version: request.launchTemplateVersion },
                // One subnet per override (an instant fleet takes one subnet id per override). Priorities count from
                // 1 in the configured order; the lower the number, the earlier EC2 tries it.
                Overrides: request.candidates.map((c, i) => ({ InstanceType: c.instanceType, SubnetId: c.subnetId, Priority: i + 1 })),
            },
        ],
    };
}

/** The parts of a CreateFleet answer the launch step reads. */
export interface FleetAnswer {
    readonly FleetId?: string;
    readonly Instances?: ReadonlyArray<{
        readonly InstanceIds?: readonly string[];
        readonly InstanceType?: string;
        readonly LaunchTemplateAndOverrides?: { readonly Overrides?: { readonly InstanceType?: string; readonly SubnetId?: string; readonly AvailabilityZone?: string } };
    }>;
    readonly Errors?: ReadonlyArray<{
        readonly ErrorCode?: string;
        readonly ErrorMessage?: string;
        readonly LaunchTemplateAndOverrides?: { readonly Overrides?: { readonly InstanceType?: string; readonly SubnetId?: string; readonly AvailabilityZone?: string } };
    }>;
}

function describe(c: FleetCandidate): string {
    return `${c.instanceType} in ${c.zone} (${c.subnetId})`;
}

/** Each candidate with the error EC2 gave for it, in the request's order; errors that name no candidate come last. */
function errorsByCandidate(request: LaunchRequest, answer: FleetAnswer): string[] {
    const errors = answer.Errors ?? [];
    const lines: string[] = [];
    const used = new Set<number>();
    for (const c of request.candidates) {
        const hits = errors
            .map((e, i) => ({ e, i }))
            .filter(({ e }) => e.LaunchTemplateAndOverrides?.Overrides?.InstanceType === c.instanceType && e.LaunchTemplateAndOverrides?.Overrides?.SubnetId === c.subnetId);
        for (const { e, i } of hits) {
            used.add(i);
            lines.push(`${describe(c)}: ${e.ErrorCode ?? "error"}: ${e.ErrorMessage ?? "(no message)"}`);
        }
    }
    errors.forEach((e, i) => {
        if (!used.has(i)) lines.push(`${e.LaunchTemplateAndOverrides?.Overrides?.InstanceType ?? "(no type)"} in ${e.LaunchTemplateAndOverrides?.Overrides?.SubnetId ?? "(no subnet)"}: ${e.ErrorCode ?? "error"}: ${e.ErrorMessage ?? "(no message)"}`);
    });
    return lines;
}

export type LaunchOutcome =
    | { readonly launched: true; readonly record: LaunchRecord; readonly extra: readonly string[] }
    | { readonly launched: false; readonly message: string };

/**
 * What a CreateFleet answer means. Launched: the first instance, the candidate it came from, and the errors of the
 * pools EC2 tried before it (an answer can carry errors beside the instance it launched). Not launched: a message
 * that lists every candidate in order with EC2's reason, and what to do. `extra` lists any further instances, which
 * the step terminates (the target is one).
 */
export function fleetOutcome(request: LaunchRequest, answer: FleetAnswer): LaunchOutcome {
    const launched = (answer.Instances ?? []).flatMap((set) => (set.InstanceIds ?? []).map((id) => ({ id, set })));
    const tried = errorsByCandidate(request, answer);
    const first = launched[0];
    if (first) {
        const o = first.set.LaunchTemplateAndOverrides?.Overrides;
        const candidate =
            request.candidates.find((c) => c.subnetId === o?.SubnetId && c.instanceType === (o?.InstanceType ?? first.set.InstanceType)) ??
            request.candidates.find((c) => c.instanceType === (o?.InstanceType ?? first.set.InstanceType));
        if (!candidate) {
            return { launched: false, message: `${request.node}: EC2 launched ${first.id} as ${first.set.InstanceType ?? "an unknown type"} in ${o?.SubnetId ?? "an unknown subnet"}, which is none of the candidates; it is terminated` };
        }
        return {
            launched: true,
            record: {
                instanceId: first.id,
                instanceType: candidate.instanceType,
                zone: o?.AvailabilityZone ?? candidate.zone,
                subnetId: candidate.subnetId,
                ...(answer.FleetId ? { fleetId: answer.FleetId } : {}),
                launchKey: request.launchKey,
                skipped: tried,
            },
            extra: launched.slice(1).map((l) => l.id),
        };
    }
    const notTried = request.candidates.filter((c) => !tried.some((line) => line.startsWith(`${describe(c)}:`))).map((c) => `${describe(c)}: no answer from EC2`);
    return {
        launched: false,
        message: [
            `${request.node}: no ${request.market} capacity for any of the ${request.candidates.length} candidate(s), tried in this order:`,
            ...[...tried, ...notTried].map((line) => `  - ${line}`),
            "What you can do:",
            "  - run pulumi up again later: capacity comes and goes, and the launch tries the same order",
            ...request.alternatives.map((a) => `  - ${a}`),
        ].join("\n"),
    };
}

/** A record the delete step can trust: the launch step's stdout, or undefined with why it is not one. */
export function parseLaunchRecord(stdout: string | undefined): { record: LaunchRecord } | { problem: string } {
    if (!stdout || !stdout.trim()) return { problem: "the launch step left no record (it never launched, or its output was lost)" };
    try {
        const doc = JSON.parse(stdout) as Partial<LaunchRecord>;
        if (typeof doc.instanceId !== "string" || !/^i-[0-9a-f]+$/.test(doc.instanceId)) return { problem: `the launch record names no instance id: ${stdout.slice(0, 200)}` };
        return { record: doc as LaunchRecord };
    } catch {
        return { problem: `the launch record is not JSON: ${stdout.slice(0, 200)}` };
    }
}
