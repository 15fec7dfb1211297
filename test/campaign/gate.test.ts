// The gate's decision as a table: when it opens, when it fails at once (and why), when it waits.
//
//   node --import tsx --test test/campaign/gate.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { GATE_CREDENTIAL_ATTEMPTS, gateCommand, gateVerdict, type GateObservation } from "../../components/campaign/gate";

const limits = { maxSeconds: 600, instanceId: "i-new", markerUri: "s3://b/datasets/h/_SUCCESS", statusUri: "s3://b/runs/c/prep/status.json" };
const base: GateObservation = { elapsedSeconds: 30, markerExists: false, credentialFailures: 0, instanceState: "running" };

const table: Array<[string, Partial<GateObservation>, "open" | "wait" | "fail", RegExp]> = [
    ["the marker exists", { markerExists: true }, "open", /ready after 30s/],
    ["the marker exists, even if the node has ended since", { markerExists: true, instanceState: "terminated" }, "open", /ready/],
    ["nothing yet", {}, "wait", /30s of at most 600s, prep not started, node i-new running/],
    ["training with progress", { status: { phase: "preparing", instanceId: "i-new", progress: { step: 3, totalSteps: 10 } } }, "wait", /prep preparing, step 3\/10/],
    ["this node's prep failed", { status: { phase: "failed", reason: "no example survived cleaning", instanceId: "i-new" } }, "fail", /^prep failed: no example survived cleaning \(s3:\/\/b\/runs\/c\/prep\/status\.json\)/],
    ["this node's prep was interrupted", { status: { phase: "interrupted", instanceId: "i-new" } }, "fail", /^prep interrupted/],
    ["an earlier node's failure", { status: { phase: "failed", instanceId: "i-old" } }, "wait", /prep not started/],
    ["succeeded without the marker", { status: { phase: "succeeded", instanceId: "i-new" } }, "fail", /says succeeded but s3:\/\/b\/datasets\/h\/_SUCCESS is missing/],
    ["the node terminated without the marker", { instanceState: "terminated", status: { phase: "preparing", instanceId: "i-new" } }, "fail", /prep node i-new is terminated .* \(last status: preparing\)/],
    ["the node stopped", { instanceState: "stopped" }, "fail", /is stopped/],
    ["the node is unknown to EC2 yet", { instanceState: undefined }, "wait", /state unknown/],
    ["credentials refused fewer times than the limit", { credentialFailures: GATE_CREDENTIAL_ATTEMPTS - 1 }, "wait", /waiting/],
    ["credentials refused at the limit", { credentialFailures: GATE_CREDENTIAL_ATTEMPTS, credentialError: "ExpiredToken: expired" }, "fail", /credentials of this pulumi up cannot read .* ExpiredToken: expired/],
    ["past the cap", { elapsedSeconds: 600 }, "fail", /after 600s \(the prep cap\); last status: no status/],
];

for (const [what, observed, kind, message] of table) {
    test(`gate: ${what} -> ${kind}`, () => {
        const verdict = gateVerdict({ ...base, ...observed }, limits);
        assert.equal(verdict.kind, kind);
        assert.match(verdict.message, message);
        if (verdict.kind === "fail") assert.match(verdict.message, /no GPU node was requested/);
    });
}

test("the gate's command names the exact URIs of the layout, the cap plus the boot allowance, and the node", () => {
    const command = gateCommand({ bucket: "campaign-b", prepHash: "0123456789abcdef", campaign: "dev", maxHours: 2, instanceId: "i-0abc" });
    assert.equal(
        command,
        "npx tsx scripts/gate.ts --marker 's3://campaign-b/datasets/0123456789abcdef/_SUCCESS' --status 's3://campaign-b/runs/dev/prep/status.json' " +
            "--logs 's3://campaign-b/runs/dev/prep/logs/' --max-seconds 7800 --instance-id 'i-0abc'",
    );
    assert.throws(() => gateCommand({ bucket: "b", prepHash: "nothex", campaign: "c", maxHours: 1 }), /not a prep hash/);
});
