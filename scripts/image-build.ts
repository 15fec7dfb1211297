// The regional image build's step (images.buildOn: region), run by `pulumi up` as a command.local.Command
// after the CodeBuild project and the build context exist:
//
//   npx tsx scripts/image-build.ts --project P --repository R --tag T [--wait --max-seconds N]
//
// Looks the content tag up in ECR first: when it exists nothing is built and it prints
// "image-build: exists sha256:..."; otherwise it starts a build of the project and prints
// "image-build: started <build id>" (components/campaign/imageTag.ts reads both). Without --wait it returns
// at once and the gate (scripts/gate.ts) waits for the image beside the prepared data; with --wait (the
// prep image, which the prep node needs before it starts) it waits for the build, and on a failed build
// prints its last log lines and exits 1. Exit 2 on bad arguments. AWS SDK with the standard credential chain;
// AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_ECR / _CODEBUILD / _S3) points it at an emulator.
import { BatchGetBuildsCommand, CodeBuildClient, StartBuildCommand, type Build } from "@aws-sdk/client-codebuild";
import { DescribeImagesCommand, ECRClient } from "@aws-sdk/client-ecr";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { gunzipSync } from "node:zlib";
import { FAILED_BUILD } from "../components/campaign/gate";
import { formatBuildStart } from "../components/campaign/imageTag";
import { localCommandCredentials } from "../components/campaign/assumeRoles";

interface AwsError {
    name?: string;
    message?: string;
}

/** The digest of repository:tag in ECR, or undefined when the tag (or the repository) is not there. */
export async function imageDigest(ecr: ECRClient, repository: string, tag: string): Promise<string | undefined> {
    try {
        const out = await ecr.send(new DescribeImagesCommand({ repositoryName: repository, imageIds: [{ imageTag: tag }] }));
        return out.imageDetails?.[0]?.imageDigest;
    } catch (err) {
        if ((err as AwsError).name === "ImageNotFoundException") return undefined;
        throw err;
    }
}

/** The build as CodeBuild reports it; an id CodeBuild does not know is an error that names it. */
export async function describeBuild(codebuild: CodeBuildClient, buildId: string): Promise<Build> {
    const out = await codebuild.send(new BatchGetBuildsCommand({ ids: [buildId] }));
    const build = out.builds?.[0];
    if (!build) throw new Error(`CodeBuild does not know the build ${buildId} (${out.buildsNotFound?.join(", ") ?? "not found"})`);
    return build;
}

/**
 * The build's last log lines: its S3 log (logs.s3LogsArn, arn:aws:s3:::bucket/key, gzipped unless the
 * project disabled that), else the messages of its phases. Never throws: the verdict matters more.
 */
export async function buildLogTail(s3: S3Client, build: Build, lines: number): Promise<string> {
    const phases = (build.phases ?? [])
        .filter((p) => p.contexts?.some((c) => c.message))
        .map((p) => `${p.phaseType} ${p.phaseStatus ?? ""}: ${p.contexts!.map((c) => c.message).join("; ")}`);
    const arn = build.logs?.s3LogsArn;
    const m = arn ? /^arn:aws[a-z-]*:s3:::([^/]+)\/(.+)$/.exec(arn) : null;
    if (m) {
        try {
            const out = await s3.send(new GetObjectCommand({ Bucket: m[1]!, Key: m[2]! }));
            let bytes = Buffer.from((await out.Body?.transformToByteArray()) ?? []);
            if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
            const text = bytes.toString("utf8").trimEnd().split("\n").slice(-lines).join("\n");
            return `---- last ${lines} lines of s3://${m[1]}/${m[2]}\n${text}${phases.length ? `\n---- phases\n${phases.join("\n")}` : ""}`;
        } catch (err) {
            return `the build's log s3://${m[1]}/${m[2]} could not be read: ${(err as Error).message}${phases.length ? `\n${phases.join("\n")}` : ""}`;
        }
    }
    return phases.length ? `---- build phases\n${phases.join("\n")}` : "the build has no S3 log and no phase messages";
}

interface Args {
    readonly project: string;
    readonly repository: string;
    readonly tag: string;
    readonly wait: boolean;
    readonly maxSeconds: number;
    readonly intervalSeconds: number;
}

const USAGE = "usage: image-build.ts --project P --repository R --tag T [--wait --max-seconds N] [--interval S]";

