// The user data of a job node: `#cloud-config` that installs the node runner (scripts/node-runner/dist/campaign-runner.py)
// as a systemd unit and starts it. Pure functions, no resources: index.ts passes renderNodeUserData to the
// program, the Campaign uploads campaignRunnerObject (the object the fetch variant downloads), and the
// tests render every variant and check it with `cloud-init schema`.
//
// What a node gets (docs/node-runner.md tells the whole story):
//   /etc/campaign/runner.env            the runner's settings (runnerEnv); SSM parameter names, never values
//   /opt/campaign/run-job.sh            the runner, inline (gzip+base64) when the user data fits in 16 KB ...
//   /opt/campaign/fetch-runner.sh       ... or a small script that downloads it from S3 and checks its sha256
//   /etc/systemd/system/campaign-runner.service   runs the runner; powers the node off whenever it stops
//   /opt/aws/amazon-cloudwatch-agent/etc/campaign-gpu.json   GPU nodes: nvidia_gpu metrics per InstanceId; the
//                                       runner starts the agent with it once the job starts (CAMPAIGN_METRICS_AGENT_CONFIG)
//   /opt/campaign/install-cloudwatch-agent.sh   GPU nodes: installs the agent when the AMI lacks it (the runner runs it)
// runcmd: arm the OS-level hard cap (shutdown -h +N), start the unit.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import YAML from "yaml";
import { shellQuote } from "../campaign/shell";
import { gpuAgentConfig } from "./metricsAgent";
import { runnerKey } from "../campaign/layout";
import { runnerEnv, UNIT_STOP_TIMEOUT_SECONDS, type RunnerSettings } from "./runnerSettings";

/** EC2 refuses user data over 16 KB, counted on the raw bytes before base64. */
export const USER_DATA_LIMIT_BYTES = 16_384;

export const RUNNER_PATH = "/opt/campaign/run-job.sh";
export const RUNNER_FETCH_PATH = "/opt/campaign/fetch-runner.sh";
export const RUNNER_ENV_PATH = "/etc/campaign/runner.env";
export const RUNNER_UNIT = "campaign-runner.service";
export const CLOUDWATCH_AGENT_CONFIG_PATH = "/opt/aws/amazon-cloudwatch-agent/etc/campaign-gpu.json";
/** GPU nodes: installs the CloudWatch agent when the AMI lacks it; the runner runs it while it stages inputs. */
export const CLOUDWATCH_AGENT_INSTALL_PATH = "/opt/campaign/install-cloudwatch-agent.sh";
/** Where the Deep Learning AMIs mount the instance's local NVMe; the runner's default work dir is under it. */
export const LOCAL_NVME_PATH = "/opt/dlami/nvme";
/** The Deep Learning AMI's oneshot service whose script stripes the instance store into one LVM volume and mounts
 *  it at LOCAL_NVME_PATH (docs/node-runner.md, Boot). The runner's unit is ordered after it. */
export const LOCAL_NVME_SERVICE = "dlami-nvme.service";

/** The node runner as a node runs it: one text file, `#!/usr/bin/python3 -I`, built from scripts/node-runner/campaign_runner/
 *  by scripts/node-runner/build_runner.py (the Python tests fail when it is stale). */
export const RUNNER_SCRIPT_FILE = join(__dirname, "..", "..", "scripts", "node-runner", "dist", "campaign-runner.py");

export function loadRunnerScript(file: string = RUNNER_SCRIPT_FILE): string {
    return readFileSync(file, "utf8");
}

/** Hex sha256 of the runner script, as `sha256sum` prints it: the fetch variant checks the download against it. */
export function runnerSha256(script: string): string {
    return createHash("sha256").update(script, "utf8").digest("hex");
}

/** Where the program uploads the runner for the fetch variant: content-addressed, under the campaign's prefix. */
export function runnerObjectKey(campaign: string, script: string): string {
    return runnerKey(campaign, runnerSha256(script));
}

// ---------------------------------------------------------------- CloudWatch agent (GPU nodes)

/**
 * The CloudWatch agent config file of a GPU node: metricsAgent.gpuAgentConfig (nvidia_gpu utilization_gpu
 * and memory_used, InstanceId appended and aggregated), the one the GPU-idle alarm is built against.
 */
