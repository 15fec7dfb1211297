// Running scripts/node-runner/run-job.sh (the built Python runner) for real, with `shutdown`, `docker`, `nvidia-smi`,
// `systemctl` and the CloudWatch agent's ctl replaced by the recorders in scripts/local/bin, against local services. Used by test/node/runner.test.ts, the
// benchmark and the rehearsal.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { runKeys, s3Uri } from "../../components/campaign/layout";
import { runnerEnv, type RunnerSettings } from "../../components/node/runnerSettings";
import { fakeAwsEnv } from "./moto";

export const repoRoot = resolve(__dirname, "..", "..");
export const runnerScript = join(repoRoot, "scripts", "node-runner", "run-job.sh");
/** Recorders for `shutdown`, `docker` and `nvidia-smi`: always first on the runner's PATH, so it never powers off this machine. */
export const recorderBin = join(repoRoot, "scripts", "local", "bin");
/** The recorder the runner calls instead of the CloudWatch agent's ctl (CAMPAIGN_METRICS_AGENT_CTL). */
export const agentCtlRecorder = join(recorderBin, "amazon-cloudwatch-agent-ctl");
/** A stand-in for `aws` that injects S3 faults (SlowDown, slow uploads) and records every call; put on pathPrepend. */
export const faultyAwsBin = join(repoRoot, "scripts", "local", "faults");
/** A small job that writes progress and checkpoints (the runner tests and its benchmark). */
export const fakeJob = join(repoRoot, "test", "fixtures", "fake-job.py");

export interface RunnerResult {
    /** The runner's exit code (null when killed). */
    readonly code: number | null;
    /** stdout and stderr together (the runner logs to stderr). */
    readonly output: string;
    /** One entry per `shutdown` call, its arguments joined by spaces. */
    readonly shutdownCalls: string[];
    /** One entry per `docker` call, its argv. */
    readonly dockerCalls: string[][];
    /** One entry per CloudWatch agent ctl call: when (ISO, ms) and its arguments joined by spaces. */
    readonly agentCalls: Array<{ readonly at: string; readonly args: string }>;
    /** One entry per `systemctl` call (the runner stops the agent's unit with it): when and its arguments. */
    readonly systemctlCalls: Array<{ readonly at: string; readonly args: string }>;
    /** Where the runner kept its work dir and the recorders wrote. */
    readonly workDir: string;
    readonly recorderDir: string;
    readonly elapsedMs: number;
}

export interface RunnerOptions {
    readonly settings: RunnerSettings;
    /** http://127.0.0.1:<port> of the S3/SSM emulator. */
    readonly awsEndpoint: string;
    /** http://127.0.0.1:<port> of the fake metadata service. */
    readonly imdsEndpoint: string;
    /** Extra environment: the runner's interval knobs, the fake job's knobs. */
    readonly env?: Readonly<Record<string, string>>;
    /** A fresh temp dir when absent; reuse one to run "on the same node" again. */
    readonly baseDir?: string;
    /** Killed (SIGKILL) after this long; default 600 s (a loaded machine makes every AWS CLI call seconds long). */
    readonly timeoutMs?: number;
    /** Directories put on PATH right after the recorders (e.g. a failing stand-in for a tool, a venv). */
    readonly pathPrepend?: readonly string[];
    /** Called once the runner started, with its pid (e.g. to flip the spot notice later). */
    readonly onStart?: (pid: number) => void;
    /** A command the runner is started under, e.g. `unshare -m ...` for a private mount namespace; the runner's
     *  own argv (bash run-job.sh) is appended. */
    readonly wrap?: readonly string[];
}

function readLines(path: string): string[] {
    return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0) : [];
}

/** A recorder's "<ISO time>\t<args>" lines. */
function timedCalls(path: string): Array<{ at: string; args: string }> {
    return readLines(path).map((l) => {
        const [at = "", args = ""] = l.split("\t");
        return { at, args };
    });
}

/**
 * A train run's runner settings for a local test or benchmark: every URI from the S3 layout (runKeys) in `bucket`,
 * the fake job in process mode, no watchdog on; `overrides` replace any field.
 */
