// JobNode: one EC2 instance that runs one container job to completion and then terminates itself.
// The runner in its user data shuts the machine down when the job ends (success, failure, watchdog,
// interruption); instanceInitiatedShutdownBehavior=terminate turns that shutdown into the end of billing.
//
// Safety defaults: IMDSv2 required, no inbound rules (SSM Session Manager for access), encrypted gp3
// volumes, an IAM role that reaches only the campaign's bucket prefixes (and the runner object), its own
// SSM parameters (and the key that decrypts them, through SSM only) and Session Manager.
import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { LAUNCH_TAG, launchTagValue, parseLaunchRecord, type FleetCandidate, type LaunchRequest } from "../plan/fleetLaunch";

export type NodeRole = "prep" | "train";

/**
 * The node runner as uploaded by the Campaign (once per campaign) for the fetch variant of the user data:
 * its key (userData.runnerObject) and the upload, which every node's instance waits for.
 */
export interface RunnerUpload {
    readonly key: string;
    readonly upload: pulumi.Resource;
}
export type Market = "spot" | "on-demand";

/** A capacity reservation (cr-...) to launch into; a Capacity Block for ML also needs the capacity-block market type. */
export interface CapacityReservation {
    readonly capacityReservationId: string;
    readonly capacityBlock: boolean;
}

export interface JobNodeArgs {
    /** prep (CPU) or train (GPU): GPU nodes may publish GPU metrics to CloudWatch. */
    readonly role: NodeRole;
    /** EC2 instance type, e.g. g5.2xlarge. */
    readonly instanceType: string;
    /** Public SSM parameter holding the AMI id (a Deep Learning Base GPU AMI for train, a Docker AMI for prep). */
    readonly amiParameter: pulumi.Input<string>;
    /** The rendered cloud-init user data (components/node/userData.ts); never holds a secret. */
    readonly userData: pulumi.Input<string>;
    /** Size of the encrypted gp3 root volume, GB. */
    readonly rootVolumeGb: number;
    /** spot: a one-time spot request that terminates on interruption. Default: on-demand. */
    readonly market?: Market;
    /** arn:aws:s3:::<bucket> of the campaign. */
    readonly bucketArn: string;
    /** Prefixes (ending in '/') the node may read, write and delete under. */
    readonly s3ReadWritePrefixes: readonly string[];
    /** Prefixes (ending in '/') the node may only read. Default: none. */
    readonly s3ReadPrefixes?: readonly string[];
    /** s3://bucket/folder/ URIs in any bucket the node may list and read (a model given as s3://...). Default: none. */
    readonly s3ReadUris?: readonly string[];
    /** Single objects of the campaign's bucket the node may read, by exact key (the campaign-wide control object,
     *  layout.ts campaignControlKey). Default: none. */
    readonly s3ReadKeys?: readonly string[];
    /** The node runner uploaded to the campaign's bucket: the node may read exactly that key, and boots after the upload. */
    readonly runner: RunnerUpload;
    /** SSM parameters the node may read (its secrets). Default: none. */
    readonly parameterArns?: pulumi.Input<string>[];
    /** ECR repositories the node may pull from. Default: none (a public or pre-pulled image). */
    readonly ecrRepositoryArns?: pulumi.Input<string>[];
    /** Allow cloudwatch:PutMetricData in the CWAgent namespace (the GPU-idle alarm's metric). Default: role is train. */
    readonly publishMetrics?: boolean;
    /** The VPC of the node's security group. */
    readonly vpcId: pulumi.Input<string>;
    /** Subnet to launch in. Default: a default subnet of availabilityZone (or any AZ). */
    readonly subnetId?: pulumi.Input<string>;
    /** Availability zone, used when no subnet is given. */
    readonly availabilityZone?: pulumi.Input<string>;
    /** An EBS volume to attach at /dev/sdf (the ArtifactStore's dataset volume). Default: none. */
    readonly dataVolumeId?: pulumi.Input<string>;
    /** Launch into this capacity reservation or Capacity Block (on demand only). Default: none. */
    readonly capacityReservation?: CapacityReservation;
    /** Tags for the instance, its volumes, role, profile and security group. */
    readonly tags: Readonly<Record<string, string>>;
    /** Launch over several zones or types (capacity fallback) through the launch step instead of one instance. Default: none. */
    readonly fallback?: FleetLaunchArgs;
}

