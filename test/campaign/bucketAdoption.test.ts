// The campaign's own bucket looked at before anything is declared: the reads against the local S3 emulator (a
// missing bucket, one with the campaign's tags, one with other tags or none, one in another region) and an
// injected 403 for another account's bucket (the emulator does not enforce ExpectedBucketOwner), then the decision.
//
//   node --import tsx --test --test-concurrency=1 test/campaign/bucketAdoption.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CreateBucketCommand, PutBucketTaggingCommand, type S3Client } from "@aws-sdk/client-s3";
import { bucketAdoption, observeCampaignBucket } from "../../components/campaign/bucketAdoption";
import { campaignBucketName, campaignTags } from "../../components/campaign/naming";
import { startMoto, type Moto } from "../../scripts/local/moto";
import { s3Client } from "../helpers/aws";

const ACCOUNT = "123456789012"; // the emulator's account
const REGION = "us-east-1";
const TAGS = campaignTags({ campaign: "dev", stack: "prod" }, "store");
let moto: Moto;
let s3: S3Client;

before(async () => {
    moto = await startMoto();
    s3 = s3Client(moto.endpoint);
});
after(async () => {
    await moto?.stop();
});

async function bucket(name: string, tags?: Record<string, string>, region?: string): Promise<string> {
    await s3.send(new CreateBucketCommand({ Bucket: name, ...(region ? { CreateBucketConfiguration: { LocationConstraint: region as never } } : {}) }));
    if (tags) await s3.send(new PutBucketTaggingCommand({ Bucket: name, Tagging: { TagSet: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) } }));
    return name;
}

test("no bucket yet (HeadBucket 404): the campaign creates it", async () => {
    const name = campaignBucketName("dev", "fresh", ACCOUNT);
    const observed = await observeCampaignBucket(s3, name, ACCOUNT);
    assert.deepEqual(observed, { kind: "absent" });
    assert.deepEqual(bucketAdoption(name, observed, TAGS, ACCOUNT, REGION), { action: "create" });
});

test("a kept bucket of this account with the campaign's tags is adopted", async () => {
    const name = await bucket(campaignBucketName("dev", "prod", ACCOUNT), TAGS);
    const observed = await observeCampaignBucket(s3, name, ACCOUNT);
    assert.deepEqual(observed, { kind: "present", tags: TAGS, region: REGION });
    assert.deepEqual(bucketAdoption(name, observed, TAGS, ACCOUNT, REGION), { action: "adopt", bucket: name });
});

test("a bucket with that name and another campaign's tags, or none, stops pulumi up naming the fix", async () => {
    const other = await bucket("dev-prod-other-tags", { ...TAGS, campaign: "someone-else" });
    const decision = bucketAdoption(other, await observeCampaignBucket(s3, other, ACCOUNT), TAGS, ACCOUNT, REGION);
    assert.equal(decision.action, "refuse");
    assert.match(decision.action === "refuse" ? decision.message : "", /dev-prod-other-tags already exists in account 123456789012 but is not this campaign's: its tags say campaign="someone-else", this campaign's bucket has campaign="dev"/);
    assert.match(decision.action === "refuse" ? decision.message : "", /storage\.existingBucket/);

    const untagged = await bucket("dev-prod-untagged");
    const observed = await observeCampaignBucket(s3, untagged, ACCOUNT);
    assert.deepEqual(observed, { kind: "present", tags: {}, region: REGION }, "NoSuchTagSet reads as no tags");
    const refused = bucketAdoption(untagged, observed, TAGS, ACCOUNT, REGION);
    assert.equal(refused.action, "refuse");
    assert.match(refused.action === "refuse" ? refused.message : "", /campaign=\(none\), stack=\(none\), role=\(none\)/);
});

test("the campaign's bucket in another region stops pulumi up; adopting it would move nothing", async () => {
    const name = await bucket("dev-prod-in-eu", TAGS, "eu-west-1");
    const observed = await observeCampaignBucket(s3, name, ACCOUNT);
    assert.equal(observed.kind === "present" && observed.region, "eu-west-1");
    const decision = bucketAdoption(name, observed, TAGS, ACCOUNT, REGION);
    assert.equal(decision.action, "refuse");
    assert.match(decision.action === "refuse" ? decision.message : "", /lives in eu-west-1, and the campaign runs in us-east-1/);
});

test("another account's bucket (HeadBucket with ExpectedBucketOwner answers 403) stops pulumi up", async () => {
    const sent: unknown[] = [];
    const forbidden = Object.assign(new Error("Forbidden"), { name: "Forbidden", $metadata: { httpStatusCode: 403 } });
    const client = { send: async (command: { input: unknown }) => (sent.push(command.input), Promise.reject(forbidden)) } as unknown as S3Client;
    const observed = await observeCampaignBucket(client, "dev-prod-123456789012", ACCOUNT);
    assert.deepEqual(sent, [{ Bucket: "dev-prod-123456789012", ExpectedBucketOwner: ACCOUNT }], "the owner condition is sent");
    assert.deepEqual(observed, { kind: "forbidden" });
    const decision = bucketAdoption("dev-prod-123456789012", observed, TAGS, ACCOUNT, REGION);
    assert.equal(decision.action, "refuse");
    assert.match(decision.action === "refuse" ? decision.message : "", /exists but is not owned by account 123456789012, or these credentials may not read it \(HeadBucket answered 403\).*storage\.existingBucket/);
});

test("any other answer is an error naming the bucket, never read as 'absent'", async () => {
    const throttled = Object.assign(new Error("Slow Down"), { name: "SlowDown", $metadata: { httpStatusCode: 503 } });
    const client = { send: async () => Promise.reject(throttled) } as unknown as S3Client;
    await assert.rejects(observeCampaignBucket(client, "dev-prod-x", ACCOUNT), /checking the campaign's bucket dev-prod-x \(HeadBucket\): SlowDown \(HTTP 503\): Slow Down/);
});
