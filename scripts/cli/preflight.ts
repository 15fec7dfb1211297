// campaign preflight: asks AWS, in the campaign's region, whether the campaign can get what it declares (who the
// credentials are and how long they last, the instance type in the zones, the vCPU quotas, the AMI parameters,
// a network that reaches S3, the spot price, the bucket name) before anything is created. The AWS SDK reads
// are here; every decision is in components/plan/preflight.ts.
import { DescribeAvailabilityZonesCommand, DescribeInstanceTypeOfferingsCommand, DescribeRouteTablesCommand, DescribeSpotPriceHistoryCommand, DescribeSubnetsCommand, DescribeVpcEndpointsCommand, DescribeVpcsCommand, EC2Client, type RouteTable } from "@aws-sdk/client-ec2";
import { HeadBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { GetAWSDefaultServiceQuotaCommand, GetServiceQuotaCommand, ServiceQuotasClient } from "@aws-sdk/client-service-quotas";
import { GetParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import type { ResolvedCampaign } from "../../components/campaign/types";
import { campaignBucketName } from "../../components/campaign/naming";
import { launchOrder, usesFallbackLaunch } from "../../components/plan/capacity";
import { getInstance } from "../../components/plan/catalog";
import {
    checkAmi,
    checkBucket,
    checkCredentials,
    checkFallbackQuota,
    checkLaunchOrder,
    checkNetwork,
    checkOffered,
    checkQuota,
    checkSpotPrices,
    fallbackQuotaDemand,
    quotaDemand,
    type BucketState,
    type CheckResult,
    type CredentialFacts,
    type NetworkFacts,
} from "../../components/plan/preflight";

type Failed = { readonly error: string };

/** What preflight reads from AWS. sdkReads answers from the AWS SDK; tests replace single reads. */
export interface AwsReads {
    identity(): Promise<CredentialFacts>;
    /** Zones of the region. */
    zones(): Promise<string[]>;
    /** Zones of the region that offer the instance type (DescribeInstanceTypeOfferings). */
    offeredZones(instanceType: string): Promise<string[]>;
    /** The applied (else default) value of an EC2 quota; an Error when Service Quotas has none. */
    quota(code: string): Promise<number>;
    /** The SSM parameter's value; undefined when there is no such parameter. */
    parameter(name: string): Promise<string | undefined>;
    /** The node's subnet (or the default VPC) and how its route table reaches S3. */
    network(subnetId: string | undefined): Promise<NetworkFacts & { readonly zone?: string }>;
    /** The newest spot price per zone. */
    spotPrices(instanceType: string): Promise<Record<string, number>>;
    bucket(name: string): Promise<BucketState>;
}

export interface SdkOptions {
    readonly region: string;
    /** An emulator's URL (tests); AWS otherwise. */
    readonly endpoint?: string;
    /** Credentials or a provider of them, as the clients take them (tests give temporary ones with an expiry). */
    readonly credentials?: NonNullable<ConstructorParameters<typeof STSClient>[0]>["credentials"];
}

function errorText(err: unknown): string {
    const e = err as { name?: string; message?: string };
    // The first line: SDK messages add lines of advice that would break the one-line-per-check report.
    return `${e.name ?? "Error"}: ${(e.message ?? String(err)).split("\n")[0]}`;
}

/** How a route table reaches S3, or undefined: an S3 gateway endpoint first, then 0.0.0.0/0 to a gateway. */
export function s3RouteOf(table: RouteTable | undefined, s3Endpoints: readonly { id: string; routeTables: readonly string[] }[]): string | undefined {
    if (!table) return undefined;
    const endpoint = s3Endpoints.find((e) => e.routeTables.includes(table.RouteTableId ?? ""));
    if (endpoint) return `S3 gateway endpoint ${endpoint.id}`;
    for (const route of table.Routes ?? []) {
        if (route.DestinationCidrBlock !== "0.0.0.0/0" || route.State === "blackhole") continue;
        if (route.GatewayId?.startsWith("igw-")) return `internet gateway ${route.GatewayId}`;
        if (route.NatGatewayId) return `NAT gateway ${route.NatGatewayId}`;
    }
    return undefined;
}

export function sdkReads(options: SdkOptions): AwsReads {
    const common = { region: options.region, ...(options.endpoint ? { endpoint: options.endpoint } : {}), ...(options.credentials ? { credentials: options.credentials } : {}) };
    const ec2 = new EC2Client(common);
    const sts = new STSClient(common);
    const ssm = new SSMClient(common);
    const quotas = new ServiceQuotasClient(common);
    const s3 = new S3Client({ ...common, forcePathStyle: options.endpoint !== undefined });
    const region = options.region;

    const routeTableOf = async (vpcId: string, subnetId: string | undefined): Promise<RouteTable | undefined> => {
        if (subnetId) {
            const own = await ec2.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "association.subnet-id", Values: [subnetId] }] }));
            if (own.RouteTables?.length) return own.RouteTables[0];
        }
        // Subnets without their own association use the VPC's main route table.
        const main = await ec2.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "vpc-id", Values: [vpcId] }, { Name: "association.main", Values: ["true"] }] }));
        return main.RouteTables?.[0];
    };

    return {
        async identity() {
            const who = await sts.send(new GetCallerIdentityCommand({}));
            const provider = sts.config.credentials;
            const creds = await provider();
            return { account: who.Account ?? "?", arn: who.Arn ?? "?", ...(creds.sessionToken && creds.expiration ? { expiration: creds.expiration } : {}) };
        },
        async zones() {
            const out = await ec2.send(new DescribeAvailabilityZonesCommand({ Filters: [{ Name: "zone-type", Values: ["availability-zone"] }] }));
            return (out.AvailabilityZones ?? []).map((z) => z.ZoneName!).filter(Boolean).sort();
        },
        async offeredZones(instanceType) {
            const zones: string[] = [];
            let token: string | undefined;
            do {
                const out = await ec2.send(new DescribeInstanceTypeOfferingsCommand({ LocationType: "availability-zone", Filters: [{ Name: "instance-type", Values: [instanceType] }], NextToken: token }));
                for (const o of out.InstanceTypeOfferings ?? []) if (o.Location) zones.push(o.Location);
                token = out.NextToken;
            } while (token);
            return zones.sort();
        },
        async quota(code) {
            try {
                const out = await quotas.send(new GetServiceQuotaCommand({ ServiceCode: "ec2", QuotaCode: code }));
                if (out.Quota?.Value !== undefined) return out.Quota.Value;
            } catch (err) {
                if ((err as { name?: string }).name !== "NoSuchResourceException") throw err;
            }
            // No applied value: the account has the AWS default.
            const out = await quotas.send(new GetAWSDefaultServiceQuotaCommand({ ServiceCode: "ec2", QuotaCode: code }));
            if (out.Quota?.Value === undefined) throw new Error(`Service Quotas returned no value for ${code}`);
            return out.Quota.Value;
        },
        async parameter(name) {
            try {
                const out = await ssm.send(new GetParameterCommand({ Name: name }));
                return out.Parameter?.Value;
            } catch (err) {
                if ((err as { name?: string }).name === "ParameterNotFound") return undefined;
                throw err;
            }
        },
        async network(subnetId) {
            let vpcId: string | undefined;
            let zone: string | undefined;
            let looked: string;
            if (subnetId) {
                looked = `subnet ${subnetId}`;
                try {
                    const out = await ec2.send(new DescribeSubnetsCommand({ SubnetIds: [subnetId] }));
                    vpcId = out.Subnets?.[0]?.VpcId;
                    zone = out.Subnets?.[0]?.AvailabilityZone;
                } catch (err) {
                    return { looked, error: `no such subnet in ${region} (${errorText(err)})` };
                }
                if (!vpcId) return { looked, error: `no such subnet in ${region}` };
            } else {
                looked = "the default VPC's main route table";
                const out = await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }));
                vpcId = out.Vpcs?.[0]?.VpcId;
                if (!vpcId) return { looked: "default VPC" };
            }
            const endpoints = await ec2.send(
                new DescribeVpcEndpointsCommand({ Filters: [{ Name: "vpc-id", Values: [vpcId] }, { Name: "service-name", Values: [`com.amazonaws.${region}.s3`] }, { Name: "vpc-endpoint-type", Values: ["Gateway"] }] }),
            );
            const s3Endpoints = (endpoints.VpcEndpoints ?? []).map((e) => ({ id: e.VpcEndpointId ?? "?", routeTables: e.RouteTableIds ?? [] }));
            const s3Route = s3RouteOf(await routeTableOf(vpcId, subnetId), s3Endpoints);
            return { vpcId, looked, ...(s3Route ? { s3Route } : {}), ...(zone ? { zone } : {}) };
        },
        async spotPrices(instanceType) {
            // StartTime now: the price in effect in each zone now, not the whole 90-day history.
            const out = await ec2.send(new DescribeSpotPriceHistoryCommand({ InstanceTypes: [instanceType as never], ProductDescriptions: ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"], StartTime: new Date() }));
            const newest = new Map<string, { at: number; price: number }>();
            for (const p of out.SpotPriceHistory ?? []) {
                if (!p.AvailabilityZone || p.SpotPrice === undefined) continue;
                const at = p.Timestamp?.getTime() ?? 0;
                const seen = newest.get(p.AvailabilityZone);
                if (!seen || at > seen.at) newest.set(p.AvailabilityZone, { at, price: Number(p.SpotPrice) });
            }
            return Object.fromEntries([...newest.entries()].map(([zone, p]) => [zone, p.price]));
        },
        async bucket(name) {
            try {
                await s3.send(new HeadBucketCommand({ Bucket: name }));
                return "ours";
            } catch (err) {
                const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
                if (status === 404) return "free";
                if (status === 403) return "taken";
                throw err;
            }
        },
    };
}

async function attempt<T>(read: () => Promise<T>): Promise<T | Failed> {
    try {
        return await read();
    } catch (err) {
        return { error: errorText(err) };
    }
}

const failed = (v: unknown): v is Failed => typeof v === "object" && v !== null && "error" in v && Object.keys(v).length === 1;

/** Every check, in the order a person fixes them; `now` decides whether temporary credentials last. */
export async function runPreflight(campaign: ResolvedCampaign, stack: string, reads: AwsReads, now: Date = new Date()): Promise<CheckResult[]> {
    const { experiment } = campaign;
    const region = experiment.region;
    const compute = experiment.compute;
    const results: CheckResult[] = [];

    const identity = await attempt(() => reads.identity());
    results.push(checkCredentials(campaign, identity, now));

    const network = await attempt(() => reads.network(compute.subnetId));
    results.push(failed(network) ? { check: "network", status: "fail", detail: `could not read the network: ${network.error}`, fix: "check that the credentials may call ec2:Describe*" } : checkNetwork(network, region));

    // Zones: the ordered list, else the one zone, else the given subnet's zone; none means EC2 picks.
    const subnetZone = !failed(network) ? network.zone : undefined;
    const configured = compute.availabilityZones ?? (compute.availabilityZone ? [compute.availabilityZone] : subnetZone ? [subnetZone] : []);
    const allZones = await attempt(() => reads.zones());
    const types = [...new Set(campaign.runs.map((r) => r.instanceType))];
    const prepType = experiment.prep.runOn === "ec2" ? experiment.prep.instanceType : undefined;
    // Each type's offerings once: the runs' types, the prep type and the fallback types share them.
    const offeredBy: Record<string, string[] | Failed> = {};
    const offeredZones = async (type: string) => (offeredBy[type] ??= await attempt(() => reads.offeredZones(type)));
    for (const type of [...types, ...(prepType && !types.includes(prepType) ? [prepType] : [])]) {
        const offered = await offeredZones(type);
        results.push(
            failed(offered) || failed(allZones)
                ? { check: `offered ${type}`, status: "warn", detail: `could not read the offerings: ${failed(offered) ? offered.error : (allZones as Failed).error}`, fix: "check that the credentials may call ec2:DescribeInstanceTypeOfferings" }
                : checkOffered(type, region, { configured, all: allZones }, offered, campaign.runs.some((r) => r.instanceType === type && usesFallbackLaunch(experiment, r))),
        );
    }

    for (const demand of quotaDemand(campaign)) {
        const value = await attempt(() => reads.quota(demand.quota.code));
        results.push(checkQuota(demand, region, value));
    }
    for (const demand of fallbackQuotaDemand(campaign)) {
        results.push(checkFallbackQuota(demand, region, await attempt(() => reads.quota(demand.quota.code))));
    }

    const spotBy: Record<string, Record<string, number> | Failed> = {};
    const spotPrices = async (type: string) => (spotBy[type] ??= await attempt(() => reads.spotPrices(type)));
    if (compute.market === "spot") {
        for (const type of types) {
            const prices = await spotPrices(type);
            const zones = configured.length ? configured : failed(allZones) ? [] : allZones;
            results.push(failed(prices) ? { check: `spot ${type}`, status: "warn", detail: `could not read the spot price history: ${prices.error}` } : checkSpotPrices(type, getInstance(type).onDemandUsdPerHour, prices, zones));
        }
    }

    // The launch order of each run type that has more than one candidate (several zones or fallback types).
    for (const run of campaign.runs.filter((r, i) => campaign.runs.findIndex((o) => o.instanceType === r.instanceType) === i)) {
        const order = launchOrder(experiment, run, configured);
        if (order.length < 2 || compute.capacityReservationId) continue;
        const typesInOrder = [...new Set(order.map((c) => c.instanceType))];
        const offeredIn: Record<string, string[] | Failed> = {};
        const prices: Record<string, Record<string, number> | Failed> = {};
        for (const type of typesInOrder) {
            offeredIn[type] = await offeredZones(type);
            if (compute.market === "spot") prices[type] = await spotPrices(type);
        }
        results.push(checkLaunchOrder(campaign, run, configured, { offeredIn, ...(compute.market === "spot" ? { spotPrices: prices } : {}) }));
    }

    const amis: [("train" | "prep"), string][] = [["train", compute.amiParameter]];
    if (prepType) amis.push(["prep", experiment.prep.amiParameter]);
    for (const [role, parameter] of amis) results.push(checkAmi(role, parameter, region, await attempt(() => reads.parameter(parameter))));

    const existing = experiment.storage.existingBucket;
    if (existing || !failed(identity)) {
        const name = existing ?? campaignBucketName(experiment.name, stack, (identity as CredentialFacts).account);
        results.push(checkBucket(name, existing !== undefined, await attempt(() => reads.bucket(name))));
    } else {
        results.push({ check: "bucket", status: "warn", detail: "the bucket name derives from the account, which the credentials did not give" });
    }
    return results;
}
