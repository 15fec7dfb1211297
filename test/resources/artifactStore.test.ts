// ArtifactStore (components/resources/artifactStore.ts) under Pulumi mocks: bucket names, lifecycle rules,
// keepOnDestroy, and an existing bucket used as given.
//
//   node --import tsx --test --test-concurrency=1 test/resources/artifactStore.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
// The harness installs the Pulumi mocks: import it before any component.
import { ACCOUNT, assertSafe, build, presets, resolved } from "./harness";
import { campaignBucketName } from "../../components/campaign/naming";
import { lifecycleRules } from "../../components/resources/artifactStore";

test("an existing bucket is used as given: no bucket resources, IAM on its ARN", async () => {
    const g = await build("shared", resolved("reasoning-qwen7b-lora", { storage: { existingBucket: "team-ml-artifacts" } }));
    assertSafe(g);
    assert.equal(g.component.bucketName, "team-ml-artifacts");
    assert.equal(g.resources.filter((r) => r.type.startsWith("aws:s3/bucket") && r.type !== "aws:s3/bucketObjectv2:BucketObjectv2").length, 0);
    assert.match(g.component.kept.kept, /existing bucket/);
});

test("bucket names are valid S3 names and stable", () => {
    const long = campaignBucketName("a-very-long-campaign-name-that-goes-on-and-on", "Some_Stack.Name-with-more", ACCOUNT);
    assert.ok(long.length <= 63 && /^[a-z0-9][a-z0-9-]*[a-z0-9]$/.test(long), long);
    assert.equal(long, campaignBucketName("a-very-long-campaign-name-that-goes-on-and-on", "Some_Stack.Name-with-more", ACCOUNT));
    assert.equal(campaignBucketName("dev", "test", ACCOUNT), `dev-test-${ACCOUNT}`);
});

test("lifecycle rules: multipart uploads aborted, only checkpoints expire", () => {
    const rules = lifecycleRules("c", ["a", "b"], 14);
    assert.equal(rules.length, 3);
    assert.deepEqual(rules.slice(1).map((r) => [r.filter, r.expiration]), [[{ prefix: "runs/c/a/checkpoints/" }, { days: 14 }], [{ prefix: "runs/c/b/checkpoints/" }, { days: 14 }]]);
    assert.throws(() => lifecycleRules("c", [], 0));
});

for (const preset of presets) {
    test(`${preset}: keepOnDestroy false deletes the bucket with its objects`, async () => {
        const g = await build(`drop-${preset}`, resolved(preset, { storage: { keepOnDestroy: false } }));
        assertSafe(g);
        assert.equal(g.component.kept.monthlyUsd, 0);
    });
}
