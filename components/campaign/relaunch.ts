// Which runs get a node on this `pulumi up`, from what S3 says each run did last. The rule a person would
// expect: a finished run never trains again; an interrupted run (a spot notice, a stop) resumes on a new node;
// a failed run is NOT relaunched while its settings are the same (an OOM, a bad config or a watchdog stop
// fails again, and each attempt pays boot, image pull and staging), unless `compute.retries` allows it.
// Changing the run's settings gives it a new spec hash, and that is a new attempt.
//
// The evaluation has its own hash (jobSpec.ts: trainingHashOf, evaluationHashOf). A run whose saved final model of
// this training hash is in S3 and whose eval.json (or the baseline it computes) was computed with other evaluation
// settings is not trained again: it gets a node in evaluate-only mode, which evaluates the saved model.
//
// A graceful `stop` (components/campaign/control.ts) holds a run without a node until the stop is cleared; a
// `restart` leaves it interrupted like any other, so it resumes; neither brings back a run that succeeded.
import { terminalPhases, type ControlAction, type Phase } from "./contract";

export interface RunRecord {
    /** The phase in the run's status.json; undefined when the run never started. */
    readonly phase?: Phase;
    /** The specHash of the spec the last node ran (runs/<campaign>/<run>/spec.json); undefined when unknown. */
    readonly lastSpecHash?: string;
    /** How many times the run has failed with lastSpecHash (the failed events in its status history, at least 1 when failed). */
    readonly failures: number;
    /** The control action in effect for the run (its own control.json or the campaign's; a stop wins). */
    readonly control?: ControlAction;
    /** A control object that could not be read as one: ignored, and said as a warning. */
    readonly controlProblem?: string;
    /** The evaluationHash of that spec.json; undefined when unknown or it asked for no evaluation. */
    readonly lastEvaluationHash?: string;
    /** The specHash in the run's output/metrics.json: the training hash of the final model saved in S3. */
    readonly outputSpecHash?: string;
    /** The evaluationHash in output/eval.json: the settings the run's evaluation was computed with. */
    readonly evaluatedHash?: string;
    /** The evaluationHash in output/baseline/eval.json (the run that computes its base model's baseline). */
    readonly baselineEvaluatedHash?: string;
    /** How many of the run's nodes have ended (attempts.ts endedAttempts, plus a node found gone); absent: none known. */
    readonly endedAttempts?: number;
    /** The instance of the run's open attempt (no final status yet); absent when there is none. */
    readonly openNode?: string;
    /** That instance, found terminated or unknown to EC2: it ended without a final status (counted in endedAttempts). */
    readonly lostNode?: string;
}

/**
 * The launch key of a run's next or current node (the fallback launch's trigger, jobNode.ts): the same while its node
 * works, so the node is kept; a new one once that node has ended, so a run that is declared again gets a new node.
 */
export function launchKeyOf(record: Pick<RunRecord, "endedAttempts">): string {
    return `attempt-${(record.endedAttempts ?? 0) + 1}`;
}

/** What this `pulumi up` would evaluate: the evaluation hash, and whether this run also computes the baseline. */
export interface EvaluationTarget {
    readonly hash: string;
    readonly computeBaseline: boolean;
}

/** Why the saved evaluation of a run with its trained model in S3 is out of date; undefined when it is current. */
export function staleEvaluation(record: RunRecord, evaluation: EvaluationTarget | undefined): string | undefined {
    if (!evaluation) return undefined;
    const parts: string[] = [];
    if (record.evaluatedHash !== evaluation.hash) parts.push(record.evaluatedHash ? `its evaluation was computed with settings ${record.evaluatedHash}` : "it has no evaluation");
    if (evaluation.computeBaseline && record.baselineEvaluatedHash !== evaluation.hash) {
        parts.push(record.baselineEvaluatedHash ? `the baseline it computes was evaluated with settings ${record.baselineEvaluatedHash}` : "the baseline it computes is missing");
    }
    return parts.length ? `${parts.join(" and ")}, not ${evaluation.hash}` : undefined;
}

export type RelaunchDecision =
    | { readonly declare: false; readonly why: "succeeded" | "failed" | "stopped"; readonly reason: string }
    | { readonly declare: true; readonly why: "new" | "resume" | "changed" | "retry" | "running" | "evaluate"; readonly reason: string };

/**
 * @param specHash the training hash this `pulumi up` would run
 * @param retries compute.retries: automatic relaunches of a failed run with unchanged settings
 * @param evaluation the evaluation this `pulumi up` would run; absent when the campaign has none
 */
