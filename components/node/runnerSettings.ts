// What the node runner (scripts/node-runner/campaign_runner/settings.py) is told about its one job. The program renders
// these into /etc/campaign/runner.env through the user data; the tests and the rehearsal pass them as
// environment variables. The runner reads nothing else, so the same script runs everywhere.

/**
 * systemd's TimeoutStopSec for the runner's unit (userData.ts), which the runner is also told
 * (CAMPAIGN_UNIT_STOP_SECONDS) so that its exit path fits inside it: when the OS goes down (`pulumi destroy`
 * terminates the instance, an ACPI shutdown), systemd sends the runner SIGTERM and waits this long before SIGKILL.
 * The runner spends up to CAMPAIGN_SPOT_GRACE_SECONDS (80) on the job's checkpoint save, then syncs the newest
 * checkpoint until 130 s are left, then writes the final status and logs (at most 120 s). EC2 bills nothing once
 * the instance is shutting-down (docs/aws.md, "Stop and continue"), so the wait costs no compute.
 */
export const UNIT_STOP_TIMEOUT_SECONDS = 360;

/** How often a node reads its control objects (a graceful stop or restart, layout.ts CONTROL_FILE), by default. */
export const CONTROL_POLL_SECONDS = 30;

export interface RunnerSettings {
    /** prep: writes a dataset; train: trains one run. */
    readonly role: "prep" | "train";
    readonly campaign: string;
    /** The run's name; "prep" for the prep job. */
    readonly run: string;
    readonly region: string;
    /** s3:// URIs, all from components/campaign/layout.ts. */
    readonly specUri: string;
    readonly statusUri: string;
    readonly logsUri: string;
    /** Where the job's output directory is uploaded: the dataset prefix for prep, runs/.../output/ for train. */
    readonly outputUri: string;
    /** train: checkpoints are synced here while training and the newest complete one is restored. */
    readonly checkpointsUri?: string;
    /** train: where each attempt uploads its training history (<attempt>.jsonl) and final status (layout.ts metrics). */
    readonly metricsUri?: string;
    /** train: the prepared dataset, staged to CAMPAIGN_DATA_DIR before the job starts. */
    readonly dataUri?: string;
    /** train: staged base-model weights, staged to CAMPAIGN_MODEL_DIR. */
    readonly modelUri?: string;
    /** prep: a raw data file or prefix in S3, staged to CAMPAIGN_INPUT_DIR. */
    readonly inputUri?: string;
    /** prep: where staged base-model weights go (CAMPAIGN_MODEL_DIR after the job is uploaded here). */
    readonly modelOutputUri?: string;
    /** docker: run `image` with the NVIDIA runtime; process: run `command` directly (tests, rehearsal). */
    readonly jobMode: "docker" | "process";
    readonly image?: string;
    /** The job's command line; in docker mode it is passed after the image (empty: the image's default). */
    readonly command?: string;
    readonly maxRuntimeSeconds: number;
    /** 0 turns the GPU-idle watchdog off (prep nodes have no GPU). */
    readonly gpuIdleMinutes: number;
    readonly gpuIdleThreshold: number;
    /** compute.stallMinutes: no new step in the job's progress file for this long after its first step ends the
     *  job (a hung collective keeps the GPUs busy, so the GPU-idle watchdog cannot see it). 0 = off; the runner's
     *  default is 30. */
    readonly stallMinutes?: number;
    readonly keepCheckpoints: number;
    /** Environment variable name -> SSM SecureString parameter name, read at boot. Never the values. */
    readonly secretParameters: Readonly<Record<string, string>>;
    /** Where the runner stages inputs and keeps the job's dirs. Default: /opt/dlami/nvme/campaign when the
     *  AMI mounted local NVMe there, else /var/lib/campaign. */
    readonly workDir?: string;
    /** Seconds between status.json rewrites (and checkpoint uploads, GPU samples). Default 10. */
    readonly statusIntervalSeconds?: number;
    /** Seconds between IMDS spot/instance-action polls. Default 5 (AWS's advice). */
    readonly spotPollSeconds?: number;
    /** Watchdog stops (max runtime, GPU idle): seconds the job gets after SIGTERM to save. Default 300. */
    readonly stopGraceSeconds?: number;
    /** Spot notices: seconds the job gets after SIGTERM, leaving time to sync within the 2 minutes. Default 80. */
    readonly spotGraceSeconds?: number;
    /** GPU nodes: the CloudWatch agent config file the user data wrote. The runner starts the agent with it
     *  right before the job starts (not at boot), so the GPU-idle alarm sees no data while the node pulls
     *  the image and stages inputs. Absent: the runner starts no agent. */
    readonly metricsAgentConfig?: string;
    /** GPU nodes: a script that installs the CloudWatch agent when the AMI lacks it (the user data writes it); the
     *  runner runs it while it stages inputs. */
    readonly metricsAgentInstall?: string;
    /** compute.dataVolumeGb: the EBS volume attached to this node (vol-...). The runner finds it by id under
     *  /dev/disk/by-id, formats it once, mounts it and stages the dataset there. */
    readonly dataVolumeId?: string;
    /** train: evaluate the run's saved model again without training (its evaluation settings changed since it
     *  succeeded; components/campaign/relaunch.ts). The runner stages outputUri instead of restoring checkpoints. */
    readonly evaluateOnly?: boolean;
    /** This run's control object (runs/<campaign>/<run>/control.json) and the campaign's (runs/<campaign>/control.json):
     *  the runner polls both and stops gracefully on a `stop` or `restart` (components/campaign/control.ts). */
    readonly runControlUri?: string;
    readonly campaignControlUri?: string;
    /** Seconds between control-object polls. Default CONTROL_POLL_SECONDS. */
    readonly controlPollSeconds?: number;
}

