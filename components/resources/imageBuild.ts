// ImageBuild: one job image built in the campaign's region (images.buildOn: region), so the operator's machine
// needs no Docker and never moves the ~10 GB NVIDIA base: the build context (only the files the Dockerfile
// copies, components/campaign/imageTag.ts) goes to the campaign's bucket, a CodeBuild project in privileged
// mode builds and pushes <repository>:<content tag>, and a local step (scripts/image-build.ts) starts it only
// when ECR lacks that tag. Its log goes to the campaign's bucket (runs/<campaign>/image/logs/), not to a
// CloudWatch log group. Nodes pull the image by the digest ECR reports once it exists (digestAfter).
import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { BUILDSPEC, type BuildVariables, type ImageSource } from "../campaign/imageTag";
import { imageContextKey, imageBuildPrefix, imageLogsPrefix, s3Uri } from "../campaign/layout";
import { shellQuote } from "../campaign/shell";
import { IMAGE_BUILD_COMPUTE_TYPE, IMAGE_BUILD_IMAGE, IMAGE_BUILD_MINUTES } from "../plan/imageBuild";
import type { PolicyDocument, Statement } from "./jobNode";

// ---------------------------------------------------------------- IAM, pure

export interface BuildPolicyInputs {
    /** arn:aws:s3:::<bucket> of the campaign. */
    readonly bucketArn: string;
    /** The folder holding this build's context (runs/<campaign>/image/<tag>/): read only. */
    readonly contextPrefix: string;
    /** The folder the build's S3 log goes to (runs/<campaign>/image/logs/): write only. */
    readonly logsPrefix: string;
    /** The campaign's ECR repository: the only one it may push to. */
    readonly repositoryArn: string;
}

function folder(prefix: string, what: string): string {
    if (prefix === "" || prefix === "/" || !prefix.endsWith("/") || prefix.includes("*")) throw new Error(`the build's ${what} must be a non-empty folder ending in '/' without wildcards, got "${prefix}"`);
    return prefix;
}

/**
 * The build role's inline policy: read its context, write its log, push to the campaign's repository. No
 * list, no delete, no other prefix, bucket or repository; the only "*" is ecr:GetAuthorizationToken, which AWS
 * cannot scope. s3:GetBucketAcl/GetBucketLocation on the bucket itself are what CodeBuild reads before it
 * writes S3 logs (its documented service-role policy grants them).
 * https://docs.aws.amazon.com/codebuild/latest/userguide/setting-up-service-role.html
 * https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html
 */
export function buildPolicyDocument(p: BuildPolicyInputs): PolicyDocument {
    if (!/^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(p.bucketArn)) throw new Error(`not a bucket ARN: ${p.bucketArn}`);
    if (!/^arn:aws[a-z-]*:ecr:[a-z0-9-]+:\d{12}:repository\/[a-z0-9._/-]+$/.test(p.repositoryArn)) throw new Error(`not an ECR repository ARN: ${p.repositoryArn}`);
    const statements: Statement[] = [
        { Sid: "ReadBuildContext", Effect: "Allow", Action: ["s3:GetObject"], Resource: [`${p.bucketArn}/${folder(p.contextPrefix, "context prefix")}*`] },
        { Sid: "WriteBuildLog", Effect: "Allow", Action: ["s3:PutObject"], Resource: [`${p.bucketArn}/${folder(p.logsPrefix, "logs prefix")}*`] },
        { Sid: "BuildLogBucket", Effect: "Allow", Action: ["s3:GetBucketAcl", "s3:GetBucketLocation"], Resource: p.bucketArn },
        { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
        {
            Sid: "PushCampaignImage",
            Effect: "Allow",
            Action: ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            Resource: [p.repositoryArn],
        },
    ];
    return { Version: "2012-10-17", Statement: statements };
}

/** CodeBuild may assume the role only for builds of this account (the confused-deputy condition). */
export function codebuildAssumeRolePolicy(accountId: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [{ Effect: "Allow", Principal: { Service: "codebuild.amazonaws.com" }, Action: "sts:AssumeRole", Condition: { StringEquals: { "aws:SourceAccount": accountId } } }],
    });
}

/** A CodeBuild project name (letters, digits, '-', '_'; at most 255) for a job of a repository. */
export function buildProjectName(repositoryName: string, job: string): string {
    return `${repositoryName}-${job}`.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 255);
}

// ---------------------------------------------------------------- the component

export interface ImageBuildArgs {
    /** What the image is built from: its tag and files (imageSource). */
    readonly source: ImageSource;
    /** The gzipped tar of the source's files (contextArchive). */
    readonly context: Buffer;
    readonly campaign: string;
    readonly bucketName: string;
    readonly bucketArn: string;
    /** Resolves once the bucket exists. */
    readonly storeReady: pulumi.Output<string>;
    readonly repository: aws.ecr.Repository;
    readonly repositoryName: string;
    readonly accountId: string;
    /** The environment of the local step (region, profile). */
    readonly commandEnv: Record<string, string>;
    /** Wait for the build in the step itself (the prep image, which its node needs before it boots). */
    readonly wait: boolean;
    readonly tags: Readonly<Record<string, string>>;
}

