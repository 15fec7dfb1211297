// What the campaign has already done, read from S3 before any resource is declared, and what that means
// for this `pulumi up`: a run that succeeded is not declared (its node goes away, it never trains again),
// and a prep whose content hash already has _SUCCESS is skipped (another campaign's data is reused).
//
// The reader is an interface so the tests set the state directly; the S3 reader treats a bucket or key
// that does not exist (or a 403, which S3 answers for a missing key without s3:ListBucket) as "not yet".
import { GetObjectCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { phases, type Phase } from "./contract";
import { datasetSuccessKey, PREP_RUN, runKeys } from "./layout";
import type { ResolvedCampaign, ResolvedRun } from "./types";

export interface CampaignStateReader {
    /** Whether datasets/<prepHash>/_SUCCESS exists. */
    prepSucceeded(prepHash: string): Promise<boolean>;
    /** The phase in runs/<campaign>/<run>/status.json, undefined when there is none (run = "prep" for the prep job). */
    runPhase(run: string): Promise<Phase | undefined>;
}

/** The state tests set directly: which datasets are prepared and each job's phase. */
export class StaticCampaignState implements CampaignStateReader {
    constructor(private readonly state: { readonly preparedHashes?: readonly string[]; readonly phases?: Readonly<Record<string, Phase>> } = {}) {}
    async prepSucceeded(prepHash: string): Promise<boolean> {
        return (this.state.preparedHashes ?? []).includes(prepHash);
    }
    async runPhase(run: string): Promise<Phase | undefined> {
        return this.state.phases?.[run];
    }
}

/** S3 error names and HTTP codes that mean "does not exist yet" for a campaign's objects. */
const MISSING_NAMES = new Set(["NoSuchBucket", "NoSuchKey", "NotFound", "Forbidden", "AccessDenied"]);

function isMissing(err: unknown): boolean {
    const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
    const code = e?.$metadata?.httpStatusCode;
    return MISSING_NAMES.has(e?.name ?? "") || MISSING_NAMES.has(e?.Code ?? "") || code === 404 || code === 403;
}

/** Reads the campaign's state from its bucket through the AWS SDK (honours AWS_ENDPOINT_URL, AWS_REGION). */
export class S3CampaignState implements CampaignStateReader {
    constructor(
        private readonly client: S3Client,
        private readonly bucket: string,
        private readonly campaign: string,
    ) {}

    static forRegion(bucket: string, campaign: string, region: string): S3CampaignState {
        return new S3CampaignState(new S3Client({ region }), bucket, campaign);
    }

    async prepSucceeded(prepHash: string): Promise<boolean> {
        try {
            await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: datasetSuccessKey(prepHash) }));
            return true;
        } catch (err) {
            if (isMissing(err)) return false;
            throw new Error(`reading s3://${this.bucket}/${datasetSuccessKey(prepHash)}: ${(err as Error).message}`);
        }
    }

    async runPhase(run: string): Promise<Phase | undefined> {
        const key = runKeys(this.campaign, run).status;
        let body: string;
        try {
            const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
            body = (await out.Body?.transformToString("utf-8")) ?? "";
        } catch (err) {
            if (isMissing(err)) return undefined;
            throw new Error(`reading s3://${this.bucket}/${key}: ${(err as Error).message}`);
        }
        return phaseOf(body);
    }
}

/** The phase of a status.json body; undefined when it is not JSON or names no known phase. */
export function phaseOf(body: string): Phase | undefined {
    try {
        const phase = (JSON.parse(body) as { phase?: unknown }).phase;
        return (phases as readonly string[]).includes(phase as string) ? (phase as Phase) : undefined;
    } catch {
        return undefined;
    }
}

export interface CampaignState {
    /** datasets/<prepHash>/_SUCCESS exists. */
    readonly prepReady: boolean;
    /** The prep job's last phase (runs/<campaign>/prep/status.json). */
    readonly prepPhase?: Phase;
    /** Each run's last phase, by run name. */
    readonly runPhases: Readonly<Record<string, Phase | undefined>>;
}

export async function readCampaignState(reader: CampaignStateReader, campaign: ResolvedCampaign): Promise<CampaignState> {
    const [prepReady, prepPhase, ...runPhases] = await Promise.all([
        reader.prepSucceeded(campaign.prepSpec.prepHash),
        reader.runPhase(PREP_RUN),
        ...campaign.runs.map((run) => reader.runPhase(run.name)),
    ]);
    const byRun: Record<string, Phase | undefined> = {};
    campaign.runs.forEach((run, i) => (byRun[run.name] = runPhases[i]));
    return { prepReady: prepReady as boolean, prepPhase: prepPhase as Phase | undefined, runPhases: byRun };
}

/** What this `pulumi up` declares, given the state. */
export interface Declarations {
    /** run: a prep job is declared; cached: the prepared dataset exists; none: nothing left needs data. */
    readonly prep: "run" | "cached" | "none";
    /** Runs that get a GPU node: every run that has not succeeded. */
    readonly runs: readonly ResolvedRun[];
    /** Runs that succeeded: no node, their artifacts are in S3. */
    readonly finished: readonly string[];
}

export function declarations(campaign: ResolvedCampaign, state: CampaignState): Declarations {
    const runs = campaign.runs.filter((run) => state.runPhases[run.name] !== "succeeded");
    const finished = campaign.runs.filter((run) => state.runPhases[run.name] === "succeeded").map((run) => run.name);
    const prep = runs.length === 0 ? "none" : state.prepReady ? "cached" : "run";
    return { prep, runs, finished };
}

/** A new campaign: nothing prepared, no run started. */
export const NEW_CAMPAIGN: CampaignState = { prepReady: false, runPhases: {} };
