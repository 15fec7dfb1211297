// Campaign: the whole experiment of a stack, composed from the components in this folder.
//
//   ArtifactStore -> Secrets, Image (logs: the runner uploads them to each job's logs/ folder in S3)
//   Image: ECR and the builds; images.buildOn region (default): the context to runs/<campaign>/image/<tag>/,
//     a CodeBuild project, and a step that starts the build unless the content tag is in ECR (the prep image's
//     step waits for its build; the trainer's build runs beside prep)
//   the node runner, uploaded once to runs/<campaign>/runner/ when any node is declared
//   PrepStage (CPU node or local command; skipped when datasets/<hash>/_SUCCESS exists)
//   gate (waits for _SUCCESS and the trainer image; fails fast on a failed prep or a failed build)
//   TrainingRun per run that has not succeeded, each GPU instance dependsOn the gate
//   Guardrails (GPU-idle alarm per GPU node, optional Budget)
//
// What is already done comes in as `state` (campaign/state.ts), read from S3 before anything is declared;
// campaign/relaunch.ts decides which runs get a node again.
import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ArtifactStore, keptStorage, type KeptStorage } from "./artifactStore";
import type { ResolvedCampaign, ResolvedRun } from "../campaign/types";
import { declarations, type CampaignState, type Declarations } from "../campaign/state";
import { Guardrails } from "./guardrails";
import { Image, type JobImage } from "./image";
import type { RunnerUpload } from "./jobNode";
import { campaignPrefix, campaignPrefixes, datasetPrefix, PREP_RUN, runKeys, s3Uri } from "../campaign/layout";
import { campaignBucketName, campaignTags, parameterPrefix, type TagContext } from "../campaign/naming";
import { buildPlan } from "../plan/plan";
import { gateCommand } from "../campaign/gate";
import { parseBuildStart } from "../campaign/imageTag";
import { IMAGE_BUILD_MINUTES } from "../plan/imageBuild";
import type { UserDataRenderer } from "../node/userData";
import { dataInput, PrepStage } from "./prepStage";
import { Secrets } from "./secrets";
import { TrainingRun } from "./trainingRun";
import { campaignRunnerObject } from "../node/userData";
import { candidateZones, launchAlternatives, launchOrder, nodeZone, reservationTarget, usesFallbackLaunch } from "../plan/capacity";
import { launchKeyOf } from "../campaign/relaunch";
import type { FleetCandidate } from "../plan/fleetLaunch";
import type { FleetLaunchArgs } from "./jobNode";
import { ASSUME_ROLES_ENV } from "../campaign/assumeRoles";


export interface CampaignArgs {
    /** The validated campaign (campaignSpec.resolveCampaign). */
    readonly campaign: ResolvedCampaign;
    /** The Pulumi stack's name (pulumi.getStack()): tags, names, commands. */
    readonly stack: string;
    /** The AWS account: the new bucket's name is derived from it. */
    readonly accountId: string;
    /** What is already done (campaignState.readCampaignState). Default: a new campaign. */
    readonly state?: CampaignState;
    /** Secrets from the stack config (campaign:hfToken, campaign:wandbKey); stored only as SSM SecureStrings. */
    readonly hfToken?: pulumi.Input<string>;
    readonly wandbKey?: pulumi.Input<string>;
    /** Renders a node's user data from its runner settings (components/node/userData.ts). */
    readonly renderUserData: UserDataRenderer;
    /** Where data.source paths are resolved. Default: the working directory (the project root under `pulumi up`). */
    readonly projectRoot?: string;
    /** The stack's AWS credentials settings (aws:profile, aws:assumeRoles): the campaign's provider and its local
     *  commands use them too, so every call of this `pulumi up` acts as the same identity. Default: none. */
    readonly credentials?: CampaignCredentials;
    /** The campaign's own bucket exists and is ours (campaign/bucketAdoption.ts): adopt it instead of creating it. Default: false. */
    readonly adoptBucket?: boolean;
}

export interface CampaignCredentials {
    readonly profile?: string;
    readonly assumeRoles?: aws.types.input.ProviderAssumeRole[];
}

/**
 * The environment of the campaign's local commands (the gate, the image step, local prep): the region, the profile if
 * one is set, and aws:assumeRoles as JSON (CAMPAIGN_ASSUME_ROLES), which the gate and the image step assume in order.
 */
export function localCommandEnv(region: string, credentials: CampaignCredentials = {}): Record<string, string> {
    return {
        AWS_REGION: region,
        AWS_DEFAULT_REGION: region,
        ...(credentials.profile ? { AWS_PROFILE: credentials.profile } : {}),
        ...(credentials.assumeRoles?.length ? { [ASSUME_ROLES_ENV]: JSON.stringify(credentials.assumeRoles) } : {}),
    };
}

