// The prep gate, run by `pulumi up` before any GPU node is requested (components/campaign/gate.ts decides):
//
//   npx tsx scripts/gate.ts --marker s3://B/datasets/H/_SUCCESS --status s3://B/runs/C/prep/status.json \
//       --logs s3://B/runs/C/prep/logs/ --max-seconds N [--instance-id I] [--interval S]
//       [--image-repository R --image-tag T [--build-id ID]]
//
// With an image (images.buildOn: region) it also waits for R:T in ECR and watches the CodeBuild build that
// makes it (scripts/image-build.ts started it); a failed build fails the gate with the build's last log lines.
// Exits 0 when the marker (and the image) exist; 1 with the reason (and the prep's last log lines) when it never will; 2 on
// bad arguments. Uses the AWS SDK with the standard credential chain (AWS_PROFILE, which the Campaign sets from
// aws:profile), then assumes the roles of CAMPAIGN_ASSUME_ROLES in order (aws:assumeRoles, components/campaign/
// assumeRoles.ts), and honours AWS_ENDPOINT_URL (the tests use a local emulator). Environment:
// CAMPAIGN_GATE_INTERVAL (seconds between polls, default 15), CAMPAIGN_GATE_LOG_LINES (default 50).
import { EC2Client } from "@aws-sdk/client-ec2";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { CodeBuildClient, type Build } from "@aws-sdk/client-codebuild";
import { ECRClient } from "@aws-sdk/client-ecr";
import { isCredentialError, type AwsError } from "../components/campaign/awsErrors";
import { instanceState } from "../components/campaign/instanceState";
import { gateVerdict, type GateLimits, type ImageObservation, type PrepStatus } from "../components/campaign/gate";
import { buildLogTail, describeBuild, imageDigest } from "./image-build";
import { localCommandCredentials } from "../components/campaign/assumeRoles";

interface Args extends GateLimits {
    readonly logsUri: string;
    readonly intervalSeconds: number;
}

const USAGE = "usage: gate.ts --marker s3://B/K --status s3://B/K --logs s3://B/P/ --max-seconds N [--instance-id I] [--interval S] [--image-repository R --image-tag T [--build-id ID]]";

export function parseArgs(argv: readonly string[]): Args {
    const values = new Map<string, string>();
    for (let i = 0; i < argv.length; i += 2) {
        const flag = argv[i]!;
        if (!["--marker", "--status", "--logs", "--max-seconds", "--instance-id", "--interval", "--image-repository", "--image-tag", "--build-id"].includes(flag)) throw new Error(`unknown argument ${flag}; ${USAGE}`);
        if (argv[i + 1] === undefined) throw new Error(`${flag} needs a value; ${USAGE}`);
        values.set(flag, argv[i + 1]!);
    }
    const uri = (flag: string): string => {
        const value = values.get(flag);
        if (!value || !/^s3:\/\/[^/]+\/.+$/.test(value)) throw new Error(`${flag} must be an s3://bucket/key URI, got '${value ?? ""}'; ${USAGE}`);
        return value;
    };
    const whole = (flag: string, fallback?: string): number => {
        const value = values.get(flag) ?? fallback;
        if (value === undefined || !/^\d+$/.test(value)) throw new Error(`${flag} must be a whole number of seconds, got '${value ?? ""}'; ${USAGE}`);
        return Number(value);
    };
    const intervalSeconds = whole("--interval", process.env.CAMPAIGN_GATE_INTERVAL ?? "15");
    if (intervalSeconds < 1) throw new Error(`--interval must be at least 1 second; ${USAGE}`);
    const instanceId = values.get("--instance-id");
    const repository = values.get("--image-repository");
    const tag = values.get("--image-tag");
    if ((repository === undefined) !== (tag === undefined)) throw new Error(`--image-repository and --image-tag go together; ${USAGE}`);
    if (values.has("--build-id") && !repository) throw new Error(`--build-id needs --image-repository and --image-tag; ${USAGE}`);
    const buildId = values.get("--build-id");
    return {
        markerUri: uri("--marker"),
        statusUri: uri("--status"),
        logsUri: uri("--logs"),
        maxSeconds: whole("--max-seconds"),
        intervalSeconds,
        ...(instanceId ? { instanceId } : {}),
        ...(repository && tag ? { image: { repository, tag, ...(buildId ? { buildId } : {}) } } : {}),
    };
}

function split(uri: string): { Bucket: string; Key: string } {
    const m = /^s3:\/\/([^/]+)\/(.*)$/.exec(uri)!;
    return { Bucket: m[1]!, Key: m[2]! };
}

const isMissing = (e: AwsError) => e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404;
const say = (line: string) => process.stdout.write(`gate: ${line}\n`);

/** The gate's clients, as the stack's identity: AWS_PROFILE, then the roles of CAMPAIGN_ASSUME_ROLES in order. */
function clients(): { s3: S3Client; ec2: EC2Client; ecr: ECRClient; codebuild: CodeBuildClient } {
    const endpoint = process.env.AWS_ENDPOINT_URL;
    const identity = localCommandCredentials();
    return {
        s3: new S3Client({ ...identity, ...(endpoint ? { endpoint, forcePathStyle: true } : {}) }),
        ec2: new EC2Client({ ...identity, ...(endpoint ? { endpoint } : {}) }),
        // ECR and CodeBuild read AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_ECR / _CODEBUILD) themselves.
        ecr: new ECRClient({ ...identity }),
        codebuild: new CodeBuildClient({ ...identity }),
    };
}

