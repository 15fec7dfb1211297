// A GPU node's launch as one EC2 Fleet request of type instant (components/plan/fleetLaunch.ts): the request for
// each market, what an answer means (launched, launched after errors, none launched, errors that name no candidate,
// more instances than asked for), and the launch record the delete step reads back.
//
//   node --import tsx --test test/plan/fleetLaunch.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import {
    createFleetInput,
    fleetOutcome,
    LAUNCH_TAG,
    launchTagValue,
    parseLaunchRecord,
    type FleetAnswer,
    type FleetCandidate,
    type LaunchRequest,
} from "../../components/plan/fleetLaunch";

const a: FleetCandidate = { instanceType: "p5.48xlarge", subnetId: "subnet-0aaaaaaaaaaaaaaaa", zone: "us-east-1a" };
const b: FleetCandidate = { instanceType: "p5.48xlarge", subnetId: "subnet-0bbbbbbbbbbbbbbbb", zone: "us-east-1b" };
const c: FleetCandidate = { instanceType: "p4d.24xlarge", subnetId: "subnet-0aaaaaaaaaaaaaaaa", zone: "us-east-1a" };

function request(market: "spot" | "on-demand" = "on-demand", candidates: FleetCandidate[] = [a, b, c]): LaunchRequest {
    return {
        node: "main-node",
        launchKey: "1",
        region: "us-east-1",
        launchTemplateId: "lt-0abc1234def567890",
        launchTemplateVersion: "4",
        market,
        candidates,
        alternatives: ["set compute.market to spot", "reserve capacity: compute.capacityReservationId"],
    };
}

/** Overrides as EC2 echoes them in an answer; the zone only where EC2 gives it. */
const overrides = (x: FleetCandidate, withZone = true) => ({
    LaunchTemplateAndOverrides: { Overrides: { InstanceType: x.instanceType, SubnetId: x.subnetId, ...(withZone ? { AvailabilityZone: x.zone } : {}) } },
});
const ice = (x: FleetCandidate) => ({ ...overrides(x), ErrorCode: "InsufficientInstanceCapacity", ErrorMessage: `We currently do not have sufficient ${x.instanceType} capacity in ${x.zone}.` });
const iceLine = (x: FleetCandidate) => `${x.instanceType} in ${x.zone} (${x.subnetId}): InsufficientInstanceCapacity: We currently do not have sufficient ${x.instanceType} capacity in ${x.zone}.`;

test("the on-demand request: one instant fleet of one instance, prioritized over the candidates in order", () => {
    assert.deepEqual(createFleetInput(request("on-demand")), {
        Type: "instant",
        TargetCapacitySpecification: { TotalTargetCapacity: 1, DefaultTargetCapacityType: "on-demand" },
        OnDemandOptions: { AllocationStrategy: "prioritized" },
        LaunchTemplateConfigs: [
            {
                LaunchTemplateSpecification: { LaunchTemplateId: "lt-0abc1234def567890", Version: "4" },
                Overrides: [
                    { InstanceType: "p5.48xlarge", SubnetId: "subnet-0aaaaaaaaaaaaaaaa", Priority: 1 },
                    { InstanceType: "p5.48xlarge", SubnetId: "subnet-0bbbbbbbbbbbbbbbb", Priority: 2 },
                    { InstanceType: "p4d.24xlarge", SubnetId: "subnet-0aaaaaaaaaaaaaaaa", Priority: 3 },
                ],
            },
        ],
    });
});

test("the spot request: capacity-optimized-prioritized, terminated on interruption, no on-demand options", () => {
    const input = createFleetInput(request("spot"));
    assert.deepEqual(input.TargetCapacitySpecification, { TotalTargetCapacity: 1, DefaultTargetCapacityType: "spot" });
    assert.deepEqual((input as { SpotOptions?: unknown }).SpotOptions, { AllocationStrategy: "capacity-optimized-prioritized", InstanceInterruptionBehavior: "terminate" });
    assert.ok(!("OnDemandOptions" in input));
    assert.deepEqual(input.LaunchTemplateConfigs[0]!.Overrides.map((o) => o.Priority), [1, 2, 3]);
    assert.equal(input.Type, "instant");
});