export interface NodeSummary {
    /** ec2: an instance id; local: this machine; cached: nothing ran, the dataset exists; done: the run succeeded. */
    readonly where: string;
    /** The last phase the job reported in S3 before this update (pending when none). */
    readonly phase: string;
}

/** The bucket a campaign uses: the configured existing bucket, else its own deterministic one. */
export function bucketFor(campaign: ResolvedCampaign, stack: string, accountId: string): { name: string; existing: boolean } {
    const existing = campaign.experiment.storage.existingBucket;
    return existing ? { name: existing, existing: true } : { name: campaignBucketName(campaign.experiment.name, stack, accountId), existing: false };
}

/** The estimated cost from the plan (components/plan/plan.ts): what the stack output shows. */
export function estimatedCost(campaign: ResolvedCampaign) {
    const plan = buildPlan(campaign);
    return {
        estimatedUsd: round2(plan.totals.estimatedUsd),
        worstCaseUsd: round2(plan.totals.worstCaseUsd),
        estimatedHours: round2(plan.totals.estimatedHours),
        prep: { runOn: plan.prep.runOn, instanceType: plan.prep.instanceType, estimatedUsd: round2(plan.prep.estimatedUsd) },
        runs: plan.runs.map((r) => ({ run: r.run, instanceType: r.instanceType, market: r.market, usdPerHour: r.usdPerHour, estimatedHours: r.estimatedHours === null ? null : round2(r.estimatedHours), estimatedUsd: r.estimatedUsd === null ? null : round2(r.estimatedUsd), worstCaseUsd: round2(r.worstCaseUsd) })),
        storedGbAfterDestroy: round2(plan.afterDestroy.storedGb),
    };
}

function round2(n: number): number {
    return Math.round(n * 100) / 100;
}

/** The commands a person runs next, exactly. */
export function nextCommands(stack: string, bucket: string, campaign: string, runs: readonly string[]): Record<string, string | string[]> {
    return {
        watch: runs.map((run) => `aws s3 cp ${s3Uri(bucket, runKeys(campaign, run).status)} -`),
        watchPrep: `aws s3 cp ${s3Uri(bucket, runKeys(campaign, PREP_RUN).status)} -`,
        logs: `aws s3 ls --recursive ${s3Uri(bucket, campaignPrefix(campaign))} | grep /logs/`,
        outputs: `aws s3 ls --recursive ${s3Uri(bucket, campaignPrefix(campaign))} | grep /output/`,
        continueAfterInterruption: `pulumi up --refresh --stack ${stack}`,
        removeFinishedNodes: `pulumi up --stack ${stack}`,
        destroy: `pulumi destroy --stack ${stack}`,
    };
}

/** Console links to the campaign's logs: the S3 logs folders, where every node's runner uploads runner.log and job.log. */
export function logLinks(region: string, bucket: string, campaign: string, runs: readonly string[]): Record<string, string> {
    const s3 = (prefix: string) => `https://s3.console.aws.amazon.com/s3/buckets/${bucket}?region=${region}&prefix=${encodeURIComponent(prefix)}`;
    const links: Record<string, string> = { [PREP_RUN]: s3(runKeys(campaign, PREP_RUN).logs) };
    for (const run of runs) links[run] = s3(runKeys(campaign, run).logs);
    return links;
}

export class Campaign extends pulumi.ComponentResource {
    public readonly bucketName: string;
    public readonly prefixes: { readonly campaign: string; readonly dataset: string; readonly readWrite: readonly string[]; readonly read: readonly string[] };
    public readonly declared: Declarations;
    public readonly store: ArtifactStore;
    public readonly secrets: Secrets;
    public readonly image: Image;
    public readonly prep?: PrepStage;
    /** The gate every GPU node depends on; absent when no run is left to train. */
    public readonly gate?: command.local.Command;
    public readonly runs: Readonly<Record<string, TrainingRun>>;
    public readonly guardrails: Guardrails;
    /** The node runner in the bucket, once per campaign; absent when no node is declared. */
    public readonly runner?: aws.s3.BucketObjectv2;
    public readonly nodes: pulumi.Output<Record<string, NodeSummary>>;
    public readonly kept: KeptStorage;

