// A run's attempts across nodes: each node that worked on a run is one attempt, and its runner carries the
// earlier attempts forward from the status.json it finds at start (scripts/node-runner/campaign_runner/attempts.py),
// so status.json's `attempts` is the run's whole history, oldest first, the current node last. Relaunch counts
// failures from it (compute.retries), and `campaign status` lists it.
import { z } from "zod";
import { terminalPhases, type Phase } from "./contract";

/** One node's attempt at a run, as status.json's `attempts` holds it. */
export const attempt = z
    .object({
        /** The node's instance id; null when it had none (a local run) or could not read it. */
        node: z.string().nullable(),
        instanceType: z.string().nullable(),
        /** The training hash of the spec the node ran; null when it ended before it read the spec. */
        specHash: z.string().nullable(),
        /** When the node's runner started, and when it wrote its final status (null while it works). */
        startedAt: z.string().nullable(),
        endedAt: z.string().nullable(),
        /** succeeded, failed or interrupted; null while the node works, or when it ended without a final status. */
        outcome: z.enum(terminalPhases as unknown as [Phase, ...Phase[]]).nullable(),
        reason: z.string().nullable(),
        exitCode: z.number().int().nullable(),
    })
    .strict();
export type Attempt = z.output<typeof attempt>;

/** The attempts in a status.json body; undefined when it has none (written before the runner kept them) or is not JSON. */
export function attemptsOf(body: string): Attempt[] | undefined {
    let doc: unknown;
    try {
        doc = JSON.parse(body);
    } catch {
        return undefined;
    }
    const list = (doc as { attempts?: unknown } | null)?.attempts;
    if (!Array.isArray(list)) return undefined;
    // An entry that is not an attempt is skipped rather than trusted: the count must not grow from garbage.
    return list.flatMap((entry) => {
        const parsed = attempt.safeParse(entry);
        return parsed.success ? [parsed.data] : [];
    });
}

/**
 * How many attempts failed with `specHash`. An attempt that ended before it read its spec (specHash null) counts
 * too: the runner could not tell it apart, and a relaunch would pay for boot and staging again all the same.
 */
export function failuresWithSpec(attempts: readonly Attempt[], specHash: string | undefined): number {
    return attempts.filter((a) => a.outcome === "failed" && (specHash === undefined || a.specHash === null || a.specHash === specHash)).length;
}

/**
 * How many of a run's nodes have ended: every attempt but the last one while it is open (its node works, or ended
 * without a final status, which the next runner records as history with no outcome), or, in a status.json written
 * before the runner kept attempts, 1 when its phase is final. A node that launches through the fallback step is
 * keyed by this count (relaunch.ts launchKeyOf): it stays the same while the node works, and grows when it has ended.
 */
export function endedAttempts(attempts: readonly Attempt[] | undefined, phase: Phase | undefined): number {
    if (attempts && attempts.length > 0) return attempts.length - (attempts[attempts.length - 1]!.outcome === null ? 1 : 0);
    return phase !== undefined && terminalPhases.includes(phase) ? 1 : 0;
}

/** The instance id of the run's open attempt (its node has written no final status yet); undefined when there is none. */
export function openNode(attempts: readonly Attempt[] | undefined): string | undefined {
    const last = attempts?.[attempts.length - 1];
    return last && last.outcome === null && last.node ? last.node : undefined;
}