export function parseArgs(argv: readonly string[]): Args {
    const values = new Map<string, string>();
    let wait = false;
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i]!;
        if (flag === "--wait") {
            wait = true;
            continue;
        }
        if (!["--project", "--repository", "--tag", "--max-seconds", "--interval"].includes(flag)) throw new Error(`unknown argument ${flag}; ${USAGE}`);
        if (argv[i + 1] === undefined) throw new Error(`${flag} needs a value; ${USAGE}`);
        values.set(flag, argv[++i]!);
    }
    const need = (flag: string): string => {
        const value = values.get(flag);
        if (!value) throw new Error(`${flag} is required; ${USAGE}`);
        return value;
    };
    const whole = (flag: string, fallback: string): number => {
        const value = values.get(flag) ?? fallback;
        if (!/^\d+$/.test(value)) throw new Error(`${flag} must be a whole number of seconds, got '${value}'; ${USAGE}`);
        return Number(value);
    };
    return { project: need("--project"), repository: need("--repository"), tag: need("--tag"), wait, maxSeconds: whole("--max-seconds", "5400"), intervalSeconds: Math.max(1, whole("--interval", process.env.CAMPAIGN_GATE_INTERVAL ?? "15")) };
}

const say = (line: string) => process.stdout.write(`${line}\n`);

export async function runImageBuild(args: Args): Promise<number> {
    // As the stack's identity: AWS_PROFILE, then the roles of CAMPAIGN_ASSUME_ROLES (aws:assumeRoles) in order.
    const identity = localCommandCredentials();
    const ecr = new ECRClient({ ...identity });
    const codebuild = new CodeBuildClient({ ...identity });
    const existing = await imageDigest(ecr, args.repository, args.tag);
    if (existing) {
        say(`${args.repository}:${args.tag} is already in ECR: not rebuilt`);
        say(formatBuildStart({ kind: "exists", digest: existing }));
        return 0;
    }
    const started = await codebuild.send(new StartBuildCommand({ projectName: args.project }));
    const buildId = started.build?.id;
    if (!buildId) throw new Error(`StartBuild of ${args.project} returned no build id`);
    say(`building ${args.repository}:${args.tag} in CodeBuild (${args.project})`);
    say(formatBuildStart({ kind: "started", buildId }));
    if (!args.wait) return 0;

    const endpoint = process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    const s3 = new S3Client({ ...identity, ...(endpoint ? { endpoint, forcePathStyle: true } : {}) });
    const began = Date.now();
    for (;;) {
        const build = await describeBuild(codebuild, buildId);
        const status = build.buildStatus ?? "IN_PROGRESS";
        if (status === "SUCCEEDED") {
            const digest = await imageDigest(ecr, args.repository, args.tag);
            if (digest) {
                say(`image-build: built ${args.repository}:${args.tag} ${digest}`);
                return 0;
            }
            process.stderr.write(`${await buildLogTail(s3, build, 50)}\nimage-build: the build ${buildId} says SUCCEEDED but ECR has no ${args.repository}:${args.tag}\n`);
            return 1;
        }
        if (FAILED_BUILD.has(status)) {
            process.stderr.write(`${await buildLogTail(s3, build, 50)}\nimage-build: the build ${buildId} ended ${status} in phase ${build.currentPhase ?? "?"}; fix the cause and run pulumi up again\n`);
            return 1;
        }
        if ((Date.now() - began) / 1000 >= args.maxSeconds) {
            process.stderr.write(`image-build: the build ${buildId} is still ${status} after ${args.maxSeconds}s\n`);
            return 1;
        }
        say(`image-build: ${buildId} ${status} (${build.currentPhase ?? "?"}), ${Math.round((Date.now() - began) / 1000)}s`);
        await new Promise((resolve) => setTimeout(resolve, args.intervalSeconds * 1000));
    }
}

if (require.main === module) {
    let args: Args;
    try {
        args = parseArgs(process.argv.slice(2));
    } catch (err) {
        process.stderr.write(`image-build: ${(err as Error).message}\n`);
        process.exit(2);
    }
    runImageBuild(args).then(
        (code) => process.exit(code),
        (err: unknown) => {
            process.stderr.write(`image-build: ${(err as AwsError).name ?? "error"}: ${(err as Error).message}\n`);
            process.exit(1);
        },
    );
}
