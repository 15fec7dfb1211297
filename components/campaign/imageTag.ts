// A job image's identity and what the regional build runs (images.buildOn: region). The tag is a hash of
// exactly what goes into the image: the Dockerfile (which names the base image), the files its COPY/ADD
// instructions take from the context (requirements and code), and the base image reference, so a changed
// requirement or trainer file gives a new tag and a changed README (not copied) does not. An image whose
// tag already exists in ECR is never rebuilt. The build context uploaded for the build is the same file
// list, as a deterministic gzipped tar. Pure apart from reading the context's files.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import type { Experiment } from "../config/schema";
import { imagesToBuild } from "../plan/imageBuild";

export type ImageJob = "trainer" | "prep";

export interface DockerfileFacts {
    /** The FROM references, in order (a multi-stage build has several). */
    readonly baseImages: readonly string[];
    /** The context paths the COPY/ADD instructions read (not --from=<stage> copies). */
    readonly copySources: readonly string[];
}

/** Logical lines of a Dockerfile: continuations joined, comments and blank lines dropped. */
function logicalLines(text: string): string[] {
    const out: string[] = [];
    let current = "";
    for (const raw of text.split(/\r?\n/)) {
        const line = raw.trim();
        if (current === "" && (line === "" || line.startsWith("#"))) continue;
        if (line.endsWith("\\")) {
            current += `${line.slice(0, -1)} `;
            continue;
        }
        out.push(current + line);
        current = "";
    }
    if (current.trim()) out.push(current.trim());
    return out;
}

