// ArtifactStore: where a campaign keeps everything that outlives a node (S3 layout in components/campaign/layout.ts).
// A new bucket is hardened (SSE, public access blocked, TLS only, lifecycle rules) and kept on
// `pulumi destroy` unless the config says otherwise; a kept bucket is adopted by a later `pulumi up`; an existing
// bucket is used as given, under the campaign's prefixes, and nothing about it is changed.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { S3_STANDARD_USD_PER_GB_MONTH } from "../plan/catalog";
import { runKeys } from "../campaign/layout";

/** Days after which an incomplete multipart upload is aborted (its parts bill until then). */
export const ABORT_MULTIPART_DAYS = 7;

export interface ArtifactStoreArgs {
    /** The bucket's name: deterministic for a new bucket (see naming.campaignBucketName), or the existing bucket's. */
    readonly bucketName: string;
    /** Use this existing bucket: no bucket resources are created or changed. Default: false (a new bucket). */
    readonly existing?: boolean;
    /**
     * The campaign's own bucket already exists (kept by an earlier `pulumi destroy`) and is ours
     * (campaign/bucketAdoption.ts decided): it is declared with Pulumi's `import` option instead of created.
     * Default: false.
     */
    readonly adopt?: boolean;
    /** Keep the bucket and its contents on `pulumi destroy`. Default: true. */
    readonly keepOnDestroy?: boolean;
    /** The campaign: lifecycle rules are written for its runs' checkpoint prefixes. */
    readonly campaign: string;
    /** Every run of the campaign (declared or finished): their intermediate checkpoints expire. */
    readonly runNames: readonly string[];
    /** Days after which intermediate checkpoints expire; final outputs never do. Default: 30. */
    readonly checkpointExpiryDays?: number;
    /** Size of an encrypted gp3 dataset volume; none when absent. */
    readonly dataVolumeGb?: number;
    /** The nodes' availability zone; required with dataVolumeGb. */
    readonly availabilityZone?: pulumi.Input<string>;
    /** Tags for every taggable child. */
    readonly tags: Readonly<Record<string, string>>;
}

/** One lifecycle rule per run's checkpoints/ plus one that aborts incomplete multipart uploads bucket-wide. */
export function lifecycleRules(campaign: string, runNames: readonly string[], checkpointExpiryDays: number): aws.types.input.s3.BucketLifecycleConfigurationRule[] {
    if (!Number.isInteger(checkpointExpiryDays) || checkpointExpiryDays < 1) throw new Error(`checkpointExpiryDays must be a positive integer, got ${checkpointExpiryDays}`);
    return [
        {
            id: "abort-incomplete-multipart-uploads",
            status: "Enabled",
            filter: { prefix: "" },
            abortIncompleteMultipartUpload: { daysAfterInitiation: ABORT_MULTIPART_DAYS },
        },
        ...runNames.map((run) => ({
            id: `expire-checkpoints-${campaign}-${run}`.slice(0, 255),
            status: "Enabled",
            filter: { prefix: runKeys(campaign, run).checkpoints },
            expiration: { days: checkpointExpiryDays },
        })),
    ];
}

/** A bucket policy that refuses every request not made over TLS. */
export function denyInsecureTransportPolicy(bucketArn: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "DenyInsecureTransport",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:*",
                Resource: [bucketArn, `${bucketArn}/*`],
                Condition: { Bool: { "aws:SecureTransport": "false" } },
            },
        ],
    });
}

export interface KeptStorage {
    /** What survives `pulumi destroy`, in words. */
    readonly kept: string;
    /** Its monthly cost for the given size, USD. */
    readonly monthlyUsd: number;
}

/** What `pulumi destroy` keeps and what it costs per month, for an estimated size of the artifacts. */
export function keptStorage(bucketName: string, keepOnDestroy: boolean, existing: boolean, estimatedGb: number): KeptStorage {
    const monthlyUsd = Math.round(Math.max(0, estimatedGb) * S3_STANDARD_USD_PER_GB_MONTH * 100) / 100;
    if (existing) {
        return { kept: `s3://${bucketName} (an existing bucket, never deleted by this stack; the campaign's objects stay)`, monthlyUsd };
    }
    if (!keepOnDestroy) return { kept: "nothing: the bucket and its objects are deleted", monthlyUsd: 0 };
    return { kept: `s3://${bucketName} and every object in it (datasets, models, checkpoints, outputs, logs)`, monthlyUsd };
}

