// PrepStage (components/resources/prepStage.ts) under Pulumi mocks: a data source in another bucket is copied
// into the campaign's bucket before prep, and no node names that bucket.
//
//   node --import tsx --test --test-concurrency=1 test/resources/prepStage.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
// The harness installs the Pulumi mocks: import it before any component.
import { assertSafe, build, byType, prepInstances, resolved, waitsFor } from "./harness";

test("a data source in another bucket is copied in; nodes never name that bucket", async () => {
    const campaign = resolved("socratiq-t5-lora");
    assert.match(campaign.experiment.data.source, /^s3:\/\/socratiq-data\//);
    const g = await build("copyin", campaign);
    assertSafe(g);
    const copy = g.resources.find((r) => r.name.endsWith("-input-copy"))!;
    assert.match(copy.inputs.create, /^aws s3 cp 's3:\/\/socratiq-data\/socratiq\/train\.jsonl' 's3:\/\/.*\/inputs\/[0-9a-f]{64}\/train\.jsonl'/);
    const prepNode = prepInstances(g)[0];
    assert.ok(waitsFor(g, prepNode.name, copy.name), "the prep node waits for the copy");
    for (const rp of byType(g, "aws:iam/rolePolicy:RolePolicy")) assert.ok(!rp.inputs.policy.includes("socratiq-data"));
});