test("a request without candidates is refused, naming the node", () => {
    assert.throws(() => createFleetInput(request("on-demand", [])), /main-node: a fleet launch needs at least one candidate/);
});

test("launched from the first candidate: its record, nothing skipped, no extra instance", () => {
    const answer: FleetAnswer = { FleetId: "fleet-1", Instances: [{ InstanceIds: ["i-0123456789abcdef0"], InstanceType: a.instanceType, ...overrides(a) }] };
    assert.deepEqual(fleetOutcome(request(), answer), {
        launched: true,
        record: { instanceId: "i-0123456789abcdef0", instanceType: a.instanceType, zone: a.zone, subnetId: a.subnetId, fleetId: "fleet-1", launchKey: "1", skipped: [] },
        extra: [],
    });
});

test("launched after errors: the candidate that launched, the zone from the candidate when EC2 gives none, the skipped ones in request order", () => {
    // EC2 lists errors in its own order; the record follows the request's.
    const answer: FleetAnswer = { FleetId: "fleet-2", Errors: [ice(b), ice(a)], Instances: [{ InstanceIds: ["i-0c"], InstanceType: c.instanceType, ...overrides(c, false) }] };
    const outcome = fleetOutcome(request(), answer);
    assert.ok(outcome.launched);
    assert.deepEqual(outcome.record, { instanceId: "i-0c", instanceType: c.instanceType, zone: c.zone, subnetId: c.subnetId, fleetId: "fleet-2", launchKey: "1", skipped: [iceLine(a), iceLine(b)] });
});

test("the same type in two subnets: the record takes the subnet and zone EC2 launched in", () => {
    const answer: FleetAnswer = { Errors: [ice(a)], Instances: [{ InstanceIds: ["i-0b"], ...overrides(b) }] };
    const outcome = fleetOutcome(request(), answer);
    assert.ok(outcome.launched);
    assert.equal(outcome.record.subnetId, b.subnetId);
    assert.equal(outcome.record.zone, b.zone);
    assert.ok(!("fleetId" in outcome.record), "no fleet id in the answer, none in the record");
});

test("none launched: every candidate in order with EC2's reason, one EC2 did not answer for, and what to do", () => {
    const outcome = fleetOutcome(request(), { FleetId: "fleet-3", Errors: [ice(c), ice(a)] });
    assert.ok(!outcome.launched);
    assert.equal(
        outcome.message,
        [
            "main-node: no on-demand capacity for any of the 3 candidate(s), tried in this order:",
            `  - ${iceLine(a)}`,
            `  - ${iceLine(c)}`,
            `  - ${b.instanceType} in ${b.zone} (${b.subnetId}): no answer from EC2`,
            "What you can do:",
            "  - run pulumi up again later: capacity comes and goes, and the launch tries the same order",
            "  - set compute.market to spot",
            "  - reserve capacity: compute.capacityReservationId",
        ].join("\n"),
    );
});

test("an error that names no candidate comes after the candidates' own, with what it names", () => {
    const answer: FleetAnswer = {
        Errors: [
            { ErrorCode: "InvalidLaunchTemplateId.NotFound", ErrorMessage: "The specified launch template does not exist." },
            { LaunchTemplateAndOverrides: { Overrides: { InstanceType: "g6.12xlarge", SubnetId: "subnet-0ccccccccccccccccc" } }, ErrorCode: "Unsupported" },
            ice(b),
        ],
    };
    const outcome = fleetOutcome(request("spot"), answer);
    assert.ok(!outcome.launched);
    const lines = outcome.message.split("\n");
    assert.equal(lines[0], "main-node: no spot capacity for any of the 3 candidate(s), tried in this order:");
    assert.deepEqual(lines.slice(1, 6), [
        `  - ${iceLine(b)}`,
        "  - (no type) in (no subnet): InvalidLaunchTemplateId.NotFound: The specified launch template does not exist.",
        "  - g6.12xlarge in subnet-0ccccccccccccccccc: Unsupported: (no message)",
        `  - ${a.instanceType} in ${a.zone} (${a.subnetId}): no answer from EC2`,
        `  - ${c.instanceType} in ${c.zone} (${c.subnetId}): no answer from EC2`,
    ]);
});

