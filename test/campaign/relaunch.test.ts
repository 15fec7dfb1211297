// The relaunch policy as a table: (phase, spec hash changed, failures, retries) -> declared or not, and why.
//
//   node --import tsx --test test/campaign/relaunch.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Phase } from "../../components/campaign/contract";
import { relaunchDecision } from "../../components/campaign/relaunch";

const NOW = "aaaaaaaaaaaaaaaa";
const OLD = "bbbbbbbbbbbbbbbb";

const table: Array<[Phase | undefined, string | undefined, number, number, boolean, string]> = [
    // phase, last spec hash, failures, retries -> declared, why
    [undefined, undefined, 0, 0, true, "new"],
    ["succeeded", NOW, 0, 0, false, "succeeded"],
    ["succeeded", OLD, 0, 3, false, "succeeded"], // a finished run is never trained again, even with new settings
    ["interrupted", NOW, 0, 0, true, "resume"],
    ["interrupted", NOW, 2, 0, true, "resume"], // interruptions are not failures
    ["failed", NOW, 1, 0, false, "failed"],
    ["failed", undefined, 1, 0, false, "failed"], // unknown last spec: treated as unchanged, never relaunched blindly
    ["failed", OLD, 1, 0, true, "changed"],
    ["failed", OLD, 5, 0, true, "changed"], // new settings reset the count
    ["failed", NOW, 1, 1, true, "retry"],
    ["failed", NOW, 2, 1, false, "failed"],
    ["failed", NOW, 3, 3, true, "retry"],
    ["training", NOW, 0, 0, true, "running"],
    ["starting", OLD, 0, 0, true, "running"],
    ["pending", undefined, 0, 0, true, "running"],
];

for (const [phase, lastSpecHash, failures, retries, declare, why] of table) {
    test(`${phase ?? "never started"}, last spec ${lastSpecHash ?? "unknown"}, ${failures} failure(s), retries ${retries}: ${declare ? "declared" : "not declared"} (${why})`, () => {
        const decision = relaunchDecision("r1", { phase, lastSpecHash, failures }, NOW, retries);
        assert.equal(decision.declare, declare);
        assert.equal(decision.why, why);
        assert.match(decision.reason, /^r1: /);
    });
}

test("a held run's reason says how to get it running again", () => {
    const decision = relaunchDecision("lr-3e-4", { phase: "failed", lastSpecHash: NOW, failures: 1 }, NOW, 0);
    assert.match(decision.reason, /fix the cause in the config/);
    assert.match(decision.reason, /compute\.retries/);
});

test("a running run with changed settings keeps its node and is told it will not resume from the old checkpoints", () => {
    const decision = relaunchDecision("main", { phase: "training", lastSpecHash: OLD, failures: 0 }, NOW, 0);
    assert.equal(decision.declare, true);
    assert.match(decision.reason, /not applied to its node/);
    assert.match(decision.reason, /new name/);
    assert.match(decision.reason, /campaign -- stop --run \S+\), clear the stop \(npm run campaign -- continue --run /);
});
