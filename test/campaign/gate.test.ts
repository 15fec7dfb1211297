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

// ---------------------------------------------------------------- with the trainer image built in the region

const imageLimits = { ...limits, image: { repository: "campaign-dev-test", tag: "trainer-0123456789abcdef", buildId: "campaign-dev-test-trainer:b1" } };
const imageTable: Array<[string, Partial<GateObservation>, "open" | "wait" | "fail", RegExp]> = [
    ["data and image ready", { markerExists: true, image: { exists: true, buildStatus: "SUCCEEDED" } }, "open", /prepared dataset and image ready after 30s/],
    ["data ready, image building", { markerExists: true, image: { exists: false, buildStatus: "IN_PROGRESS", buildPhase: "BUILD" } }, "wait", /prepared dataset ready; waiting for the image: 30s of at most 600s; image build IN_PROGRESS \(BUILD\)/],
    ["image ready, data not yet", { image: { exists: true } }, "wait", /waiting for the prepared dataset: .*; image ready/],
    ["the build failed, data ready", { markerExists: true, image: { exists: false, buildStatus: "FAILED", buildPhase: "BUILD" } }, "fail", /image build campaign-dev-test-trainer:b1 ended FAILED in phase BUILD without pushing campaign-dev-test:trainer-0123456789abcdef/],
    ["the build failed while prep runs", { image: { exists: false, buildStatus: "FAULT" } }, "fail", /ended FAULT/],
    ["the build timed out", { image: { exists: false, buildStatus: "TIMED_OUT" } }, "fail", /ended TIMED_OUT/],
    ["the build succeeded but no tag", { markerExists: true, image: { exists: false, buildStatus: "SUCCEEDED" } }, "fail", /says SUCCEEDED but ECR has no/],
    ["data ready, the image past the cap", { markerExists: true, elapsedSeconds: 600, image: { exists: false, buildStatus: "IN_PROGRESS" } }, "fail", /no image .* after 600s/],
    ["prep failed while the image builds", { status: { phase: "failed", instanceId: "i-new" }, image: { exists: false, buildStatus: "IN_PROGRESS" } }, "fail", /^prep failed/],
];

for (const [what, observed, kind, message] of imageTable) {
    test(`gate with an image build: ${what} -> ${kind}`, () => {
        const verdict = gateVerdict({ ...base, ...observed }, imageLimits);
        assert.equal(verdict.kind, kind);
        assert.match(verdict.message, message);
        if (verdict.kind === "fail") assert.match(verdict.message, /no GPU node was requested/);
        if (verdict.kind === "fail" && /image build/.test(verdict.message)) assert.equal(verdict.showBuildLogs, true, "a failed build prints its last lines");
    });
}

test("an image that existed when the step ran but is gone now fails the gate instead of waiting forever", () => {
    const verdict = gateVerdict({ ...base, markerExists: true, image: { exists: false } }, { ...limits, image: { repository: "r", tag: "trainer-0123456789abcdef" } });
    assert.equal(verdict.kind, "fail");
    assert.match(verdict.message, /no build was started for it/);
});

test("the gate's command names the image and its build, and waits at least the build's timeout", () => {
    const command = gateCommand({ bucket: "b", prepHash: "0123456789abcdef", campaign: "dev", maxHours: 0.5, image: { repository: "campaign-dev-test", tag: "trainer-0123456789abcdef", buildId: "p:1", timeoutMinutes: 90 } });
    assert.match(command, / --max-seconds 6000 --image-repository 'campaign-dev-test' --image-tag 'trainer-0123456789abcdef' --build-id 'p:1'$/);
    assert.throws(() => gateCommand({ bucket: "b", prepHash: "0123456789abcdef", campaign: "dev", maxHours: 1, image: { repository: "r", tag: "Bad Tag", timeoutMinutes: 1 } }), /not an image tag/);
});
