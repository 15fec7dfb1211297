// The S3 state reader: only "no such bucket/key" reads as "not yet"; AccessDenied, expired credentials or any
// other answer stops `pulumi up` with a message that names the credentials, never a campaign that looks new.
//
//   node --import tsx --test test/campaign/state.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import type { S3Client } from "@aws-sdk/client-s3";
import { failuresOf, isMissing, S3CampaignState, specHashOf } from "../../components/campaign/state";

/** An S3 client whose every call fails with the given error (the shape the SDK throws). */
function failingClient(name: string, status: number, message = name): S3Client {
    const error = Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
    return { send: async () => Promise.reject(error) } as unknown as S3Client;
}

test("a missing bucket or key is 'not yet'", async () => {
    for (const [name, status] of [["NoSuchBucket", 404], ["NoSuchKey", 404], ["NotFound", 404]] as const) {
        const reader = new S3CampaignState(failingClient(name, status), "b", "c");
        assert.equal(await reader.runPhase("main"), undefined, name);
        assert.equal(await reader.prepSucceeded("0123456789abcdef"), false, name);
        assert.deepEqual(await reader.runRecord("main"), { phase: undefined, lastSpecHash: undefined, failures: 0, endedAttempts: 0 }, name);
    }
});

test("AccessDenied, expired or invalid credentials stop the read and name the credentials", async () => {
    for (const [name, status] of [["AccessDenied", 403], ["ExpiredToken", 400], ["InvalidAccessKeyId", 403], ["Forbidden", 403]] as const) {
        assert.equal(isMissing({ name, $metadata: { httpStatusCode: status } }), false, name);
        const reader = new S3CampaignState(failingClient(name, status), "campaign-bucket", "c");
        await assert.rejects(reader.runPhase("main"), (err: Error) => {
            assert.match(err.message, /^reading s3:\/\/campaign-bucket\/runs\/c\/main\/status\.json: /);
            assert.match(err.message, new RegExp(name));
            assert.match(err.message, /aws:profile \/ aws:assumeRoles/);
            assert.match(err.message, /would look new and relaunch runs that already succeeded/);
            return true;
        });
        await assert.rejects(reader.prepSucceeded("0123456789abcdef"), /credentials of this `pulumi up`/);
    }
});

test("any other error stops the read too, without blaming the credentials", async () => {
    const reader = new S3CampaignState(failingClient("SlowDown", 503, "Please reduce your request rate."), "b", "c");
    await assert.rejects(reader.runPhase("main"), (err: Error) => {
        assert.match(err.message, /SlowDown \(HTTP 503\)/);
        assert.doesNotMatch(err.message, /aws:profile/);
        return true;
    });
});

test("the spec hash and the failure count come from the run's files", () => {
    assert.equal(specHashOf(JSON.stringify({ specHash: "0123456789abcdef", kind: "train" })), "0123456789abcdef");
    assert.equal(specHashOf("not json"), undefined);
    assert.equal(failuresOf(JSON.stringify({ phase: "failed" })), 1, "a failed status without history is one failure");
    const events = [{ phase: "training" }, { phase: "failed" }, { phase: "starting" }, { phase: "failed" }];
    assert.equal(failuresOf(JSON.stringify({ phase: "failed", events })), 2);
    assert.equal(failuresOf(JSON.stringify({ phase: "training", events: [{ phase: "failed" }] })), 1, "an earlier failure counts while a retry runs");
    assert.equal(failuresOf("{"), 0);
    // As the node runner writes them: a warning in the failed phase is not a second failure.
    const runnerEvents = [{ kind: "phase", phase: "training" }, { kind: "phase", phase: "failed" }, { kind: "warning", phase: "failed" }];
    assert.equal(failuresOf(JSON.stringify({ phase: "failed", events: runnerEvents })), 1);
});