export function cloudWatchAgentConfigFile(): string {
    return `${JSON.stringify(gpuAgentConfig(), null, 2)}\n`;
}

// ---------------------------------------------------------------- settings file

/** The runner's settings as a shell-sourceable file: KEY='value' lines, sorted. */
export function renderRunnerEnvFile(settings: RunnerSettings): string {
    assertNoSecretValues(settings);
    const env = runnerEnv(settings);
    const lines = Object.keys(env)
        .sort()
        .map((key) => {
            if (!/^[A-Z_][A-Z0-9_]*$/.test(key)) throw new Error(`runner setting ${key} is not a valid variable name`);
            return `${key}=${shellQuote(env[key]!)}`;
        });
    return `# campaign node runner settings (components/node/runnerSettings.ts). No secrets: SSM parameter names only.\n${lines.join("\n")}\n`;
}

// Things that are secret values, not names. User data sits in plain text in Pulumi state and in the EC2
// console, so a value that looks like one is refused outright.
const secretLooking: Array<[RegExp, string]> = [
    [/\bhf_[A-Za-z0-9]{20,}/, "a Hugging Face token"],
    [/\b(AKIA|ASIA)[A-Z0-9]{16}\b/, "an AWS access key id"],
    [/\bgh[pousr]_[A-Za-z0-9]{20,}/, "a GitHub token"],
    [/-----BEGIN [A-Z ]*PRIVATE KEY-----/, "a private key"],
];

/** Throws when a setting carries what looks like a secret value rather than an SSM parameter name. */
export function assertNoSecretValues(settings: RunnerSettings): void {
    for (const [name, parameter] of Object.entries(settings.secretParameters)) {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`secret variable name '${name}' is not a valid environment variable name`);
        if (!/^\/?[A-Za-z0-9_.:/-]+$/.test(parameter) || parameter.length > 2048) {
            throw new Error(`secret ${name}: '${parameter.slice(0, 8)}...' is not an SSM parameter name (give the name, e.g. /campaign/<name>/hf-token, never the value)`);
        }
    }
    for (const [key, value] of Object.entries(runnerEnv(settings))) {
        for (const [pattern, what] of secretLooking) {
            if (pattern.test(value)) throw new Error(`runner setting ${key} holds what looks like ${what}; secrets go to SSM Parameter Store and only their names into the node's settings`);
        }
    }
}

// ---------------------------------------------------------------- user data

export interface UserDataOptions {
    /** A GPU node: the agent config is written and the runner starts the agent when the job starts. Default: the train role. */
    readonly gpu?: boolean;
    /** s3:// URI where the caller uploaded the runner (see runnerObjectKey); needed only when it does not fit inline. */
    readonly runnerS3Uri?: string;
    /** inline: always inline (throws when over the limit); fetch: always download; auto (default): inline when it fits. */
    readonly runnerDelivery?: "auto" | "inline" | "fetch";
    /** The OS-level backstop powers the node off this many minutes after maxRuntimeSeconds. Default 30. */
    readonly hardCapSlackMinutes?: number;
}

export interface RenderedUserData {
    readonly text: string;
    /** Raw bytes, the figure EC2 checks against USER_DATA_LIMIT_BYTES. */
    readonly bytes: number;
    readonly variant: "inline" | "fetch";
    readonly runnerSha256: string;
}

interface WriteFile {
    path: string;
    content: string;
    permissions: string;
    owner: string;
    encoding?: "gz+b64";
}

/** Minutes from boot after which the backstop `shutdown -h +N` powers the node off. */
export function hardCapMinutes(settings: RunnerSettings, slackMinutes = 30): number {
    if (!(settings.maxRuntimeSeconds > 0)) throw new Error(`maxRuntimeSeconds must be positive, not ${settings.maxRuntimeSeconds}`);
    if (!(slackMinutes >= 0)) throw new Error(`hardCapSlackMinutes must be >= 0, not ${slackMinutes}`);
    return Math.ceil(settings.maxRuntimeSeconds / 60) + Math.ceil(slackMinutes);
}

/**
 * The CloudWatch agent's installer for AMIs without it: the package from the AL2023 repository (dnf), else AWS's
 * .deb for Ubuntu. https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/verify-CloudWatch-Agent-Package-Signature.html (the download links by platform)
 */