export class ImageBuild extends pulumi.ComponentResource {
    public readonly tag: string;
    public readonly project: aws.codebuild.Project;
    public readonly role: aws.iam.Role;
    public readonly context: aws.s3.BucketObjectv2;
    /** The local step that starts the build (or finds the tag in ECR); its stdout names the build. */
    public readonly start: command.local.Command;
    private readonly repository: aws.ecr.Repository;

    constructor(name: string, args: ImageBuildArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:ImageBuild", name, {}, opts);
        const { source } = args;
        this.tag = source.tag;
        this.repository = args.repository;
        const tags = { ...args.tags };
        const contextKey = imageContextKey(args.campaign, source.tag);
        const logsPrefix = imageLogsPrefix(args.campaign);

        // Content-addressed like the tag: an unchanged image keeps its context object.
        this.context = new aws.s3.BucketObjectv2(
            `${name}-context`,
            {
                bucket: args.storeReady.apply(() => args.bucketName),
                key: contextKey,
                contentBase64: args.context.toString("base64"),
                contentType: "application/gzip",
                serverSideEncryption: "AES256",
                tags,
            },
            { parent: this },
        );
        this.role = new aws.iam.Role(`${name}-role`, { assumeRolePolicy: codebuildAssumeRolePolicy(args.accountId), description: `campaign image build ${name}`, tags }, { parent: this });
        const policy = new aws.iam.RolePolicy(
            `${name}-policy`,
            {
                role: this.role.id,
                policy: args.repository.arn.apply((repositoryArn) =>
                    JSON.stringify(buildPolicyDocument({ bucketArn: args.bucketArn, contextPrefix: imageBuildPrefix(args.campaign, source.tag), logsPrefix, repositoryArn })),
                ),
            },
            { parent: this },
        );
        const variables = args.repository.repositoryUrl.apply(
            (url): BuildVariables => ({ REPOSITORY_URI: url, IMAGE_TAG: source.tag, CONTEXT_URI: s3Uri(args.bucketName, contextKey), DOCKERFILE: source.dockerfile }),
        );
        const projectName = buildProjectName(args.repositoryName, source.job);
        const minutes = IMAGE_BUILD_MINUTES[source.job];
        this.project = new aws.codebuild.Project(
            `${name}-project`,
            {
                name: projectName,
                description: `builds ${args.repositoryName}:${source.job}-<content hash> from its context in s3://${args.bucketName}`,
                serviceRole: this.role.arn,
                // No source: the buildspec fetches the context itself (from an exact key the role may read).
                source: { type: "NO_SOURCE", buildspec: BUILDSPEC },
                artifacts: { type: "NO_ARTIFACTS" },
                environment: {
                    type: "LINUX_CONTAINER",
                    image: IMAGE_BUILD_IMAGE,
                    computeType: IMAGE_BUILD_COMPUTE_TYPE,
                    // Privileged: the build runs its own Docker daemon to build an image.
                    // https://docs.aws.amazon.com/codebuild/latest/userguide/sample-docker.html
                    privilegedMode: true,
                    environmentVariables: variables.apply((v) => Object.entries(v).map(([key, value]) => ({ name: key, value, type: "PLAINTEXT" }))),
                },
                buildTimeout: minutes.timeout,
                queuedTimeout: 60,
                // The log goes to the campaign's bucket, where every other log is; no CloudWatch log group. Not
                // encrypted by CodeBuild's KMS key, so whoever reads the bucket can read it; the bucket's default
                // SSE-S3 encryption still applies.
                logsConfig: {
                    cloudwatchLogs: { status: "DISABLED" },
                    s3Logs: { status: "ENABLED", location: `${args.bucketName}/${logsPrefix.replace(/\/$/, "")}`, encryptionDisabled: true },
                },
                tags,
            },
            { parent: this, dependsOn: [policy] },
        );
        const step = [
            "npx tsx scripts/image-build.ts",
            `--project ${shellQuote(projectName)}`,
            `--repository ${shellQuote(args.repositoryName)}`,
            `--tag ${shellQuote(source.tag)}`,
            ...(args.wait ? ["--wait", `--max-seconds ${minutes.timeout * 60 + 3600}`] : []),
        ].join(" ");
        this.start = new command.local.Command(
            `${name}-start`,
            { create: step, environment: args.commandEnv, triggers: [source.tag, projectName] },
            { parent: this, dependsOn: [this.project, this.context, policy] },
        );
        this.registerOutputs({ tag: this.tag, project: this.project.name, start: this.start.stdout });
    }

    /** repository@sha256:... of the built image, read from ECR once `after` has resolved (the gate, or the waiting step). */
    public digestAfter(after: pulumi.Output<unknown>): pulumi.Output<string> {
        const image = aws.ecr.getImageOutput({ repositoryName: this.repository.name, imageTag: after.apply(() => this.tag) }, { parent: this });
        return pulumi.interpolate`${this.repository.repositoryUrl}@${image.imageDigest}`;
    }
}
