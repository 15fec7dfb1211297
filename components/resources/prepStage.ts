// PrepStage: the CPU work before any GPU exists. The prep job's spec goes to runs/<campaign>/prep/spec.json,
// a local data file to inputs/<sha256>/<file>, and the job runs on a CPU JobNode (prep.runOn: ec2) or on
// this machine through scripts/local-prep.sh (prep.runOn: local). Either way the node runner writes
// datasets/<prep-hash>/... and _SUCCESS, which the gate waits for.
import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { PrepSpec } from "../campaign/jobSpec";
import { campaignControlKey, datasetPrefix, inputKey, modelPrefix, PREP_RUN, runKeys, s3Uri } from "../campaign/layout";
import { shellQuote } from "../campaign/shell";
import { JobNode, type RunnerUpload } from "./jobNode";
import { runnerEnv, type RunnerSettings } from "../node/runnerSettings";
import type { UserDataRenderer } from "../node/userData";


/** Where the prep job's raw data comes from. */
export type DataInput =
    | { readonly kind: "local"; readonly file: string; readonly key: string }
    /** An s3:// source; `key` is where a copy goes when it is in another bucket (inputs/<sha256 of the URI>/<name>). */
    | { readonly kind: "s3"; readonly uri: string; readonly key: string }
    | { readonly kind: "hub" };

/** Classifies data.source; a local file is keyed by its content (read now, so a missing file fails early). */
export function dataInput(source: string, root: string = process.cwd()): DataInput {
    if (source.startsWith("s3://")) {
        const name = source.replace(/\/+$/, "").split("/").pop() ?? "input";
        const key = inputKey(createHash("sha256").update(source).digest("hex"), name) + (source.endsWith("/") ? "/" : "");
        return { kind: "s3", uri: source, key };
    }
    if (source.startsWith("hf://")) return { kind: "hub" };
    const file = path.resolve(root, source);
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new Error(`data.source: no file ${source} (looked at ${file})`);
    const sha = createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    return { kind: "local", file, key: inputKey(sha, path.basename(file)) };
}

/** The prefix part of an s3:// URI in the campaign's bucket that a node must read ("a/b/file" -> "a/b/"); undefined for other buckets. */
export function readPrefixIn(bucket: string, uri: string): string | undefined {
    const m = /^s3:\/\/([^/]+)\/(.*)$/.exec(uri);
    if (!m || m[1] !== bucket) return undefined;
    const key = m[2];
    const dir = key.endsWith("/") ? key : key.slice(0, key.lastIndexOf("/") + 1);
    return dir === "" ? undefined : dir;
}

/** Whether an s3:// source lies in the campaign's bucket (read in place) or elsewhere (copied in first). */
export function inCampaignBucket(bucket: string, uri: string): boolean {
    return uri.startsWith(`s3://${bucket}/`);
}

/** Where the prep job's runner finds its input: always in the campaign's bucket. */
export function inputUriOf(bucket: string, input: DataInput): string | undefined {
    switch (input.kind) {
        case "local":
            return s3Uri(bucket, input.key);
        case "s3":
            return inCampaignBucket(bucket, input.uri) ? input.uri : s3Uri(bucket, input.key);
        case "hub":
            return undefined;
        default: {
            const never: never = input;
            throw new Error(`unknown data input ${JSON.stringify(never)}`);
        }
    }
}

export interface PrepSettingsInput {
    readonly bucket: string;
    readonly region: string;
    readonly prepSpec: PrepSpec;
    readonly input: DataInput;
    readonly maxHours: number;
    readonly image?: string;
    readonly secretParameters: Readonly<Record<string, string>>;
}

/** What the prep job's runner is told. */
export function prepRunnerSettings(p: PrepSettingsInput): RunnerSettings {
    const keys = runKeys(p.prepSpec.campaign, PREP_RUN);
    const inputUri = inputUriOf(p.bucket, p.input);
    return {
        role: "prep",
        campaign: p.prepSpec.campaign,
        run: PREP_RUN,
        region: p.region,
        specUri: s3Uri(p.bucket, keys.spec),
        statusUri: s3Uri(p.bucket, keys.status),
        logsUri: s3Uri(p.bucket, keys.logs),
        outputUri: s3Uri(p.bucket, datasetPrefix(p.prepSpec.prepHash)),
        runControlUri: s3Uri(p.bucket, keys.control),
        campaignControlUri: s3Uri(p.bucket, campaignControlKey(p.prepSpec.campaign)),
        ...(inputUri ? { inputUri } : {}),
        ...(p.prepSpec.stageModels.length > 0 ? { modelOutputUri: s3Uri(p.bucket, "models/") } : {}),
        jobMode: "docker",
        ...(p.image ? { image: p.image } : {}),
        maxRuntimeSeconds: Math.round(p.maxHours * 3600),
        gpuIdleMinutes: 0,
        gpuIdleThreshold: 0,
        keepCheckpoints: 0,
        secretParameters: { ...p.secretParameters },
    };
}

