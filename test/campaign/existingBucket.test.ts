// storage.existingBucket checked before anything is declared, against the local S3 emulator (encryption,
// region, a missing bucket) and injected answers for what the emulator does not enforce (another account).
//
//   node --import tsx --test --test-concurrency=1 test/campaign/existingBucket.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CreateBucketCommand, PutBucketEncryptionCommand, type S3Client } from "@aws-sdk/client-s3";
import { checkExistingBucket } from "../../components/campaign/existingBucket";
import { startMoto, type Moto } from "../../scripts/local/moto";
import { s3Client } from "../helpers/aws";

const ACCOUNT = "123456789012"; // the emulator's account
let moto: Moto;
let s3: S3Client;

before(async () => {
    moto = await startMoto();
    s3 = s3Client(moto.endpoint);
});
after(async () => {
    await moto?.stop();
});

async function bucket(name: string, options: { region?: string; kmsKey?: string } = {}): Promise<string> {
    await s3.send(new CreateBucketCommand({ Bucket: name, ...(options.region ? { CreateBucketConfiguration: { LocationConstraint: options.region as never } } : {}) }));
    if (options.kmsKey !== undefined) {
        await s3.send(
            new PutBucketEncryptionCommand({
                Bucket: name,
                ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: "aws:kms", KMSMasterKeyID: options.kmsKey } }] },
            }),
        );
    }
    return name;
}

test("a bucket of this account in the campaign's region, SSE-S3 or the aws/s3 key: no problem", async () => {
    assert.deepEqual(await checkExistingBucket(s3, await bucket("team-ok"), ACCOUNT, "us-east-1"), []);
    assert.deepEqual(await checkExistingBucket(s3, await bucket("team-aws-s3-key", { kmsKey: "alias/aws/s3" }), ACCOUNT, "us-east-1"), []);
});

test("a customer-managed KMS key is refused, naming the key and the fix", async () => {
    const key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const problems = await checkExistingBucket(s3, await bucket("team-kms", { kmsKey: key }), ACCOUNT, "us-east-1");
    assert.equal(problems.length, 1);
    assert.equal(problems[0]!.severity, "error");
    assert.match(problems[0]!.message, /^storage\.existingBucket \(team-kms\) encrypts new objects with the customer-managed KMS key arn:aws:kms/);
    assert.match(problems[0]!.message, /SSE-S3/);
});

test("a bucket in another region is a warning with the cost, not an error", async () => {
    const problems = await checkExistingBucket(s3, await bucket("team-eu", { region: "eu-west-1" }), ACCOUNT, "us-east-1");
    assert.deepEqual(problems.map((p) => p.severity), ["warning"]);
    assert.match(problems[0]!.message, /is in eu-west-1, the campaign runs in us-east-1/);
});

test("a bucket that does not exist is an error that says to create it or drop the setting", async () => {
    const problems = await checkExistingBucket(s3, "team-nonexistent", ACCOUNT, "us-east-1");
    assert.deepEqual(problems.map((p) => p.severity), ["error"]);
    assert.match(problems[0]!.message, /does not exist: create it first, or remove storage\.existingBucket/);
});

test("a bucket of another account (HeadBucket with ExpectedBucketOwner answers 403) is an error naming the account", async () => {
    const forbidden = Object.assign(new Error("Forbidden"), { name: "Forbidden", $metadata: { httpStatusCode: 403 } });
    const client = { send: async () => Promise.reject(forbidden) } as unknown as S3Client;
    const problems = await checkExistingBucket(client, "someone-elses", ACCOUNT, "us-east-1");
    assert.deepEqual(problems.map((p) => p.severity), ["error"]);
    assert.match(problems[0]!.message, /is not owned by account 123456789012, or these credentials may not read it/);
});