async function readStatus(s3: S3Client, uri: string): Promise<PrepStatus | undefined> {
    try {
        const out = await s3.send(new GetObjectCommand(split(uri)));
        const text = (await out.Body?.transformToString("utf-8")) ?? "";
        try {
            return JSON.parse(text) as PrepStatus;
        } catch {
            return undefined; // a half-written or foreign file: not a verdict
        }
    } catch (err) {
        if (isMissing(err as AwsError)) return undefined;
        throw err;
    }
}

/**
 * Whether the marker exists. A listing rather than HeadObject: a HEAD error has no body, so S3's answer to
 * expired credentials would arrive as a bare 400 with no code, and the gate could not tell it from a hiccup.
 */
async function markerExists(s3: S3Client, uri: string): Promise<boolean> {
    const { Bucket, Key } = split(uri);
    const out = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: Key, MaxKeys: 1 }));
    return (out.Contents ?? []).some((object) => object.Key === Key);
}

/** The last lines of every log under the prep's logs/ (attempt copies excluded), to stderr. */
async function printLogs(s3: S3Client, logsUri: string, lines: number): Promise<void> {
    const { Bucket, Key: Prefix } = split(logsUri);
    try {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix }));
        for (const object of listed.Contents ?? []) {
            if (!object.Key || object.Key.includes("/attempts/")) continue;
            const out = await s3.send(new GetObjectCommand({ Bucket, Key: object.Key }));
            const text = (await out.Body?.transformToString("utf-8")) ?? "";
            process.stderr.write(`---- last ${lines} lines of s3://${Bucket}/${object.Key}\n${text.trimEnd().split("\n").slice(-lines).join("\n")}\n`);
        }
    } catch (err) {
        process.stderr.write(`gate: the prep's logs could not be read: ${(err as Error).message}\n`);
    }
}

/** The image's tag in ECR, and the build that makes it (its last state kept for the logs). */
async function observeImage(ecr: ECRClient, codebuild: CodeBuildClient, image: NonNullable<Args["image"]>): Promise<{ observation: ImageObservation; build?: Build }> {
    const digest = await imageDigest(ecr, image.repository, image.tag);
    if (digest || !image.buildId) return { observation: { exists: digest !== undefined } };
    const build = await describeBuild(codebuild, image.buildId);
    return { observation: { exists: false, buildStatus: build.buildStatus, buildPhase: build.currentPhase }, build };
}

export async function runGate(args: Args): Promise<number> {
    const { s3, ec2, ecr, codebuild } = clients();
    let lastBuild: Build | undefined;
    const logLines = Number(process.env.CAMPAIGN_GATE_LOG_LINES ?? "50");
    const started = Date.now();
    let credentialFailures = 0;
    let credentialError: string | undefined;
    say(`waiting for ${args.markerUri}${args.image ? ` and ${args.image.repository}:${args.image.tag}` : ""} (at most ${args.maxSeconds}s)`);
    for (;;) {
        let state: string | undefined;
        let marker = false;
        let status: PrepStatus | undefined;
        let image: ImageObservation | undefined;
        try {
            // The node's state first: if it had ended before the marker was looked for, the marker will not come.
            if (args.instanceId) state = await instanceState(ec2, args.instanceId);
            marker = await markerExists(s3, args.markerUri);
            if (!marker) status = await readStatus(s3, args.statusUri);
            if (args.image) {
                const seen = await observeImage(ecr, codebuild, args.image);
                image = seen.observation;
                lastBuild = seen.build ?? lastBuild;
            }
            credentialFailures = 0;
        } catch (err) {
            const e = err as AwsError;
            if (!isCredentialError(e)) {
                say(`reading the prep's state failed, trying again: ${e.name ?? "error"}: ${e.message ?? String(err)}`);
            } else {
                credentialFailures++;
                credentialError = `${e.name ?? "AccessDenied"}: ${e.message ?? ""}`.trim();
            }
        }
        const verdict = gateVerdict(
            { elapsedSeconds: (Date.now() - started) / 1000, instanceState: state, markerExists: marker, status, credentialFailures, credentialError, ...(image ? { image } : {}) },
            args,
        );
        switch (verdict.kind) {
            case "open":
                say(verdict.message);
                return 0;
            case "fail":
                if (verdict.showLogs) await printLogs(s3, args.logsUri, logLines);
                if (verdict.showBuildLogs && lastBuild) process.stderr.write(`${await buildLogTail(s3, lastBuild, logLines)}\n`);
                process.stderr.write(`gate: ${verdict.message}\n`);
                return 1;
            case "wait":
                say(verdict.message);
                await new Promise((resolve) => setTimeout(resolve, args.intervalSeconds * 1000));
        }
    }
}

if (require.main === module) {
    let args: Args;
    try {
        args = parseArgs(process.argv.slice(2));
    } catch (err) {
        process.stderr.write(`gate: ${(err as Error).message}\n`);
        process.exit(2);
    }
    runGate(args).then(
        (code) => process.exit(code),
        (err: unknown) => {
            process.stderr.write(`gate: ${(err as Error).message}\n`);
            process.exit(1);
        },
    );
}