/**
 * S3 prefixes of the prep node: it writes its own run folder, the dataset and each staged model's own folder
 * models/<id>/<revision>/ (never all of models/: the runner syncs one model at a time, so its listings stay inside
 * those folders); it reads its input.
 */
export function prepPrefixes(bucket: string, prepSpec: PrepSpec, input: DataInput): { readWrite: string[]; read: string[] } {
    const readWrite = [runKeys(prepSpec.campaign, PREP_RUN).prefix, datasetPrefix(prepSpec.prepHash)];
    for (const m of prepSpec.stageModels) {
        // A local path is not a hub id: prep stages nothing for it (containers/common/jobspec.py, is_hub_id).
        if (m.id.startsWith(".") || m.id.startsWith("/")) continue;
        const prefix = modelPrefix(m.id, m.revision);
        if (!readWrite.includes(prefix)) readWrite.push(prefix);
    }
    const read: string[] = [];
    const uri = inputUriOf(bucket, input);
    const prefix = uri ? readPrefixIn(bucket, uri) : undefined;
    if (prefix) read.push(prefix);
    return { readWrite, read };
}

export interface PrepStageArgs {
    /** The prep job's spec (campaignSpec.resolveCampaign). */
    readonly prepSpec: PrepSpec;
    /** ec2: a CPU JobNode; local: this machine, through scripts/local-prep.sh. */
    readonly runOn: "ec2" | "local";
    /** The campaign's bucket (known before it exists) and its ARN. */
    readonly bucketName: string;
    readonly bucketArn: string;
    /** Resolves when the bucket is ready; the spec and input are written after it. */
    readonly storeReady: pulumi.Input<string>;
    /** Keep the spec and input objects on destroy. Default: true. */
    readonly keepObjects?: boolean;
    readonly region: string;
    /** AWS_PROFILE for the local commands (the input copy, local prep), as the stack's aws:profile says. Default: none. */
    readonly awsProfile?: string;
    /** data.source of the experiment. */
    readonly input: DataInput;
    /** prep.maxHours: the runner stops the job at this cap. */
    readonly maxHours: number;
    /** SSM parameter names by environment variable (the secrets; never the values). */
    readonly secretParameters: Readonly<Record<string, string>>;
    /** Renders the node's user data (ec2 only). */
    readonly renderUserData: UserDataRenderer;
    /** ec2 only: the prep image, instance type, root volume, AMI parameter and the node's network and IAM inputs. */
    readonly node?: {
        readonly image: pulumi.Input<string>;
        readonly instanceType: string;
        readonly rootVolumeGb: number;
        readonly amiParameter: string;
        readonly vpcId: pulumi.Input<string>;
        readonly subnetId?: string;
        readonly availabilityZone?: pulumi.Input<string>;
        readonly parameterArns: pulumi.Input<string>[];
        readonly ecrRepositoryArns: pulumi.Input<string>[];
        /** The node runner in the campaign's bucket (uploaded once by the Campaign); the node fetches it at boot. */
        readonly runner: RunnerUpload;
    };
    /** Tags for every taggable child. */
    readonly tags: Readonly<Record<string, string>>;
}

export class PrepStage extends pulumi.ComponentResource {
    /** What the gate depends on: the prep node's instance or the local command. */
    public readonly job: pulumi.Resource;
    /** The prep node, for prep.runOn ec2. */
    public readonly node?: JobNode;
    /** The runner's settings (image left out for ec2, where it is an output). */
    public readonly settings: RunnerSettings;
    public readonly specKey: string;