/** A node that may launch in any of several places, first that has capacity (plan/fleetLaunch.ts, scripts/launch-node.ts). */
export interface FleetLaunchArgs {
    /** Instance type and subnet, in order of preference; the first is instanceType in the first zone. */
    readonly candidates: pulumi.Input<FleetCandidate[]>;
    /** A new value is a new launch (the run's ended attempts): the node is replaced, the old instance terminated first. */
    readonly launchKey: string;
    readonly region: string;
    /** What the failure message suggests beside trying again. */
    readonly alternatives: readonly string[];
    /** The local step's environment (region, profile, aws:assumeRoles): Campaign's localCommandEnv. */
    readonly commandEnv: Readonly<Record<string, string>>;
}

// ---------------------------------------------------------------- IAM, pure

export interface NodePolicyInputs {
    readonly bucketArn: string;
    readonly readWritePrefixes: readonly string[];
    readonly readPrefixes: readonly string[];
    /** s3://bucket/folder/ URIs, in any bucket, that the node may list and read. Default: none. */
    readonly readUris?: readonly string[];
    /** The runner object's key (exact, no wildcard): s3:GetObject on it alone. Default: none. */
    readonly runnerKey?: string;
    /** Other single objects (exact keys) the node may read and list: the campaign-wide control object. Default: none. */
    readonly readKeys?: readonly string[];
    readonly parameterArns: readonly string[];
    readonly ecrRepositoryArns: readonly string[];
    readonly publishMetrics: boolean;
}

export interface Statement {
    Sid: string;
    Effect: "Allow";
    Action: string[];
    Resource: string | string[];
    Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
    Version: "2012-10-17";
    Statement: Statement[];
}

function checkPrefix(prefix: string): string {
    if (prefix === "" || prefix === "/" || !prefix.endsWith("/") || prefix.includes("*")) {
        throw new Error(`an S3 prefix for a node's IAM policy must be a non-empty folder ending in '/' without wildcards, got "${prefix}"`);
    }
    return prefix;
}

/** An s3://bucket/folder/ URI as the bucket's ARN and the folder prefix; a URI without a trailing '/' names a folder too. */
export function folderUri(uri: string): { bucketArn: string; prefix: string } {
    const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(uri);
    if (!m) throw new Error(`a folder the node reads must be an s3://bucket/folder/ URI, got "${uri}"`);
    const prefix = checkPrefix(m[2]!.endsWith("/") ? m[2]! : `${m[2]}/`);
    return { bucketArn: `arn:aws:s3:::${m[1]}`, prefix };
}

function checkObjectKey(key: string): string {
    if (key === "" || key.startsWith("/") || key.endsWith("/") || key.includes("*") || key.includes("?")) {
        throw new Error(`an S3 object key for a node's IAM policy must name one object, without wildcards, got "${key}"`);
    }
    return key;
}

/**
 * The KMS side of reading SecureString parameters: kms:Decrypt on the account's keys in the parameters'
 * region, only when SSM asks on the node's behalf (kms:ViaService) and only for these parameters (SSM
 * puts the parameter's ARN in the encryption context). The parameters use the AWS-managed aws/ssm key,
 * whose id is not known before the first SecureString of the region exists, hence key/* under those
 * conditions rather than one key ARN.
 */
