// campaign preflight against the local emulator (moto_server: EC2 offerings, VPCs, spot price history, STS, SSM,
// S3), with injected answers where it has none (EC2's Service Quotas). Each test starts from a reset emulator.
//
//   node --import tsx --test test/cli/preflight.test.ts
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { AttachInternetGatewayCommand, CreateInternetGatewayCommand, CreateRouteCommand, CreateVpcEndpointCommand, DeleteSubnetCommand, DeleteVpcCommand, DescribeRouteTablesCommand, DescribeSubnetsCommand, DescribeVpcsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { PutParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { resolveCampaign } from "../../components/campaign/resolve";
import type { ResolvedCampaign } from "../../components/campaign/types";
import { campaignBucketName } from "../../components/campaign/naming";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import type { ExperimentInput } from "../../components/config/schema";
import { checkBucket, checkCredentials, checkOffered, checkSpotPrices, preflightExitCode, quotaDemand, quotaFor, renderPreflight, type CheckResult } from "../../components/plan/preflight";
import { runPreflight, s3RouteOf, sdkReads, type AwsReads } from "../../scripts/cli/preflight";
import { fakeAwsEnv, startMoto, type Moto } from "../../scripts/local/moto";
import { S3Helper } from "../helpers/aws";

const REGION = "us-east-1";
const ACCOUNT = "123456789012"; // moto's account
const GPU_AMI = "/campaign-test/gpu-ami-id";
const credentials = { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY };

let moto: Moto;
before(async () => {
    moto = await startMoto();
});
after(async () => {
    await moto?.stop();
});
beforeEach(async () => {
    const res = await fetch(`${moto.endpoint}/moto-api/reset`, { method: "POST" });
    assert.equal(res.status, 200);
});

const ec2 = () => new EC2Client({ region: REGION, endpoint: moto.endpoint, credentials });

/** The emulator made to look like a working account: the default VPC routes to an internet gateway (as AWS's
 *  default VPCs do; moto's has no gateway), and the GPU AMI's parameter exists (moto knows no Deep Learning AMI). */
async function likeAnAccount(): Promise<void> {
    const client = ec2();
    const vpc = (await client.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }))).Vpcs![0]!.VpcId!;
    const igw = (await client.send(new CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId!;
    await client.send(new AttachInternetGatewayCommand({ InternetGatewayId: igw, VpcId: vpc }));
    const main = (await client.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "vpc-id", Values: [vpc] }, { Name: "association.main", Values: ["true"] }] }))).RouteTables![0]!;
    await client.send(new CreateRouteCommand({ RouteTableId: main.RouteTableId!, DestinationCidrBlock: "0.0.0.0/0", GatewayId: igw }));
    await new SSMClient({ region: REGION, endpoint: moto.endpoint, credentials }).send(new PutParameterCommand({ Name: GPU_AMI, Value: "ami-0123456789abcdef0", Type: "String" }));
}

function campaignOf(preset: string, overrides: ExperimentInput | Record<string, unknown> = {}): ResolvedCampaign {
    return resolveCampaign(mergeConfig(loadPreset(preset), mergeConfig({ compute: { amiParameter: GPU_AMI } } as never, overrides as never) as never));
}

/** The SDK reads against the emulator, with EC2 quotas answered as given (moto serves Service Quotas for VPC only). */
function reads(quotas: Record<string, number> | "emulator" = {}, extra: Partial<AwsReads> = {}, creds: object = credentials): AwsReads {
    const sdk = sdkReads({ region: REGION, endpoint: moto.endpoint, credentials: creds as never });
    const quota = quotas === "emulator" ? sdk.quota : async (code: string) => quotas[code] ?? 10_000;
    return { ...sdk, quota, ...extra };
}

const byCheck = (results: readonly CheckResult[], check: string) => {
    const found = results.find((r) => r.check === check);
    assert.ok(found, `no ${check} check in ${results.map((r) => r.check).join(", ")}`);
    return found;
};