    constructor(name: string, args: PrepStageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:PrepStage", name, {}, opts);
        const keep = args.keepObjects ?? true;
        const keys = runKeys(args.prepSpec.campaign, PREP_RUN);
        this.specKey = keys.spec;

        // Objects outlive the stage: a finished prep's spec stays beside its dataset.
        const objectOpts: pulumi.CustomResourceOptions = { parent: this, retainOnDelete: keep };
        const spec = new aws.s3.BucketObjectv2(
            `${name}-spec`,
            {
                bucket: pulumi.output(args.storeReady).apply(() => args.bucketName),
                key: keys.spec,
                content: JSON.stringify(args.prepSpec, null, 2),
                contentType: "application/json",
                tags: { ...args.tags },
            },
            objectOpts,
        );
        const uploads: pulumi.Resource[] = [spec];
        if (args.input.kind === "local") {
            uploads.push(
                new aws.s3.BucketObjectv2(
                    `${name}-input`,
                    {
                        bucket: pulumi.output(args.storeReady).apply(() => args.bucketName),
                        key: args.input.key,
                        source: new pulumi.asset.FileAsset(args.input.file),
                        tags: { ...args.tags },
                    },
                    objectOpts,
                ),
            );
        }

        const profileEnv: Record<string, string> = args.awsProfile ? { AWS_PROFILE: args.awsProfile } : {};
        if (args.input.kind === "s3" && !inCampaignBucket(args.bucketName, args.input.uri)) {
            // Data in another bucket is copied in with the operator's credentials, so no node's role
            // ever names a bucket other than the campaign's.
            uploads.push(
                new command.local.Command(
                    `${name}-input-copy`,
                    {
                        create: inputCopyCommand(args.input.uri, s3Uri(args.bucketName, args.input.key)),
                        environment: { AWS_REGION: args.region, AWS_DEFAULT_REGION: args.region, ...profileEnv },
                        triggers: [args.input.uri, args.bucketName],
                    },
                    { parent: this, dependsOn: [spec] },
                ),
            );
        }

        const base = prepRunnerSettings({
            bucket: args.bucketName,
            region: args.region,
            prepSpec: args.prepSpec,
            input: args.input,
            maxHours: args.maxHours,
            secretParameters: args.secretParameters,
        });
        this.settings = base;

        switch (args.runOn) {
            case "local": {
                const env = { ...runnerEnv({ ...base, jobMode: "process" }), ...profileEnv };
                this.job = new command.local.Command(
                    `${name}-local`,
                    {
                        create: "bash scripts/local-prep.sh",
                        environment: env,
                        // A new spec (new data, new prep settings) is a new prepared dataset.
                        triggers: [args.prepSpec.prepHash],
                    },
                    { parent: this, dependsOn: uploads },
                );
                break;
            }
            case "ec2": {
                const node = args.node;
                if (!node) throw new pulumi.ResourceError("prep.runOn ec2 needs the node settings (image, instance type, network)", this);
                const prefixes = prepPrefixes(args.bucketName, args.prepSpec, args.input);
                const userData = pulumi.output(node.image).apply((image) => args.renderUserData({ ...base, image }, { gpu: false }));
                this.node = new JobNode(
                    `${name}-node`,
                    {
                        role: "prep",
                        instanceType: node.instanceType,
                        amiParameter: node.amiParameter,
                        userData,
                        rootVolumeGb: node.rootVolumeGb,
                        // Prep is short and cheap; on-demand so it is not interrupted while GPUs wait for it.
                        market: "on-demand",
                        bucketArn: args.bucketArn,
                        s3ReadWritePrefixes: prefixes.readWrite,
                        s3ReadPrefixes: prefixes.read,
                        s3ReadKeys: [campaignControlKey(args.prepSpec.campaign)],
                        parameterArns: node.parameterArns,
                        ecrRepositoryArns: node.ecrRepositoryArns,
                        publishMetrics: false,
                        vpcId: node.vpcId,
                        subnetId: node.subnetId,
                        availabilityZone: node.availabilityZone,
                        runner: node.runner,
                        tags: args.tags,
                    },
                    { parent: this, dependsOn: uploads },
                );
                this.job = this.node.launched;
                break;
            }
            default: {
                const never: never = args.runOn;
                throw new pulumi.ResourceError(`unknown prep.runOn ${String(never)}`, this);
            }
        }
        this.registerOutputs({ specKey: this.specKey, instanceId: this.node?.instanceId });
    }
}

/** The server-side copy of an s3:// data source in another bucket into the campaign's inputs/. */
export function inputCopyCommand(from: string, to: string): string {
    const recursive = from.endsWith("/") ? " --recursive" : "";
    return `aws s3 cp${recursive} ${shellQuote(from)} ${shellQuote(to)} --only-show-errors`;
}
