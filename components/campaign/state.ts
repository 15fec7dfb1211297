// What the campaign has already done, read from S3 before any resource is declared, and what that means
// for this `pulumi up`: a run that succeeded is not declared (its node goes away, it never trains again),
// a run that failed with unchanged settings is held back (relaunch.ts), and a prep whose content hash
// already has _SUCCESS is skipped (another campaign's data is reused).
//
// The reader is an interface so the tests set the state directly. The S3 reader treats only a bucket or key
// that does not exist as "not yet". Any other answer (AccessDenied, expired credentials, a throttle) stops
// `pulumi up`: read as "nothing there", wrong credentials would look like a new campaign and relaunch runs
// that already succeeded.
import { GetObjectCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import type { EC2Client } from "@aws-sdk/client-ec2";
import { instanceState } from "./instanceState";
import { isCredentialError, type AwsError } from "./awsErrors";
import type { ControlAction } from "./contract";
import { effectiveControl, parseControl } from "./control";
import { campaignControlKey } from "./layout";
import { phases, terminalPhases, type Phase } from "./contract";
import { baselineEvaluationKeys, datasetSuccessKey, evaluationKeys, PREP_RUN, runKeys } from "./layout";
import { attemptsOf, endedAttempts, failuresWithSpec, openNode } from "./attempts";
import { relaunchDecision, type RunRecord } from "./relaunch";
import type { ResolvedCampaign, ResolvedRun } from "./types";

export interface CampaignStateReader {
    /** Whether datasets/<prepHash>/_SUCCESS exists. */
    prepSucceeded(prepHash: string): Promise<boolean>;
    /** The phase in runs/<campaign>/<run>/status.json, undefined when there is none (run = "prep" for the prep job). */
    runPhase(run: string): Promise<Phase | undefined>;
    /** The run's phase, the spec hash its last node ran and how often it failed with it. */
    runRecord(run: string): Promise<RunRecord>;
    /** The graceful-stop request in effect for a run (control.ts): its own control.json or the campaign's. */
    control(run: string): Promise<ControlState>;
    /**
     * Whether a node that has written no final status is gone: terminated (or shutting down) or unknown to EC2. A node
     * lost that way (a host failure) counts as ended, so a run that launches through the fallback step gets a new one.
     * Absent: never asked (such a node keeps its launch key).
     */
    nodeGone?(instanceId: string): Promise<boolean>;
}

/** A run's control action, and a control object that was there but could not be read as one (ignored). */
export interface ControlState {
    readonly action?: ControlAction;
    readonly problem?: string;
}

/** The state tests set directly: which datasets are prepared and each job's phase. */
export class StaticCampaignState implements CampaignStateReader {
    constructor(
        private readonly state: {
            readonly preparedHashes?: readonly string[];
            readonly phases?: Readonly<Record<string, Phase>>;
            /** The spec hash each run's last node ran; absent: unknown. */
            readonly specHashes?: Readonly<Record<string, string>>;
            /** How often each run failed with that spec; absent: 1 for a failed run. */
            readonly failures?: Readonly<Record<string, number>>;
            /** The evaluation hash each run's last spec.json named. */
            readonly evaluationHashes?: Readonly<Record<string, string>>;
            /** The spec hash in each run's output/metrics.json (its saved final model). */
            readonly outputSpecHashes?: Readonly<Record<string, string>>;
            /** The evaluation hash in each run's output/eval.json. */
            readonly evaluatedHashes?: Readonly<Record<string, string>>;
            /** The evaluation hash in each run's output/baseline/eval.json. */
            readonly baselineEvaluatedHashes?: Readonly<Record<string, string>>;
            /** Each run's control action in effect (a stop or restart request). */
            readonly controls?: Readonly<Record<string, ControlAction>>;
            /** How many of each run's nodes have ended; absent: none. */
            readonly endedAttempts?: Readonly<Record<string, number>>;
            /** Each run's open attempt's instance (no final status yet). */
            readonly openNodes?: Readonly<Record<string, string>>;
            /** Instances EC2 reports terminated or does not know. */
            readonly goneNodes?: readonly string[];
        } = {},
    ) {}
    async prepSucceeded(prepHash: string): Promise<boolean> {
        return (this.state.preparedHashes ?? []).includes(prepHash);
    }
    async runPhase(run: string): Promise<Phase | undefined> {
        return this.state.phases?.[run];
    }
    async control(run: string): Promise<ControlState> {
        const action = this.state.controls?.[run];
        return action ? { action } : {};
    }
    async nodeGone(instanceId: string): Promise<boolean> {
        return (this.state.goneNodes ?? []).includes(instanceId);
    }
    async runRecord(run: string): Promise<RunRecord> {
        const phase = this.state.phases?.[run];
        const lastSpecHash = this.state.specHashes?.[run];
        return {
            phase,
            lastSpecHash,
            failures: this.state.failures?.[run] ?? (phase === "failed" ? 1 : 0),
            ...(this.state.endedAttempts?.[run] !== undefined ? { endedAttempts: this.state.endedAttempts[run] } : {}),
            ...(this.state.openNodes?.[run] !== undefined ? { openNode: this.state.openNodes[run] } : {}),
            ...evaluationRecord({
                lastEvaluationHash: this.state.evaluationHashes?.[run],
                outputSpecHash: this.state.outputSpecHashes?.[run],
                evaluatedHash: this.state.evaluatedHashes?.[run],
                baselineEvaluatedHash: this.state.baselineEvaluatedHashes?.[run],
            }),
        };
    }
}

/** The trainer's output/metrics.json (containers/trainer/run.py): written after the final model, with its specHash. */
const TRAINED_METRICS_FILE = "metrics.json";

/** S3 error names and the HTTP code that mean "does not exist yet" for a campaign's objects. */
const MISSING_NAMES = new Set(["NoSuchBucket", "NoSuchKey", "NotFound"]);

export function isMissing(err: unknown): boolean {
    const e = err as AwsError;
    return MISSING_NAMES.has(e?.name ?? "") || MISSING_NAMES.has(e?.Code ?? "") || e?.$metadata?.httpStatusCode === 404;
}

/** The error `pulumi up` stops with when the campaign's state cannot be read: what failed, and what to check. */
export function stateReadError(uri: string, err: unknown): Error {
    const e = err as AwsError;
    const name = e?.name ?? e?.Code ?? "error";
    const status = e?.$metadata?.httpStatusCode;
    const credentials = isCredentialError(err);
    const hint = credentials
        ? "the credentials of this `pulumi up` cannot read the campaign's bucket: check aws:profile / aws:assumeRoles in the stack " +
          "config (or AWS_PROFILE), that they have not expired, and that they may s3:ListBucket and s3:GetObject on it"
        : "S3 did not answer as expected; try again, and check the region (aws:region, campaign region) and the network";
    return new Error(
        `reading ${uri}: ${name}${status ? ` (HTTP ${status})` : ""}: ${e?.message ?? String(err)}. Stopped before declaring anything, ` +
            `because a campaign whose state cannot be read would look new and relaunch runs that already succeeded: ${hint}.`,
    );
}

/** The error `pulumi up` stops with when EC2 cannot say whether a run's node is still there. */
function nodeReadError(instanceId: string, err: unknown): Error {
    const e = err as AwsError;
    const hint = isCredentialError(err)
        ? "the credentials of this `pulumi up` may not call ec2:DescribeInstances, or have expired: check aws:profile / aws:assumeRoles"
        : "EC2 did not answer as expected; try again";
    return new Error(`reading the state of node ${instanceId}: ${e?.name ?? "error"}: ${e?.message ?? String(err)}. Stopped before declaring anything: ${hint}.`);
}

/** The open attempt's instance in a status.json body (or, before attempts were kept, a working status's instanceId). */
function openNodeOf(status: string | undefined, phase: Phase | undefined): { openNode?: string } {
    if (status === undefined) return {};
    const attempts = attemptsOf(status);
    if (attempts && attempts.length > 0) {
        const node = openNode(attempts);
        return node ? { openNode: node } : {};
    }
    if (phase === undefined || terminalPhases.includes(phase)) return {};
    try {
        const id = (JSON.parse(status) as { instanceId?: unknown }).instanceId;
        return typeof id === "string" && id ? { openNode: id } : {};
    } catch {
        return {};
    }
}

/** Reads the campaign's state from its bucket through the AWS SDK (honours AWS_ENDPOINT_URL, AWS_REGION). */
export class S3CampaignState implements CampaignStateReader {
    /** @param ec2 asks EC2 whether a node without a final status is gone (nodeGone); absent: never asked */
    constructor(
        private readonly client: S3Client,
        private readonly bucket: string,
        private readonly campaign: string,
        private readonly ec2?: EC2Client,
    ) {}

    async nodeGone(instanceId: string): Promise<boolean> {
        if (!this.ec2) return false;
        try {
            const state = await instanceState(this.ec2, instanceId);
            // Unknown (a runner wrote the id, so it existed), terminated, or shutting down: an instance that terminates
            // on shutdown never stops, so shutting-down is its end (its runner may still write the final status, which
            // counts the same node as ended too).
            return state === undefined || state === "terminated" || state === "shutting-down";
        } catch (err) {
            if ((err as AwsError).name === "InvalidInstanceID.Malformed") return false; // not an id a runner wrote: nothing to conclude
            throw nodeReadError(instanceId, err);
        }
    }

    /** @param profile the stack's aws:profile, so the state is read as the same identity that declares the resources */
    static forRegion(bucket: string, campaign: string, region: string, profile?: string): S3CampaignState {
        return new S3CampaignState(new S3Client({ region, ...(profile ? { profile } : {}) }), bucket, campaign);
    }

    async prepSucceeded(prepHash: string): Promise<boolean> {
        try {
            await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: datasetSuccessKey(prepHash) }));
            return true;
        } catch (err) {
            if (isMissing(err)) return false;
            throw stateReadError(`s3://${this.bucket}/${datasetSuccessKey(prepHash)}`, err);
        }
    }

    async runPhase(run: string): Promise<Phase | undefined> {
        const body = await this.read(runKeys(this.campaign, run).status);
        return body === undefined ? undefined : phaseOf(body);
    }

    private campaignControl?: Promise<ControlState>;

    async control(run: string): Promise<ControlState> {
        // The campaign-wide object is read once per `pulumi up`, whatever the number of runs.
        this.campaignControl ??= this.readControl(campaignControlKey(this.campaign));
        const [own, all] = await Promise.all([this.readControl(runKeys(this.campaign, run).control), this.campaignControl]);
        const action = effectiveControl(own.action, all.action);
        const problem = [own.problem, all.problem].filter((p): p is string => p !== undefined).join("; ");
        return { ...(action ? { action } : {}), ...(problem ? { problem } : {}) };
    }

    private async readControl(key: string): Promise<ControlState> {
        const body = await this.read(key);
        if (body === undefined) return {};
        const parsed = parseControl(body, `s3://${this.bucket}/${key}`);
        return "request" in parsed ? { action: parsed.request.action } : { problem: parsed.problem };
    }

    async runRecord(run: string): Promise<RunRecord> {
        const keys = runKeys(this.campaign, run);
        // The output's metrics.json and eval.json say which model is saved and how it was evaluated (relaunch.ts).
        const [status, spec, metrics, evaluation, baseline] = await Promise.all([
            this.read(keys.status),
            this.read(keys.spec),
            this.read(`${keys.output}${TRAINED_METRICS_FILE}`),
            this.read(evaluationKeys(this.campaign, run).metrics),
            this.read(baselineEvaluationKeys(this.campaign, run).metrics),
        ]);
        const phase = status === undefined ? undefined : phaseOf(status);
        return {
            phase,
            lastSpecHash: spec === undefined ? undefined : specHashOf(spec),
            failures: status === undefined ? 0 : failuresOf(status, spec === undefined ? undefined : specHashOf(spec)),
            endedAttempts: status === undefined ? 0 : endedAttempts(attemptsOf(status), phase),
            ...openNodeOf(status, phase),
            ...evaluationRecord({
                lastEvaluationHash: hashField(spec, "evaluationHash"),
                outputSpecHash: hashField(metrics, "specHash"),
                evaluatedHash: hashField(evaluation, "evaluationHash"),
                baselineEvaluatedHash: hashField(baseline, "evaluationHash"),
            }),
        };
    }

    /** An object's text, undefined when it does not exist. */
    private async read(key: string): Promise<string | undefined> {
        try {
            const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
            return (await out.Body?.transformToString("utf-8")) ?? "";
        } catch (err) {
            if (isMissing(err)) return undefined;
            throw stateReadError(`s3://${this.bucket}/${key}`, err);
        }
    }
}

