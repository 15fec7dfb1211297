// Preflight decisions: given what AWS answered (scripts/cli/preflight.ts reads it), whether a campaign can get
// its nodes before it spends anything. One result per check, with the fix for each failure. Pure: the facts
// come in as data, so every rule is tested without AWS.
import type { ResolvedCampaign, ResolvedRun } from "../campaign/types";
import { configFor, launchOrder, runFallbackTypes, type LaunchCandidate } from "./capacity";
import { getInstance } from "./catalog";
import { prepEstimate } from "./runEstimates";

export type CheckStatus = "pass" | "warn" | "fail";

export interface CheckResult {
    readonly check: string;
    readonly status: CheckStatus;
    readonly detail: string;
    /** What to do about a warning or a failure. */
    readonly fix?: string;
}

// ---------------------------------------------------------------- vCPU quotas

export type Market = "spot" | "on-demand";

export interface QuotaRef {
    readonly code: string;
    readonly name: string;
}

/**
 * EC2's vCPU quotas by instance family and market (Service Quotas, service code "ec2"). The codes as the Service
 * Quotas console and API show them; G and P are 0 on many new accounts:
 *   L-DB2E81BA Running On-Demand G and VT instances      L-3819A6DF All G and VT Spot Instance Requests
 *   L-417A185B Running On-Demand P instances             L-7212CCBC All P Spot Instance Requests
 *   L-1216C47A Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances
 *   L-34B43A08 All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests
 * (https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas; the quotas count vCPUs, not instances:
 * https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html)
 */