/** The base images and copied context paths of a Dockerfile. Wildcards and URLs are refused: the tag could not name them. */
export function dockerfileFacts(text: string, label = "Dockerfile"): DockerfileFacts {
    const baseImages: string[] = [];
    const copySources: string[] = [];
    for (const line of logicalLines(text)) {
        const [instruction, ...rest] = line.split(/\s+/);
        const kind = instruction!.toUpperCase();
        if (kind === "FROM") {
            const args = rest.filter((a) => !a.startsWith("--"));
            if (!args[0]) throw new Error(`${label}: FROM without an image`);
            baseImages.push(args[0]);
        } else if (kind === "COPY" || kind === "ADD") {
            const flags = rest.filter((a) => a.startsWith("--"));
            if (flags.some((f) => f.startsWith("--from="))) continue; // from another stage, not the context
            const body = rest.filter((a) => !a.startsWith("--")).join(" ");
            const args = body.startsWith("[") ? (JSON.parse(body) as string[]) : body.split(/\s+/);
            if (args.length < 2) throw new Error(`${label}: ${kind} needs a source and a destination: ${line}`);
            for (const source of args.slice(0, -1)) {
                if (/[*?[]/.test(source)) throw new Error(`${label}: ${kind} ${source}: wildcards are not supported (name the files or the folder), so the image tag can name its inputs`);
                if (/^[a-z]+:\/\//i.test(source)) throw new Error(`${label}: ${kind} ${source}: a URL cannot be part of the image's content hash; download it in a RUN step with a pinned checksum`);
                copySources.push(source.replace(/^\.\//, "").replace(/\/+$/, ""));
            }
        }
    }
    if (baseImages.length === 0) throw new Error(`${label}: no FROM`);
    return { baseImages, copySources };
}

/** Whether a base image reference names its bytes (name@sha256:...) rather than a movable tag. */
export function isPinned(reference: string): boolean {
    return /@sha256:[0-9a-f]{64}$/.test(reference);
}

const SKIPPED = (name: string) => name === "__pycache__" || name.endsWith(".pyc") || name.startsWith(".");

function filesUnder(contextDir: string, rel: string): string[] {
    const abs = path.join(contextDir, rel);
    if (!fs.existsSync(abs)) throw new Error(`${abs}: copied by the Dockerfile but missing from the build context`);
    if (fs.statSync(abs).isFile()) return [rel];
    return fs
        .readdirSync(abs)
        .filter((entry) => !SKIPPED(entry))
        .sort()
        .flatMap((entry) => filesUnder(contextDir, rel === "" || rel === "." ? entry : `${rel}/${entry}`));
}

export interface ImageSource {
    readonly job: ImageJob;
    /** <job>-<16 hex of sha256 over the base references, the inputs' relative paths and bytes>. */
    readonly tag: string;
    /** The Dockerfile's path in the context (<job>/Dockerfile). */
    readonly dockerfile: string;
    /** Every file of the context the image is built from, relative to the context, sorted, the Dockerfile included. */
    readonly files: readonly string[];
    readonly baseImages: readonly string[];
    /** False when a base image is a tag (e.g. nvcr.io/nvidia/pytorch:25.11-py3): the tag is hashed, not the bytes it names today. */
    readonly basePinned: boolean;
}

/** What a job's image is built from, and its content tag. */
export function imageSource(contextDir: string, job: ImageJob): ImageSource {
    const dockerfile = `${job}/Dockerfile`;
    const text = fs.readFileSync(path.join(contextDir, dockerfile), "utf8");
    const facts = dockerfileFacts(text, path.join(contextDir, dockerfile));
    const files = [...new Set([dockerfile, ...facts.copySources.flatMap((source) => filesUnder(contextDir, source))])].sort();
    const hash = createHash("sha256");
    for (const base of facts.baseImages) hash.update(`base\0${base}\0`);
    for (const file of files) {
        hash.update(`${file}\0`);
        hash.update(fs.readFileSync(path.join(contextDir, file)));
        hash.update("\0");
    }
    return { job, tag: `${job}-${hash.digest("hex").slice(0, 16)}`, dockerfile, files, baseImages: facts.baseImages, basePinned: facts.baseImages.every(isPinned) };
}

// ---------------------------------------------------------------- the build context, as a gzipped tar

function octal(value: number, width: number): string {
    return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

/** One ustar header: a regular file, mode 0644, owner 0, mtime 0 (so the archive depends on content only). */
function tarHeader(name: string, size: number): Buffer {
    if (Buffer.byteLength(name) > 100) throw new Error(`${name}: longer than the 100 bytes a tar header holds`);
    const header = Buffer.alloc(512, 0);
    header.write(name, 0, "utf8");
    header.write(octal(0o644, 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(size, 12), 124);
    header.write(octal(0, 12), 136);
    header.write("        ", 148); // the checksum counts its own field as spaces
    header.write("0", 156);
    header.write("ustar\0", 257);
    header.write("00", 263);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    return header;
}

/** The context the build needs (the source's files), as a gzipped tar: the same bytes for the same tag. */
export function contextArchive(contextDir: string, source: ImageSource): Buffer {
    const parts: Buffer[] = [];
    for (const file of source.files) {
        const data = fs.readFileSync(path.join(contextDir, file));
        parts.push(tarHeader(file, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512, 0));
    }
    parts.push(Buffer.alloc(1024, 0));
    return gzipSync(Buffer.concat(parts), { level: 9 });
}

// ---------------------------------------------------------------- what the build runs

/** The variables the buildspec reads, set on the build project per job. */
export interface BuildVariables {
    /** <account>.dkr.ecr.<region>.amazonaws.com/<repository> */
    readonly REPOSITORY_URI: string;
    readonly IMAGE_TAG: string;
    /** s3://<bucket>/<imageContextKey> */
    readonly CONTEXT_URI: string;
    /** The Dockerfile's path inside the context. */
    readonly DOCKERFILE: string;
}

/**
 * The build's commands (buildspec version 0.2): fetch the context from the campaign's bucket, log in to the
 * campaign's registry, build for linux/amd64 and push the content tag. Everything in the build phase: a failed
 * command there ends the build as FAILED (post_build would run after a failed build).
 * https://docs.aws.amazon.com/codebuild/latest/userguide/build-spec-ref.html
 */
export const BUILDSPEC = [
    "version: 0.2",
    "phases:",
    "  build:",
    "    commands:",
    '      - aws s3 cp "$CONTEXT_URI" /tmp/context.tar.gz',
    "      - mkdir -p /tmp/context && tar -xzf /tmp/context.tar.gz -C /tmp/context",
    '      - aws ecr get-login-password | docker login --username AWS --password-stdin "${REPOSITORY_URI%%/*}"',
    '      - docker build --platform linux/amd64 -f "/tmp/context/$DOCKERFILE" -t "$REPOSITORY_URI:$IMAGE_TAG" /tmp/context',
    '      - docker push "$REPOSITORY_URI:$IMAGE_TAG"',
    "",
].join("\n");

/** What the image build step printed: the build it started, or that the tag already existed (nothing built). */
export type BuildStart = { readonly kind: "started"; readonly buildId: string } | { readonly kind: "exists"; readonly digest: string };

const STARTED = /^image-build: started (\S+:\S+)$/m;
const EXISTS = /^image-build: exists (sha256:[0-9a-f]{64})$/m;

export function formatBuildStart(start: BuildStart): string {
    return start.kind === "started" ? `image-build: started ${start.buildId}` : `image-build: exists ${start.digest}`;
}

/** The build step's verdict from its output; an error names what was printed instead. */
export function parseBuildStart(stdout: string): BuildStart {
    const started = STARTED.exec(stdout);
    if (started) return { kind: "started", buildId: started[1]! };
    const exists = EXISTS.exec(stdout);
    if (exists) return { kind: "exists", digest: exists[1]! };
    throw new Error(`the image build step printed neither "image-build: started <build id>" nor "image-build: exists <digest>": ${stdout.trim().slice(-300) || "(nothing)"}`);
}

/**
 * The rehearsal's stand-in for the image step, one line per image the campaign builds: what the real campaign
 * would build (its content tag, where) and what runs here instead (the jobs from containers/ in process mode).
 */
export function imageStandIns(experiment: Experiment, contextDir: string): string[] {
    return imagesToBuild(experiment).map((job) => {
        const where = experiment.images.buildOn === "region" ? `in ${experiment.region} by CodeBuild, unless ECR already has that tag` : "with this machine's Docker (images.buildOn: local)";
        return `image ${job}: ${imageSource(contextDir, job).tag} built ${where} -> containers/${job}/ runs in process mode here, no image is built`;
    });
}