/** The settings as environment variables: the runner's whole input. */
export function runnerEnv(s: RunnerSettings): Record<string, string> {
    const env: Record<string, string> = {
        CAMPAIGN_ROLE: s.role,
        CAMPAIGN_NAME: s.campaign,
        CAMPAIGN_RUN: s.run,
        AWS_REGION: s.region,
        AWS_DEFAULT_REGION: s.region,
        CAMPAIGN_SPEC_URI: s.specUri,
        CAMPAIGN_STATUS_URI: s.statusUri,
        CAMPAIGN_LOGS_URI: s.logsUri,
        CAMPAIGN_OUTPUT_URI: s.outputUri,
        CAMPAIGN_JOB_MODE: s.jobMode,
        CAMPAIGN_MAX_RUNTIME_SECONDS: String(Math.round(s.maxRuntimeSeconds)),
        CAMPAIGN_GPU_IDLE_MINUTES: String(s.gpuIdleMinutes),
        CAMPAIGN_GPU_IDLE_THRESHOLD: String(s.gpuIdleThreshold),
        CAMPAIGN_KEEP_CHECKPOINTS: String(s.keepCheckpoints),
        CAMPAIGN_UNIT_STOP_SECONDS: String(UNIT_STOP_TIMEOUT_SECONDS),
        CAMPAIGN_SECRET_PARAMETERS: Object.entries(s.secretParameters)
            .map(([name, parameter]) => `${name}=${parameter}`)
            .join(","),
    };
    const optional: Array<[string, string | undefined]> = [
        ["CAMPAIGN_CHECKPOINTS_URI", s.checkpointsUri],
        ["CAMPAIGN_METRICS_URI", s.metricsUri],
        ["CAMPAIGN_DATA_URI", s.dataUri],
        ["CAMPAIGN_MODEL_URI", s.modelUri],
        ["CAMPAIGN_INPUT_URI", s.inputUri],
        ["CAMPAIGN_MODEL_OUTPUT_URI", s.modelOutputUri],
        ["CAMPAIGN_IMAGE", s.image],
        ["CAMPAIGN_JOB_COMMAND", s.command],
        ["CAMPAIGN_WORK_DIR", s.workDir],
        ["CAMPAIGN_STATUS_INTERVAL_SECONDS", s.statusIntervalSeconds?.toString()],
        ["CAMPAIGN_SPOT_POLL_SECONDS", s.spotPollSeconds?.toString()],
        ["CAMPAIGN_STOP_GRACE_SECONDS", s.stopGraceSeconds?.toString()],
        ["CAMPAIGN_SPOT_GRACE_SECONDS", s.spotGraceSeconds?.toString()],
        ["CAMPAIGN_METRICS_AGENT_CONFIG", s.metricsAgentConfig],
        ["CAMPAIGN_METRICS_AGENT_INSTALL", s.metricsAgentInstall],
        ["CAMPAIGN_STALL_MINUTES", s.stallMinutes?.toString()],
        ["CAMPAIGN_DATA_VOLUME_ID", s.dataVolumeId],
        ["CAMPAIGN_EVALUATE_ONLY", s.evaluateOnly ? "1" : undefined],
        ["CAMPAIGN_RUN_CONTROL_URI", s.runControlUri],
        ["CAMPAIGN_CAMPAIGN_CONTROL_URI", s.campaignControlUri],
        ["CAMPAIGN_CONTROL_POLL_SECONDS", s.controlPollSeconds?.toString()],
    ];
    for (const [key, value] of optional) if (value !== undefined && value !== "") env[key] = value;
    return env;
}
