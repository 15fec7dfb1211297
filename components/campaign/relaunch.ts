// Which runs get a node on this `pulumi up`, from what S3 says each run did last. The rule a person would
// expect: a finished run never trains again; an interrupted run (a spot notice, a stop) resumes on a new node;
// a failed run is NOT relaunched while its settings are the same (an OOM, a bad config or a watchdog stop
// fails again, and each attempt pays boot, image pull and staging), unless `compute.retries` allows it.
// Changing the run's settings gives it a new spec hash, and that is a new attempt.
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
}

export type RelaunchDecision =
    | { readonly declare: false; readonly why: "succeeded" | "failed" | "stopped"; readonly reason: string }
    | { readonly declare: true; readonly why: "new" | "resume" | "changed" | "retry" | "running"; readonly reason: string };

/**
 * @param specHash the spec hash this `pulumi up` would run
 * @param retries compute.retries: automatic relaunches of a failed run with unchanged settings
 */
export function relaunchDecision(run: string, record: RunRecord, specHash: string, retries: number): RelaunchDecision {
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
            return { declare: false, why: "succeeded", reason: `${run}: succeeded; its artifacts are in S3 and it is not trained again` };
        case "interrupted":
            return { declare: true, why: "resume", reason: `${run}: interrupted; a new node resumes it from its newest complete checkpoint` };
        case "failed": {
            if (record.lastSpecHash !== undefined && record.lastSpecHash !== specHash) {
                return { declare: true, why: "changed", reason: `${run}: failed with spec ${record.lastSpecHash}; its settings changed (spec ${specHash}), so it runs again` };
            }
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
                        `or let it finish and change them for the next campaign`,
                };
            }
            return { declare: true, why: "running", reason: `${run}: ${record.phase}` };
    }
}
