// TrainingRun: one run of the campaign on its own GPU node. Its job spec goes to runs/<campaign>/<run>/spec.json;
// the node is not requested before the gate says the prepared data is complete (dependsOn in opts).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { ResolvedRun } from "../campaign/types";
import type { TrainSpec } from "../campaign/jobSpec";
import { campaignControlKey, datasetPrefix, modelPrefix, runKeys, s3Uri } from "../campaign/layout";
import { JobNode, mergeDependsOn, type CapacityReservation, type FleetLaunchArgs, type Market, type RunnerUpload } from "./jobNode";
import type { UserDataRenderer } from "../node/userData";
import type { RunnerSettings } from "../node/runnerSettings";

export interface TrainSettingsInput {
    readonly bucket: string;
    readonly region: string;
    readonly spec: TrainSpec;
    readonly maxHours: number;
    readonly gpuIdleMinutes: number;
    readonly gpuIdleThreshold: number;
    /** compute.stallMinutes (the runner's progress-stall watchdog); absent: the runner's default. */
    readonly stallMinutes?: number;
    readonly image?: string;
    readonly secretParameters: Readonly<Record<string, string>>;
    /** The node evaluates the run's saved model without training (components/campaign/relaunch.ts). */
    readonly evaluateOnly?: boolean;
}