export function ssmDecryptStatement(parameterArns: readonly string[]): Statement {
    const scopes = new Set<string>();
    const via = new Set<string>();
    for (const arn of parameterArns) {
        const m = /^arn:(aws[a-z-]*):ssm:([a-z0-9-]+):(\d{12}):parameter\/.+$/.exec(arn);
        if (!m) throw new Error(`not an SSM parameter ARN: ${arn}`);
        const [, partition, region, account] = m;
        scopes.add(`arn:${partition}:kms:${region}:${account}:key/*`);
        via.add(`ssm.${region}.amazonaws.com${partition === "aws-cn" ? ".cn" : ""}`);
    }
    return {
        Sid: "DecryptOwnSecretsViaSsm",
        Effect: "Allow",
        Action: ["kms:Decrypt"],
        Resource: [...scopes],
        Condition: { StringEquals: { "kms:ViaService": [...via], "kms:EncryptionContext:PARAMETER_ARN": [...parameterArns] } },
    };
}

/**
 * The node's inline policy. S3 actions name only the campaign's bucket, the given prefixes and the
 * runner object; kms:Decrypt works only through SSM for the node's own parameters; the only "*"
 * resources are actions AWS cannot scope (ecr:GetAuthorizationToken, Session Manager's channels,
 * cloudwatch:PutMetricData, limited by namespace).
 */