type EvaluationRecord = Pick<RunRecord, "lastEvaluationHash" | "outputSpecHash" | "evaluatedHash" | "baselineEvaluatedHash">;

/** The saved model's and evaluations' hashes that are known (a record without them reads as before the split). */
function evaluationRecord(hashes: { [K in keyof EvaluationRecord]: string | undefined }): EvaluationRecord {
    return Object.fromEntries(Object.entries(hashes).filter(([, v]) => v !== undefined)) as EvaluationRecord;
}

/** The specHash of a spec.json body; undefined when it is not JSON or has none. */
export function specHashOf(body: string): string | undefined {
    return hashField(body, "specHash");
}

/** A string field at the top of a JSON body (spec.json, metrics.json, eval.json); undefined when absent or unreadable. */
export function hashField(body: string | undefined, field: "specHash" | "evaluationHash"): string | undefined {
    if (body === undefined) return undefined;
    try {
        const hash = (JSON.parse(body) as Record<string, unknown>)[field];
        return typeof hash === "string" ? hash : undefined;
    } catch {
        return undefined;
    }
}

/**
 * How often a run failed with `specHash` (the spec its last node ran), from its status.json: the failed attempts of
 * its history across nodes (attempts.ts; each runner carries the earlier nodes' attempts forward), or, in a status
 * written before the runner kept attempts, the failed events of its one node; at least 1 when its phase is failed.
 */
