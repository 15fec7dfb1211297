// Image: the job images. An ECR repository and, per job, a build of containers/<job>/Dockerfile (build
// context containers/), tagged by the content of the files the job's image is built from, so an
// unchanged image keeps its tag and is not rebuilt, and a node's user data does not change because
// another job's code did. The build runs in the campaign's region (ImageBuild, images.buildOn: region, the
// default: no Docker here) or with this machine's Docker (buildOn: local). Or a given image URI and no build.
import * as aws from "@pulumi/aws";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { contextArchive, imageSource } from "../campaign/imageTag";
import { ImageBuild } from "./imageBuild";

export type JobImage = "trainer" | "prep";
export const JOB_IMAGES: readonly JobImage[] = ["trainer", "prep"];

export interface ImageArgs {
    /** The ECR repository's name (created only when something is built). */
    readonly repositoryName: string;
    /** The images the campaign needs. */
    readonly jobs: readonly JobImage[];
    /** A pushed image per job: that job is not built. Default: build every job. */
    readonly given?: Readonly<Partial<Record<JobImage, string>>>;
    /** The build context. Default: "containers" (relative to the project root). */
    readonly contextDir?: string;
    /** Target platform. Default: linux/amd64 (every instance type in the catalog). */
    readonly platform?: string;
    /** Tags for the repository. */
    readonly tags: Readonly<Record<string, string>>;
    /** Where images are built: region (CodeBuild, needs `regional`) or local (this machine's Docker). Default: local. */
    readonly buildOn?: "region" | "local";
    /** What a regional build needs: the campaign's bucket, the account, the local step's environment. */
    readonly regional?: {
        readonly campaign: string;
        readonly bucketName: string;
        readonly bucketArn: string;
        readonly storeReady: pulumi.Output<string>;
        readonly accountId: string;
        readonly commandEnv: Record<string, string>;
    };
}

function listFiles(dir: string): string[] {
    if (!fs.existsSync(dir)) return [];
    const stat = fs.statSync(dir);
    if (stat.isFile()) return [dir];
    return fs
        .readdirSync(dir)
        .filter((entry) => entry !== "__pycache__" && !entry.endsWith(".pyc") && !entry.startsWith("."))
        .sort()
        .flatMap((entry) => listFiles(path.join(dir, entry)));
}

/**
 * The files a job's image is built from: its own folder and everything in the context that is not
 * another job's folder (common code, schemas, requirements).
 */
export function imageInputs(contextDir: string, job: JobImage): string[] {
    if (!fs.existsSync(contextDir)) return [];
    const others = new Set(JOB_IMAGES.filter((j) => j !== job));
    return fs
        .readdirSync(contextDir)
        .filter((entry) => !others.has(entry as JobImage) && entry !== "__pycache__" && !entry.startsWith("."))
        .sort()
        .flatMap((entry) => listFiles(path.join(contextDir, entry)));
}

/** <job>-<16 hex of sha256 over the inputs' relative paths and bytes>. */
export function contentTag(contextDir: string, job: JobImage): string {
    const hash = createHash("sha256");
    for (const file of imageInputs(contextDir, job)) {
        hash.update(path.relative(contextDir, file).split(path.sep).join("/"));
        hash.update("\0");
        hash.update(fs.readFileSync(file));
        hash.update("\0");
    }
    return `${job}-${hash.digest("hex").slice(0, 16)}`;
}

/** The ECR repository ARN of an ECR image URI (so nodes may pull it); undefined for other registries. */
export function ecrRepositoryArn(uri: string): string | undefined {
    const m = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([^:@]+)/.exec(uri);
    if (!m) return undefined;
    const partition = uri.includes(".amazonaws.com.cn/") ? "aws-cn" : "aws";
    return `arn:${partition}:ecr:${m[2]}:${m[1]}:repository/${m[3]}`;
}

export class Image extends pulumi.ComponentResource {
    /** Image reference per job: the built image by digest (repository@sha256:...), or the given URI. */
    public readonly uris: Readonly<Partial<Record<JobImage, pulumi.Output<string>>>>;
    /** ECR repositories the nodes must be able to pull from. */
    public readonly repositoryArns: pulumi.Output<string>[];
    /** The repository, when something is built. */
    public readonly repository?: aws.ecr.Repository;
    /** The docker builds, by job (buildOn: local). */
    public readonly builds: Readonly<Partial<Record<JobImage, docker.Image>>>;
    /** The regional builds, by job (buildOn: region): their digest is known once the build has pushed (digestAfter). */
    public readonly regionalBuilds: Readonly<Partial<Record<JobImage, ImageBuild>>>;