test("all clear: credentials, offerings, quotas, spot prices, AMI, a route to S3, a free bucket name; exit 0", async () => {
    await likeAnAccount();
    const campaign = campaignOf("dev", { compute: { availabilityZones: ["us-east-1a", "us-east-1b"] } });
    const results = await runPreflight(campaign, "dev", reads());
    assert.deepEqual(results.filter((r) => r.status !== "pass"), []);
    assert.equal(preflightExitCode(results), 0);
    assert.match(byCheck(results, "credentials").detail, new RegExp(`account ${ACCOUNT}`));
    assert.match(byCheck(results, "network").detail, /reaches S3 through internet gateway igw-/);
    assert.match(byCheck(results, "offered g5.2xlarge").detail, /offered in us-east-1a, us-east-1b$/);
    assert.match(byCheck(results, "quota L-3819A6DF").detail, /"All G and VT Spot Instance Requests" is 10000 vCPUs; the nodes need 8 at once \(1 x g5\.2xlarge \(8 vCPUs\) for main\)/);
    assert.match(byCheck(results, "spot g5.2xlarge").detail, /current spot price us-east-1a \$[\d.]+\/h, us-east-1b \$[\d.]+\/h \(on demand \$1\.212\/h\)$/);
    assert.match(byCheck(results, "AMI train").detail, /resolves to ami-0123456789abcdef0/);
    assert.match(byCheck(results, "bucket").detail, new RegExp(`s3://${campaignBucketName("dev", "dev", ACCOUNT)} is free`));
    const text = renderPreflight(results, "Preflight:");
    assert.equal(text.split("\n").filter((l) => /^PASS /.test(l)).length, results.length, "one line per check");
    assert.match(text, /All clear: nothing here would stop the campaign\./);
    // With no zone configured, EC2 may pick any default subnet: the emulator's data (from AWS) has no g5 in us-east-1e.
    const anyZone = await runPreflight(campaignOf("dev"), "dev", reads());
    assert.deepEqual(anyZone.filter((r) => r.status !== "pass").map((r) => [r.check, r.status]), [["offered g5.2xlarge", "warn"]]);
    assert.match(byCheck(anyZone, "offered g5.2xlarge").detail, /not offered in us-east-1e of us-east-1/);
    assert.equal(preflightExitCode(anyZone), 0);
});

test("a bucket of an earlier update is ours; an S3 gateway endpoint is a route to S3", async () => {
    await likeAnAccount();
    const client = ec2();
    const vpc = (await client.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }))).Vpcs![0]!.VpcId!;
    // A subnet of its own, whose route table (the main one) also has the S3 gateway endpoint.
    const subnet = (await client.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [vpc] }, { Name: "availability-zone", Values: ["us-east-1b"] }] }))).Subnets![0]!;
    const main = (await client.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "vpc-id", Values: [vpc] }, { Name: "association.main", Values: ["true"] }] }))).RouteTables![0]!;
    await client.send(new CreateVpcEndpointCommand({ VpcId: vpc, ServiceName: `com.amazonaws.${REGION}.s3`, VpcEndpointType: "Gateway", RouteTableIds: [main.RouteTableId!] }));
    await S3Helper.forEndpoint(moto.endpoint).createBucket(campaignBucketName("dev", "dev", ACCOUNT));
    const results = await runPreflight(campaignOf("dev", { compute: { subnetId: subnet.SubnetId } }), "dev", reads());
    assert.match(byCheck(results, "network").detail, new RegExp(`subnet ${subnet.SubnetId} in ${vpc} reaches S3 through S3 gateway endpoint vpce-`));
    assert.match(byCheck(results, "offered g5.2xlarge").detail, /offered in us-east-1b$/, "the subnet's zone is the one checked");
    assert.match(byCheck(results, "bucket").detail, /exists and is reachable/);
    assert.equal(preflightExitCode(results), 0);
});

test("a zone that does not offer the type: the only zone fails, a first of several warns (the launch moves on), a later one warns", async () => {
    await likeAnAccount();
    // The emulator's offerings data (from AWS): p4de.24xlarge in us-east-1b and us-east-1c only.
    const campaign = campaignOf("socsci210-qwen14b-qlora", { compute: { availabilityZones: ["us-east-1a"] } });
    const results = await runPreflight(campaign, "socsci", reads());
    const offered = byCheck(results, "offered p4de.24xlarge");
    assert.equal(offered.status, "fail");
    assert.match(offered.detail, /not offered in us-east-1a; it is in us-east-1b, us-east-1c/);
    assert.match(offered.fix!, /compute\.availabilityZones .*\[us-east-1b, us-east-1c\]/);
    assert.equal(preflightExitCode(results), 1);
    // Several zones: the GPU node's launch tries them in order, so a first zone that lacks the type only warns and
    // names the next zone that has it; a prep (CPU) type, one instance in the first zone, still fails there.
    const two = byCheck(await runPreflight(campaignOf("socsci210-qwen14b-qlora", { compute: { availabilityZones: ["us-east-1a", "us-east-1c"] } }), "socsci", reads()), "offered p4de.24xlarge");
    assert.equal(two.status, "warn");
    assert.match(two.detail, /the first zone, us-east-1a, does not offer p4de\.24xlarge \(it is in us-east-1b, us-east-1c\): the launch skips it and tries us-east-1c next/);
    assert.equal(two.fix, "put a zone that offers it first: compute.availabilityZones: [us-east-1c, us-east-1a]");
    const one = checkOffered("c6i.2xlarge", REGION, { configured: ["us-east-1a", "us-east-1c"], all: ["us-east-1a", "us-east-1b", "us-east-1c"] }, ["us-east-1c"]);
    assert.equal(one.status, "fail");
    assert.match(one.detail, /the nodes launch in the first zone, us-east-1a, which does not offer c6i\.2xlarge/);
    // ... and a later zone that lacks it only warns.
    const later = checkOffered("p4de.24xlarge", REGION, { configured: ["us-east-1c", "us-east-1a"], all: ["us-east-1a", "us-east-1b", "us-east-1c"] }, ["us-east-1b", "us-east-1c"]);
    assert.equal(later.status, "warn");
    assert.equal(later.fix, "drop us-east-1a from compute.availabilityZones");
    assert.match(renderPreflight(results, "x"), /^FAIL  offered p4de\.24xlarge .*\n +fix: set compute\.availabilityZones/m);
});