export function failuresOf(body: string, specHash?: string): number {
    try {
        const status = JSON.parse(body) as { phase?: unknown; events?: unknown };
        const attempts = attemptsOf(body);
        let failed: number;
        if (attempts !== undefined && attempts.length > 0) {
            failed = failuresWithSpec(attempts, specHash);
        } else {
            const events = Array.isArray(status.events) ? status.events : [];
            // Only transitions count: a warning event carries the phase it happened in, not a new failure.
            failed = events.filter((e) => {
                const event = e as { kind?: unknown; phase?: unknown } | null;
                return event?.phase === "failed" && (event.kind === undefined || event.kind === "phase");
            }).length;
        }
        return status.phase === "failed" ? Math.max(1, failed) : failed;
    } catch {
        return 0;
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
    /** Each run's record (phase, last spec hash, failures), by run name; absent: only the phase is known. */
    readonly runRecords?: Readonly<Record<string, RunRecord>>;
}

export async function readCampaignState(reader: CampaignStateReader, campaign: ResolvedCampaign): Promise<CampaignState> {
    const [prepReady, prepPhase, records] = await Promise.all([
        reader.prepSucceeded(campaign.prepSpec.prepHash),
        reader.runPhase(PREP_RUN),
        Promise.all(campaign.runs.map(async (run) => {
            const [record, control] = await Promise.all([reader.runRecord(run.name), reader.control(run.name)]);
            const lost = record.openNode && reader.nodeGone ? await reader.nodeGone(record.openNode) : false;
            return {
                ...record,
                ...(lost ? { lostNode: record.openNode, endedAttempts: (record.endedAttempts ?? 0) + 1 } : {}),
                ...(control.action ? { control: control.action } : {}),
                ...(control.problem ? { controlProblem: control.problem } : {}),
            };
        })),
    ]);
    const runPhases: Record<string, Phase | undefined> = {};
    const runRecords: Record<string, RunRecord> = {};
    campaign.runs.forEach((run, i) => {
        runPhases[run.name] = records[i]!.phase;
        runRecords[run.name] = records[i]!;
    });
    return { prepReady, prepPhase, runPhases, runRecords };
}

/** What this `pulumi up` declares, given the state. */
export interface Declarations {
    /** run: a prep job is declared; cached: the prepared dataset exists; none: nothing left needs data. */
    readonly prep: "run" | "cached" | "none";
    /** Runs that get a GPU node: new, interrupted, running, or failed with changed settings or retries left. */
    readonly runs: readonly ResolvedRun[];
    /** Runs whose node evaluates their saved model without training (a subset of runs): relaunch.ts. */
    readonly evaluateOnly: readonly string[];
    /** Runs that succeeded: no node, their artifacts are in S3. */
    readonly finished: readonly string[];
    /** Runs that failed with these settings and are not relaunched, each with what to do about it. */
    readonly held: ReadonlyArray<{ readonly run: string; readonly reason: string }>;
    /** What `pulumi up` should tell the user: held runs, running runs whose settings changed, evaluate-only nodes. */
    readonly warnings: readonly string[];
}

export function declarations(campaign: ResolvedCampaign, state: CampaignState): Declarations {
    const retries = campaign.experiment.compute.retries;
    const runs: ResolvedRun[] = [];
    const evaluateOnly: string[] = [];
    const finished: string[] = [];
    const held: Array<{ run: string; reason: string }> = [];
    const warnings: string[] = [];
    campaign.runs.forEach((run, i) => {
        const phase = state.runPhases[run.name];
        const record = state.runRecords?.[run.name] ?? { phase, failures: phase === "failed" ? 1 : 0 };
        if (record.controlProblem) warnings.push(`${run.name}: ${record.controlProblem}`);
        if (record.lostNode) {
            warnings.push(
                `${run.name}: its node ${record.lostNode} has ended without a final status (EC2 reports it terminated or no longer knows it; last phase ${record.phase ?? "unknown"}): ` +
                    "it counts as an ended attempt, so a node that launches through the fallback step is launched again; a single-instance node needs `pulumi up --refresh` to be seen gone",
            );
        }
        const spec = campaign.trainSpecs[i]!;
        const evaluation = spec.evaluation && spec.evaluationHash ? { hash: spec.evaluationHash, computeBaseline: spec.evaluation.computeBaseline } : undefined;
        const decision = relaunchDecision(run.name, record, spec.specHash, retries, evaluation);
        if (decision.declare) runs.push(run);
        if (decision.why === "evaluate") {
            evaluateOnly.push(run.name);
            warnings.push(decision.reason);
        }
        else if (decision.why === "succeeded") finished.push(run.name);
        else held.push({ run: run.name, reason: decision.reason });
        if (decision.why === "running" && record.lastSpecHash !== undefined && record.lastSpecHash !== campaign.trainSpecs[i]!.specHash) warnings.push(decision.reason);
    });
    const prep = runs.length === 0 ? "none" : state.prepReady ? "cached" : "run";
    return { prep, runs, evaluateOnly, finished, held, warnings: [...held.map((h) => h.reason), ...warnings] };
}

/** A new campaign: nothing prepared, no run started. */
export const NEW_CAMPAIGN: CampaignState = { prepReady: false, runPhases: {} };