const QUOTAS: Readonly<Record<"gvt" | "p" | "standard", Readonly<Record<Market, QuotaRef>>>> = {
    gvt: {
        "on-demand": { code: "L-DB2E81BA", name: "Running On-Demand G and VT instances" },
        spot: { code: "L-3819A6DF", name: "All G and VT Spot Instance Requests" },
    },
    p: {
        "on-demand": { code: "L-417A185B", name: "Running On-Demand P instances" },
        spot: { code: "L-7212CCBC", name: "All P Spot Instance Requests" },
    },
    standard: {
        "on-demand": { code: "L-1216C47A", name: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" },
        spot: { code: "L-34B43A08", name: "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests" },
    },
};

/** The vCPU quota an instance type counts against in a market; an Error for a family this project does not launch. */
export function quotaFor(instanceType: string, market: Market): QuotaRef {
    const family = instanceType.slice(0, instanceType.indexOf("."));
    if (/^(g|vt)\d/.test(family)) return QUOTAS.gvt[market];
    if (/^p\d/.test(family)) return QUOTAS.p[market];
    if (/^[acdhimrtz]\d/.test(family)) return QUOTAS.standard[market];
    throw new Error(`no vCPU quota known for instance family "${family}" (${instanceType}): components/plan/preflight.ts knows G/VT, P and the standard families`);
}

export interface QuotaDemand {
    readonly quota: QuotaRef;
    /** vCPUs of every node that counts against this quota and runs at the same time. */
    readonly vcpus: number;
    /** What the vCPUs are for, e.g. "3 x g5.2xlarge (8 vCPUs) for runs a, b, c". */
    readonly nodes: string;
}

/**
 * The vCPUs each quota must allow at once. Every run's GPU node starts together when the gate opens; the prep
 * node ends before the gate opens, so it never adds to the GPU nodes (and counts against a standard quota).
 */
export function quotaDemand(campaign: ResolvedCampaign): QuotaDemand[] {
    const { experiment } = campaign;
    const byCode = new Map<string, { quota: QuotaRef; vcpus: number; parts: Map<string, string[]> }>();
    const add = (instanceType: string, market: Market, who: string) => {
        const quota = quotaFor(instanceType, market);
        const entry = byCode.get(quota.code) ?? { quota, vcpus: 0, parts: new Map<string, string[]>() };
        entry.vcpus += getInstance(instanceType).vcpus;
        entry.parts.set(instanceType, [...(entry.parts.get(instanceType) ?? []), who]);
        byCode.set(quota.code, entry);
    };
    for (const run of campaign.runs) add(run.instanceType, experiment.compute.market, run.name);
    // The prep node is on demand (components/resources/prepStage.ts).
    if (experiment.prep.runOn === "ec2") add(experiment.prep.instanceType, "on-demand", "prep");
    return [...byCode.values()].map((e) => ({
        quota: e.quota,
        vcpus: e.vcpus,
        nodes: [...e.parts.entries()].map(([type, who]) => `${who.length} x ${type} (${getInstance(type).vcpus} vCPUs) for ${who.join(", ")}`).join("; "),
    }));
}

export function checkQuota(demand: QuotaDemand, region: string, value: number | { readonly error: string }): CheckResult {
    const check = `quota ${demand.quota.code}`;
    const request =
        `request ${demand.vcpus} or more: aws service-quotas request-service-quota-increase --region ${region} --service-code ec2 ` +
        `--quota-code ${demand.quota.code} --desired-value ${demand.vcpus} (or the Service Quotas console, EC2, "${demand.quota.name}")` +
        (/ (G and VT|P) /.test(` ${demand.quota.name} `) ? "; AWS reviews G and P increases, which can take days" : "");
    if (typeof value !== "number") {
        return { check, status: "warn", detail: `could not read "${demand.quota.name}" (${value.error}); the nodes need ${demand.vcpus} vCPUs: ${demand.nodes}`, fix: `check it in the Service Quotas console; ${request}` };
    }
    if (value >= demand.vcpus) return { check, status: "pass", detail: `"${demand.quota.name}" is ${value} vCPUs; the nodes need ${demand.vcpus} at once (${demand.nodes})` };
    return {
        check,
        status: "fail",
        detail: `"${demand.quota.name}" is ${value} vCPUs in ${region}, but the nodes need ${demand.vcpus} at once (${demand.nodes})`,
        fix: request,
    };
}

/**
 * The quotas the fallback types would need that the configured types do not already count against: for each such
 * quota, every run that may move there, at the largest of its fallback types under that quota (all GPU nodes start
 * together). Empty without fallback types or when they share the configured types' quotas (g6 beside g5, p5 beside p4de).
 */
export function fallbackQuotaDemand(campaign: ResolvedCampaign): QuotaDemand[] {
    const market = campaign.experiment.compute.market;
    const counted = new Set(quotaDemand(campaign).map((d) => d.quota.code));
    const byCode = new Map<string, { quota: QuotaRef; vcpus: number; parts: string[] }>();
    for (const run of campaign.runs) {
        const largest = new Map<string, string>();
        for (const type of runFallbackTypes(campaign.experiment, run)) {
            const code = quotaFor(type, market).code;
            if (counted.has(code)) continue;
            const seen = largest.get(code);
            if (!seen || getInstance(type).vcpus > getInstance(seen).vcpus) largest.set(code, type);
        }
        for (const [code, type] of largest) {
            const entry = byCode.get(code) ?? { quota: quotaFor(type, market), vcpus: 0, parts: [] };
            entry.vcpus += getInstance(type).vcpus;
            entry.parts.push(`${type} (${getInstance(type).vcpus} vCPUs) for ${run.name}`);
            byCode.set(code, entry);
        }
    }
    return [...byCode.values()].map((e) => ({ quota: e.quota, vcpus: e.vcpus, nodes: `fallback ${e.parts.join("; ")}` }));
}

/** A fallback type's quota: what checkQuota says, but short only warns, since the nodes need it only after a switch. */
export function checkFallbackQuota(demand: QuotaDemand, region: string, value: number | { readonly error: string }): CheckResult {
    const result = checkQuota(demand, region, value);
    return result.status === "fail" ? { ...result, status: "warn", detail: `${result.detail}; needed only if a run moves to its fallback type` } : result;
}

// ---------------------------------------------------------------- credentials

export interface CredentialFacts {
    readonly account: string;
    readonly arn: string;
    /** Temporary credentials (a session token: SSO, an assumed role) have an expiry. */
    readonly expiration?: Date;
}

/**
 * `pulumi up` keeps the credentials it started with while it waits on the gate for prep, then creates the GPU
 * nodes: credentials that expire before prep ends leave the update half done. Fails when they expire before the
 * estimated prep ends; warns when before the prep cap (prep.maxHours).
 */
export function checkCredentials(campaign: ResolvedCampaign, facts: CredentialFacts | { readonly error: string }, now: Date): CheckResult {
    const check = "credentials";
    if ("error" in facts) {
        return { check, status: "fail", detail: `AWS did not accept the credentials: ${facts.error}`, fix: "configure credentials for the campaign's account: aws configure, aws sso login, or AWS_PROFILE" };
    }
    const who = `account ${facts.account} as ${facts.arn}`;
    if (!facts.expiration) return { check, status: "pass", detail: `${who} (long-term credentials)` };
    const { experiment } = campaign;
    // Local or on a node, pulumi up runs prep and then waits on the gate for up to prep.maxHours.
    const prepHours = prepEstimate(experiment).hours;
    const capHours = experiment.prep.maxHours;
    const left = (facts.expiration.getTime() - now.getTime()) / 3_600_000;
    const until = `expire at ${facts.expiration.toISOString()}`;
    const fix =
        "start with fresh credentials that last longer than prep (aws sso login, or a role session with --duration-seconds), " +
        "or prepare first with prep.runOn: local";
    if (left <= 0) return { check, status: "fail", detail: `${who}: the temporary credentials expired at ${facts.expiration.toISOString()}`, fix: "refresh them: aws sso login (or assume the role again)" };
    if (left < prepHours + 0.25) {
        return { check, status: "fail", detail: `${who}: the temporary credentials ${until}, in ${left.toFixed(1)} h, before prep is estimated to end (${prepHours.toFixed(1)} h) and the GPU nodes are created`, fix };
    }
    if (left < capHours) {
        return { check, status: "warn", detail: `${who}: the temporary credentials ${until}, in ${left.toFixed(1)} h, within the prep cap of ${capHours} h that pulumi up may wait on the gate`, fix };
    }
    return { check, status: "pass", detail: `${who}: temporary credentials that ${until}, after prep (estimated ${prepHours.toFixed(1)} h, cap ${capHours} h)` };
}

// ---------------------------------------------------------------- capacity: zones and spot

/**
 * The instance type must be offered in the zones the node may launch in. With zones configured, every zone that
 * does not offer it fails; with none (EC2 picks a default subnet), zones without it only warn.
 */
export function checkOffered(
    instanceType: string,
    region: string,
    zones: { readonly configured: readonly string[]; readonly all: readonly string[] },
    offeredIn: readonly string[],
    /** The nodes of this type launch through the fallback step over the zones in order (capacity.ts usesFallbackLaunch). */
    fallbackLaunch = false,
): CheckResult {
    const check = `offered ${instanceType}`;
    const offered = new Set(offeredIn);
    const candidates = zones.configured.length ? zones.configured : zones.all;
    const missing = candidates.filter((z) => !offered.has(z));
    const where = [...offered].sort().join(", ") || "no zone";
    if (offered.size === 0) {
        return { check, status: "fail", detail: `${instanceType} is not offered in any zone of ${region}`, fix: `choose another region for it, or another instance type (npm run plan -- --compare lists the ones that fit)` };
    }
    if (missing.length === 0) return { check, status: "pass", detail: `${instanceType} is offered in ${candidates.join(", ")}` };
    if (zones.configured.length && missing.length === candidates.length) {
        return { check, status: "fail", detail: `${instanceType} is not offered in ${missing.join(", ")}; it is in ${where}`, fix: `set compute.availabilityZones to zones that offer it, e.g. [${[...offered].sort().join(", ")}] (and a subnet there, if you give one)` };
    }
    if (zones.configured.length && missing.includes(zones.configured[0]!)) {
        // One instance launches in the first zone (capacity.ts nodeZone); the fallback launch moves on to the next.
        const first = zones.configured.find((z) => offered.has(z))!;
        return {
            check,
            status: fallbackLaunch ? "warn" : "fail",
            detail: fallbackLaunch
                ? `the first zone, ${zones.configured[0]}, does not offer ${instanceType} (it is in ${where}): the launch skips it and tries ${first} next`
                : `the nodes launch in the first zone, ${zones.configured[0]}, which does not offer ${instanceType} (it is in ${where})`,
            fix: `put a zone that offers it first: compute.availabilityZones: [${[first, ...zones.configured.filter((z) => z !== first)].join(", ")}]`,
        };
    }
    if (zones.configured.length) {
        return { check, status: "warn", detail: `${instanceType} is not offered in ${missing.join(", ")} (it is in ${where}), later in compute.availabilityZones than the zone the nodes launch in`, fix: `drop ${missing.join(", ")} from compute.availabilityZones` };
    }
    return { check, status: "warn", detail: `no zone is configured and ${instanceType} is not offered in ${missing.join(", ")} of ${region} (it is in ${where})`, fix: `set compute.availabilityZones to zones that offer it, e.g. [${[...offered].sort().join(", ")}]` };
}

export function checkSpotPrices(instanceType: string, onDemandUsdPerHour: number, prices: Readonly<Record<string, number>>, zones: readonly string[]): CheckResult {
    const check = `spot ${instanceType}`;
    const known = zones.filter((z) => prices[z] !== undefined);
    if (known.length === 0) {
        return { check, status: "warn", detail: `no recent spot price for ${instanceType} in ${zones.join(", ") || "the region"}: spot capacity may not exist there`, fix: `set compute.market: on-demand, or other zones (compute.availabilityZones)` };
    }
    const listing = known.map((z) => `${z} $${prices[z]!.toFixed(4)}/h`).join(", ");
    return { check, status: "pass", detail: `current spot price ${listing} (on demand $${onDemandUsdPerHour}/h)` };
}

// ---------------------------------------------------------------- the launch order: zones and fallback types

export interface CandidateFacts {
    /** Zones that offer each instance type (DescribeInstanceTypeOfferings), or why they could not be read. */
    readonly offeredIn: Readonly<Record<string, readonly string[] | { readonly error: string }>>;
    /** For spot: the newest spot price per zone of each type; absent on demand. */
    readonly spotPrices?: Readonly<Record<string, Readonly<Record<string, number>> | { readonly error: string }>>;
}

const NOT_OFFERED = "not offered";

/** Why a candidate cannot launch, from what AWS answered; undefined when nothing speaks against it. */
function candidateObstacle(candidate: LaunchCandidate, facts: CandidateFacts): string | undefined {
    const offered = facts.offeredIn[candidate.instanceType];
    if (offered === undefined || "error" in offered) return `offerings of ${candidate.instanceType} unknown`;
    if (candidate.zone ? !offered.includes(candidate.zone) : offered.length === 0) return NOT_OFFERED;
    if (facts.spotPrices) {
        const prices = facts.spotPrices[candidate.instanceType];
        if (prices === undefined || "error" in prices) return "spot price unknown";
        const known = candidate.zone ? prices[candidate.zone] !== undefined : Object.keys(prices).length > 0;
        if (!known) return "no recent spot price";
    }
    return undefined;
}

const candidateLabel = (c: LaunchCandidate) => `${c.instanceType}${c.zone ? ` in ${c.zone}` : ""}`;

/**
 * A run's zones and fallback types in launch order (components/plan/capacity.ts launchOrder), each against its
 * offering and, on spot, a recent spot price. With more than one candidate the node launches through one EC2 Fleet
 * request over them (scripts/launch-node.ts), and EC2 launches the first that has capacity. Pass: the first choice has
 * both. Warn: a later one is the first that does; the launch still works (EC2 answers the earlier ones with an error
 * and moves on), and putting it first makes the plan's price the one paid. Fail: none does. Neither read shows free
 * capacity (EC2 answers that only to a launch), so a pass is no promise; a fail is certain.
 */
export function checkLaunchOrder(campaign: ResolvedCampaign, run: ResolvedRun, zones: readonly string[], facts: CandidateFacts): CheckResult {
    const check = `launch ${run.name}`;
    const order = launchOrder(campaign.experiment, run, zones);
    const obstacles = order.map((c) => candidateObstacle(c, facts));
    const listing = order.map((c, i) => `${candidateLabel(c)}${obstacles[i] ? ` (${obstacles[i]})` : ""}`).join(", ");
    const first = obstacles.findIndex((o) => o === undefined);
    if (first === 0) return { check, status: "pass", detail: `${candidateLabel(order[0]!)} is the first choice and is offered${facts.spotPrices ? " with a spot price" : ""}; the launch tries, in order: ${listing}` };
    if (first > 0) {
        const pick = order[first]!;
        return {
            check,
            status: "warn",
            detail: `the first choice ${candidateLabel(order[0]!)} cannot launch (${obstacles[0]}); the launch moves on through the order, and the first that is offered${facts.spotPrices ? " with a spot price" : ""} is ${candidateLabel(pick)}: ${listing}`,
            fix: `to start there (and be priced as it), set ${configFor(campaign, run, pick, zones)}`,
        };
    }
    return {
        check,
        status: "fail",
        detail: `no zone and type in the launch order can launch: ${listing}`,
        fix: `add zones (compute.availabilityZones) or types (compute.fallbackInstanceTypes) that are offered${facts.spotPrices ? ", or set compute.market: on-demand" : ""}; npm run plan -- --compare lists the types that fit`,
    };
}

// ---------------------------------------------------------------- network, AMI, bucket

export interface NetworkFacts {
    /** The subnet's or the default VPC's id; undefined when there is none. */
    readonly vpcId?: string;
    /** How the node's subnet reaches S3: "gateway endpoint vpce-...", "internet gateway igw-...", "NAT nat-...", or undefined. */
    readonly s3Route?: string;
    /** What was looked at, for the message: "default VPC", "subnet subnet-0abc". */
    readonly looked: string;
    readonly error?: string;
}

export function checkNetwork(facts: NetworkFacts, region: string): CheckResult {
    const check = "network";
    if (facts.error) return { check, status: "fail", detail: `${facts.looked}: ${facts.error}`, fix: "give compute.subnetId of an existing subnet in the campaign's region" };
    if (!facts.vpcId) {
        return {
            check,
            status: "fail",
            detail: `${region} has no default VPC, and compute.subnetId is not set`,
            fix: `set compute.subnetId to a subnet with a route to S3 (an S3 gateway endpoint, or 0.0.0.0/0 to an internet or NAT gateway), or create a default VPC: aws ec2 create-default-vpc --region ${region}`,
        };
    }
    if (!facts.s3Route) {
        return {
            check,
            status: "fail",
            detail: `${facts.looked} in ${facts.vpcId} has no route to S3: no S3 gateway endpoint and no 0.0.0.0/0 route to an internet or NAT gateway; nodes could not fetch the runner or their data`,
            fix: `add an S3 gateway endpoint to its route table (aws ec2 create-vpc-endpoint --vpc-id ${facts.vpcId} --service-name com.amazonaws.${region}.s3 --route-table-ids <rtb>) or a route to an internet gateway`,
        };
    }
    return { check, status: "pass", detail: `${facts.looked} in ${facts.vpcId} reaches S3 through ${facts.s3Route}` };
}

export function checkAmi(role: "train" | "prep", parameter: string, region: string, value: string | undefined | { readonly error: string }): CheckResult {
    const check = `AMI ${role}`;
    if (typeof value === "string") return { check, status: "pass", detail: `${parameter} resolves to ${value}` };
    const field = role === "train" ? "compute.amiParameter" : "prep.amiParameter";
    const why = value === undefined ? "no such parameter" : value.error;
    return { check, status: "fail", detail: `${parameter} does not resolve in ${region} (${why})`, fix: `set ${field} to an SSM parameter that holds an AMI id in ${region} (aws ssm get-parameter --region ${region} --name <parameter>)` };
}

export type BucketState = "ours" | "free" | "taken";

export function checkBucket(bucket: string, existing: boolean, state: BucketState | { readonly error: string }): CheckResult {
    const check = "bucket";
    if (typeof state !== "string") return { check, status: "warn", detail: `could not look at s3://${bucket}: ${state.error}`, fix: "check that the credentials may call s3:ListBucket" };
    if (existing) {
        if (state === "ours") return { check, status: "pass", detail: `storage.existingBucket s3://${bucket} exists and these credentials can reach it` };
        return { check, status: "fail", detail: `storage.existingBucket s3://${bucket} ${state === "free" ? "does not exist" : "belongs to another account or denies these credentials"}`, fix: "create it first, fix its name, or remove storage.existingBucket so the campaign creates its own" };
    }
    if (state === "free") return { check, status: "pass", detail: `s3://${bucket} is free: the campaign creates it` };
    if (state === "ours") return { check, status: "pass", detail: `s3://${bucket} exists and is reachable (this campaign's, from an earlier update)` };
    return { check, status: "fail", detail: `s3://${bucket} is taken by another account`, fix: "rename the campaign or the stack (the bucket name derives from both), or set storage.existingBucket" };
}

// ---------------------------------------------------------------- the whole report

/** Exit code of `campaign preflight`: 1 when anything would stop the campaign. */
export function preflightExitCode(results: readonly CheckResult[]): 0 | 1 {
    return results.some((r) => r.status === "fail") ? 1 : 0;
}

export function renderPreflight(results: readonly CheckResult[], heading: string): string {
    const width = Math.max(...results.map((r) => r.check.length));
    const lines = [heading];
    for (const r of results) {
        lines.push(`${r.status.toUpperCase().padEnd(4)}  ${r.check.padEnd(width)}  ${r.detail}`);
        if (r.fix && r.status !== "pass") lines.push(`${" ".repeat(6 + width)}  fix: ${r.fix}`);
    }
    const failed = results.filter((r) => r.status === "fail").length;
    const warned = results.filter((r) => r.status === "warn").length;
    lines.push(failed ? `${failed} check(s) failed: fix them before anything is created.` : `All clear${warned ? ` (${warned} warning(s))` : ""}: nothing here would stop the campaign.`);
    return lines.join("\n");
}
