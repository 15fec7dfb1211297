// The GPU node's launch step (scripts/launch-node.ts), run as the node's local command runs it: against moto for
// the whole life of a node (create, adopt, update, delete), and against a local endpoint that answers the EC2 Query
// API as EC2 does for what moto cannot show (no capacity, a later candidate, refused credentials, a slow termination).
//
//   node --import tsx --test --test-concurrency=1 test/cli/launchNode.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as http from "node:http";
import * as path from "node:path";
import {
    CreateLaunchTemplateCommand,
    CreateTagsCommand,
    DescribeFleetsCommand,
    DescribeImagesCommand,
    DescribeInstancesCommand,
    DescribeSubnetsCommand,
    EC2Client,
} from "@aws-sdk/client-ec2";
import { fakeAwsEnv, startMoto, type Moto } from "../../scripts/local/moto";
import { LAUNCH_TAG, launchTagValue, type FleetCandidate, type LaunchRecord, type LaunchRequest } from "../../components/plan/fleetLaunch";

const root = path.join(__dirname, "..", "..");
const script = path.join(root, "scripts", "launch-node.ts");

interface StepResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
}

/** The step as the node's local command runs it: a fresh process, its settings in the environment only. */
function step(verb: "create" | "update" | "delete", env: Record<string, string>): Promise<StepResult> {
    // Nothing of this machine's AWS or campaign settings leaks in: the step sees only what a test gives it.
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AWS_") && !k.startsWith("CAMPAIGN_")));
    return new Promise((resolve) => {
        const child = spawn(process.execPath, ["--import", "tsx", script, verb], {
            cwd: root,
            env: { ...base, ...fakeAwsEnv, CAMPAIGN_LAUNCH_POLL: "0.1", ...env },
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
        child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
        child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
}

function parseRecord(result: StepResult): LaunchRecord {
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as LaunchRecord;
}

describe("against moto", () => {
    let moto: Moto;
    let ec2: EC2Client;
    let candidates: FleetCandidate[];
    let templateId: string;
    const node = "main-node";
    const launchKey = "0";

    before(async () => {
        moto = await startMoto();
        ec2 = new EC2Client({
            endpoint: moto.endpoint,
            region: fakeAwsEnv.AWS_REGION,
            credentials: { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY },
        });
        // moto's default VPC has one default subnet per zone, as a fresh account has.
        const subnets = (await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "default-for-az", Values: ["true"] }] }))).Subnets ?? [];
        const byZone = [...subnets].sort((a, b) => a.AvailabilityZone!.localeCompare(b.AvailabilityZone!));
        assert.ok(byZone.length >= 2, "moto has default subnets in at least two zones");
        candidates = [
            { instanceType: "p5.48xlarge", subnetId: byZone[1]!.SubnetId!, zone: byZone[1]!.AvailabilityZone! },
            { instanceType: "p5.48xlarge", subnetId: byZone[0]!.SubnetId!, zone: byZone[0]!.AvailabilityZone! },
            { instanceType: "p4d.24xlarge", subnetId: byZone[1]!.SubnetId!, zone: byZone[1]!.AvailabilityZone! },
        ];
        const image = (await ec2.send(new DescribeImagesCommand({}))).Images![0]!.ImageId!;
        // The launch template as the node's JobNode declares it: the launch tag on the instance and its volumes.
        const launchTags = [
            { Key: "campaign", Value: "launch-test" },
            { Key: LAUNCH_TAG, Value: launchTagValue(node, launchKey) },
        ];
        const template = await ec2.send(
            new CreateLaunchTemplateCommand({
                LaunchTemplateName: "main-node-template",
                LaunchTemplateData: {
                    ImageId: image,
                    InstanceInitiatedShutdownBehavior: "terminate",
                    TagSpecifications: [
                        { ResourceType: "instance", Tags: launchTags },
                        { ResourceType: "volume", Tags: launchTags },
                    ],
                },
            }),
        );
        templateId = template.LaunchTemplate!.LaunchTemplateId!;
    });
    after(async () => {
        await moto?.stop();
    });

    function request(): LaunchRequest {
        return {
            node,
            launchKey,
            region: fakeAwsEnv.AWS_REGION,
            launchTemplateId: templateId,
            launchTemplateVersion: "1",
            market: "on-demand",
            candidates,
            alternatives: ["set compute.market to spot"],
        };
    }

    async function instance(id: string) {
        const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
        return out.Reservations?.[0]?.Instances?.[0];
    }

    async function launchInstances() {
        const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${LAUNCH_TAG}`, Values: [launchTagValue(node, launchKey)] }] }));
        return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
    }

    let record: LaunchRecord;

    test("create launches one instance of the first candidate through an instant fleet", async () => {
        const env = { AWS_ENDPOINT_URL: moto.endpoint, CAMPAIGN_LAUNCH: JSON.stringify(request()) };
        const result = await step("create", env);
        record = parseRecord(result);
        assert.match(record.instanceId, /^i-[0-9a-f]+$/);
        assert.equal(record.instanceType, candidates[0]!.instanceType);
        assert.equal(record.subnetId, candidates[0]!.subnetId);
        assert.equal(record.zone, candidates[0]!.zone);
        assert.equal(record.launchKey, launchKey);
        assert.deepEqual(record.skipped, []);
        assert.match(record.fleetId ?? "", /^fleet-/);
        assert.match(result.stderr, new RegExp(`launched ${record.instanceId}, p5\\.48xlarge in ${candidates[0]!.zone}\\n`));
        const launched = await instance(record.instanceId);
        assert.ok(["pending", "running"].includes(launched?.State?.Name ?? ""), `state ${launched?.State?.Name}`);
        assert.equal(launched?.InstanceType, candidates[0]!.instanceType);
        assert.equal(launched?.SubnetId, candidates[0]!.subnetId);
        assert.equal(launched?.Placement?.AvailabilityZone, candidates[0]!.zone);
        // moto applies the launch template's instance tags to a fleet's instances, as EC2 does: the launch tag is
        // what lets a retried step find this instance.
        assert.ok(launched?.Tags?.some((t) => t.Key === LAUNCH_TAG && t.Value === launchTagValue(node, launchKey)), JSON.stringify(launched?.Tags));
    });

    test("create again for the same launch adopts the instance instead of launching a second", async () => {
        const result = await step("create", { AWS_ENDPOINT_URL: moto.endpoint, CAMPAIGN_LAUNCH: JSON.stringify(request()) });
        const adopted = parseRecord(result);
        assert.equal(adopted.instanceId, record.instanceId);
        assert.equal(adopted.instanceType, record.instanceType);
        assert.equal(adopted.subnetId, record.subnetId);
        assert.equal(adopted.zone, record.zone);
        assert.equal(adopted.launchKey, launchKey);
        assert.match(result.stderr, new RegExp(`${node}: ${record.instanceId} of this launch is already (pending|running); adopted, nothing launched`));
        const all = await launchInstances();
        assert.deepEqual(
            all.map((i) => i.InstanceId),
            [record.instanceId],
            "one instance carries this launch's tag",
        );
    });

    test("update prints the record back unchanged", async () => {
        const text = JSON.stringify(record);
        const result = await step("update", { AWS_ENDPOINT_URL: moto.endpoint, PULUMI_COMMAND_STDOUT: text });
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, text);
    });

    test("delete terminates the instance, waits for it, and deletes its fleet", async () => {
        const result = await step("delete", { AWS_ENDPOINT_URL: moto.endpoint, PULUMI_COMMAND_STDOUT: JSON.stringify(record), CAMPAIGN_LAUNCH_WAIT: "120" });
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, "");
        assert.match(result.stderr, new RegExp(`${record.instanceId} terminated`));
        assert.equal((await instance(record.instanceId))?.State?.Name, "terminated");
        // The fleet is deleted after its instance ended. moto marks it `deleted_terminating` (EC2 moves it on to
        // `deleted`), then fails the request while terminating the fleet's instances, all already terminated
        // (InvalidParameterCombination: No instances specified); the step only warns about a fleet it could not delete.
        const fleets = (await ec2.send(new DescribeFleetsCommand({ FleetIds: [record.fleetId!] }))).Fleets ?? [];
        for (const line of result.stderr.split("\n").filter((l) => l.startsWith("launch: warning"))) {
            assert.match(line, new RegExp(`warning: deleting fleet ${record.fleetId}: InvalidParameterCombination: No instances specified`));
        }
        assert.ok(fleets.every((f) => ["deleted", "deleted_terminating"].includes(f.FleetState ?? "")), JSON.stringify(fleets.map((f) => f.FleetState)));
    });

    test("delete of an instance already terminated succeeds", async () => {
        const result = await step("delete", { AWS_ENDPOINT_URL: moto.endpoint, PULUMI_COMMAND_STDOUT: JSON.stringify(record), CAMPAIGN_LAUNCH_WAIT: "120" });
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, new RegExp(`${record.instanceId} terminated`));
        assert.equal((await instance(record.instanceId))?.State?.Name, "terminated");
    });

    test("create after the instance ended launches a new one (an ended instance is not adopted)", async () => {
        const result = await step("create", { AWS_ENDPOINT_URL: moto.endpoint, CAMPAIGN_LAUNCH: JSON.stringify(request()) });
        const relaunched = parseRecord(result);
        assert.notEqual(relaunched.instanceId, record.instanceId);
        assert.doesNotMatch(result.stderr, /adopted/);
        const cleanup = await step("delete", { AWS_ENDPOINT_URL: moto.endpoint, PULUMI_COMMAND_STDOUT: result.stdout, CAMPAIGN_LAUNCH_WAIT: "120" });
        assert.equal(cleanup.code, 0, cleanup.stderr);
    });
});