test("errors beside a launched instance that name no candidate are kept among the skipped", () => {
    const answer: FleetAnswer = { Errors: [{ ErrorCode: "RequestLimitExceeded", ErrorMessage: "Request limit exceeded." }], Instances: [{ InstanceIds: ["i-0a"], ...overrides(a) }] };
    const outcome = fleetOutcome(request(), answer);
    assert.ok(outcome.launched);
    assert.deepEqual(outcome.record.skipped, ["(no type) in (no subnet): RequestLimitExceeded: Request limit exceeded."]);
});

test("more instances than the one asked for: the first is the node, the others are listed to terminate", () => {
    const answer: FleetAnswer = {
        Instances: [
            { InstanceIds: ["i-01", "i-02"], ...overrides(a) },
            { InstanceIds: ["i-03"], ...overrides(b) },
        ],
    };
    const outcome = fleetOutcome(request(), answer);
    assert.ok(outcome.launched);
    assert.equal(outcome.record.instanceId, "i-01");
    assert.deepEqual(outcome.extra, ["i-02", "i-03"]);
});

test("an instance of no candidate is not taken as the node: the message names it and says it is terminated", () => {
    const answer: FleetAnswer = { Instances: [{ InstanceIds: ["i-0x"], InstanceType: "g5.xlarge", LaunchTemplateAndOverrides: { Overrides: { InstanceType: "g5.xlarge", SubnetId: "subnet-0zzzzzzzzzzzzzzzz" } } }] };
    const outcome = fleetOutcome(request(), answer);
    assert.ok(!outcome.launched);
    assert.equal(outcome.message, "main-node: EC2 launched i-0x as g5.xlarge in subnet-0zzzzzzzzzzzzzzzz, which is none of the candidates; it is terminated");
});

test("an answer without overrides: the candidate is found by the instance type alone (the first of that type)", () => {
    const outcome = fleetOutcome(request(), { Instances: [{ InstanceIds: ["i-0p4"], InstanceType: "p4d.24xlarge" }] });
    assert.ok(outcome.launched);
    assert.deepEqual([outcome.record.instanceType, outcome.record.subnetId, outcome.record.zone], [c.instanceType, c.subnetId, c.zone]);
});

test("the launch tag: node and launch key", () => {
    assert.equal(LAUNCH_TAG, "campaign-launch");
    assert.equal(launchTagValue("main-node", "3"), "main-node/3");
});

test("parseLaunchRecord: a record with an instance id is trusted; anything else says why not", () => {
    const record = { instanceId: "i-0123456789abcdef0", instanceType: "p5.48xlarge", zone: "us-east-1a", subnetId: "subnet-0a", fleetId: "fleet-1", launchKey: "1", skipped: [] };
    assert.deepEqual(parseLaunchRecord(JSON.stringify(record)), { record });
    for (const empty of [undefined, "", "  \n"]) {
        assert.deepEqual(parseLaunchRecord(empty), { problem: "the launch step left no record (it never launched, or its output was lost)" });
    }
    assert.deepEqual(parseLaunchRecord("launched i-0123"), { problem: "the launch record is not JSON: launched i-0123" });
    assert.match((parseLaunchRecord(JSON.stringify({ instanceType: "p5.48xlarge" })) as { problem: string }).problem, /^the launch record names no instance id: \{"instanceType"/);
    assert.match((parseLaunchRecord(JSON.stringify({ instanceId: "sir-1234" })) as { problem: string }).problem, /names no instance id/);
    assert.ok("problem" in parseLaunchRecord("null"), "JSON null is no record");
    const long = "x".repeat(500);
    assert.equal((parseLaunchRecord(long) as { problem: string }).problem, `the launch record is not JSON: ${"x".repeat(200)}`, "the quoted output is cut at 200 characters");
});
