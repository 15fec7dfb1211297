// Where the GPU nodes get capacity: the ordered zones, reservations and Capacity Blocks, the config errors between
// them, and the plan's lines on what to do when a zone has none.
//
//   node --import tsx --test test/plan/capacity.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveCampaign } from "../../components/campaign/resolve";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import { capacityNotes, nodeZone, reservationTarget } from "../../components/plan/capacity";
import { buildPlan, renderPlan } from "../../components/plan/plan";
import { capacityOptions } from "../../components/resources/jobNode";

const campaign = (preset: string, override: unknown = {}) => resolveCampaign(mergeConfig(loadPreset(preset), override as never), `stacks/${preset}.yaml`);
const refused = (preset: string, override: unknown, pattern: RegExp) => assert.throws(() => campaign(preset, override), pattern);

test("the nodes' zone is the first preferred one; the plan names the next ones, what the launch does, and the alternatives", () => {
    const c = campaign("dev", { compute: { availabilityZones: ["us-east-1c", "us-east-1a"] } });
    assert.equal(nodeZone(c.experiment.compute), "us-east-1c");
    const notes = capacityNotes(c);
    assert.match(notes[0]!, /GPU nodes launch in us-east-1c; next in order: us-east-1a/);
    assert.match(notes[1]!, /one EC2 Fleet request .* the first that has capacity\. If none has \(InsufficientInstanceCapacity in each\).*run pulumi up again later, switch compute\.market \(now spot\).*compute\.capacityReservationId.*another type that fits \(main: g6\.2xlarge/);
    const text = renderPlan(buildPlan(c), "x");
    assert.ok(text.indexOf("Capacity:") > text.indexOf("2. Training") && text.indexOf("Capacity:") < text.indexOf("Estimated total"));
    // No zone: EC2 places the node.
    assert.match(capacityNotes(campaign("socratiq-t5-lora"))[0]!, /where EC2 places them in the default VPC/);
});

test("a reservation or Capacity Block: GPU nodes target it, on demand, with the capacity-block market type for a block", () => {
    const c = campaign("socsci210-qwen14b-qlora", { compute: { capacityReservationId: "cr-0abc123", capacityBlock: true } });
    assert.deepEqual(reservationTarget(c.experiment.compute), { capacityReservationId: "cr-0abc123", capacityBlock: true });
    assert.match(capacityNotes(c)[0]!, /launch into the Capacity Block for ML cr-0abc123/);
    assert.deepEqual(capacityOptions("on-demand", { capacityReservationId: "cr-0abc123", capacityBlock: true }), {
        instanceMarketOptions: { marketType: "capacity-block" },
        capacityReservationSpecification: { capacityReservationTarget: { capacityReservationId: "cr-0abc123" } },
    });
    assert.deepEqual(capacityOptions("on-demand", { capacityReservationId: "cr-0abc123", capacityBlock: false }), {
        instanceMarketOptions: undefined,
        capacityReservationSpecification: { capacityReservationTarget: { capacityReservationId: "cr-0abc123" } },
    });
    assert.throws(() => capacityOptions("spot", { capacityReservationId: "cr-0abc123", capacityBlock: false }), /not spot/);
    assert.deepEqual(capacityOptions("spot", undefined).capacityReservationSpecification, undefined);
});

test("the config refuses zones and reservations that cannot work, naming the field and the fix", () => {
    refused("dev", { compute: { availabilityZones: ["us-west-2a"] } }, /compute\.availabilityZones\.0: us-west-2a is not a zone of the campaign's region us-east-1/);
    refused("dev", { compute: { availabilityZones: ["us-east-1a", "us-east-1a"] } }, /each zone once/);
    refused("dev", { compute: { availabilityZone: "us-east-1b", availabilityZones: ["us-east-1a"] } }, /compute\.availabilityZone: is us-east-1b but compute\.availabilityZones starts with us-east-1a/);
    refused("dev", { compute: { subnetId: "subnet-0abc", availabilityZones: ["us-east-1a", "us-east-1b"] } }, /compute\.subnetId fixes the zone/);
    refused("dev", { compute: { capacityReservationId: "cr-0abc123" } }, /set compute\.market: on-demand/);
    refused("dev", { compute: { market: "on-demand", capacityBlock: true } }, /compute\.capacityBlock: needs compute\.capacityReservationId/);
    refused("dev", { compute: { capacityReservationId: "reservation-1" } }, /cr-0abc123/);
    assert.doesNotThrow(() => campaign("dev", { compute: { market: "on-demand", capacityReservationId: "cr-0abc123", availabilityZones: ["us-east-1a"] } }));
});
