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

// ---------------------------------------------------------------------------------------------------------------
// A local endpoint that answers the EC2 Query API (form-encoded POST, Action=...; XML in the 2016-11-15 namespace,
// element names as the AWS SDK reads them: CreateFleetResult fleetId, errorSet, fleetInstanceSet; errors as
// <Response><Errors><Error><Code>). Each test says what CreateFleet and DescribeInstances answer; the endpoint keeps
// every request it received.

interface Call {
    readonly action: string;
    readonly params: URLSearchParams;
}
interface Answer {
    readonly status?: number;
    readonly body: string;
}
interface FakeEc2 {
    readonly url: string;
    readonly calls: Call[];
    actions(): string[];
    close(): Promise<void>;
}

const NS = "http://ec2.amazonaws.com/doc/2016-11-15/";
const xml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function ok(action: string, inner: string): Answer {
    return { body: `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${NS}"><requestId>11111111-2222-3333-4444-555555555555</requestId>${inner}</${action}Response>` };
}

/** An error as EC2 sends it (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html). */
function refused(status: number, code: string, message: string): Answer {
    return {
        status,
        body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${xml(message)}</Message></Error></Errors><RequestID>11111111-2222-3333-4444-555555555555</RequestID></Response>`,
    };
}

/** Numbered members of a list parameter: `FleetId.1`, `FleetId.2`, ... */
function listParam(params: URLSearchParams, name: string): string[] {
    const out: string[] = [];
    for (let i = 1; params.has(`${name}.${i}`); i++) out.push(params.get(`${name}.${i}`)!);
    return out;
}

function instancesXml(instances: ReadonlyArray<{ id: string; state: string; type?: string; subnetId?: string; zone?: string; tags?: Record<string, string> }>): string {
    if (instances.length === 0) return "<reservationSet/>";
    const codes: Record<string, number> = { pending: 0, running: 16, "shutting-down": 32, terminated: 48, stopping: 64, stopped: 80 };
    const items = instances
        .map(
            (i) =>
                `<item><instanceId>${i.id}</instanceId><instanceState><code>${codes[i.state]}</code><name>${i.state}</name></instanceState>` +
                (i.type ? `<instanceType>${i.type}</instanceType>` : "") +
                (i.subnetId ? `<subnetId>${i.subnetId}</subnetId>` : "") +
                (i.zone ? `<placement><availabilityZone>${i.zone}</availabilityZone></placement>` : "") +
                (i.tags ? `<tagSet>${Object.entries(i.tags).map(([k, v]) => `<item><key>${xml(k)}</key><value>${xml(v)}</value></item>`).join("")}</tagSet>` : "") +
                "</item>",
        )
        .join("");
    return `<reservationSet><item><reservationId>r-0123456789abcdef0</reservationId><ownerId>123456789012</ownerId><instancesSet>${items}</instancesSet></item></reservationSet>`;
}

function defaultAnswer(call: Call): Answer {
    switch (call.action) {
        case "DescribeInstances":
            return ok("DescribeInstances", instancesXml([]));
        case "DeleteFleets":
            return ok(
                "DeleteFleets",
                `<successfulFleetDeletionSet>${listParam(call.params, "FleetId")
                    .map((id) => `<item><currentFleetState>deleted_terminating</currentFleetState><previousFleetState>active</previousFleetState><fleetId>${id}</fleetId></item>`)
                    .join("")}</successfulFleetDeletionSet><unsuccessfulFleetDeletionSet/>`,
            );
        case "TerminateInstances":
            return ok(
                "TerminateInstances",
                `<instancesSet>${listParam(call.params, "InstanceId")
                    .map((id) => `<item><instanceId>${id}</instanceId><currentState><code>32</code><name>shutting-down</name></currentState><previousState><code>16</code><name>running</name></previousState></item>`)
                    .join("")}</instancesSet>`,
            );
        default:
            return refused(400, "InvalidAction", `the test endpoint does not answer ${call.action}`);
    }
}

async function fakeEc2(answer: (call: Call) => Answer | undefined): Promise<FakeEc2> {
    const calls: Call[] = [];
    const server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c: Buffer) => (body += c.toString()));
        req.on("end", () => {
            const params = new URLSearchParams(body);
            const call = { action: params.get("Action") ?? "", params };
            calls.push(call);
            const reply = answer(call) ?? defaultAnswer(call);
            res.writeHead(reply.status ?? 200, { "content-type": "text/xml;charset=UTF-8" });
            res.end(reply.body);
        });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    return {
        url: `http://127.0.0.1:${port}`,
        calls,
        actions: () => calls.map((c) => c.action),
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
}

const TEMPLATE = "lt-0abc1234def567890";
const FLEET = "fleet-5f3a1c2e-0b6d-4c3e-9a7f-2d1e0c9b8a76";
const ICE = "InsufficientInstanceCapacity";

const fallbackCandidates: FleetCandidate[] = [
    { instanceType: "p5.48xlarge", subnetId: "subnet-0aaaaaaaaaaaaaaaa", zone: "us-east-1a" },
    { instanceType: "p5.48xlarge", subnetId: "subnet-0bbbbbbbbbbbbbbbb", zone: "us-east-1b" },
    { instanceType: "p4d.24xlarge", subnetId: "subnet-0aaaaaaaaaaaaaaaa", zone: "us-east-1a" },
];

function fallbackRequest(market: "spot" | "on-demand" = "on-demand"): LaunchRequest {
    return {
        node: "run-a-node",
        launchKey: "2",
        region: "us-east-1",
        launchTemplateId: TEMPLATE,
        launchTemplateVersion: "3",
        market,
        candidates: fallbackCandidates,
        alternatives: ["set compute.market to spot (priced in the plan)", "reserve capacity: compute.capacityReservationId"],
    };
}

function overridesXml(c: FleetCandidate): string {
    const priority = fallbackCandidates.indexOf(c) + 1;
    return (
        `<launchTemplateAndOverrides><launchTemplateSpecification><launchTemplateId>${TEMPLATE}</launchTemplateId><version>3</version></launchTemplateSpecification>` +
        `<overrides><instanceType>${c.instanceType}</instanceType><subnetId>${c.subnetId}</subnetId><availabilityZone>${c.zone}</availabilityZone><priority>${priority}.0</priority></overrides></launchTemplateAndOverrides>`
    );
}

function iceMessage(c: FleetCandidate): string {
    return `We currently do not have sufficient ${c.instanceType} capacity in the Availability Zone you requested (${c.zone}). Our system will be working on provisioning additional capacity.`;
}

function createFleetAnswer(options: {
    errors?: ReadonlyArray<{ candidate: FleetCandidate; code: string; message: string }>;
    instances?: ReadonlyArray<{ candidate: FleetCandidate; id: string }>;
    lifecycle?: string;
}): Answer {
    const lifecycle = options.lifecycle ?? "on-demand";
    const errors = (options.errors ?? [])
        .map((e) => `<item>${overridesXml(e.candidate)}<lifecycle>${lifecycle}</lifecycle><errorCode>${e.code}</errorCode><errorMessage>${xml(e.message)}</errorMessage></item>`)
        .join("");
    const instances = (options.instances ?? [])
        .map((i) => `<item>${overridesXml(i.candidate)}<lifecycle>${lifecycle}</lifecycle><instanceIds><item>${i.id}</item></instanceIds><instanceType>${i.candidate.instanceType}</instanceType></item>`)
        .join("");
    return ok("CreateFleet", `<fleetId>${FLEET}</fleetId><errorSet>${errors}</errorSet><fleetInstanceSet>${instances}</fleetInstanceSet>`);
}

/** The endpoint's answer to each action, the others as defaultAnswer. */
async function withEc2<T>(answers: Partial<Record<string, (call: Call) => Answer>>, body: (ec2: FakeEc2) => Promise<T>): Promise<T> {
    const ec2 = await fakeEc2((call) => answers[call.action]?.(call));
    try {
        return await body(ec2);
    } finally {
        await ec2.close();
    }
}

function createWith(ec2: FakeEc2, request: LaunchRequest = fallbackRequest()): Promise<StepResult> {
    return step("create", { AWS_ENDPOINT_URL: ec2.url, CAMPAIGN_LAUNCH: JSON.stringify(request) });
}

const stepLines = (result: StepResult) => result.stderr.split("\n").filter((l) => l.startsWith("launch: "));

describe("against an endpoint that answers like EC2", () => {
    test("no candidate has capacity: exit 1, every candidate in order with EC2's reason, the alternatives, the empty fleet deleted", async () => {
        // EC2 lists the errors in its own order; the message follows the request's.
        const errors = [...fallbackCandidates].reverse().map((candidate) => ({ candidate, code: ICE, message: iceMessage(candidate) }));
        await withEc2({ CreateFleet: () => createFleetAnswer({ errors }) }, async (ec2) => {
            const result = await createWith(ec2);
            assert.equal(result.code, 1, result.stderr);
            assert.equal(result.stdout, "");
            const stderr = result.stderr;
            assert.match(stderr, /run-a-node: no on-demand capacity for any of the 3 candidate\(s\), tried in this order:/);
            const positions = fallbackCandidates.map((c) => {
                const line = `  - ${c.instanceType} in ${c.zone} (${c.subnetId}): ${ICE}: ${iceMessage(c)}`;
                const at = stderr.indexOf(line);
                assert.ok(at >= 0, `the message lists ${line}\n${stderr}`);
                return at;
            });
            assert.deepEqual([...positions].sort((a, b) => a - b), positions, "in the request's order");
            const whatToDo = stderr.indexOf("What you can do:");
            assert.ok(whatToDo > positions[2]!, stderr);
            for (const alternative of fallbackRequest().alternatives) assert.ok(stderr.indexOf(`  - ${alternative}`) > whatToDo, `names ${alternative}`);
            assert.match(stderr, /run pulumi up again later/);
            // The fleet that launched nothing is deleted (with TerminateInstances, which EC2 requires for an instant fleet).
            assert.deepEqual(ec2.actions(), ["DescribeInstances", "CreateFleet", "DeleteFleets"]);
            const deletion = ec2.calls[2]!.params;
            assert.deepEqual(listParam(deletion, "FleetId"), [FLEET]);
            assert.equal(deletion.get("TerminateInstances"), "true");
        });
    });

    test("the first candidate has no capacity, the second launches: exit 0, the record names the second and lists the first as skipped", async () => {
        const [first, second] = fallbackCandidates;
        await withEc2(
            { CreateFleet: () => createFleetAnswer({ errors: [{ candidate: first!, code: ICE, message: iceMessage(first!) }], instances: [{ candidate: second!, id: "i-0fedcba9876543210" }] }) },
            async (ec2) => {
                const result = await createWith(ec2);
                const record = parseRecord(result);
                assert.deepEqual(record, {
                    instanceId: "i-0fedcba9876543210",
                    instanceType: second!.instanceType,
                    zone: second!.zone,
                    subnetId: second!.subnetId,
                    fleetId: FLEET,
                    launchKey: "2",
                    skipped: [`${first!.instanceType} in ${first!.zone} (${first!.subnetId}): ${ICE}: ${iceMessage(first!)}`],
                });
                assert.ok(stepLines(result).includes(`launch: run-a-node: skipped ${record.skipped[0]}`), result.stderr);
                assert.ok(
                    stepLines(result).includes(`launch: run-a-node: launched i-0fedcba9876543210, p5.48xlarge in us-east-1b (not the first choice, p5.48xlarge in us-east-1a)`),
                    result.stderr,
                );
                // The launched node's fleet stays (the delete step removes it); nothing is terminated.
                assert.deepEqual(ec2.actions(), ["DescribeInstances", "CreateFleet"]);
            },
        );
    });

    for (const market of ["on-demand", "spot"] as const) {
        test(`the request EC2 receives (${market}): one instant fleet over the candidates in order`, async () => {
            await withEc2(
                { CreateFleet: () => createFleetAnswer({ instances: [{ candidate: fallbackCandidates[0]!, id: "i-0123456789abcdef0" }], lifecycle: market === "spot" ? "spot" : "on-demand" }) },
                async (ec2) => {
                    const result = await createWith(ec2, fallbackRequest(market));
                    assert.equal(parseRecord(result).instanceId, "i-0123456789abcdef0");
                    // First, the step looks for an instance of this launch (a retried step adopts it).
                    const lookup = ec2.calls.find((c) => c.action === "DescribeInstances")!.params;
                    assert.equal(lookup.get("Filter.1.Name"), `tag:${LAUNCH_TAG}`);
                    assert.deepEqual(listParam(lookup, "Filter.1.Value"), ["run-a-node/2"]);
                    assert.equal(lookup.get("Filter.2.Name"), "instance-state-name");
                    assert.deepEqual(listParam(lookup, "Filter.2.Value"), ["pending", "running"]);

                    const sent = ec2.calls.filter((c) => c.action === "CreateFleet");
                    assert.equal(sent.length, 1);
                    const p = sent[0]!.params;
                    assert.equal(p.get("Type"), "instant");
                    assert.equal(p.get("TargetCapacitySpecification.TotalTargetCapacity"), "1");
                    assert.equal(p.get("TargetCapacitySpecification.DefaultTargetCapacityType"), market);
                    if (market === "on-demand") {
                        assert.equal(p.get("OnDemandOptions.AllocationStrategy"), "prioritized");
                        assert.ok(![...p.keys()].some((k) => k.startsWith("SpotOptions.")), "no spot options");
                    } else {
                        assert.equal(p.get("SpotOptions.AllocationStrategy"), "capacity-optimized-prioritized");
                        assert.equal(p.get("SpotOptions.InstanceInterruptionBehavior"), "terminate");
                        assert.ok(![...p.keys()].some((k) => k.startsWith("OnDemandOptions.")), "no on-demand options");
                    }
                    assert.equal(p.get("LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId"), TEMPLATE);
                    assert.equal(p.get("LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version"), "3");
                    assert.ok(!p.has("LaunchTemplateConfigs.2.LaunchTemplateSpecification.LaunchTemplateId"), "one launch template config");
                    const overrides = [];
                    for (let i = 1; p.has(`LaunchTemplateConfigs.1.Overrides.${i}.InstanceType`); i++) {
                        const at = `LaunchTemplateConfigs.1.Overrides.${i}`;
                        overrides.push({ type: p.get(`${at}.InstanceType`), subnet: p.get(`${at}.SubnetId`), priority: p.get(`${at}.Priority`), zone: p.get(`${at}.AvailabilityZone`) });
                    }
                    assert.deepEqual(
                        overrides,
                        fallbackCandidates.map((c, i) => ({ type: c.instanceType, subnet: c.subnetId, priority: String(i + 1), zone: null })),
                        "the candidates in order, priorities from 1, one subnet each (the subnet fixes the zone)",
                    );
                },
            );
        });
    }

    test("CreateFleet refused for want of a permission (UnauthorizedOperation, HTTP 403): exit 1, the error and the permissions it needs", async () => {
        // EC2 answers UnauthorizedOperation with HTTP 403 (e.g. https://github.com/StreisandEffect/streisand/issues/92).
        const message = "You are not authorized to perform this operation. Encoded authorization failure message: abc123";
        await withEc2({ CreateFleet: () => refused(403, "UnauthorizedOperation", message) }, async (ec2) => {
            const result = await createWith(ec2);
            assert.equal(result.code, 1, result.stderr);
            assert.equal(result.stdout, "");
            assert.match(result.stderr, /launch: run-a-node: CreateFleet: UnauthorizedOperation: You are not authorized to perform this operation/);
            assert.match(result.stderr, /needs ec2:CreateFleet, ec2:RunInstances, ec2:CreateTags and iam:PassRole/);
            assert.doesNotMatch(result.stderr, /renew them/, "a missing permission is not an expired credential");
            assert.deepEqual(ec2.actions(), ["DescribeInstances", "CreateFleet"]);
        });
    });

    test("every request refused with ExpiredToken: exit 1, the error and renew the credentials; nothing launched", async () => {
        const expired = () => refused(400, "ExpiredToken", "The security token included in the request is expired");
        await withEc2({ DescribeInstances: expired, CreateFleet: expired }, async (ec2) => {
            const result = await createWith(ec2);
            assert.equal(result.code, 1, result.stderr);
            assert.equal(result.stdout, "");
            assert.match(result.stderr, /ExpiredToken: The security token included in the request is expired/);
            assert.match(result.stderr, /credentials of this `pulumi up` were refused or have expired: renew them \(aws:profile \/ aws:assumeRoles\)/);
            assert.ok(!ec2.actions().includes("CreateFleet"), "no launch after the lookup was refused");
        });
    });

    test("EC2 launched more than the one instance asked for: the extra one is terminated, the first is the node", async () => {
        const [first, second] = fallbackCandidates;
        await withEc2(
            {
                CreateFleet: () =>
                    createFleetAnswer({
                        instances: [
                            { candidate: first!, id: "i-0aaaaaaaaaaaaaaa1" },
                            { candidate: second!, id: "i-0bbbbbbbbbbbbbbb2" },
                        ],
                    }),
            },
            async (ec2) => {
                const result = await createWith(ec2);
                const record = parseRecord(result);
                assert.equal(record.instanceId, "i-0aaaaaaaaaaaaaaa1");
                assert.equal(record.subnetId, first!.subnetId);
                const terminations = ec2.calls.filter((c) => c.action === "TerminateInstances");
                assert.equal(terminations.length, 1);
                assert.deepEqual(listParam(terminations[0]!.params, "InstanceId"), ["i-0bbbbbbbbbbbbbbb2"]);
                assert.match(result.stderr, /beyond the one asked for; terminating i-0bbbbbbbbbbbbbbb2/);
            },
        );
    });

    test("create adopts a running instance of this launch that an earlier try launched: no CreateFleet", async () => {
        const c = fallbackCandidates[1]!;
        await withEc2(
            {
                DescribeInstances: () =>
                    ok("DescribeInstances", instancesXml([{ id: "i-0cccccccccccccccc", state: "running", type: c.instanceType, subnetId: c.subnetId, zone: c.zone, tags: { [LAUNCH_TAG]: "run-a-node/2" } }])),
            },
            async (ec2) => {
                const result = await createWith(ec2);
                const record = parseRecord(result);
                assert.deepEqual(record, { instanceId: "i-0cccccccccccccccc", instanceType: c.instanceType, zone: c.zone, subnetId: c.subnetId, launchKey: "2", skipped: [] });
                assert.match(result.stderr, /run-a-node: i-0cccccccccccccccc of this launch is already running; adopted, nothing launched/);
                assert.deepEqual(ec2.actions(), ["DescribeInstances"]);
            },
        );
    });

    const launched: LaunchRecord = {
        instanceId: "i-0123456789abcdef0",
        instanceType: "p5.48xlarge",
        zone: "us-east-1b",
        subnetId: "subnet-0bbbbbbbbbbbbbbbb",
        fleetId: FLEET,
        launchKey: "2",
        skipped: [],
    };

    function deleteWith(ec2: FakeEc2, stdout: string, waitSeconds = "60"): Promise<StepResult> {
        return step("delete", { AWS_ENDPOINT_URL: ec2.url, PULUMI_COMMAND_STDOUT: stdout, CAMPAIGN_LAUNCH_WAIT: waitSeconds });
    }

    test("delete waits while the instance shuts down, then deletes its fleet", async () => {
        let reads = 0;
        await withEc2(
            {
                DescribeInstances: () => {
                    reads++;
                    return ok("DescribeInstances", instancesXml([{ id: launched.instanceId, state: reads < 3 ? "shutting-down" : "terminated" }]));
                },
            },
            async (ec2) => {
                const result = await deleteWith(ec2, JSON.stringify(launched));
                assert.equal(result.code, 0, result.stderr);
                assert.deepEqual(ec2.actions(), ["TerminateInstances", "DescribeInstances", "DescribeInstances", "DescribeInstances", "DeleteFleets"]);
                assert.deepEqual(listParam(ec2.calls[0]!.params, "InstanceId"), [launched.instanceId]);
                assert.deepEqual(listParam(ec2.calls[1]!.params, "InstanceId"), [launched.instanceId]);
                assert.deepEqual(listParam(ec2.calls[4]!.params, "FleetId"), [FLEET]);
                assert.match(result.stderr, new RegExp(`${launched.instanceId}: shutting-down, waiting for terminated`));
                assert.match(result.stderr, new RegExp(`${launched.instanceId} terminated`));
            },
        );
    });

    test("delete that outlasts CAMPAIGN_LAUNCH_WAIT: exit 1, still shutting-down; the fleet is left until the instance ended", async () => {
        await withEc2({ DescribeInstances: () => ok("DescribeInstances", instancesXml([{ id: launched.instanceId, state: "shutting-down" }])) }, async (ec2) => {
            const result = await deleteWith(ec2, JSON.stringify(launched), "1");
            assert.equal(result.code, 1, result.stderr);
            assert.match(result.stderr, new RegExp(`launch: ${launched.instanceId} is still shutting-down; it was asked to terminate. Run pulumi up \\(or destroy\\) again once EC2 shows it terminated`));
            assert.equal(ec2.actions()[0], "TerminateInstances");
            assert.ok(ec2.actions().filter((a) => a === "DescribeInstances").length >= 1);
            assert.ok(!ec2.actions().includes("DeleteFleets"), "no fleet deletion while the instance lives");
        });
    });

    test("delete of an instance EC2 no longer knows succeeds and deletes the fleet", async () => {
        const notFound = () => refused(400, "InvalidInstanceID.NotFound", `The instance ID '${launched.instanceId}' does not exist`);
        await withEc2({ TerminateInstances: notFound, DescribeInstances: notFound }, async (ec2) => {
            const result = await deleteWith(ec2, JSON.stringify(launched));
            assert.equal(result.code, 0, result.stderr);
            assert.deepEqual(ec2.actions(), ["TerminateInstances", "DescribeInstances", "DeleteFleets"]);
        });
    });

    test("delete refused with ExpiredToken: exit 1, renew the credentials; no fleet deletion", async () => {
        const expired = () => refused(400, "ExpiredToken", "The security token included in the request is expired");
        await withEc2({ TerminateInstances: expired, DescribeInstances: expired }, async (ec2) => {
            const result = await deleteWith(ec2, JSON.stringify(launched));
            assert.equal(result.code, 1, result.stderr);
            assert.match(result.stderr, new RegExp(`launch: terminating ${launched.instanceId}: ExpiredToken: The security token included in the request is expired\\. The credentials of this \`pulumi up\` were refused or have expired`));
            assert.ok(!ec2.actions().includes("DeleteFleets"));
        });
    });

    test("delete whose state reads are refused while it waits: exit 1 with the error, the fleet left", async () => {
        await withEc2({ DescribeInstances: () => refused(403, "UnauthorizedOperation", "You are not authorized to perform this operation.") }, async (ec2) => {
            const result = await deleteWith(ec2, JSON.stringify(launched));
            assert.equal(result.code, 1, result.stderr);
            assert.match(result.stderr, new RegExp(`launch: reading the state of ${launched.instanceId}: UnauthorizedOperation: .* needs ec2:DescribeInstances\\. It was asked to terminate`));
            assert.deepEqual(ec2.actions(), ["TerminateInstances", "DescribeInstances"]);
        });
    });

    for (const [what, stdout] of [
        ["empty", ""],
        ["not JSON", "launched i-0123456789abcdef0"],
        ["JSON without an instance id", JSON.stringify({ instanceType: "p5.48xlarge" })],
    ] as const) {
        test(`delete with a launch record that is ${what}: exit 1, nothing terminated, the message names the launch tag`, async () => {
            await withEc2({}, async (ec2) => {
                const result = await deleteWith(ec2, stdout);
                assert.equal(result.code, 1, result.stderr);
                assert.equal(result.stdout, "");
                assert.match(result.stderr, new RegExp(`Nothing was terminated: find the node's instance by its tag ${LAUNCH_TAG} in the EC2 console and terminate it`));
                assert.deepEqual(ec2.actions(), [], "no request to EC2");
            });
        });
    }

    test("update with no launch record fails the same way", async () => {
        const result = await step("update", { PULUMI_COMMAND_STDOUT: "" });
        assert.equal(result.code, 1);
        assert.equal(result.stdout, "");
        assert.match(result.stderr, /the launch step left no record .*Nothing was terminated/);
    });
});