test("a zero quota fails with its code, the vCPUs all nodes need at once, and the request command", async () => {
    await likeAnAccount();
    // SocSci210: one p4de.24xlarge on demand (96 vCPUs, P quota) and an EC2 prep node (standard quota).
    const campaign = campaignOf("socsci210-qwen14b-qlora");
    const results = await runPreflight(campaign, "socsci", reads({ "L-417A185B": 0 }));
    const p = byCheck(results, "quota L-417A185B");
    assert.equal(p.status, "fail");
    assert.match(p.detail, /"Running On-Demand P instances" is 0 vCPUs in us-east-1, but the nodes need 96 at once \(1 x p4de\.24xlarge \(96 vCPUs\) for main\)/);
    assert.match(p.fix!, /aws service-quotas request-service-quota-increase --region us-east-1 --service-code ec2 --quota-code L-417A185B --desired-value 96/);
    assert.equal(byCheck(results, "quota L-1216C47A").status, "pass", "the prep node's standard quota");
    assert.equal(preflightExitCode(results), 1);
    // Three spot runs on g5.2xlarge start together: 24 vCPUs of the G and VT spot quota.
    const socratiq = quotaDemand(campaignOf("socratiq-t5-lora"));
    assert.deepEqual(socratiq.find((d) => d.quota.code === "L-3819A6DF")?.vcpus, 24);
});

test("the emulator answers no Service Quotas call here: preflight says it could not read the quota and how to check, without failing", async () => {
    await likeAnAccount();
    const results = await runPreflight(campaignOf("dev"), "dev", reads("emulator"));
    const q = byCheck(results, "quota L-3819A6DF");
    assert.equal(q.status, "warn");
    assert.match(q.detail, /^could not read "All G and VT Spot Instance Requests" \(.+\); the nodes need 8 vCPUs/);
    assert.match(q.fix!, /check it in the Service Quotas console; request 8 or more/);
    assert.equal(preflightExitCode(results), 0);
});

test("no default VPC and no subnet: the network check fails with both fixes", async () => {
    await likeAnAccount();
    const client = ec2();
    const vpc = (await client.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }))).Vpcs![0]!.VpcId!;
    for (const s of (await client.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [vpc] }] }))).Subnets ?? []) await client.send(new DeleteSubnetCommand({ SubnetId: s.SubnetId! }));
    await client.send(new DeleteVpcCommand({ VpcId: vpc }));
    const results = await runPreflight(campaignOf("dev"), "dev", reads());
    const network = byCheck(results, "network");
    assert.equal(network.status, "fail");
    assert.match(network.detail, /us-east-1 has no default VPC, and compute\.subnetId is not set/);
    assert.match(network.fix!, /set compute\.subnetId .* or create a default VPC: aws ec2 create-default-vpc --region us-east-1/);
    assert.equal(preflightExitCode(results), 1);
});

test("a default VPC without a route to S3 fails (the emulator's own default VPC has no internet gateway)", async () => {
    const results = await runPreflight(campaignOf("dev"), "dev", reads());
    const network = byCheck(results, "network");
    assert.equal(network.status, "fail");
    assert.match(network.detail, /has no route to S3/);
    assert.match(network.fix!, /create-vpc-endpoint --vpc-id vpc-\w+ --service-name com\.amazonaws\.us-east-1\.s3/);
});