/** A command line from an argument list, each argument quoted for the shell when it needs it. */
export function joinCommand(argv: readonly string[]): string {
    return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

/** Where a run's base weights are: its own s3:// prefix, or what prep staged under models/<id>/<revision>/. */
export function modelUriOf(bucket: string, model: { readonly id: string; readonly revision: string }): string {
    return model.id.startsWith("s3://") ? model.id : s3Uri(bucket, modelPrefix(model.id, model.revision));
}

/** What a training run's runner is told. */
export function trainRunnerSettings(t: TrainSettingsInput): RunnerSettings {
    const keys = runKeys(t.spec.campaign, t.spec.run);
    return {
        role: "train",
        campaign: t.spec.campaign,
        run: t.spec.run,
        region: t.region,
        specUri: s3Uri(t.bucket, keys.spec),
        statusUri: s3Uri(t.bucket, keys.status),
        logsUri: s3Uri(t.bucket, keys.logs),
        outputUri: s3Uri(t.bucket, keys.output),
        checkpointsUri: s3Uri(t.bucket, keys.checkpoints),
        runControlUri: s3Uri(t.bucket, keys.control),
        campaignControlUri: s3Uri(t.bucket, campaignControlKey(t.spec.campaign)),
        metricsUri: s3Uri(t.bucket, keys.metrics),
        dataUri: s3Uri(t.bucket, datasetPrefix(t.spec.prepHash)),
        modelUri: modelUriOf(t.bucket, t.spec.model),
        jobMode: "docker",
        ...(t.image ? { image: t.image } : {}),
        ...(t.spec.customJob ? { command: joinCommand(t.spec.customJob.command) } : {}),
        maxRuntimeSeconds: Math.round(t.maxHours * 3600),
        gpuIdleMinutes: t.gpuIdleMinutes,
        gpuIdleThreshold: t.gpuIdleThreshold,
        ...(t.stallMinutes !== undefined ? { stallMinutes: t.stallMinutes } : {}),
        keepCheckpoints: t.spec.training.saveTotalLimit,
        secretParameters: { ...t.secretParameters },
        ...(t.evaluateOnly ? { evaluateOnly: true } : {}),
    };
}

/**
 * S3 access of a training node: it writes its own run folder; it reads the dataset and the base weights, which
 * prep staged under models/<id>/<revision>/, or which the config gives as an s3:// folder in any bucket.
 */
export function trainPrefixes(spec: TrainSpec): { readWrite: string[]; read: string[]; readUris: string[] } {
    const given = spec.model.id.startsWith("s3://");
    const read = [datasetPrefix(spec.prepHash), ...(given ? [] : [modelPrefix(spec.model.id, spec.model.revision)])];
    return { readWrite: [runKeys(spec.campaign, spec.run).prefix], read, readUris: given ? [spec.model.id] : [] };
}

export interface TrainingRunArgs {
    /** The run (name, model, method, training, instance type). */
    readonly run: ResolvedRun;
    /** Its job spec (campaignSpec.resolveCampaign's trainSpecs, same order as runs). */
    readonly spec: TrainSpec;
    readonly bucketName: string;
    readonly bucketArn: string;
    /** Resolves when the bucket is ready. */
    readonly storeReady: pulumi.Input<string>;
    /** Keep the spec on destroy (and after the run is done). Default: true. */
    readonly keepObjects?: boolean;
    readonly region: string;
    /** The trainer image (built, given, or the custom job's). */
    readonly image: pulumi.Input<string>;
    readonly market: Market;
    /** compute.maxHours, compute.gpuIdleMinutes, compute.gpuIdleThreshold, compute.rootVolumeGb, compute.amiParameter. */
    readonly maxHours: number;
    readonly gpuIdleMinutes: number;
    readonly gpuIdleThreshold: number;
    /** compute.stallMinutes: no new step for this long ends the job (0 = off). Default: the runner's (30). */
    readonly stallMinutes?: number;
    readonly rootVolumeGb: number;
    readonly amiParameter: string;
    readonly secretParameters: Readonly<Record<string, string>>;
    readonly parameterArns: pulumi.Input<string>[];
    readonly ecrRepositoryArns: pulumi.Input<string>[];
    readonly vpcId: pulumi.Input<string>;
    readonly subnetId?: string;
    readonly availabilityZone?: pulumi.Input<string>;
    /** The ArtifactStore's dataset volume, attached at /dev/sdf. Default: none. */
    readonly dataVolumeId?: pulumi.Input<string>;
    /** compute.capacityReservationId (and whether it is a Capacity Block): the GPU node launches into it. Default: none. */
    readonly capacityReservation?: CapacityReservation;
    /** The node runner in the campaign's bucket (uploaded once by the Campaign); the node fetches it at boot. */
    readonly runner: RunnerUpload;
    readonly renderUserData: UserDataRenderer;
    readonly tags: Readonly<Record<string, string>>;
    /** Evaluate the run's saved model again without training (its evaluation settings changed). Default: false. */
    readonly evaluateOnly?: boolean;
    /** Launch over the run's launch order (zones, fallback types) instead of one instance. Default: one instance. */
    readonly fallback?: FleetLaunchArgs;
}

export class TrainingRun extends pulumi.ComponentResource {
    public readonly node: JobNode;
    public readonly instanceId: pulumi.Output<string>;
    public readonly specKey: string;
    public readonly settings: RunnerSettings;

    /**
     * @param opts dependsOn (the gate) is passed to the GPU instance itself.
     */
    constructor(name: string, args: TrainingRunArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:TrainingRun", name, {}, opts);
        if (args.spec.run !== args.run.name) throw new pulumi.ResourceError(`spec of run ${args.spec.run} given for run ${args.run.name}`, this);
        const keys = runKeys(args.spec.campaign, args.spec.run);
        this.specKey = keys.spec;

        const spec = new aws.s3.BucketObjectv2(
            `${name}-spec`,
            {
                bucket: pulumi.output(args.storeReady).apply(() => args.bucketName),
                key: keys.spec,
                content: JSON.stringify(args.spec, null, 2),
                contentType: "application/json",
                tags: { ...args.tags },
            },
            // The spec stays with the run's artifacts when the run is done and its node goes away.
            { parent: this, retainOnDelete: args.keepObjects ?? true },
        );

        this.settings = trainRunnerSettings({
            bucket: args.bucketName,
            region: args.region,
            spec: args.spec,
            maxHours: args.maxHours,
            gpuIdleMinutes: args.gpuIdleMinutes,
            gpuIdleThreshold: args.gpuIdleThreshold,
            ...(args.stallMinutes !== undefined ? { stallMinutes: args.stallMinutes } : {}),
            secretParameters: args.secretParameters,
            ...(args.evaluateOnly ? { evaluateOnly: true } : {}),
        });
        // The runner finds the dataset volume by its id under /dev/disk/by-id, so the id goes into its settings.
        const userData = pulumi
            .all([args.image, args.dataVolumeId ?? ""])
            .apply(([image, dataVolumeId]) => args.renderUserData({ ...this.settings, image, ...(dataVolumeId ? { dataVolumeId } : {}) }, { gpu: true }));
        const prefixes = trainPrefixes(args.spec);

        this.node = new JobNode(
            `${name}-node`,
            {
                role: "train",
                instanceType: args.run.instanceType,
                amiParameter: args.amiParameter,
                userData,
                rootVolumeGb: args.rootVolumeGb,
                market: args.market,
                bucketArn: args.bucketArn,
                s3ReadWritePrefixes: prefixes.readWrite,
                s3ReadPrefixes: prefixes.read,
                s3ReadUris: prefixes.readUris,
                s3ReadKeys: [campaignControlKey(args.spec.campaign)],
                parameterArns: args.parameterArns,
                ecrRepositoryArns: args.ecrRepositoryArns,
                publishMetrics: true,
                vpcId: args.vpcId,
                subnetId: args.subnetId,
                availabilityZone: args.availabilityZone,
                dataVolumeId: args.dataVolumeId,
                capacityReservation: args.capacityReservation,
                ...(args.fallback ? { fallback: args.fallback } : {}),
                runner: args.runner,
                tags: args.tags,
            },
            { parent: this, dependsOn: mergeDependsOn(opts?.dependsOn, [spec]) },
        );
        this.instanceId = this.node.instanceId;
        this.registerOutputs({ instanceId: this.instanceId, specKey: this.specKey });
    }
}