export function relaunchDecision(run: string, record: RunRecord, specHash: string, retries: number, evaluation?: EvaluationTarget): RelaunchDecision {
    // The final model of these training settings is in S3: what is left to do is at most an evaluation.
    const trained = record.outputSpecHash !== undefined && record.outputSpecHash === specHash;
    const stale = trained ? staleEvaluation(record, evaluation) : undefined;
    const evaluateOnly = (before: string): RelaunchDecision => ({
        declare: true,
        why: "evaluate",
        reason: `${run}: ${before}, but ${stale}; a node in evaluate-only mode evaluates its saved model (spec ${specHash}) again, without training`,
    });
    if (record.control === "stop" && record.phase !== "succeeded") {
        // A node still working on the run ends itself (it polls the same object); declaring it until then keeps
        // Pulumi from terminating it mid-save. Once it has ended, or before it ever started, the run waits.
        if (record.phase !== undefined && !terminalPhases.includes(record.phase)) {
            return { declare: true, why: "running", reason: `${run}: ${record.phase}, stop requested: its node saves a checkpoint and ends itself` };
        }
        return {
            declare: false,
            why: "stopped",
            reason:
                `${run}: stopped on request (${record.phase ?? "not started"}); it gets no node until the stop is cleared: ` +
                `npm run campaign -- continue --stack <stack> [--run ${run}]`,
        };
    }
    switch (record.phase) {
        case undefined:
            return { declare: true, why: "new", reason: `${run}: new run` };
        case "succeeded":
            if (stale) return evaluateOnly("succeeded");
            return { declare: false, why: "succeeded", reason: `${run}: succeeded; its artifacts are in S3 and it is not trained again` };
        case "interrupted":
            // an evaluate-only node that was stopped: its model is in S3, so the next node evaluates again
            if (stale) return evaluateOnly("was interrupted while evaluating");
            return { declare: true, why: "resume", reason: `${run}: interrupted; a new node resumes it from its newest complete checkpoint` };
        case "failed": {
            if (record.lastSpecHash !== undefined && record.lastSpecHash !== specHash) {
                return { declare: true, why: "changed", reason: `${run}: failed with spec ${record.lastSpecHash}; its settings changed (spec ${specHash}), so it runs again` };
            }
            // The same training settings with new evaluation settings (e.g. a smaller generation batch after an
            // out-of-memory during the evaluation) is a new attempt too.
            const evaluationChanged = evaluation !== undefined && record.lastEvaluationHash !== undefined && record.lastEvaluationHash !== evaluation.hash;
            if (evaluationChanged && stale) return evaluateOnly(`failed with evaluation settings ${record.lastEvaluationHash}`);
            if (evaluationChanged) {
                return { declare: true, why: "changed", reason: `${run}: failed with evaluation settings ${record.lastEvaluationHash}; they changed (${evaluation.hash}), so it runs again` };
            }
            if (record.failures <= retries && stale) return evaluateOnly(`failed ${record.failures} time(s); compute.retries=${retries} allows another attempt`);
            if (record.failures <= retries) {
                return { declare: true, why: "retry", reason: `${run}: failed ${record.failures} time(s); compute.retries=${retries} allows another attempt` };
            }
            return {
                declare: false,
                why: "failed",
                reason:
                    `${run}: failed ${record.failures} time(s) with these settings (spec ${specHash}) and is not relaunched: read its status and logs ` +
                    `(npm run campaign -- status), fix the cause in the config (a new spec hash is a new attempt), or raise compute.retries to try again unchanged`,
            };
        }
        default:
            // pending ... uploading: a node is (or was, until refresh) working on it; keep declaring it. Its
            // instance ignores changes to the AMI and the user data, so a new spec never replaces a busy node.
            if (record.lastSpecHash !== undefined && record.lastSpecHash !== specHash) {
                return {
                    declare: true,
                    why: "running",
                    reason:
                        `${run}: is ${record.phase} with spec ${record.lastSpecHash}; the changed settings (spec ${specHash}) are not applied to its node. ` +
                        `They take effect on its next node, which will not resume from the old spec's checkpoints: to apply them now, give the run a new name, ` +
                        `or stop its node after a checkpoint (npm run campaign -- stop --run ${run}), clear the stop (npm run campaign -- continue --run ${run}) ` +
                        `and run up again (npm run campaign -- up, or pulumi up --refresh): its next node starts with the new settings`,
                };
            }
            // a node evaluating a saved model keeps its evaluate-only mode until it ends
            if (stale) return { declare: true, why: "evaluate", reason: `${run}: ${record.phase} in evaluate-only mode (${stale})` };
            return { declare: true, why: "running", reason: `${run}: ${record.phase}` };
    }
}