/**
 * The campaign's S3 bucket (or an existing one) and an optional EBS dataset volume.
 */
export class ArtifactStore extends pulumi.ComponentResource {
    /** The bucket's name, known before it exists. */
    public readonly bucketName: string;
    /** arn:aws:s3:::<bucket>; IAM policies are built from it. */
    public readonly bucketArn: string;
    /** The new bucket; undefined for an existing bucket. */
    public readonly bucket?: aws.s3.Bucket;
    /** Resolves once the bucket and its settings exist (or at once for an existing bucket). */
    public readonly ready: pulumi.Output<string>;
    /** The gp3 dataset volume, when asked for. */
    public readonly dataVolume?: aws.ebs.Volume;

    constructor(name: string, args: ArtifactStoreArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:ArtifactStore", name, {}, opts);
        const keep = args.keepOnDestroy ?? true;
        this.bucketName = args.bucketName;
        this.bucketArn = `arn:aws:s3:::${args.bucketName}`;

        if (args.existing) {
            this.ready = pulumi.output(args.bucketName);
        } else {
            // Kept on destroy: the bucket and every setting that protects it, so a kept bucket stays hardened.
            const childOpts: pulumi.CustomResourceOptions = { parent: this, retainOnDelete: keep };
            // Adopted: the same inputs the bucket was created with, so the import finds no difference. A stack whose
            // state already holds this bucket id treats the option as a normal declaration (no second import).
            const bucket = new aws.s3.Bucket(
                `${name}-bucket`,
                { bucket: args.bucketName, forceDestroy: !keep, tags: { ...args.tags } },
                args.adopt ? { ...childOpts, import: args.bucketName } : childOpts,
            );
            // The settings below are S3 PUTs (PutBucketOwnershipControls, PutPublicAccessBlock, PutBucketEncryption,
            // PutBucketPolicy, PutBucketLifecycleConfiguration): creating one on an adopted bucket overwrites what the
            // kept bucket has with the same values, so they need no import (docs/aws.md, "A kept bucket").
            const ownership = new aws.s3.BucketOwnershipControls(`${name}-ownership`, { bucket: bucket.id, rule: { objectOwnership: "BucketOwnerEnforced" } }, childOpts);
            const publicAccess = new aws.s3.BucketPublicAccessBlock(
                `${name}-public-access`,
                { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
                childOpts,
            );
            const encryption = new aws.s3.BucketServerSideEncryptionConfiguration(
                `${name}-encryption`,
                { bucket: bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" }, bucketKeyEnabled: true }] },
                childOpts,
            );
            const policy = new aws.s3.BucketPolicy(
                `${name}-tls-only`,
                { bucket: bucket.id, policy: bucket.arn.apply(denyInsecureTransportPolicy) },
                { ...childOpts, dependsOn: [publicAccess] },
            );
            const lifecycle = new aws.s3.BucketLifecycleConfiguration(
                `${name}-lifecycle`,
                { bucket: bucket.id, rules: lifecycleRules(args.campaign, args.runNames, args.checkpointExpiryDays ?? 30) },
                childOpts,
            );
            this.bucket = bucket;
            this.ready = pulumi
                .all([bucket.id, ownership.id, publicAccess.id, encryption.id, policy.id, lifecycle.id])
                .apply(([id]) => id);
        }

        if (args.dataVolumeGb !== undefined) {
            if (args.availabilityZone === undefined) {
                throw new pulumi.ResourceError("a dataset volume needs the nodes' availability zone (compute.availabilityZone)", this);
            }
            // Data is in S3; the volume only saves re-staging, so it goes with the stack.
            this.dataVolume = new aws.ebs.Volume(
                `${name}-data`,
                { availabilityZone: args.availabilityZone, size: args.dataVolumeGb, type: "gp3", encrypted: true, tags: { ...args.tags } },
                { parent: this },
            );
        }

        this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn, ready: this.ready, dataVolume: this.dataVolume });
    }
}
