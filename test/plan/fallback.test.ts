// Fallback across zones and instance types: which types may stand in for a run's own (compute.fallbackInstanceTypes),
// the launch order (what the node's fleet request tries, and preflight checks), the rule that names the first
// candidate AWS offers (with the exact config that starts there), and the plan's lines.
//
//   node --import tsx --test test/plan/fallback.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveCampaign } from "../../components/campaign/resolve";
import type { ResolvedCampaign } from "../../components/campaign/types";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import { capacityNotes, configFor, fallbackRefusal, launchOrder } from "../../components/plan/capacity";
import { getInstance } from "../../components/plan/catalog";
import { buildPlan } from "../../components/plan/plan";
import { checkFallbackQuota, checkLaunchOrder, fallbackQuotaDemand, quotaFor, type CandidateFacts } from "../../components/plan/preflight";

const campaign = (preset: string, override: unknown = {}): ResolvedCampaign => resolveCampaign(mergeConfig(loadPreset(preset), override as never), `stacks/${preset}.yaml`);
const refused = (preset: string, override: unknown, pattern: RegExp) => assert.throws(() => campaign(preset, override), pattern);

test("a fallback type must keep the run's job spec (same GPU count), fit its memory and be a known GPU type", () => {
    // One A10G -> one L4 or one L40S: accepted.
    const dev = campaign("dev", { compute: { availabilityZones: ["us-east-1c"], fallbackInstanceTypes: ["g6.2xlarge", "g6e.xlarge"] } });
    assert.deepEqual(dev.experiment.compute.fallbackInstanceTypes, ["g6.2xlarge", "g6e.xlarge"]);
    // The launch names a subnet for each place it tries: zones (their default subnets) or a subnet are needed.
    refused("dev", { compute: { fallbackInstanceTypes: ["g6.2xlarge"] } }, /compute\.fallbackInstanceTypes: the fallback launch names the subnet of each place it tries: set compute\.availabilityZones .* or compute\.subnetId/);
    assert.equal(campaign("dev", { compute: { subnetId: "subnet-0abc123", fallbackInstanceTypes: ["g6.2xlarge"] } }).experiment.compute.subnetId, "subnet-0abc123");
    // The dataset volume attaches only in its own zone: several zones and a volume do not go together.
    refused("dev", { compute: { availabilityZones: ["us-east-1c", "us-east-1a"], dataVolumeGb: 100 } }, /compute\.dataVolumeGb: the dataset volume lives in one zone .*\(compute\.availabilityZones: \[us-east-1c\]/);
    // Four GPUs instead of one would change the global batch, the spec hash and the run's checkpoints.
    refused("dev", { compute: { fallbackInstanceTypes: ["g6.2xlarge", "g5.12xlarge"] } }, /compute\.fallbackInstanceTypes\.1: g5\.12xlarge cannot stand in for g5\.2xlarge in run main: g5\.12xlarge has 4 GPU\(s\), g5\.2xlarge has 1/);
    refused("dev", { compute: { fallbackInstanceTypes: ["c6i.2xlarge"] } }, /compute\.fallbackInstanceTypes\.0: c6i\.2xlarge cannot stand in .*has no GPU/);
    refused("dev", { compute: { fallbackInstanceTypes: ["g6.2xlarg"] } }, /compute\.fallbackInstanceTypes\.0: .*g6\.2xlarge/);
    refused("dev", { compute: { fallbackInstanceTypes: ["g6.2xlarge", "g6.2xlarge"] } }, /each type once/);
    // Memory: the same 8 GPUs with half the memory each; Qwen2.5-14B QLoRA at this batch needs more than 40 GiB per GPU.
    const socsci = campaign("socsci210-qwen14b-qlora");
    const run = socsci.runs[0]!;
    assert.match(fallbackRefusal(socsci.experiment, run, "p4d.24xlarge") ?? "fits", /^the run needs about [\d.]+ GiB per GPU and p4d\.24xlarge has 40\.0 GiB$/);
    refused("socsci210-qwen14b-qlora", { compute: { fallbackInstanceTypes: ["p4d.24xlarge"] } }, /compute\.fallbackInstanceTypes\.0: p4d\.24xlarge cannot stand in for p4de\.24xlarge in run main: the run needs about/);
    assert.equal(fallbackRefusal(socsci.experiment, run, "p5.48xlarge"), undefined, "8x H100 80 GiB stands in for 8x A100 80 GiB");
    // A reservation is one type in one zone.
    refused("socsci210-qwen14b-qlora", { compute: { capacityReservationId: "cr-0abc123", fallbackInstanceTypes: ["p5.48xlarge"] } }, /compute\.fallbackInstanceTypes: a capacity reservation .* one instance type in one zone/);
});

test("the launch order: the run's own type in each zone first, then each fallback type in each zone", () => {
    const c = campaign("dev", { compute: { availabilityZones: ["us-east-1c", "us-east-1a"], fallbackInstanceTypes: ["g6.2xlarge", "g6e.xlarge"] } });
    assert.deepEqual(launchOrder(c.experiment, c.runs[0]!, ["us-east-1c", "us-east-1a"]), [
        { instanceType: "g5.2xlarge", zone: "us-east-1c" },
        { instanceType: "g5.2xlarge", zone: "us-east-1a" },
        { instanceType: "g6.2xlarge", zone: "us-east-1c" },
        { instanceType: "g6.2xlarge", zone: "us-east-1a" },
        { instanceType: "g6e.xlarge", zone: "us-east-1c" },
        { instanceType: "g6e.xlarge", zone: "us-east-1a" },
    ]);
    // No zone configured: one candidate per type, EC2 picks the zone.
    assert.deepEqual(launchOrder(c.experiment, c.runs[0]!, []), [{ instanceType: "g5.2xlarge" }, { instanceType: "g6.2xlarge" }, { instanceType: "g6e.xlarge" }]);
    // The exact config that launches a later candidate: the zone moved to the front, the type set.
    assert.equal(configFor(c, c.runs[0]!, { instanceType: "g5.2xlarge", zone: "us-east-1a" }, ["us-east-1c", "us-east-1a"]), "compute.availabilityZones: [us-east-1a, us-east-1c]");
    assert.equal(configFor(c, c.runs[0]!, { instanceType: "g6.2xlarge", zone: "us-east-1c" }, ["us-east-1c", "us-east-1a"]), "compute.instanceType: g6.2xlarge");
    // Several runs: the type goes into the run's own entry.
    const sweep = campaign("socratiq-t5-lora", { compute: { availabilityZones: ["us-east-1c"], fallbackInstanceTypes: ["g6.2xlarge"] } });
    assert.match(configFor(sweep, sweep.runs[1]!, { instanceType: "g6.2xlarge" }, []), new RegExp(`compute\\.instanceType: g6\\.2xlarge in run ${sweep.runs[1]!.name}'s entry of runs`));
});

test("the plan lists the fallback order and says what the launch does when no candidate has capacity", () => {
    const c = campaign("dev", { compute: { availabilityZones: ["us-east-1c", "us-east-1a"], fallbackInstanceTypes: ["g6.2xlarge"] } });
    const notes = capacityNotes(c);
    const price = (type: string) => getInstance(type).onDemandUsdPerHour;
    assert.match(notes[0]!, /GPU nodes launch in us-east-1c; next in order: us-east-1a/);
    assert.ok(notes.includes(`fallback order for every run: g5.2xlarge ($${price("g5.2xlarge")}/h on demand) in us-east-1c, us-east-1a; then g6.2xlarge ($${price("g6.2xlarge")}/h on demand) in us-east-1c, us-east-1a (compute.fallbackInstanceTypes: one EC2 Fleet request tries them in this order and launches the first that has capacity)`), notes.join("\n"));
    const ice = notes.find((l) => l.includes("InsufficientInstanceCapacity"))!;
    assert.match(ice, /launches through one EC2 Fleet request \(type instant\) over its launch order: EC2 takes the first that has capacity\. If none has .* pulumi up stops with every candidate's reason .* run pulumi up again later, switch compute\.market \(now spot\)/);
    // One zone and no fallback type: one instance, and the plan says how to give it somewhere else to go.
    const single = capacityNotes(campaign("dev", { compute: { availabilityZones: ["us-east-1c"] } })).find((l) => l.includes("InsufficientInstanceCapacity"))!;
    assert.match(single, /pulumi up stops with that node's error .* give compute\.availabilityZones more than one zone \(or compute\.fallbackInstanceTypes\), and the launch tries them in order$/);
    // Without fallback types the plan says nothing about them.
    assert.ok(!capacityNotes(campaign("dev")).some((l) => /fallback order|EC2 Fleet/.test(l)));
});

test("preflight's launch order: pass on the first choice, a warning naming the first candidate that works (the launch moves on to it), or a failure when none does", () => {
    const c = campaign("dev", { compute: { availabilityZones: ["us-east-1c", "us-east-1a"], fallbackInstanceTypes: ["g6.2xlarge"] } });
    const run = c.runs[0]!;
    const zones = ["us-east-1c", "us-east-1a"];
    const spot = (prices: Record<string, Record<string, number>>): CandidateFacts["spotPrices"] => prices;

    const all: CandidateFacts = { offeredIn: { "g5.2xlarge": zones, "g6.2xlarge": zones }, spotPrices: spot({ "g5.2xlarge": { "us-east-1c": 0.5, "us-east-1a": 0.6 }, "g6.2xlarge": { "us-east-1c": 0.4 } }) };
    const pass = checkLaunchOrder(c, run, zones, all);
    assert.equal(pass.status, "pass");
    assert.match(pass.detail, /g5\.2xlarge in us-east-1c is the first choice and is offered with a spot price; the launch tries, in order: g5\.2xlarge in us-east-1c, g5\.2xlarge in us-east-1a, g6\.2xlarge in us-east-1c, g6\.2xlarge in us-east-1a \(no recent spot price\)/);

    // The own type is offered only in the second zone: the launch skips the first (EC2 answers it with an error).
    const secondZone = checkLaunchOrder(c, run, zones, { ...all, offeredIn: { "g5.2xlarge": ["us-east-1a"], "g6.2xlarge": zones } });
    assert.equal(secondZone.status, "warn", "the fleet request moves on to the next candidate");
    assert.match(secondZone.detail, /the first choice g5\.2xlarge in us-east-1c cannot launch \(not offered\); the launch moves on through the order, and the first that is offered with a spot price is g5\.2xlarge in us-east-1a/);
    assert.equal(secondZone.fix, "to start there (and be priced as it), set compute.availabilityZones: [us-east-1a, us-east-1c]");

    // No spot price for the own type anywhere: the fallback type in the first zone.
    const fallback = checkLaunchOrder(c, run, zones, { ...all, spotPrices: spot({ "g5.2xlarge": {}, "g6.2xlarge": { "us-east-1c": 0.4 } }) });
    assert.equal(fallback.status, "warn");
    assert.equal(fallback.fix, "to start there (and be priced as it), set compute.instanceType: g6.2xlarge");

    // A read that failed is an obstacle that says so, not a pass.
    const unread = checkLaunchOrder(c, run, zones, { offeredIn: { "g5.2xlarge": { error: "AccessDenied" }, "g6.2xlarge": zones }, spotPrices: spot({ "g6.2xlarge": { "us-east-1a": 0.4 } }) });
    assert.equal(unread.status, "warn");
    assert.match(unread.detail, /g5\.2xlarge in us-east-1c \(offerings of g5\.2xlarge unknown\)/);
    assert.equal(unread.fix, "to start there (and be priced as it), set compute.instanceType: g6.2xlarge and compute.availabilityZones: [us-east-1a, us-east-1c]");

    const none = checkLaunchOrder(c, run, zones, { offeredIn: { "g5.2xlarge": [], "g6.2xlarge": ["us-east-1b"] }, spotPrices: spot({}) });
    assert.equal(none.status, "fail");
    assert.match(none.fix!, /compute\.availabilityZones.*compute\.fallbackInstanceTypes.*compute\.market: on-demand/);

    // On demand only the offering counts.
    const onDemand = campaign("dev", { compute: { market: "on-demand", availabilityZones: ["us-east-1c", "us-east-1a"], fallbackInstanceTypes: ["g6.2xlarge"] } });
    const od = checkLaunchOrder(onDemand, onDemand.runs[0]!, zones, { offeredIn: { "g5.2xlarge": [], "g6.2xlarge": ["us-east-1a"] } });
    assert.equal(od.status, "warn");
    assert.equal(od.fix, "to start there (and be priced as it), set compute.instanceType: g6.2xlarge and compute.availabilityZones: [us-east-1a, us-east-1c]");
});

test("a fallback type under another vCPU quota: preflight reads that quota too, and a short one only warns", () => {
    // g6 counts against the same G quota as g5: nothing more to read.
    assert.deepEqual(fallbackQuotaDemand(campaign("dev", { compute: { availabilityZones: ["us-east-1c"], fallbackInstanceTypes: ["g6.2xlarge"] } })), []);
    // One H100 beside one A10G: the P quota of the market, for every run that may move there.
    const dev = campaign("dev", { compute: { availabilityZones: ["us-east-1c"], fallbackInstanceTypes: ["g6.2xlarge", "p5.4xlarge"] } });
    const p5 = getInstance("p5.4xlarge").vcpus;
    const [demand] = fallbackQuotaDemand(dev);
    assert.equal(fallbackQuotaDemand(dev).length, 1);
    assert.deepEqual(demand!.quota, quotaFor("p5.4xlarge", "spot"));
    assert.equal(demand!.vcpus, p5);
    assert.equal(demand!.nodes, `fallback p5.4xlarge (${p5} vCPUs) for main`);
    const three = campaign("socratiq-t5-lora", { compute: { availabilityZones: ["us-east-1c"], fallbackInstanceTypes: ["p5.4xlarge"] } });
    assert.equal(fallbackQuotaDemand(three)[0]!.vcpus, p5 * three.runs.length, "all GPU nodes start together");

    const short = checkFallbackQuota(demand!, "us-east-1", 0);
    assert.equal(short.status, "warn");
    assert.match(short.detail, /is 0 vCPUs in us-east-1, but the nodes need \d+ at once \(fallback p5\.4xlarge .*\); needed only if a run moves to its fallback type$/);
    assert.match(short.fix!, new RegExp(`--quota-code ${demand!.quota.code} --desired-value ${p5}`));
    assert.equal(checkFallbackQuota(demand!, "us-east-1", p5).status, "pass");
    assert.equal(checkFallbackQuota(demand!, "us-east-1", { error: "AccessDenied" }).status, "warn");
});

test("the worst case counts the dearest type a node may launch as: a dearer fallback raises it, a cheaper one does not", () => {
    const base = campaign("socsci210-qwen14b-qlora", { compute: { availabilityZone: null, availabilityZones: ["us-east-1b"] } });
    const dearer = campaign("socsci210-qwen14b-qlora", { compute: { availabilityZone: null, availabilityZones: ["us-east-1b"], fallbackInstanceTypes: ["p5.48xlarge"] } });
    const run = (c: ResolvedCampaign) => buildPlan(c).runs[0]!;
    const hours = base.experiment.compute.maxHours;
    const volume = run(base).worstCaseUsd - hours * getInstance("p4de.24xlarge").onDemandUsdPerHour;
    assert.ok(getInstance("p5.48xlarge").onDemandUsdPerHour > getInstance("p4de.24xlarge").onDemandUsdPerHour, "the catalog's p5 costs more than p4de");
    assert.ok(Math.abs(run(dearer).worstCaseUsd - (hours * getInstance("p5.48xlarge").onDemandUsdPerHour + volume)) < 1e-6);
    assert.equal(run(dearer).estimatedUsd, run(base).estimatedUsd, "the estimate stays the first choice's");
    // One A10G with one L4 as fallback: the L4 costs less, so the worst case stays g5's.
    const dev = campaign("dev", { compute: { availabilityZones: ["us-east-1c"] } });
    const devFallback = campaign("dev", { compute: { availabilityZones: ["us-east-1c"], fallbackInstanceTypes: ["g6.2xlarge"] } });
    assert.equal(run(devFallback).worstCaseUsd, run(dev).worstCaseUsd);
});