export function nodePolicyDocument(p: NodePolicyInputs): PolicyDocument {
    if (!/^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(p.bucketArn)) throw new Error(`not a bucket ARN: ${p.bucketArn}`);
    const rw = p.readWritePrefixes.map(checkPrefix);
    const ro = p.readPrefixes.map(checkPrefix);
    const readKeys = (p.readKeys ?? []).map(checkObjectKey);
    if (rw.length === 0) throw new Error("a job node needs at least one prefix it may write (its status and logs)");
    const statements: Statement[] = [
        {
            Sid: "ListCampaignPrefixes",
            Effect: "Allow",
            Action: ["s3:ListBucket"],
            Resource: p.bucketArn,
            // The exact keys too: without s3:ListBucket on a key, S3 answers a GET of a missing object 403, not 404.
            Condition: { StringLike: { "s3:prefix": [...[...rw, ...ro].flatMap((prefix) => [prefix, `${prefix}*`]), ...readKeys] } },
        },
        {
            Sid: "ReadWriteCampaignObjects",
            Effect: "Allow",
            Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            Resource: rw.map((prefix) => `${p.bucketArn}/${prefix}*`),
        },
    ];
    if (ro.length > 0) {
        statements.push({ Sid: "ReadCampaignObjects", Effect: "Allow", Action: ["s3:GetObject"], Resource: ro.map((prefix) => `${p.bucketArn}/${prefix}*`) });
    }
    (p.readUris ?? []).forEach((uri, i) => {
        const { bucketArn, prefix } = folderUri(uri);
        statements.push(
            { Sid: `ListGivenFolder${i}`, Effect: "Allow", Action: ["s3:ListBucket"], Resource: bucketArn, Condition: { StringLike: { "s3:prefix": [prefix, `${prefix}*`] } } },
            { Sid: `ReadGivenFolder${i}`, Effect: "Allow", Action: ["s3:GetObject"], Resource: [`${bucketArn}/${prefix}*`] },
        );
    });
    if (p.runnerKey !== undefined) {
        // The fetch variant of the user data downloads the runner at boot (components/node/userData.ts).
        statements.push({ Sid: "FetchRunner", Effect: "Allow", Action: ["s3:GetObject"], Resource: [`${p.bucketArn}/${checkObjectKey(p.runnerKey)}`] });
    }
    if (readKeys.length > 0) {
        // The campaign-wide control object (a graceful stop for every node): read only, the exact key.
        statements.push({ Sid: "ReadCampaignControl", Effect: "Allow", Action: ["s3:GetObject"], Resource: readKeys.map((key) => `${p.bucketArn}/${key}`) });
    }
    if (p.parameterArns.length > 0) {
        statements.push({ Sid: "ReadOwnSecrets", Effect: "Allow", Action: ["ssm:GetParameter", "ssm:GetParameters"], Resource: [...p.parameterArns] });
        statements.push(ssmDecryptStatement(p.parameterArns));
    }
    if (p.ecrRepositoryArns.length > 0) {
        statements.push(
            { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
            {
                Sid: "PullCampaignImages",
                Effect: "Allow",
                Action: ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                Resource: [...p.ecrRepositoryArns],
            },
        );
    }
    if (p.publishMetrics) {
        statements.push({
            Sid: "PublishAgentMetrics",
            Effect: "Allow",
            Action: ["cloudwatch:PutMetricData"],
            Resource: "*",
            Condition: { StringEquals: { "cloudwatch:namespace": "CWAgent" } },
        });
    }
    // Session Manager without AmazonSSMManagedInstanceCore: that managed policy also grants
    // ssm:GetParameter(s) on every parameter of the account, which would reach other stacks' secrets.
    // https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html
    statements.push({
        Sid: "SessionManager",
        Effect: "Allow",
        Action: [
            "ssm:UpdateInstanceInformation",
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
            "ec2messages:AcknowledgeMessage",
            "ec2messages:DeleteMessage",
            "ec2messages:FailMessage",
            "ec2messages:GetEndpoint",
            "ec2messages:GetMessages",
            "ec2messages:SendReply",
        ],
        Resource: "*",
    });
    return { Version: "2012-10-17", Statement: statements };
}

export const EC2_ASSUME_ROLE_POLICY = JSON.stringify({
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
});

/**
 * The instance's market and reservation: a Capacity Block launches with the capacity-block market type and targets
 * its id; an On-Demand Capacity Reservation only targets its id; spot cannot use either (the config refuses it).
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-blocks-launch.html
 */
export function capacityOptions(market: Market, reservation: CapacityReservation | undefined): Pick<aws.ec2.InstanceArgs, "instanceMarketOptions" | "capacityReservationSpecification"> {
    if (!reservation) return { instanceMarketOptions: marketOptions(market) };
    if (market === "spot") throw new Error(`capacity reservation ${reservation.capacityReservationId}: a reservation runs on-demand instances, not spot (set compute.market: on-demand)`);
    return {
        instanceMarketOptions: reservation.capacityBlock ? { marketType: "capacity-block" } : undefined,
        capacityReservationSpecification: { capacityReservationTarget: { capacityReservationId: reservation.capacityReservationId } },
    };
}

/** Spot as a one-time request that terminates on interruption; undefined (on-demand) otherwise. */
export function marketOptions(market: Market): aws.types.input.ec2.InstanceInstanceMarketOptions | undefined {
    switch (market) {
        case "spot":
            // A one-time spot instance cannot be stopped, only terminated, which is what the runner wants.
            // https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-requests.html
            return { marketType: "spot", spotOptions: { spotInstanceType: "one-time", instanceInterruptionBehavior: "terminate" } };
        case "on-demand":
            return undefined;
        default: {
            const never: never = market;
            throw new Error(`unknown market ${String(never)}`);
        }
    }
}

// ---------------------------------------------------------------- the component

export class JobNode extends pulumi.ComponentResource {
    /** The node's instance; absent when it launches through the fallback step (then `launch` is the node). */
    public readonly instance?: aws.ec2.Instance;
    /** The fallback launch: a launch template and the step that launches from it over the candidates. */
    public readonly launchTemplate?: aws.ec2.LaunchTemplate;
    public readonly launch?: command.local.Command;
    /** The resource whose life is the node's: the instance, or the launch step. */
    public readonly launched: pulumi.CustomResource;
    public readonly instanceId: pulumi.Output<string>;
    public readonly role: aws.iam.Role;
    public readonly securityGroup: aws.ec2.SecurityGroup;

    /**
     * @param opts dependsOn here is passed to the instance (or the launch step) itself: it is not requested before it.
     */
    constructor(name: string, args: JobNodeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:JobNode", name, {}, opts);
        const tags = { ...args.tags };

        this.role = new aws.iam.Role(`${name}-role`, { assumeRolePolicy: EC2_ASSUME_ROLE_POLICY, description: `campaign ${args.role} node ${name}`, tags }, { parent: this });
        const policy = new aws.iam.RolePolicy(
            `${name}-policy`,
            {
                role: this.role.id,
                policy: pulumi
                    .all([pulumi.all(args.parameterArns ?? []), pulumi.all(args.ecrRepositoryArns ?? [])])
                    .apply(([parameterArns, ecrRepositoryArns]) =>
                        JSON.stringify(
                            nodePolicyDocument({
                                bucketArn: args.bucketArn,
                                readWritePrefixes: args.s3ReadWritePrefixes,
                                readPrefixes: args.s3ReadPrefixes ?? [],
                                readUris: args.s3ReadUris ?? [],
                                runnerKey: args.runner.key,
                                readKeys: args.s3ReadKeys ?? [],
                                parameterArns,
                                ecrRepositoryArns,
                                publishMetrics: args.publishMetrics ?? args.role === "train",
                            }),
                        ),
                    ),
            },
            { parent: this },
        );
        const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: this.role.name, tags }, { parent: this });

        this.securityGroup = new aws.ec2.SecurityGroup(
            `${name}-sg`,
            {
                vpcId: args.vpcId,
                description: "campaign job node: no inbound (SSM Session Manager for access), all outbound",
                ingress: [],
                egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"], ipv6CidrBlocks: ["::/0"], description: "S3, ECR, SSM, model hubs" }],
                tags,
            },
            { parent: this },
        );

        const ami = aws.ssm.getParameterOutput({ name: args.amiParameter }, { parent: this }).insecureValue;
        // The role's policy and the runner object must exist before the node boots and fetches the runner.
        const dependsOn = mergeDependsOn(opts?.dependsOn, [policy, args.runner.upload]);

        if (args.fallback) {
            if (args.capacityReservation) throw new pulumi.ResourceError("a capacity reservation holds one type in one zone: it cannot be combined with a fallback launch", this);
            const fallback = args.fallback;
            // The same guarantees as the single instance below, as a launch template: EC2 Fleet launches from it.
            // No market options in it: the fleet request sets the market (spot one-time, terminate on interruption).
            const rootDevice = aws.ec2.getAmiOutput({ filters: [{ name: "image-id", values: [ami] }] }, { parent: this }).rootDeviceName;
            const launchTags = { ...tags, [LAUNCH_TAG]: launchTagValue(name, fallback.launchKey) };
            this.launchTemplate = new aws.ec2.LaunchTemplate(
                `${name}-template`,
                {
                    description: `campaign ${args.role} node ${name}`,
                    imageId: ami,
                    iamInstanceProfile: { name: profile.name },
                    vpcSecurityGroupIds: [this.securityGroup.id],
                    userData: pulumi.output(args.userData).apply((text) => Buffer.from(text, "utf8").toString("base64")),
                    instanceInitiatedShutdownBehavior: "terminate",
                    metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 2, instanceMetadataTags: "disabled" },
                    blockDeviceMappings: [{ deviceName: rootDevice, ebs: { volumeType: "gp3", volumeSize: args.rootVolumeGb, encrypted: "true", deleteOnTermination: "true" } }],
                    tagSpecifications: [
                        { resourceType: "instance", tags: launchTags },
                        { resourceType: "volume", tags: launchTags },
                    ],
                    tags,
                },
                { parent: this },
            );
            const request: pulumi.Output<LaunchRequest> = pulumi
                .all([this.launchTemplate.id, this.launchTemplate.latestVersion, fallback.candidates])
                .apply(([launchTemplateId, version, candidates]) => ({
                    node: name,
                    launchKey: fallback.launchKey,
                    region: fallback.region,
                    launchTemplateId,
                    launchTemplateVersion: String(version),
                    market: args.market ?? "on-demand",
                    candidates,
                    alternatives: [...fallback.alternatives],
                }));
            const step = "npx tsx scripts/launch-node.ts";
            this.launch = new command.local.Command(
                `${name}-launch`,
                {
                    create: `${step} create`,
                    // A living node never changes: its record is printed back, the new settings wait for its next launch.
                    update: `${step} update`,
                    delete: `${step} delete`,
                    environment: request.apply((r) => ({ ...fallback.commandEnv, CAMPAIGN_LAUNCH: JSON.stringify(r) })),
                    // A new launch key (the run's last node ended) or another first choice (type, market) is a new node.
                    triggers: [fallback.launchKey, args.instanceType, args.market ?? "on-demand"],
                },
                // The old node is terminated before its replacement launches (two would train into one S3 prefix).
                { parent: this, dependsOn, deleteBeforeReplace: true },
            );
            this.launched = this.launch;
            this.instanceId = this.launch.stdout.apply(parseLaunchRecordForOutput);
        } else {
            this.instance = new aws.ec2.Instance(
                `${name}-instance`,
                {
                    ami,
                    instanceType: args.instanceType,
                    iamInstanceProfile: profile.name,
                    vpcSecurityGroupIds: [this.securityGroup.id],
                    subnetId: args.subnetId,
                    availabilityZone: args.subnetId === undefined ? args.availabilityZone : undefined,
                    userData: args.userData,
                    // A node never changes while it lives: a changed user data would only apply at the next boot, so
                    // it is ignored below instead (a node that ended is created afresh, with the new user data).
                    userDataReplaceOnChange: false,
                    instanceInitiatedShutdownBehavior: "terminate",
                    // IMDSv2 only; hop limit 2 so the job's container can reach it through the docker bridge.
                    metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 2, instanceMetadataTags: "disabled" },
                    rootBlockDevice: { volumeType: "gp3", volumeSize: args.rootVolumeGb, encrypted: true, deleteOnTermination: true, tags },
                    ...capacityOptions(args.market ?? "on-demand", args.capacityReservation),
                    tags,
                },
                {
                    parent: this,
                    dependsOn,
                    // The AMI is resolved when the node is created and kept for its life: the SSM parameter moves with
                    // every AMI release, and a diff on it (or on the user data) would replace a node that is training.
                    // https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/
                    ignoreChanges: ["ami", "userData"],
                    // When a node must be replaced (another instance type, subnet), the old one goes first: two nodes
                    // would train the same run into the same S3 prefix, and on p4d need twice the vCPU quota.
                    // https://www.pulumi.com/docs/iac/concepts/options/deletebeforereplace/
                    deleteBeforeReplace: true,
                },
            );
            this.launched = this.instance;
            this.instanceId = this.instance.id;
        }

        if (args.dataVolumeId !== undefined) {
            new aws.ec2.VolumeAttachment(`${name}-data`, { deviceName: "/dev/sdf", volumeId: args.dataVolumeId, instanceId: this.instanceId }, { parent: this });
        }

        this.registerOutputs({ instanceId: this.instanceId, roleArn: this.role.arn, securityGroupId: this.securityGroup.id });
    }
}

/** The instance id in the launch step's record; an unreadable record is an error, not an empty id. */
function parseLaunchRecordForOutput(stdout: string): string {
    const parsed = parseLaunchRecord(stdout);
    if ("problem" in parsed) throw new Error(`the launch step's record: ${parsed.problem}`);
    return parsed.record.instanceId;
}

/** The caller's dependsOn (one resource or a list) plus ours, as one list. */
export function mergeDependsOn(given: pulumi.ResourceOptions["dependsOn"], extra: pulumi.Resource[]): pulumi.Resource[] {
    if (given === undefined) return extra;
    if (pulumi.Resource.isInstance(given)) return [given, ...extra];
    if (Array.isArray(given) && given.every((r) => pulumi.Resource.isInstance(r))) return [...(given as pulumi.Resource[]), ...extra];
    throw new Error("dependsOn must be a resource or a list of resources, not an output");
}