export function cloudWatchAgentInstallScript(): string {
    return [
        "#!/bin/bash",
        "# Installs the CloudWatch agent unless the AMI has it. The runner runs this while it stages inputs; a failure",
        "# is a warning in status.json (no GPU metrics, so no GPU-idle alarm data), never fatal: the runner's own",
        "# watchdogs still guard the job.",
        "set -o errexit -o pipefail -o nounset",
        "ctl=/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl",
        'if [[ -x "${ctl}" ]]; then exit 0; fi',
        "if command -v dnf >/dev/null; then",
        "    dnf install -y -q amazon-cloudwatch-agent",
        "elif command -v dpkg >/dev/null; then",
        '    arch="$(dpkg --print-architecture)"',
        '    deb="$(mktemp --suffix=.deb)"',
        '    curl --fail --silent --show-error --location --retry 3 --output "${deb}" \\',
        '        "https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/${arch}/latest/amazon-cloudwatch-agent.deb"',
        '    dpkg -i -E "${deb}"',
        '    rm -f "${deb}"',
        "else",
        '    echo "no dnf or dpkg: cannot install the CloudWatch agent" >&2',
        "    exit 1",
        "fi",
        'test -x "${ctl}"',
        "",
    ].join("\n");
}

/** The path whose mount the unit waits for: the work dir when given, else the DLAMI's local NVMe. */
export function workMountPath(settings: RunnerSettings): string {
    return settings.workDir ?? LOCAL_NVME_PATH;
}

/** What the unit runs when the runner has ended, whatever the way: power off, unless the system is already stopping. */
export const STOP_POST_COMMAND = 'test "$$(systemctl is-system-running)" = stopping || exec /usr/sbin/shutdown -h now';

