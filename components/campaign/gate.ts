// The prep gate: what `pulumi up` runs (a command.local.Command) before it requests any GPU node. It opens
// when the prepared dataset's _SUCCESS marker exists and, with a regional image build, the trainer image's
// content tag exists in ECR; it fails as soon as it knows either will never come: the prep reported failed
// or interrupted, the prep node is gone, the image build failed, the credentials cannot read the bucket, or
// the cap passed. The decision is this file's pure function; scripts/gate.ts observes S3
// and EC2 and prints. It watches exactly the keys layout.ts names, passed as s3:// URIs.
import { datasetSuccessKey, PREP_RUN, runKeys, s3Uri } from "./layout";
import { shellQuote } from "./shell";

export interface GateSettings {
    readonly bucket: string;
    readonly prepHash: string;
    readonly campaign: string;
    /** prep.maxHours: the gate gives up when the prep cap has passed. */
    readonly maxHours: number;
    /** The prep node's instance: only its status counts (an earlier attempt's failure is ignored), and its end without the marker fails the gate. */
    readonly instanceId?: string;
    /** The trainer image built in the region: the gate also waits for its tag in ECR and fails with a failed build. */
    readonly image?: GateImage;
}

export interface GateImage {
    /** The ECR repository's name. */
    readonly repository: string;
    readonly tag: string;
    /** The build that makes it; absent when the tag already existed (nothing was built). */
    readonly buildId?: string;
    /** The build's timeout: the gate waits at least this long. */
    readonly timeoutMinutes: number;
}

/** Seconds the gate waits past the prep cap: the prep node boots and pulls its image before the cap starts. */
export const GATE_BOOT_ALLOWANCE_SECONDS = 600;

/** Consecutive polls answered AccessDenied or expired credentials before the gate gives up. */
export const GATE_CREDENTIAL_ATTEMPTS = 3;

/** The gate's command line, as the Campaign runs it from the project root. */
export function gateCommand(g: GateSettings): string {
    if (!/^[0-9a-f]{16}$/.test(g.prepHash)) throw new Error(`not a prep hash: ${g.prepHash}`);
    const prep = runKeys(g.campaign, PREP_RUN);
    if (g.image && !/^[a-z0-9][a-z0-9._-]*$/.test(g.image.tag)) throw new Error(`not an image tag: ${g.image.tag}`);
    const maxSeconds = Math.max(Math.round(g.maxHours * 3600), (g.image?.timeoutMinutes ?? 0) * 60) + GATE_BOOT_ALLOWANCE_SECONDS;
    return [
        "npx tsx scripts/gate.ts",
        `--marker ${shellQuote(s3Uri(g.bucket, datasetSuccessKey(g.prepHash)))}`,
        `--status ${shellQuote(s3Uri(g.bucket, prep.status))}`,
        `--logs ${shellQuote(s3Uri(g.bucket, prep.logs))}`,
        `--max-seconds ${maxSeconds}`,
        ...(g.instanceId ? [`--instance-id ${shellQuote(g.instanceId)}`] : []),
        ...(g.image ? [`--image-repository ${shellQuote(g.image.repository)}`, `--image-tag ${shellQuote(g.image.tag)}`] : []),
        ...(g.image?.buildId ? [`--build-id ${shellQuote(g.image.buildId)}`] : []),
    ].join(" ");
}

/** The prep's status.json as far as the gate reads it. */
export interface PrepStatus {
    readonly phase?: string;
    readonly reason?: string | null;
    readonly instanceId?: string | null;
    readonly progress?: { readonly step?: number; readonly totalSteps?: number } | null;
}

/** One poll's observations, taken in this order: the prep node's state, then the marker, then the status. */
export interface GateObservation {
    readonly elapsedSeconds: number;
    /** EC2's state name of the prep node (pending, running, shutting-down, terminated, stopping, stopped), read before the marker. */
    readonly instanceState?: string;
    readonly markerExists: boolean;
    /** The prep's status.json; undefined when there is none yet. */
    readonly status?: PrepStatus;
    /** Consecutive polls whose reads were refused for the credentials (AccessDenied, expired, invalid key). */
    readonly credentialFailures: number;
    /** The last such refusal, as AWS worded it. */
    readonly credentialError?: string;
    /** With a regional image build: whether the tag is in ECR, and the build's status (CodeBuild BatchGetBuilds). */
    readonly image?: ImageObservation;
}

export interface ImageObservation {
    readonly exists: boolean;
    /** SUCCEEDED, FAILED, FAULT, TIMED_OUT, IN_PROGRESS or STOPPED; undefined when there is no build to watch. */
    readonly buildStatus?: string;
    /** The build's current (or last) phase, e.g. BUILD. */
    readonly buildPhase?: string;
}

export interface GateLimits {
    readonly maxSeconds: number;
    readonly instanceId?: string;
    readonly markerUri: string;
    readonly statusUri: string;
    /** The image the gate also waits for (repository:tag and the build). */
    readonly image?: { readonly repository: string; readonly tag: string; readonly buildId?: string };
}

export type GateVerdict =
    | { readonly kind: "open"; readonly message: string }
    | { readonly kind: "wait"; readonly message: string }
    | { readonly kind: "fail"; readonly message: string; readonly showLogs: boolean; readonly showBuildLogs?: boolean };