test("expired temporary credentials fail; ones that end before prep does fail too", async () => {
    await likeAnAccount();
    const expired = { ...credentials, sessionToken: "session", expiration: new Date(Date.now() - 60_000) };
    const results = await runPreflight(campaignOf("dev"), "dev", reads({}, {}, expired));
    const c = byCheck(results, "credentials");
    assert.equal(c.status, "fail");
    assert.match(c.detail, /the temporary credentials expired at \d{4}-/);
    assert.match(c.fix!, /aws sso login/);
    assert.equal(preflightExitCode(results), 1);
    // The pure rule on a campaign with an EC2 prep: 10 minutes left is less than prep's estimate plus the node start.
    const socsci = campaignOf("socsci210-qwen14b-qlora");
    const now = new Date("2026-01-01T00:00:00Z");
    const soon = checkCredentials(socsci, { account: ACCOUNT, arn: "arn:aws:sts::123456789012:assumed-role/x/y", expiration: new Date(now.getTime() + 10 * 60_000) }, now);
    assert.equal(soon.status, "fail");
    assert.match(soon.detail, /before prep is estimated to end/);
    const later = checkCredentials(socsci, { account: ACCOUNT, arn: "arn", expiration: new Date(now.getTime() + 12 * 3_600_000) }, now);
    assert.equal(later.status, "pass");
});

test("an AMI parameter that does not resolve fails and names the field (the emulator knows no Deep Learning AMI)", async () => {
    await likeAnAccount();
    const campaign = resolveCampaign(loadPreset("dev"));
    const results = await runPreflight(campaign, "dev", reads());
    const ami = byCheck(results, "AMI train");
    assert.equal(ami.status, "fail");
    assert.match(ami.detail, /\/aws\/service\/deeplearning\/ami\/.* does not resolve in us-east-1 \(no such parameter\)/);
    assert.match(ami.fix!, /set compute\.amiParameter/);
});

test("quota families: G/VT, P and standard, by market", () => {
    assert.equal(quotaFor("g5.2xlarge", "spot").code, "L-3819A6DF");
    assert.equal(quotaFor("g6e.xlarge", "on-demand").code, "L-DB2E81BA");
    assert.equal(quotaFor("p5.48xlarge", "on-demand").code, "L-417A185B");
    assert.equal(quotaFor("p4de.24xlarge", "spot").code, "L-7212CCBC");
    assert.equal(quotaFor("c6i.2xlarge", "on-demand").code, "L-1216C47A");
    assert.throws(() => quotaFor("inf2.xlarge", "spot"), /no vCPU quota known for instance family "inf2"/);
});

test("the rules without AWS: a bucket of another account, an existing bucket that is missing, routes that do not reach S3", () => {
    assert.equal(checkBucket("b", false, "taken").status, "fail");
    assert.match(checkBucket("b", false, "taken").fix!, /rename the campaign or the stack .* or set storage\.existingBucket/);
    assert.match(checkBucket("team", true, "free").detail, /storage\.existingBucket s3:\/\/team does not exist/);
    assert.equal(checkBucket("team", true, "ours").status, "pass");
    const table = (routes: object[]) => ({ RouteTableId: "rtb-1", Routes: routes }) as never;
    assert.equal(s3RouteOf(table([{ DestinationCidrBlock: "0.0.0.0/0", GatewayId: "igw-1", State: "blackhole" }]), []), undefined, "a blackhole route reaches nothing");
    assert.equal(s3RouteOf(table([{ DestinationCidrBlock: "10.0.0.0/8", GatewayId: "igw-1" }]), []), undefined, "not the default route");
    assert.equal(s3RouteOf(table([{ DestinationCidrBlock: "0.0.0.0/0", NatGatewayId: "nat-1" }]), []), "NAT gateway nat-1");
    assert.equal(s3RouteOf(table([]), [{ id: "vpce-1", routeTables: ["rtb-2"] }]), undefined, "an endpoint on another route table");
    assert.equal(s3RouteOf(table([]), [{ id: "vpce-1", routeTables: ["rtb-1"] }]), "S3 gateway endpoint vpce-1");
    // Spot: no price in the configured zones is a warning with the way out.
    assert.equal(checkSpotPrices("p5.48xlarge", 55.04, { "us-east-1a": 20 }, ["us-east-1b"]).status, "warn");
    assert.match(checkSpotPrices("p5.48xlarge", 55.04, {}, ["us-east-1b"]).fix!, /compute\.market: on-demand/);
    // A type offered nowhere in the region fails whatever the zones.
    assert.equal(checkOffered("p5en.48xlarge", "eu-west-3", { configured: [], all: ["eu-west-3a"] }, []).status, "fail");
});
