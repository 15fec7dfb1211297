// The campaign's own bucket (no storage.existingBucket), looked at when `pulumi up` starts, before anything is
// declared: a bucket kept by an earlier `pulumi destroy` (storage.keepOnDestroy) still carries the deterministic
// name, so a new `up` must adopt it rather than create it again. CreateBucket on a bucket one already owns fails
// with BucketAlreadyOwnedByYou in every region but us-east-1, where it answers 200 and resets the bucket's ACLs
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html, error BucketAlreadyOwnedByYou).
//
//   absent                                  -> create it
//   present, this account, the campaign's tags -> adopt it (the bucket is declared with Pulumi's `import` option)
//   present and not ours (another account, or other tags) -> stop, naming the settings that fix it
import { GetBucketTaggingCommand, HeadBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import type { AwsError } from "./awsErrors";

/** What S3 says about the bucket name, read by observeCampaignBucket. */
export type ObservedBucket =
    | { readonly kind: "absent" }
    /** HeadBucket with ExpectedBucketOwner answered 403: another account owns it, or these credentials may not read it. */
    | { readonly kind: "forbidden" }
    /** HeadBucket in the campaign's region answered 301: the bucket lives in `region`. */
    | { readonly kind: "elsewhere"; readonly region?: string }
    /** It exists in this account; its tags (empty when it has none) and its region. */
    | { readonly kind: "present"; readonly tags: Readonly<Record<string, string>>; readonly region?: string };

export type BucketAdoption =
    | { readonly action: "create" }
    | { readonly action: "adopt"; readonly bucket: string }
    | { readonly action: "refuse"; readonly message: string };

/** The tags that mark a bucket as this campaign's (naming.campaignTags(ctx, "store") sets them on the bucket). */
export const OWNERSHIP_TAGS = ["campaign", "stack", "role"] as const;

/**
 * Whether to create, adopt or refuse the campaign's deterministic bucket, from what S3 said about it.
 * `expectedTags` are the tags the campaign gives its bucket; the ownership tags (campaign, stack, role) must match.
 */
export function bucketAdoption(bucket: string, observed: ObservedBucket, expectedTags: Readonly<Record<string, string>>, accountId: string, region: string): BucketAdoption {
    const fixText =
        "set storage.existingBucket to use a bucket of this account as it is (nothing about it is changed), " +
        "or rename the campaign (name) or the stack, which gives the campaign's bucket another name";
    switch (observed.kind) {
        case "absent":
            return { action: "create" };
        case "forbidden":
            return {
                action: "refuse",
                message:
                    `the campaign's bucket ${bucket} exists but is not owned by account ${accountId}, or these credentials may not read it ` +
                    `(HeadBucket answered 403): the campaign will not write into it. To go on, ${fixText}.`,
            };
        case "elsewhere":
            return {
                action: "refuse",
                message:
                    `the campaign's bucket ${bucket} exists in another region (${observed.region ?? "S3 did not say which"}), and the campaign runs in ${region}: ` +
                    `S3 bucket names are global, so the campaign cannot create its own there. To go on, ${fixText}.`,
            };
        case "present": {
            const differing = OWNERSHIP_TAGS.filter((key) => observed.tags[key] !== expectedTags[key]);
            if (differing.length > 0) {
                const seen = differing.map((key) => `${key}=${observed.tags[key] === undefined ? "(none)" : JSON.stringify(observed.tags[key])}`).join(", ");
                const want = differing.map((key) => `${key}=${JSON.stringify(expectedTags[key])}`).join(", ");
                return {
                    action: "refuse",
                    message:
                        `the campaign's bucket ${bucket} already exists in account ${accountId} but is not this campaign's: its tags say ${seen}, ` +
                        `this campaign's bucket has ${want}. It was not adopted, so nothing in it is changed. To go on, ${fixText}.`,
                };
            }
            if (observed.region !== undefined && observed.region !== region) {
                return {
                    action: "refuse",
                    message:
                        `the campaign's bucket ${bucket} is this campaign's but lives in ${observed.region}, and the campaign runs in ${region}: ` +
                        `set the campaign's region back to ${observed.region}, or set storage.existingBucket to ${bucket} to use it across regions (slower, billed per GB).`,
                };
            }
            return { action: "adopt", bucket };
        }
    }
}

function statusOf(err: unknown): number | undefined {
    return (err as AwsError)?.$metadata?.httpStatusCode;
}

/**
 * What S3 says about `bucket` for account `accountId`: HeadBucket with ExpectedBucketOwner (403 for a bucket of
 * another account, https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html), then
 * GetBucketTagging (NoSuchTagSet when it has no tags, https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketTagging.html).
 * Any other error is thrown with the bucket named: read as "absent", it would make `pulumi up` create a bucket that exists.
 */
export async function observeCampaignBucket(client: S3Client, bucket: string, accountId: string): Promise<ObservedBucket> {
    let region: string | undefined;
    try {
        const head = await client.send(new HeadBucketCommand({ Bucket: bucket, ExpectedBucketOwner: accountId }));
        region = head.BucketRegion;
    } catch (err) {
        const e = err as AwsError;
        const status = statusOf(err);
        if (status === 404 || e.name === "NotFound" || e.name === "NoSuchBucket") return { kind: "absent" };
        if (status === 403 || e.name === "Forbidden" || e.name === "AccessDenied") return { kind: "forbidden" };
        if (status === 301 || e.name === "PermanentRedirect") {
            // S3 names the bucket's region in x-amz-bucket-region on the redirect (HeadBucket, "Response Syntax").
            const headers = (err as { $response?: { headers?: Record<string, string> } }).$response?.headers ?? {};
            const elsewhere = headers["x-amz-bucket-region"];
            return { kind: "elsewhere", ...(elsewhere ? { region: elsewhere } : {}) };
        }
        throw new Error(`checking the campaign's bucket ${bucket} (HeadBucket): ${e.name ?? "error"}${status ? ` (HTTP ${status})` : ""}: ${e.message ?? String(err)}`);
    }
    try {
        const tagging = await client.send(new GetBucketTaggingCommand({ Bucket: bucket, ExpectedBucketOwner: accountId }));
        const tags: Record<string, string> = {};
        for (const tag of tagging.TagSet ?? []) if (tag.Key !== undefined) tags[tag.Key] = tag.Value ?? "";
        return { kind: "present", tags, ...(region ? { region } : {}) };
    } catch (err) {
        const e = err as AwsError;
        if (e.name === "NoSuchTagSet" || e.Code === "NoSuchTagSet") return { kind: "present", tags: {}, ...(region ? { region } : {}) };
        const status = statusOf(err);
        throw new Error(`reading the tags of the campaign's bucket ${bucket} (GetBucketTagging, needs s3:GetBucketTagging): ${e.name ?? "error"}${status ? ` (HTTP ${status})` : ""}: ${e.message ?? String(err)}`);
    }
}