    constructor(name: string, args: CampaignArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:Campaign", name, {}, opts);
        const resolved = args.campaign;
        const experiment = resolved.experiment;
        const state = args.state ?? { prepReady: false, runPhases: {} };
        const ctx: TagContext = { campaign: experiment.name, stack: args.stack };
        const bucket = bucketFor(resolved, args.stack, args.accountId);
        const keep = experiment.storage.keepOnDestroy;
        const declared = declarations(resolved, state);
        for (const warning of declared.warnings) pulumi.log.warn(warning, this);
        this.declared = declared;
        this.bucketName = bucket.name;
        const prepHash = resolved.prepSpec.prepHash;
        this.prefixes = { campaign: campaignPrefix(experiment.name), dataset: datasetPrefix(prepHash), ...campaignPrefixes(experiment.name) };

        // Every child in the experiment's region, whatever aws:region says.
        // An explicit provider ignores the stack's aws:* settings unless they are passed on: without this, a
        // stack that names a profile or a role would create resources as whoever the environment says.
        const provider = new aws.Provider(
            `${name}-aws`,
            { region: experiment.region as aws.Region, profile: args.credentials?.profile, assumeRoles: args.credentials?.assumeRoles },
            { parent: this },
        );
        const child: pulumi.ComponentResourceOptions = { parent: this, providers: { aws: provider } };

        // Network: the given subnet's VPC, else the default VPC.
        const subnet = experiment.compute.subnetId ? aws.ec2.getSubnetOutput({ id: experiment.compute.subnetId }, { parent: this, provider }) : undefined;
        const vpcId = subnet ? subnet.vpcId : aws.ec2.getVpcOutput({ default: true }, { parent: this, provider }).id;
        // The first of compute.availabilityZones (their order is the user's preference; campaign preflight checks them).
        const availabilityZone: pulumi.Input<string> | undefined = nodeZone(experiment.compute) ?? subnet?.availabilityZone;

        this.store = new ArtifactStore(
            `${name}-store`,
            {
                bucketName: bucket.name,
                existing: bucket.existing,
                adopt: !bucket.existing && (args.adoptBucket ?? false),
                keepOnDestroy: keep,
                campaign: experiment.name,
                runNames: resolved.runs.map((r) => r.name),
                checkpointExpiryDays: experiment.storage.checkpointExpiryDays,
                dataVolumeGb: experiment.compute.dataVolumeGb,
                availabilityZone,
                tags: campaignTags(ctx, "store"),
            },
            child,
        );

        this.secrets = new Secrets(`${name}-secrets`, { parameterPrefix: parameterPrefix(experiment.name, args.stack), hfToken: args.hfToken, wandbKey: args.wandbKey, tags: campaignTags(ctx, "secrets") }, child);

        // Images: only those this update needs; none for a given URI or a custom job's image.
        const needPrepNode = declared.prep === "run" && experiment.prep.runOn === "ec2";
        const jobs: JobImage[] = [];
        if (declared.runs.length > 0) jobs.push("trainer");
        if (needPrepNode) jobs.push("prep");
        const given: Partial<Record<JobImage, string>> = {
            ...(experiment.images.trainer ? { trainer: experiment.images.trainer } : {}),
            ...(experiment.images.prep ? { prep: experiment.images.prep } : {}),
        };
        if (experiment.customJob) given.trainer = experiment.customJob.image;
        const repositoryName = `campaign-${experiment.name}-${args.stack}`.toLowerCase().slice(0, 256);
        this.image = new Image(
            `${name}-image`,
            {
                repositoryName,
                jobs,
                given,
                tags: campaignTags(ctx, "image"),
                buildOn: experiment.images.buildOn,
                regional: { campaign: experiment.name, bucketName: bucket.name, bucketArn: this.store.bucketArn, storeReady: this.store.ready, accountId: args.accountId, commandEnv: localCommandEnv(experiment.region, args.credentials) },
            },
            child,
        );
        const trainerBuild = this.image.regionalBuilds.trainer;
        const prepBuild = this.image.regionalBuilds.prep;
        const ecrArns = this.image.repositoryArns;

        // The node runner (scripts/node-runner/run-job.sh) is too large for EC2 user data: it is uploaded once
        // per campaign, content-addressed, and every node downloads it at boot and checks its sha256
        // (userData.ts, the fetch variant). Declared with the first node, so a campaign with no node has none.
        let runner: (RunnerUpload & { readonly upload: aws.s3.BucketObjectv2 }) | undefined;
        const runnerUpload = (): RunnerUpload => {
            if (runner) return runner;
            const obj = campaignRunnerObject(bucket.name, experiment.name);
            const upload = new aws.s3.BucketObjectv2(
                `${name}-runner`,
                {
                    bucket: this.store.ready.apply(() => bucket.name),
                    key: obj.key,
                    content: obj.content,
                    contentType: "text/x-shellscript",
                    serverSideEncryption: "AES256",
                    tags: campaignTags(ctx, "runner"),
                },
                // Not an artifact: a new runner is a new key, and the old object goes with its nodes.
                { parent: this, provider },
            );
            runner = { key: obj.key, upload };
            return runner;
        };

        const nodeCommon = {
            vpcId,
            subnetId: experiment.compute.subnetId,
            availabilityZone,
            parameterArns: this.secrets.parameterArns,
            ecrRepositoryArns: ecrArns,
        };

        // Prep: on a CPU node, or here; nothing when the dataset already exists or no run is left.
        let prepJob: pulumi.Resource | undefined;
        if (declared.prep === "run") {
            let input: ReturnType<typeof dataInput>;
            try {
                input = dataInput(experiment.data.source, args.projectRoot);
            } catch (err) {
                throw new pulumi.ResourceError((err as Error).message, this);
            }
            this.prep = new PrepStage(
                `${name}-prep`,
                {
                    prepSpec: resolved.prepSpec,
                    runOn: experiment.prep.runOn,
                    bucketName: bucket.name,
                    bucketArn: this.store.bucketArn,
                    storeReady: this.store.ready,
                    keepObjects: keep,
                    region: experiment.region,
                    awsProfile: args.credentials?.profile,
                    input,
                    maxHours: experiment.prep.maxHours,
                    secretParameters: this.secrets.parameterNames,
                    renderUserData: args.renderUserData,
                    node: needPrepNode
                        ? {
                              // A regional prep image: its step waits for the build, then ECR names the digest.
                              image: this.image.uris.prep ?? prepBuild?.digestAfter(prepBuild.start.stdout) ?? pulumi.output(""),
                              instanceType: experiment.prep.instanceType,
                              rootVolumeGb: experiment.prep.rootVolumeGb,
                              amiParameter: experiment.prep.amiParameter,
                              ...nodeCommon,
                              runner: runnerUpload(),
                          }
                        : undefined,
                    tags: campaignTags(ctx, "prep", PREP_RUN),
                },
                child,
            );
            prepJob = this.prep.job;
        }

        // The gate: no GPU is requested before the prepared data is complete.
        const runs: Record<string, TrainingRun> = {};
        if (declared.runs.length > 0) {
            const gateSettings = { bucket: bucket.name, prepHash, campaign: experiment.name, maxHours: experiment.prep.maxHours };
            // The trainer image built in the region: the gate also waits for it (its build runs beside prep).
            const imageSettings = trainerBuild
                ? trainerBuild.start.stdout.apply((stdout) => {
                      const started = parseBuildStart(stdout);
                      return {
                          repository: repositoryName,
                          tag: trainerBuild.tag,
                          ...(started.kind === "started" ? { buildId: started.buildId } : {}),
                          timeoutMinutes: IMAGE_BUILD_MINUTES.trainer.timeout + 60, // plus CodeBuild's queue timeout
                      };
                  })
                : pulumi.output(undefined);
            const instanceId: pulumi.Output<string | undefined> = this.prep?.node ? this.prep.node.instanceId : pulumi.output(undefined);
            const gateDeps: pulumi.Resource[] = [...(prepJob ? [prepJob] : []), this.store, ...(trainerBuild ? [trainerBuild.start] : [])];
            const gate = new command.local.Command(
                `${name}-gate`,
                {
                    create: pulumi.all([instanceId, imageSettings]).apply(([id, image]) => gateCommand({ ...gateSettings, ...(id ? { instanceId: id } : {}), ...(image ? { image } : {}) })),
                    environment: localCommandEnv(experiment.region, args.credentials),
                    triggers: [bucket.name, prepHash, ...(trainerBuild ? [trainerBuild.tag] : [])],
                },
                { parent: this, dependsOn: gateDeps },
            );
            this.gate = gate;

            // A run with several places to launch (zones, fallback types) launches through the fallback step, over
            // the default subnet of each zone (or the given subnet), keyed by how many of its nodes have ended.
            const zoneSubnets = new Map<string, pulumi.Output<string>>();
            const subnetIn = (zone: string): pulumi.Output<string> => {
                if (!zoneSubnets.has(zone)) zoneSubnets.set(zone, aws.ec2.getSubnetOutput({ vpcId, availabilityZone: zone, defaultForAz: true }, { parent: this, provider }).id);
                return zoneSubnets.get(zone)!;
            };
            const fallbackFor = (run: ResolvedRun): FleetLaunchArgs | undefined => {
                if (!usesFallbackLaunch(experiment, run)) return undefined;
                const candidates = launchOrder(experiment, run, candidateZones(experiment.compute)).map((c): pulumi.Output<FleetCandidate> =>
                    subnet
                        ? pulumi.all([subnet.id, subnet.availabilityZone]).apply(([subnetId, zone]) => ({ instanceType: c.instanceType, subnetId, zone }))
                        : subnetIn(c.zone!).apply((subnetId) => ({ instanceType: c.instanceType, subnetId, zone: c.zone! })),
                );
                return {
                    candidates: pulumi.all(candidates),
                    launchKey: launchKeyOf(state.runRecords?.[run.name] ?? {}),
                    region: experiment.region,
                    alternatives: launchAlternatives(resolved, run),
                    commandEnv: localCommandEnv(experiment.region, args.credentials),
                };
            };

            const single = declared.runs.length === 1;
            if (this.store.dataVolume && !single) {
                pulumi.log.warn(`compute.dataVolumeGb: the dataset volume attaches to one node; ${declared.runs.length} runs are declared, so it is attached to none`, this);
            }
            // A regional trainer image is pulled by the digest ECR reports once the gate has seen it pushed.
            const trainerImage = this.image.uris.trainer ?? trainerBuild?.digestAfter(gate.stdout);
            if (!trainerImage) throw new pulumi.ResourceError("internal: no trainer image for the declared runs", this);
            resolved.runs.forEach((run, i) => {
                if (!declared.runs.includes(run)) return;
                runs[run.name] = new TrainingRun(
                    `${name}-run-${run.name}`,
                    {
                        run,
                        spec: resolved.trainSpecs[i],
                        bucketName: bucket.name,
                        bucketArn: this.store.bucketArn,
                        storeReady: this.store.ready,
                        keepObjects: keep,
                        region: experiment.region,
                        image: trainerImage,
                        market: experiment.compute.market,
                        maxHours: experiment.compute.maxHours,
                        gpuIdleMinutes: experiment.compute.gpuIdleMinutes,
                        gpuIdleThreshold: experiment.compute.gpuIdleThreshold,
                        stallMinutes: experiment.compute.stallMinutes,
                        rootVolumeGb: experiment.compute.rootVolumeGb,
                        amiParameter: experiment.compute.amiParameter,
                        secretParameters: this.secrets.parameterNames,
                        ...nodeCommon,
                        dataVolumeId: single ? this.store.dataVolume?.id : undefined,
                        capacityReservation: reservationTarget(experiment.compute),
                        runner: runnerUpload(),
                        renderUserData: args.renderUserData,
                        tags: campaignTags(ctx, "train", run.name),
                        evaluateOnly: declared.evaluateOnly.includes(run.name),
                        fallback: fallbackFor(run),
                    },
                    { ...child, dependsOn: [gate] },
                );
            });
        }
        this.runs = runs;
        this.runner = runner?.upload;

        this.guardrails = new Guardrails(
            `${name}-guardrails`,
            {
                region: experiment.region,
                campaign: experiment.name,
                stack: args.stack,
                gpuNodes: Object.entries(runs).map(([run, r]) => ({ run, instanceId: r.instanceId, tags: campaignTags(ctx, "guardrails", run) })),
                idleMinutes: experiment.compute.gpuIdleMinutes,
                thresholdPercent: experiment.compute.gpuIdleThreshold,
                budget: experiment.budget,
                tags: campaignTags(ctx, "guardrails"),
            },
            child,
        );

        // Node ids and phases: what runs now, and what the state said before this update.
        const summaries: Record<string, pulumi.Input<NodeSummary>> = {};
        const prepPhase = state.prepPhase ?? (declared.prep === "cached" ? "succeeded" : "pending");
        summaries[PREP_RUN] =
            declared.prep === "run"
                ? this.prep?.node
                    ? this.prep.node.instanceId.apply((id) => ({ where: id, phase: prepPhase }))
                    : { where: "local", phase: prepPhase }
                : { where: declared.prep === "cached" ? "cached" : "none", phase: prepPhase };
        for (const run of resolved.runs) {
            const phase = state.runPhases[run.name] ?? "pending";
            const where = phase === "failed" ? "held: failed, not relaunched" : "done";
            summaries[run.name] = runs[run.name] ? runs[run.name].instanceId.apply((id) => ({ where: id, phase })) : { where, phase };
        }
        this.nodes = pulumi.output(summaries) as pulumi.Output<Record<string, NodeSummary>>;
        this.kept = keptStorage(bucket.name, keep, bucket.existing, estimatedCost(resolved).storedGbAfterDestroy);

        this.registerOutputs({ bucketName: this.bucketName, nodes: this.nodes, kept: this.kept });
    }
}
