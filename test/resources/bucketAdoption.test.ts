// The program under mocks with the campaign's bucket already there (and the stack's aws:assumeRoles, which the bucket
// look, the state reader and the gate use): a bucket kept by an earlier destroy, with the
// campaign's tags, is declared with the `import` option and its hardening settings are declared as before; one that
// is not ours stops the program before anything is declared; a new stack creates its bucket without import.
//
//   node --import tsx --test --test-concurrency=1 test/resources/bucketAdoption.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
// The harness installs the Pulumi mocks (a bucket's id is its name, as in AWS): import it before any component.
import { ACCOUNT, declared, ofComponent as ofProgram, recorder, REGION, registered } from "./harness";

// Imported after setMocks, so every resource is created against the mocks.
import { program } from "../../components/resources/program";
import { StaticCampaignState } from "../../components/campaign/state";
import { campaignBucketName, campaignTags } from "../../components/campaign/naming";
import { renderNodeUserData } from "../../components/node/userData";
import type { ObservedBucket } from "../../components/campaign/bucketAdoption";

const BUCKET = campaignBucketName("dev", "test", ACCOUNT);
const HARDENING = [
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
];

/** Runs the program for the dev preset with what S3 says about the campaign's bucket; waits until the bucket settings are registered. */
async function run(name: string, observed: ObservedBucket, looked: string[] = []) {
    pulumi.runtime.setAllConfig({ "campaign:preset": "dev" });
    const outputs = await program({
        name,
        renderUserData: renderNodeUserData,
        stateReader: () => new StaticCampaignState(),
        bucketObserver: async (bucket, accountId, region) => {
            looked.push(`${bucket}@${accountId}/${region}`);
            return observed;
        },
        opts: { transformations: [recorder] },
    });
    const settled = () => HARDENING.every((type) => ofProgram(registered, name).some((r) => r.type === type));
    for (let i = 0; i < 300 && !settled(); i++) await new Promise((r) => setTimeout(r, 10));
    return outputs;
}

test("a new stack: the bucket is looked at, found absent, and created (no import)", async () => {
    const looked: string[] = [];
    await run("fresh", { kind: "absent" }, looked);
    assert.deepEqual(looked, [`${BUCKET}@${ACCOUNT}/${REGION}`], "the deterministic name, in the campaign's account and region");
    const bucket = ofProgram(declared, "fresh").find((d) => d.type === "aws:s3/bucket:Bucket")!;
    assert.equal(bucket.opts.import, undefined);
    assert.equal(bucket.opts.retainOnDelete, true);
});

test("a kept bucket of this campaign is adopted: declared with import, same inputs, hardening declared as before", async () => {
    const outputs = await run("kept", { kind: "present", tags: campaignTags({ campaign: "dev", stack: "test" }, "store"), region: REGION });
    const decls = ofProgram(declared, "kept");
    const buckets = decls.filter((d) => d.type === "aws:s3/bucket:Bucket");
    assert.equal(buckets.length, 1, "one bucket");
    assert.equal(buckets[0]!.opts.import, BUCKET, "imported by its name (the bucket's id)");
    assert.equal(buckets[0]!.opts.retainOnDelete, true, "still kept on destroy");
    const inputs = ofProgram(registered, "kept").find((r) => r.type === "aws:s3/bucket:Bucket")!.inputs;
    // The inputs a created bucket gets, so the import finds no difference.
    assert.deepEqual(inputs, { bucket: BUCKET, forceDestroy: false, tags: campaignTags({ campaign: "dev", stack: "test" }, "store") });
    for (const type of HARDENING) {
        const setting = decls.find((d) => d.type === type);
        assert.ok(setting, `${type} is declared on the adopted bucket`);
        assert.equal(setting.opts.import, undefined, `${type}: a PUT of the same values, no import`);
        assert.equal(ofProgram(registered, "kept").find((r) => r.type === type)!.inputs.bucket, BUCKET);
    }
    assert.equal(outputs.bucket, BUCKET, "the same bucket: prepared data, finished runs and checkpoints are read from it as before");
});

test("a bucket with the name that is not ours stops the program before anything is declared", async () => {
    await assert.rejects(run("foreign", { kind: "present", tags: { campaign: "other", stack: "test", role: "store" }, region: REGION }), (err: Error) => {
        assert.match(err.message, new RegExp(`the campaign's bucket ${BUCKET} already exists in account ${ACCOUNT} but is not this campaign's: its tags say campaign="other"`));
        assert.match(err.message, /set storage\.existingBucket/);
        return true;
    });
    await assert.rejects(run("forbidden", { kind: "forbidden" }), /is not owned by account 123456789012, or these credentials may not read it/);
    assert.equal(ofProgram(declared, "foreign").length + ofProgram(declared, "forbidden").length, 0, "nothing declared");
});

test("storage.existingBucket is never looked at for adoption (it has its own check) and never declared", async () => {
    pulumi.runtime.setAllConfig({ "campaign:preset": "dev", "campaign:experiment": JSON.stringify({ storage: { existingBucket: "team-bucket" } }) });
    const looked: string[] = [];
    await program({
        name: "given",
        renderUserData: renderNodeUserData,
        stateReader: () => new StaticCampaignState(),
        bucketObserver: async (bucket) => (looked.push(bucket), { kind: "absent" }),
        opts: { transformations: [recorder] },
    });
    assert.deepEqual(looked, []);
    assert.equal(ofProgram(declared, "given").filter((d) => d.type === "aws:s3/bucket:Bucket").length, 0);
});

test("aws:assumeRoles reaches the bucket look and the state reader, and the gate's environment as CAMPAIGN_ASSUME_ROLES", async () => {
    const roles = [{ roleArn: `arn:aws:iam::${ACCOUNT}:role/ml-campaigns`, sessionName: "campaign", externalId: "x-1", duration: "1h" }];
    pulumi.runtime.setAllConfig({ "campaign:preset": "dev", "aws:profile": "ml-team", "aws:assumeRoles": JSON.stringify(roles) });
    const seen: unknown[] = [];
    await program({
        name: "roles",
        renderUserData: renderNodeUserData,
        stateReader: (_bucket, _campaign, _region, profile, assumeRoles) => (seen.push(["state", profile, assumeRoles]), new StaticCampaignState()),
        bucketObserver: async (_bucket, _account, _region, profile, assumeRoles) => (seen.push(["bucket", profile, assumeRoles]), { kind: "absent" }),
        opts: { transformations: [recorder] },
    });
    assert.deepEqual(seen, [
        ["bucket", "ml-team", roles],
        ["state", "ml-team", roles],
    ]);
    for (let i = 0; i < 300 && !registered.some((r) => r.name === "roles-gate"); i++) await new Promise((r) => setTimeout(r, 10));
    const gate = registered.find((r) => r.name === "roles-gate")!;
    assert.equal(gate.inputs.environment.AWS_PROFILE, "ml-team");
    assert.deepEqual(JSON.parse(gate.inputs.environment.CAMPAIGN_ASSUME_ROLES), roles, "the gate assumes the same roles");
});