const ENDED = new Set(["shutting-down", "terminated", "stopping", "stopped"]);
/** CodeBuild's build statuses that end a build without an image. */
export const FAILED_BUILD = new Set(["FAILED", "FAULT", "TIMED_OUT", "STOPPED"]);
const NO_GPU = "no GPU node was requested";

export function gateVerdict(o: GateObservation, limits: GateLimits): GateVerdict {
    const image = limits.image;
    const imageReady = !image || o.image?.exists === true;
    if (o.markerExists && imageReady) return { kind: "open", message: `prepared dataset ${image ? "and image " : ""}ready after ${Math.round(o.elapsedSeconds)}s` };
    if (o.credentialFailures >= GATE_CREDENTIAL_ATTEMPTS) {
        return {
            kind: "fail",
            showLogs: false,
            message:
                `the credentials of this pulumi up cannot read ${limits.markerUri} (${o.credentialFailures} attempts): ${o.credentialError ?? "access denied"}. ` +
                `Check aws:profile / aws:assumeRoles in the stack config (or AWS_PROFILE) and that they have not expired; ${NO_GPU}`,
        };
    }
    if (image && !imageReady) {
        const named = `${image.repository}:${image.tag}`;
        const build = image.buildId ?? "(none started)";
        const status = o.image?.buildStatus;
        if (status && FAILED_BUILD.has(status)) {
            return {
                kind: "fail",
                showLogs: false,
                showBuildLogs: true,
                message:
                    `the image build ${build} ended ${status}${o.image?.buildPhase ? ` in phase ${o.image.buildPhase}` : ""} without pushing ${named} (its last lines are above); ${NO_GPU}. ` +
                    `Fix the cause and run pulumi up again (changed content is a new tag and a new build); to build the same content again, replace its step: ` +
                    `pulumi up --replace "$(pulumi stack --show-urns | grep -o 'urn:[^ ]*-image-trainer-build-start$' | head -1)"`,
            };
        }
        if (status === "SUCCEEDED") {
            return { kind: "fail", showLogs: false, showBuildLogs: true, message: `the image build ${build} says SUCCEEDED but ECR has no ${named}; ${NO_GPU}` };
        }
        if (!image.buildId) {
            return { kind: "fail", showLogs: false, message: `${named} is not in ECR and no build was started for it (the image step found it existing; was it deleted since?); ${NO_GPU}. Run pulumi up again to build it` };
        }
    }
    const imageWord = !image ? "" : imageReady ? "; image ready" : `; image build ${o.image?.buildStatus ?? "status unknown"}${o.image?.buildPhase ? ` (${o.image.buildPhase})` : ""}`;
    if (o.markerExists) {
        if (o.elapsedSeconds >= limits.maxSeconds) return { kind: "fail", showLogs: false, showBuildLogs: true, message: `no image ${image!.repository}:${image!.tag} after ${limits.maxSeconds}s (the cap); ${NO_GPU}` };
        return { kind: "wait", message: `prepared dataset ready; waiting for the image: ${Math.round(o.elapsedSeconds)}s of at most ${limits.maxSeconds}s${imageWord}` };
    }
    // Only the current prep node's status counts: an earlier attempt's failure must not close the gate for a retry.
    const ours = o.status && (!limits.instanceId || o.status.instanceId === limits.instanceId) ? o.status : undefined;
    const lastWord = ours?.phase ? `${ours.phase}${ours.reason ? `: ${ours.reason}` : ""}` : "no status";
    if (ours?.phase === "failed" || ours?.phase === "interrupted") {
        return { kind: "fail", showLogs: true, message: `prep ${lastWord} (${limits.statusUri}); ${NO_GPU}. Fix the cause and run pulumi up --refresh` };
    }
    if (ours?.phase === "succeeded") {
        return { kind: "fail", showLogs: true, message: `prep says succeeded but ${limits.markerUri} is missing; ${NO_GPU}` };
    }
    if (limits.instanceId && o.instanceState && ENDED.has(o.instanceState)) {
        // The state was read before the marker: a node that ended before the marker was missing will not write it.
        return {
            kind: "fail",
            showLogs: true,
            message: `the prep node ${limits.instanceId} is ${o.instanceState} and ${limits.markerUri} does not exist (last status: ${lastWord}); ${NO_GPU}. Read its logs below, fix the cause and run pulumi up --refresh`,
        };
    }
    if (o.elapsedSeconds >= limits.maxSeconds) {
        return { kind: "fail", showLogs: true, message: `no ${limits.markerUri} after ${limits.maxSeconds}s (the prep cap); last status: ${lastWord}; ${NO_GPU}` };
    }
    const step = ours?.progress?.step !== undefined && ours.progress.totalSteps ? `, step ${ours.progress.step}/${ours.progress.totalSteps}` : "";
    const node = limits.instanceId ? `, node ${limits.instanceId} ${o.instanceState ?? "state unknown"}` : "";
    return { kind: "wait", message: `waiting for the prepared dataset: ${Math.round(o.elapsedSeconds)}s of at most ${limits.maxSeconds}s, prep ${ours?.phase ?? "not started"}${step}${node}${imageWord}` };
}
