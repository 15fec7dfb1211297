// `campaign stop`, `campaign continue` and the graceful part of `campaign down`: write or clear the control objects
// (components/campaign/control.ts), then wait, bounded and with progress, until every node that was working has
// saved its checkpoint, synced it and ended: its status.json reaches a terminal phase, which the runner writes after
// the final sync and right before its shutdown.
import { DeleteObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { ControlAction } from "../../components/campaign/contract";
import { controlBody } from "../../components/campaign/control";
import { campaignControlKey, runKeys } from "../../components/campaign/layout";
import { isTerminal, type JobView } from "./progress";

/** Which runs a stop or continue is for: every run (and prep) through the campaign's object, or named runs. */
export type StopScope = { readonly all: true } | { readonly runs: readonly string[] };

/** The control objects of a scope: the campaign's one, or each named run's. */
export function controlKeys(campaign: string, scope: StopScope): string[] {
    return "all" in scope ? [campaignControlKey(campaign)] : scope.runs.map((run) => runKeys(campaign, run).control);
}

/** Writes the request into each control object of the scope; returns the keys written. */
export async function writeControl(client: S3Client, bucket: string, campaign: string, scope: StopScope, action: ControlAction,
    requestedBy: string | undefined, now = new Date()): Promise<string[]> {
    const keys = controlKeys(campaign, scope);
    const body = controlBody(action, requestedBy, now);
    await Promise.all(keys.map((Key) => client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: body, ContentType: "application/json" }))));
    return keys;
}

/**
 * Clears stops: the named runs' objects, or, for the whole campaign, its own object and every run's. Deleting a
 * key that is not there succeeds in S3, so this is safe to repeat.
 */
export async function clearControl(client: S3Client, bucket: string, campaign: string, scope: StopScope, allRuns: readonly string[]): Promise<string[]> {
    const keys = "all" in scope ? [campaignControlKey(campaign), ...allRuns.map((run) => runKeys(campaign, run).control)] : controlKeys(campaign, scope);
    await Promise.all(keys.map((Key) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key }))));
    return keys;
}

export interface StopWaitOptions {
    /** The bound: after this many seconds the wait gives up and names the runs that did not confirm. */
    readonly timeoutSeconds: number;
    readonly intervalSeconds: number;
    readonly log: (line: string) => void;
    /** Milliseconds now; a test may pass its own clock. */
    readonly now?: () => number;
    readonly sleep?: (ms: number) => Promise<void>;
}

export interface StopWaitResult {
    /** Runs whose node ended, with the phase and reason it ended with. */
    readonly ended: ReadonlyArray<{ readonly run: string; readonly phase: string; readonly reason: string | null }>;
    /** Runs still not terminal at the bound: the node may still be saving, or gone without a final word. */
    readonly unconfirmed: ReadonlyArray<{ readonly run: string; readonly phase: string; readonly updatedAt: string | null }>;
    /** Runs with no status.json when the wait began: no runner had started (a booting node stops as soon as one does). */
    readonly notStarted: readonly string[];
}

/**
 * Waits until every run of `runs` that had a working node (a status.json in a non-terminal phase when the wait
 * began) is terminal, or until the bound. `read` gives the current status of each job (readJobViews).
 */
export async function waitForStopped(read: () => Promise<JobView[]>, runs: readonly string[], options: StopWaitOptions): Promise<StopWaitResult> {
    const now = options.now ?? Date.now;
    const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const started = now();
    const first = (await read()).filter((v) => runs.includes(v.run));
    const notStarted = first.filter((v) => !v.status).map((v) => v.run);
    const waiting = new Set(first.filter((v) => v.status && !isTerminal(v)).map((v) => v.run));
    const ended = new Map<string, { phase: string; reason: string | null }>();
    for (const v of first) if (v.status && isTerminal(v)) ended.set(v.run, { phase: v.status.phase, reason: v.status.reason });
    let views = first;
    for (;;) {
        for (const v of views) {
            if (waiting.has(v.run) && v.status && isTerminal(v)) {
                waiting.delete(v.run);
                ended.set(v.run, { phase: v.status.phase, reason: v.status.reason });
                options.log(`  ${v.run}: ${v.status.phase}${v.status.lastCheckpoint ? ` with ${v.status.lastCheckpoint} in S3` : ""}${v.status.reason ? ` (${v.status.reason})` : ""}`);
            }
        }
        const elapsed = (now() - started) / 1000;
        if (waiting.size === 0 || elapsed >= options.timeoutSeconds) break;
        const pending = views.filter((v) => waiting.has(v.run));
        options.log(`  ${Math.round(elapsed)} s: waiting for ${pending.length} node(s) to save, sync and end: ${pending.map(describe).join(", ")}`);
        await sleep(Math.min(options.intervalSeconds, Math.max(options.timeoutSeconds - elapsed, 0)) * 1000);
        views = (await read()).filter((v) => runs.includes(v.run));
    }
    const last = new Map(views.map((v) => [v.run, v]));
    return {
        ended: [...ended].map(([run, e]) => ({ run, ...e })),
        unconfirmed: [...waiting].map((run) => ({ run, phase: last.get(run)?.status?.phase ?? "unknown", updatedAt: last.get(run)?.status?.updatedAt ?? null })),
        notStarted,
    };
}

function describe(v: JobView): string {
    const p = v.status?.progress;
    return `${v.run} ${v.status?.phase ?? "?"}${p ? ` step ${p.step}/${p.totalSteps}` : ""}`;
}

/** What the wait's end says: every node ended, or which runs did not confirm and what that means. */
export function renderStopResult(result: StopWaitResult, timeoutSeconds: number): string {
    const lines: string[] = [];
    if (result.unconfirmed.length === 0) lines.push(`Every working node has ended (${result.ended.length} run(s) in a final phase).`);
    else {
        lines.push(
            `Gave up waiting after ${timeoutSeconds} s: ${result.unconfirmed.length} run(s) did not confirm: ` +
                result.unconfirmed.map((u) => `${u.run} (${u.phase}, status updated ${u.updatedAt ?? "never"})`).join(", "),
        );
        lines.push("  Their nodes may still be saving a large checkpoint, or ended without a final status; read them with npm run campaign -- status.");
    }
    if (result.notStarted.length > 0) {
        lines.push(`No status yet for ${result.notStarted.join(", ")}: a node still booting reads the stop when its runner starts and ends at once.`);
    }
    return lines.join("\n");
}
