// Guardrails (components/resources/guardrails.ts) under Pulumi mocks: the budget, and the GPU agent config that
// publishes the metric the idle alarm watches; with a dataset volume and a given subnet in the same graph.
//
//   node --import tsx --test --test-concurrency=1 test/resources/guardrails.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
// The harness installs the Pulumi mocks: import it before any component.
import { assertSafe, build, byType, gpuInstances, resolved } from "./harness";

test("a budget, a dataset volume and a given subnet", async () => {
    const g = await build(
        "extras",
        resolved("dev", { budget: { monthlyUsd: 50, emails: ["ml@example.com"] }, compute: { dataVolumeGb: 500, availabilityZone: "us-east-1a", subnetId: "subnet-0abc123" } }),
    );
    assertSafe(g);
    const budget = byType(g, "aws:budgets/budget:Budget")[0];
    assert.equal(budget.inputs.limitAmount, "50.00");
    assert.deepEqual(budget.inputs.costFilters, [{ name: "TagKeyValue", values: ["user:campaign$dev"] }]);
    assert.ok(budget.inputs.notifications.every((n: any) => n.subscriberEmailAddresses[0] === "ml@example.com"));
    const volume = byType(g, "aws:ebs/volume:Volume")[0];
    assert.deepEqual([volume.inputs.size, volume.inputs.type, volume.inputs.availabilityZone, volume.inputs.encrypted], [500, "gp3", "us-east-1a", true]);
    assert.equal(byType(g, "aws:ec2/volumeAttachment:VolumeAttachment").length, 1);
    const gpu = gpuInstances(g)[0];
    assert.equal(gpu.inputs.subnetId, "subnet-0abc123");
    assert.equal(gpu.inputs.availabilityZone, undefined);
    for (const sg of byType(g, "aws:ec2/securityGroup:SecurityGroup")) assert.equal(sg.inputs.vpcId, "vpc-0given");
});

test("the GPU agent config publishes the alarm's metric with the InstanceId dimension alone", async () => {
    const { gpuAgentConfig, GPU_METRIC_NAMESPACE, GPU_UTILIZATION_METRIC } = await import("../../components/node/metricsAgent");
    const { idleAlarmArgs } = await import("../../components/resources/guardrails");
    const config = gpuAgentConfig() as any;
    assert.equal(config.metrics.namespace, GPU_METRIC_NAMESPACE);
    assert.deepEqual(config.metrics.append_dimensions, { InstanceId: "${aws:InstanceId}" });
    assert.deepEqual(config.metrics.aggregation_dimensions, [["InstanceId"]]);
    assert.ok(config.metrics.metrics_collected.nvidia_gpu.measurement.includes(GPU_UTILIZATION_METRIC.replace(/^nvidia_smi_/, "")));
    const alarm = idleAlarmArgs({ region: "eu-west-1", instanceId: "i-1", idleMinutes: 20, thresholdPercent: 5, description: "d", tags: {} });
    assert.deepEqual([alarm.metricName, alarm.namespace, alarm.dimensions, alarm.alarmActions], [GPU_UTILIZATION_METRIC, GPU_METRIC_NAMESPACE, { InstanceId: "i-1" }, ["arn:aws:automate:eu-west-1:ec2:terminate"]]);
    assert.throws(() => idleAlarmArgs({ region: "r", instanceId: "i", idleMinutes: 0, thresholdPercent: 5, description: "d", tags: {} }));
});