function unitFile(capMinutes: number, fetch: boolean, mountsFor: string): string {
    return [
        "[Unit]",
        "Description=campaign job runner (the node powers off when the job ends)",
        // The Deep Learning AMI mounts its local NVMe from a script that its oneshot dlami-nvme.service runs (LVM
        // over the instance store, then mount(8)), not from /etc/fstab or a .mount unit, so RequiresMountsFor=
        // below has no mount unit to order after at boot: the unit waits for that service's end instead. On an AMI
        // without it, Wants= and After= on a unit that does not exist add nothing. docs/node-runner.md (Boot).
        `Wants=network-online.target ${LOCAL_NVME_SERVICE}`,
        `After=network-online.target docker.service ${LOCAL_NVME_SERVICE}`,
        // A work dir on a mount that /etc/fstab or a .mount unit declares (e.g. CAMPAIGN_WORK_DIR on a volume of
        // one's own): started only once it is mounted; a path with no mount unit adds nothing beyond the root.
        // https://www.freedesktop.org/software/systemd/man/latest/systemd.unit.html#RequiresMountsFor=
        `RequiresMountsFor=${mountsFor}`,
        "",
        "[Service]",
        "Type=simple",
        // Re-armed on every boot: if all else fails, the node still powers off (and terminates) here.
        `ExecStartPre=-/usr/sbin/shutdown -h +${capMinutes}`,
        ...(fetch ? [`ExecStartPre=${RUNNER_FETCH_PATH}`] : []),
        `ExecStart=${RUNNER_PATH}`,
        // However the runner ends (its own shutdown, a crash, a failed download, a kill), the node goes down.
        // ... unless the OS is already going down (EC2 terminating or stopping the instance): then there is nothing to
        // ask. "$$" is systemd's literal "$" (systemd.service(5), Command lines).
        `ExecStopPost=/bin/sh -c '${STOP_POST_COMMAND}'`,
        // SIGTERM to the runner only: it stops the job itself, syncs the checkpoint, writes the status.
        "KillMode=mixed",
        // The runner's exit path on SIGTERM fits in this (runnerSettings.ts); the network and docker stop after it
        // (After= above: systemd stops units in the reverse order of starting them).
        `TimeoutStopSec=${UNIT_STOP_TIMEOUT_SECONDS}`,
        "Restart=no",
        "StandardOutput=journal+console",
        "StandardError=journal+console",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

function fetchScript(uri: string, sha256: string): string {
    return [
        "#!/bin/bash",
        "# Downloads the campaign runner from S3 and checks its sha256; a failure fails the unit, which powers the node off.",
        "set -o errexit -o pipefail -o nounset",
        `uri=${shellQuote(uri)}`,
        `want=${sha256}`,
        `dest=${RUNNER_PATH}`,
        `set -o allexport; . ${RUNNER_ENV_PATH}; set +o allexport`,
        'if [[ -f "${dest}" ]] && echo "${want}  ${dest}" | sha256sum --check --status; then exit 0; fi',
        'tmp="$(mktemp)"',
        "for attempt in 1 2 3 4 5; do",
        '    if aws s3 cp --only-show-errors "${uri}" "${tmp}"; then break; fi',
        '    if ((attempt == 5)); then echo "cannot download the runner from ${uri}" >&2; exit 1; fi',
        "    sleep $((attempt * 5))",
        "done",
        'if ! echo "${want}  ${tmp}" | sha256sum --check --status; then',
        '    echo "the runner at ${uri} does not have sha256 ${want}: refusing to run it" >&2',
        "    exit 1",
        "fi",
        'install -m 0755 "${tmp}" "${dest}"',
        'rm -f "${tmp}"',
        "",
    ].join("\n");
}

/** Idempotent: a node that has Docker (the GPU AMI, a reboot) skips it; dnf is AL2023's package manager. */
export const DOCKER_IF_MISSING = "command -v docker >/dev/null || { dnf install -y docker && systemctl enable --now docker; }";

function render(files: WriteFile[], runcmd: Array<string | string[]>): string {
    const doc = new YAML.Document({ write_files: files, runcmd });
    return `#cloud-config\n${doc.toString({ lineWidth: 0 })}`;
}

/**
 * The node's `#cloud-config`. The runner goes inline (gzip+base64) when the whole text stays within
 * USER_DATA_LIMIT_BYTES; otherwise a small script downloads it from `runnerS3Uri` and checks its sha256.
 * See https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html for the limit.
 */
export function renderUserData(settings: RunnerSettings, runnerScript: string, options: UserDataOptions = {}): RenderedUserData {
    if (!runnerScript.startsWith("#!")) throw new Error("the runner script must start with a #! line");
    const delivery = options.runnerDelivery ?? "auto";
    const gpu = options.gpu ?? settings.role === "train";
    const sha256 = runnerSha256(runnerScript);
    const cap = hardCapMinutes(settings, options.hardCapSlackMinutes);
    if (options.runnerS3Uri !== undefined && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+[^/]$/.test(options.runnerS3Uri)) {
        throw new Error(`runnerS3Uri must be an s3://bucket/key of an object, not '${options.runnerS3Uri}'`);
    }

    // GPU nodes: the runner starts the CloudWatch agent with this config right before the job starts, so the
    // GPU-idle alarm gets no data (and cannot fire) while the node pulls the image and stages inputs.
    const nodeSettings: RunnerSettings = {
        ...settings,
        metricsAgentConfig: gpu ? CLOUDWATCH_AGENT_CONFIG_PATH : undefined,
        metricsAgentInstall: gpu ? CLOUDWATCH_AGENT_INSTALL_PATH : undefined,
    };
    const common: WriteFile[] = [{ path: RUNNER_ENV_PATH, content: renderRunnerEnvFile(nodeSettings), permissions: "0600", owner: "root:root" }];
    if (gpu) {
        common.push({
            path: CLOUDWATCH_AGENT_CONFIG_PATH,
            content: cloudWatchAgentConfigFile(),
            permissions: "0644",
            owner: "root:root",
        });
        common.push({ path: CLOUDWATCH_AGENT_INSTALL_PATH, content: cloudWatchAgentInstallScript(), permissions: "0755", owner: "root:root" });
    }
    const runcmd: Array<string | string[]> = [
        ["shutdown", "-h", `+${cap}`],
        // The prep AMI (standard AL2023) ships the AWS CLI v2 but not Docker; install it once, only when missing.
        // https://docs.aws.amazon.com/linux/al2023/ug/container.html
        ...(!gpu && settings.jobMode === "docker" ? [["sh", "-c", DOCKER_IF_MISSING]] : []),
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "--no-block", RUNNER_UNIT],
    ];

    const inline = (): RenderedUserData => {
        const text = render(
            [
                ...common,
                { path: RUNNER_PATH, content: gzipSync(Buffer.from(runnerScript, "utf8"), { level: 9 }).toString("base64"), encoding: "gz+b64", permissions: "0755", owner: "root:root" },
                { path: `/etc/systemd/system/${RUNNER_UNIT}`, content: unitFile(cap, false, workMountPath(settings)), permissions: "0644", owner: "root:root" },
            ],
            runcmd,
        );
        return { text, bytes: Buffer.byteLength(text, "utf8"), variant: "inline", runnerSha256: sha256 };
    };
    const fetch = (): RenderedUserData => {
        if (options.runnerS3Uri === undefined) {
            throw new Error(`the runner does not fit in the ${USER_DATA_LIMIT_BYTES}-byte user data: upload it (runnerObjectKey) and pass runnerS3Uri`);
        }
        const text = render(
            [
                ...common,
                { path: RUNNER_FETCH_PATH, content: fetchScript(options.runnerS3Uri, sha256), permissions: "0755", owner: "root:root" },
                { path: `/etc/systemd/system/${RUNNER_UNIT}`, content: unitFile(cap, true, workMountPath(settings)), permissions: "0644", owner: "root:root" },
            ],
            runcmd,
        );
        return { text, bytes: Buffer.byteLength(text, "utf8"), variant: "fetch", runnerSha256: sha256 };
    };

    let result: RenderedUserData;
    switch (delivery) {
        case "inline":
            result = inline();
            break;
        case "fetch":
            result = fetch();
            break;
        case "auto": {
            const attempt = inline();
            result = attempt.bytes <= USER_DATA_LIMIT_BYTES ? attempt : fetch();
            break;
        }
        default: {
            const never: never = delivery;
            throw new Error(`unknown runnerDelivery ${String(never)}`);
        }
    }
    if (result.bytes > USER_DATA_LIMIT_BYTES) {
        throw new Error(`the ${result.variant} user data is ${result.bytes} bytes, over EC2's ${USER_DATA_LIMIT_BYTES}-byte limit`);
    }
    return result;
}

// ---------------------------------------------------------------- what the program calls

let cachedRunner: string | undefined;
function runnerScript(): string {
    cachedRunner ??= loadRunnerScript();
    return cachedRunner;
}

/** The runner as an S3 object for the fetch variant: in the campaign's bucket, under its prefix. */
export interface RunnerObject {
    readonly bucket: string;
    readonly key: string;
    readonly uri: string;
    readonly content: string;
    readonly sha256: string;
}

/** Where the program must upload the runner (before the node boots) so a node's fetch variant finds it. */
export function runnerObject(settings: RunnerSettings, script: string = runnerScript()): RunnerObject {
    const m = /^s3:\/\/([^/]+)\//.exec(settings.statusUri);
    if (!m) throw new Error(`statusUri must be an s3:// URI, not '${settings.statusUri}'`);
    return campaignRunnerObject(m[1]!, settings.campaign, script);
}

/** The same object from the bucket and campaign alone: the program uploads it once per campaign, for all its nodes. */
export function campaignRunnerObject(bucket: string, campaign: string, script: string = runnerScript()): RunnerObject {
    const key = runnerObjectKey(campaign, script);
    return { bucket, key, uri: `s3://${bucket}/${key}`, content: script, sha256: runnerSha256(script) };
}

/** Renders a node's cloud-init user data from the runner's settings: the program takes one, so tests can pass their own. */
export type UserDataRenderer = (settings: RunnerSettings, options: { readonly gpu: boolean }) => string;

/**
 * The user data of a node, as the program's UserDataRenderer wants it: the repository's runner, inline
 * when it fits, else fetched from runnerObject(settings).uri (which the program uploads).
 */
export function renderNodeUserData(settings: RunnerSettings, options: { readonly gpu: boolean }): string {
    const script = runnerScript();
    return renderUserData(settings, script, { gpu: options.gpu, runnerS3Uri: runnerObject(settings, script).uri }).text;
}
