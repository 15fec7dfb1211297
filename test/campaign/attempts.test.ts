// A run's attempts across nodes (status.json's `attempts`, carried forward by every runner): how relaunch counts
// the failures of the spec it would run, and how `campaign status` lists them.
//
//   node --import tsx --test test/campaign/attempts.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { attemptsOf, endedAttempts, failuresWithSpec, openNode, type Attempt } from "../../components/campaign/attempts";
import { launchKeyOf } from "../../components/campaign/relaunch";
import { relaunchDecision } from "../../components/campaign/relaunch";
import { failuresOf, phaseOf } from "../../components/campaign/state";
import type { Status } from "../../components/campaign/jobSpec";
import { renderAttempts } from "../../scripts/cli/progress";

const A = "a".repeat(16);
const B = "b".repeat(16);

function attempt(node: string, outcome: Attempt["outcome"], specHash: string | null, reason: string | null = null, exitCode: number | null = null): Attempt {
    return { node, instanceType: "g5.2xlarge", specHash, startedAt: `2026-11-30T0${node.slice(-1)}:00:00Z`, endedAt: outcome ? `2026-11-30T0${node.slice(-1)}:40:00Z` : null, outcome, reason, exitCode };
}

/** A status.json body of the last node, with the history its runner carried. */
function statusBody(attempts: Attempt[], extra: Record<string, unknown> = {}): string {
    const last = attempts[attempts.length - 1]!;
    return JSON.stringify({ phase: last.outcome ?? "training", reason: last.reason, attempts, ...extra });
}

/** What the state reader hands relaunch for a run whose last node ran `lastSpecHash`. */
function record(body: string, lastSpecHash: string) {
    return { phase: phaseOf(body), lastSpecHash, failures: failuresOf(body, lastSpecHash) };
}

test("failures of every earlier node count, not only the last node's", () => {
    const body = statusBody([
        attempt("i-1", "failed", A, "CUDA out of memory", 1),
        attempt("i-2", "interrupted", A, "spot interruption notice", 75),
        attempt("i-3", "failed", A, "CUDA out of memory", 1),
    ]);
    assert.equal(failuresOf(body, A), 2, "two nodes failed with this spec; the interruption is not a failure");
    assert.deepEqual(relaunchDecision("main", record(body, A), A, 1), {
        declare: false,
        why: "failed",
        reason:
            `main: failed 2 time(s) with these settings (spec ${A}) and is not relaunched: read its status and logs ` +
            `(npm run campaign -- status), fix the cause in the config (a new spec hash is a new attempt), or raise compute.retries to try again unchanged`,
    });
    assert.equal(relaunchDecision("main", record(body, A), A, 2).why, "retry", "compute.retries=2 allows a third attempt");
    assert.equal(relaunchDecision("main", record(body, A), A, 0).why, "failed");
});

test("compute.retries is spent node by node: with retries=2 the fourth failure is held", () => {
    const history: Attempt[] = [];
    const decisions: string[] = [];
    for (const node of ["i-1", "i-2", "i-3", "i-4"]) {
        history.push(attempt(node, "failed", A, "watchdog: no progress for 20 min", 143));
        decisions.push(relaunchDecision("main", record(statusBody(history), A), A, 2).why);
    }
    assert.deepEqual(decisions, ["retry", "retry", "failed", "failed"]);
});

test("failures of an earlier spec do not count against the current one; a failure before the spec was read does", () => {
    const body = statusBody([attempt("i-1", "failed", B, "bad template", 65), attempt("i-2", "failed", B, "bad template", 65), attempt("i-3", "failed", A, "OOM", 1)]);
    assert.equal(failuresOf(body, A), 1);
    assert.equal(relaunchDecision("main", record(body, A), A, 1).why, "retry");
    const early = statusBody([attempt("i-1", "failed", A, "OOM", 1), attempt("i-2", "failed", null, "S3 unreachable reading the spec")]);
    assert.equal(failuresOf(early, A), 2, "an attempt that never read its spec counts: a relaunch pays for boot again");
    assert.equal(failuresWithSpec(attemptsOf(early)!, undefined), 2);
});