    constructor(name: string, args: ImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:Image", name, {}, opts);
        const contextDir = args.contextDir ?? "containers";
        const toBuild = args.jobs.filter((job) => !args.given?.[job]);
        const uris: Partial<Record<JobImage, pulumi.Output<string>>> = {};
        const builds: Partial<Record<JobImage, docker.Image>> = {};
        const regionalBuilds: Partial<Record<JobImage, ImageBuild>> = {};
        const buildOn = args.buildOn ?? "local";
        if (buildOn === "region" && toBuild.length > 0 && !args.regional) throw new pulumi.ResourceError("images.buildOn region needs the campaign's bucket and account (ImageArgs.regional)", this);
        const arns: pulumi.Output<string>[] = [];

        for (const job of args.jobs) {
            const given = args.given?.[job];
            if (given) {
                uris[job] = pulumi.output(given);
                const arn = ecrRepositoryArn(given);
                if (arn) arns.push(pulumi.output(arn));
            }
        }

        if (toBuild.length > 0) {
            const repository = new aws.ecr.Repository(
                `${name}-repo`,
                {
                    name: args.repositoryName,
                    // Destroy removes the images with the repository: an image is rebuilt from source, it is not an artifact.
                    forceDelete: true,
                    // A regional build pushes each content tag once (its step skips an existing tag), so the tag can
                    // be immutable; a local docker build pushes its tag again on every update.
                    imageTagMutability: buildOn === "region" ? "IMMUTABLE" : "MUTABLE",
                    imageScanningConfiguration: { scanOnPush: true },
                    encryptionConfigurations: [{ encryptionType: "AES256" }],
                    tags: { ...args.tags },
                },
                { parent: this },
            );
            new aws.ecr.LifecyclePolicy(
                `${name}-lifecycle`,
                {
                    repository: repository.name,
                    policy: JSON.stringify({
                        rules: [{ rulePriority: 1, description: "keep the 10 newest images", selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 10 }, action: { type: "expire" } }],
                    }),
                },
                { parent: this },
            );
            const regional = buildOn === "region" ? args.regional : undefined;
            for (const job of regional ? toBuild : []) {
                const source = imageSource(contextDir, job);
                regionalBuilds[job] = new ImageBuild(
                    `${name}-${job}-build`,
                    {
                        source,
                        context: contextArchive(contextDir, source),
                        campaign: regional!.campaign,
                        bucketName: regional!.bucketName,
                        bucketArn: regional!.bucketArn,
                        storeReady: regional!.storeReady,
                        repository,
                        repositoryName: args.repositoryName,
                        accountId: regional!.accountId,
                        commandEnv: regional!.commandEnv,
                        // The prep node needs its image before it boots; the trainer's is awaited by the gate, beside prep.
                        wait: job === "prep",
                        tags: { ...args.tags },
                    },
                    { parent: this },
                );
            }
            const auth = regional ? undefined : aws.ecr.getAuthorizationTokenOutput({ registryId: repository.registryId }, { parent: this });
            for (const job of auth ? toBuild : []) {
                const dockerfile = path.join(contextDir, job, "Dockerfile");
                const image = new docker.Image(
                    `${name}-${job}`,
                    {
                        imageName: pulumi.interpolate`${repository.repositoryUrl}:${contentTag(contextDir, job)}`,
                        build: { context: contextDir, dockerfile, platform: args.platform ?? "linux/amd64" },
                        registry: { server: repository.repositoryUrl, username: auth!.userName, password: pulumi.secret(auth!.password) },
                    },
                    { parent: this },
                );
                builds[job] = image;
                // Nodes pull by digest: the tag is mutable in ECR, the digest names exactly the bytes pushed.
                // https://www.pulumi.com/registry/packages/docker/api-docs/image/ (repoDigest)
                uris[job] = image.repoDigest;
            }
            arns.push(repository.arn);
            this.repository = repository;
        }

        this.uris = uris;
        this.builds = builds;
        this.regionalBuilds = regionalBuilds;
        this.repositoryArns = arns;
        this.registerOutputs({ uris: this.uris, repositoryArns: this.repositoryArns });
    }
}