export function localRunSettings(bucket: string, campaign: string, run: string, dataUri: string, overrides: Partial<RunnerSettings> = {}): RunnerSettings {
    const keys = runKeys(campaign, run);
    return {
        role: "train",
        campaign,
        run,
        region: "us-east-1",
        specUri: s3Uri(bucket, keys.spec),
        statusUri: s3Uri(bucket, keys.status),
        logsUri: s3Uri(bucket, keys.logs),
        outputUri: s3Uri(bucket, keys.output),
        checkpointsUri: s3Uri(bucket, keys.checkpoints),
        dataUri,
        jobMode: "process",
        command: `python3 ${fakeJob}`,
        maxRuntimeSeconds: 600,
        gpuIdleMinutes: 0,
        gpuIdleThreshold: 5,
        keepCheckpoints: 2,
        secretParameters: {},
        ...overrides,
    };
}

/** A temp dir with work/ and rec/ inside. */
export function runnerBaseDir(prefix = "campaign-runner-"): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    mkdirSync(join(dir, "work"), { recursive: true });
    mkdirSync(join(dir, "rec"), { recursive: true });
    return dir;
}

/**
 * The directory of the python3 that is first on PATH, resolved through shims (pyenv): the AWS CLI v1
 * installed with it lives there, and calling it directly saves a shim's start-up on every call.
 */
export const pythonBinDir: string | undefined = (() => {
    try {
        const exe = execFileSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();
        const dir = dirname(exe);
        return existsSync(join(dir, "aws")) ? dir : undefined;
    } catch {
        return undefined;
    }
})();

/** The environment the runner gets: the settings, the local endpoints, fast test intervals. */
export function runnerProcessEnv(options: RunnerOptions, baseDir: string): NodeJS.ProcessEnv {
    return {
        PATH: [recorderBin, ...(options.pathPrepend ?? []), pythonBinDir, process.env.PATH ?? "/usr/bin:/bin"].filter(Boolean).join(":"),
        HOME: baseDir,
        LANG: "C.UTF-8",
        ...fakeAwsEnv,
        AWS_ENDPOINT_URL: options.awsEndpoint,
        AWS_EC2_METADATA_SERVICE_ENDPOINT: options.imdsEndpoint,
        AWS_MAX_ATTEMPTS: "2",
        CAMPAIGN_ENV_FILE: join(baseDir, "no-runner.env"),
        CAMPAIGN_WORK_DIR: join(baseDir, "work"),
        CAMPAIGN_STATUS_INTERVAL_SECONDS: "1",
        CAMPAIGN_SPOT_POLL_SECONDS: "1",
        CAMPAIGN_STOP_GRACE_SECONDS: "20",
        // The node's own spot grace: a real trainer (the rehearsal) on a loaded machine needs it to save.
        CAMPAIGN_SPOT_GRACE_SECONDS: "80",
        RECORDER_DIR: join(baseDir, "rec"),
        CAMPAIGN_METRICS_AGENT_CTL: agentCtlRecorder,
        ...runnerEnv(options.settings),
        ...options.env,
    };
}

/** Runs the runner to its end and reports what it did. */
export function runRunner(options: RunnerOptions): Promise<RunnerResult> {
    const baseDir = options.baseDir ?? runnerBaseDir();
    const recorderDir = join(baseDir, "rec");
    const started = Date.now();
    return new Promise((resolvePromise, reject) => {
        const [command, ...args] = [...(options.wrap ?? []), "bash", runnerScript];
        const child = spawn(command!, args, {
            cwd: repoRoot,
            env: runnerProcessEnv(options, baseDir),
            stdio: ["ignore", "pipe", "pipe"],
        });
        let output = "";
        child.stdout.on("data", (c: Buffer) => (output += c.toString()));
        child.stderr.on("data", (c: Buffer) => (output += c.toString()));
        const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 600_000);
        child.on("error", reject);
        if (child.pid !== undefined) options.onStart?.(child.pid);
        child.on("close", (code) => {
            clearTimeout(timer);
            resolvePromise({
                code,
                output,
                shutdownCalls: readLines(join(recorderDir, "shutdown.calls")),
                dockerCalls: readLines(join(recorderDir, "docker.calls")).map((l) => JSON.parse(l) as string[]),
                agentCalls: timedCalls(join(recorderDir, "agent.calls")),
                systemctlCalls: timedCalls(join(recorderDir, "systemctl.calls")),
                workDir: join(baseDir, "work"),
                recorderDir,
                elapsedMs: Date.now() - started,
            });
        });
    });
}