test("a status written before the runner kept attempts counts its own failed events, as before", () => {
    const legacy = JSON.stringify({
        phase: "failed",
        events: [
            { at: "t1", kind: "phase", phase: "failed", reason: "x" },
            { at: "t2", kind: "warning", phase: "failed", reason: "no GPU metrics" },
        ],
    });
    assert.equal(attemptsOf(legacy), undefined);
    assert.equal(failuresOf(legacy, A), 1);
    assert.equal(failuresOf("not json", A), 0);
    // Entries that are not attempts are skipped, never counted.
    assert.equal(failuresOf(JSON.stringify({ phase: "interrupted", attempts: [{ outcome: "failed" }, attempt("i-1", "failed", A)] }), A), 1);
});

test("campaign status lists each run's attempts: node, times, outcome, spec and reason", () => {
    const attempts = [attempt("i-1", "failed", A, "CUDA out of memory", 1), attempt("i-2", "interrupted", A, "spot interruption notice", 75), attempt("i-3", null, A)];
    const status = { phase: "training", attempts } as unknown as Status;
    const text = renderAttempts([
        { run: "main", status, usdPerHour: 1.2 },
        { run: "other", status: { phase: "training" } as unknown as Status, usdPerHour: 1.2 },
        { run: "new", status: null, usdPerHour: 1.2 },
    ]);
    const lines = text.split("\n");
    assert.match(lines[0]!, /^Attempts per run/);
    assert.equal(lines[1], "main: 3 attempt(s), 1 failed");
    assert.match(lines[2]!, /^ {2}# +node +started +ended +outcome +spec +reason$/);
    assert.match(lines[3]!, new RegExp(`^  1 +i-1 g5\\.2xlarge +2026-11-30T01:00:00Z +2026-11-30T01:40:00Z +failed +${A} +CUDA out of memory$`));
    assert.match(lines[4]!, /^ {2}2 +i-2 g5\.2xlarge .* interrupted +a{16} +spot interruption notice$/);
    assert.match(lines[5]!, /^ {2}3 +i-3 g5\.2xlarge +2026-11-30T03:00:00Z +- +running +a{16}$/);
    assert.equal(lines.length, 6, "runs without attempts are left out");
    assert.equal(renderAttempts([{ run: "new", status: null, usdPerHour: 1 }]), "");
});

test("the launch key of a run's fallback node: the same while a node works, the next once it has ended", () => {
    const running = attemptsOf(statusBody([attempt("i-1", null, A)]))!;
    assert.equal(endedAttempts(running, "training"), 0);
    assert.equal(launchKeyOf({ endedAttempts: endedAttempts(running, "training") }), "attempt-1", "the first node keeps the key it launched with");
    const interrupted = attemptsOf(statusBody([attempt("i-1", "interrupted", A, "spot interruption notice", 75)]))!;
    assert.equal(launchKeyOf({ endedAttempts: endedAttempts(interrupted, "interrupted") }), "attempt-2", "an ended node: the next launch");
    const second = attemptsOf(statusBody([attempt("i-1", "interrupted", A), attempt("i-2", null, A)]))!;
    assert.equal(launchKeyOf({ endedAttempts: endedAttempts(second, "training") }), "attempt-2", "the second node keeps its key");
    assert.equal(openNode(second), "i-2");
    assert.equal(openNode(interrupted), undefined, "no open attempt once the node wrote its final status");
    // A node that ended without a final status stays in the history with no outcome: it still counts as ended, so
    // the key never goes back once the next node carries it forward.
    const afterLost = attemptsOf(statusBody([attempt("i-1", null, A), attempt("i-2", null, A)]))!;
    assert.equal(endedAttempts(afterLost, "training"), 1);
    // A status written before the runner kept attempts: its phase says whether its one node has ended.
    assert.equal(endedAttempts(undefined, "interrupted"), 1);
    assert.equal(endedAttempts(undefined, "training"), 0);
    assert.equal(endedAttempts(undefined, undefined), 0);
    assert.equal(launchKeyOf({}), "attempt-1", "a run that never started");
});
