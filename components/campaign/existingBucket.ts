// storage.existingBucket, checked when `pulumi up` starts, before anything is declared: a bucket in another
// account, one this identity cannot reach, or one encrypted with a customer-managed KMS key cannot work,
// because the node roles get S3 permissions on it and nothing else. Each problem says what to change.
import { GetBucketEncryptionCommand, GetBucketLocationCommand, HeadBucketCommand, type S3Client } from "@aws-sdk/client-s3";

export interface BucketProblem {
    readonly severity: "error" | "warning";
    readonly message: string;
}

interface AwsError {
    name?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
}

/**
 * The problems of using `bucket` for a campaign of account `accountId` in `region`; empty when it works.
 * HeadBucket with ExpectedBucketOwner answers 403 for a bucket of another account, or one this identity may not read.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html
 */
export async function checkExistingBucket(client: S3Client, bucket: string, accountId: string, region: string): Promise<BucketProblem[]> {
    const at = `storage.existingBucket (${bucket})`;
    try {
        await client.send(new HeadBucketCommand({ Bucket: bucket, ExpectedBucketOwner: accountId }));
    } catch (err) {
        const e = err as AwsError;
        const status = e.$metadata?.httpStatusCode;
        if (status === 404 || e.name === "NotFound" || e.name === "NoSuchBucket") {
            return [{ severity: "error", message: `${at} does not exist: create it first, or remove storage.existingBucket to let the campaign create its own` }];
        }
        if (status === 403 || e.name === "Forbidden" || e.name === "AccessDenied") {
            return [
                {
                    severity: "error",
                    message:
                        `${at} is not owned by account ${accountId}, or these credentials may not read it: the campaign grants its nodes access ` +
                        `only within its own account; use a bucket of account ${accountId} (or remove storage.existingBucket)`,
                },
            ];
        }
        throw new Error(`${at}: checking the bucket failed: ${e.name ?? "error"}${status ? ` (HTTP ${status})` : ""}: ${e.message ?? String(err)}`);
    }

    const problems: BucketProblem[] = [];
    const location = await client.send(new GetBucketLocationCommand({ Bucket: bucket, ExpectedBucketOwner: accountId }));
    // GetBucketLocation answers no constraint (empty) for us-east-1. https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketLocation.html
    const bucketRegion = location.LocationConstraint || "us-east-1";
    if (bucketRegion !== region) {
        problems.push({
            severity: "warning",
            message: `${at} is in ${bucketRegion}, the campaign runs in ${region}: every dataset and checkpoint crosses regions (slower, and billed per GB); a bucket in ${region} avoids it`,
        });
    }

    let rules: Array<{ ApplyServerSideEncryptionByDefault?: { SSEAlgorithm?: string; KMSMasterKeyID?: string } }> = [];
    try {
        const enc = await client.send(new GetBucketEncryptionCommand({ Bucket: bucket, ExpectedBucketOwner: accountId }));
        rules = enc.ServerSideEncryptionConfiguration?.Rules ?? [];
    } catch (err) {
        // Buckets created before 2023 may have no default encryption configuration at all; S3 now encrypts with SSE-S3.
        if ((err as AwsError).name !== "ServerSideEncryptionConfigurationNotFoundError") throw err;
    }
    for (const rule of rules) {
        const sse = rule.ApplyServerSideEncryptionByDefault;
        if (!sse?.SSEAlgorithm?.startsWith("aws:kms")) continue;
        const key = sse.KMSMasterKeyID;
        // The AWS-managed aws/s3 key lets any principal of the account use it through S3; a customer-managed key
        // needs kms:Decrypt / kms:GenerateDataKey for every node role, which the campaign does not grant.
        if (key === undefined || key === "" || /(^|:)alias\/aws\/s3$/.test(key)) continue;
        problems.push({
            severity: "error",
            message:
                `${at} encrypts new objects with the customer-managed KMS key ${key}: the campaign's node roles may not use it, so every ` +
                `upload and download would fail with AccessDenied. Use a bucket with SSE-S3 (AES256) or the aws/s3 key, or remove storage.existingBucket`,
        });
    }
    return problems;
}
