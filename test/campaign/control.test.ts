// Graceful stop and restart, as the next `pulumi up` sees them: the control objects read from S3, which one holds,
// and what relaunch.ts declares. A stop holds a run until it is cleared; a restart resumes it; neither ever
// brings back a run that succeeded.
//
//   node --import tsx --test test/campaign/control.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { controlRequest } from "../../components/campaign/contract";
import { controlBody, effectiveControl, parseControl } from "../../components/campaign/control";
import { campaignControlKey, runKeys } from "../../components/campaign/layout";
import { relaunchDecision } from "../../components/campaign/relaunch";
import { S3CampaignState, StaticCampaignState } from "../../components/campaign/state";

const SPEC = "a".repeat(16);

test("the body campaign stop writes is a valid request, new each time", () => {
    const first = controlBody("stop", "alice", new Date("2026-11-30T12:00:00Z"));
    assert.deepEqual(controlRequest.parse(JSON.parse(first)), { action: "stop", requestedAt: "2026-11-30T12:00:00.000Z", requestedBy: "alice" });
    assert.notEqual(controlBody("stop", "alice", new Date("2026-11-30T12:00:01Z")), first, "a new request is a new object (a new ETag)");
    assert.deepEqual(parseControl(first, "x"), { request: { action: "stop", requestedAt: "2026-11-30T12:00:00.000Z", requestedBy: "alice" } });
});

test("a control object that is not a request is a problem, never an action", () => {
    assert.match((parseControl('{"action":"pause","requestedAt":"t"}', "s3://b/k") as { problem: string }).problem, /asks for "pause", which is not an action \(stop, restart\)/);
    assert.match((parseControl("stop", "s3://b/k") as { problem: string }).problem, /s3:\/\/b\/k is not JSON/);
    assert.match((parseControl('{"action":"stop"}', "s3://b/k") as { problem: string }).problem, /requestedAt/);
});

test("a stop in either object wins; a campaign-wide restart never lifts a run's stop", () => {
    assert.equal(effectiveControl(undefined, undefined), undefined);
    assert.equal(effectiveControl("restart", undefined), "restart");
    assert.equal(effectiveControl(undefined, "restart"), "restart");
    assert.equal(effectiveControl("stop", "restart"), "stop");
    assert.equal(effectiveControl("restart", "stop"), "stop");
});

test("what the next up declares: a stopped run waits, a restarted one resumes, a finished one stays finished", () => {
    const stopped = relaunchDecision("main", { phase: "interrupted", failures: 0, control: "stop" }, SPEC, 0);
    assert.equal(stopped.declare, false);
    assert.equal(stopped.why, "stopped");
    assert.match(stopped.reason, /stopped on request \(interrupted\).*npm run campaign -- continue --stack <stack> \[--run main\]/);
    assert.equal(relaunchDecision("main", { phase: undefined, failures: 0, control: "stop" }, SPEC, 0).declare, false, "a stop before the run ever started holds it too");
    const restarted = relaunchDecision("main", { phase: "interrupted", failures: 0, control: "restart" }, SPEC, 0);
    assert.deepEqual([restarted.declare, restarted.why], [true, "resume"]);
    for (const control of ["stop", "restart"] as const) {
        const done = relaunchDecision("main", { phase: "succeeded", failures: 0, control }, SPEC, 0);
        assert.deepEqual([done.declare, done.why], [false, "succeeded"], `${control} never brings back a finished run`);
    }
    const ending = relaunchDecision("main", { phase: "training", failures: 0, control: "stop" }, SPEC, 0);
    assert.equal(ending.declare, true, "a node still saving keeps its resource until it has ended itself");
    assert.match(ending.reason, /stop requested: its node saves a checkpoint and ends itself/);
});

test("the state reader takes the control objects into the run records", async () => {
    const { readCampaignState } = await import("../../components/campaign/state");
    const campaign = {
        prepSpec: { prepHash: "p" },
        runs: [{ name: "a" }, { name: "b" }],
    } as unknown as Parameters<typeof readCampaignState>[1];
    const state = await readCampaignState(new StaticCampaignState({ phases: { a: "interrupted", b: "interrupted" }, controls: { a: "stop" } }), campaign);
    assert.equal(state.runRecords?.a?.control, "stop");
    assert.equal(state.runRecords?.b?.control, undefined);
});

test("S3: the run's object and the campaign's are read; a stop in either holds, a bad one is a problem", async () => {
    const objects: Record<string, string> = {
        [runKeys("c", "a").control]: controlBody("restart", undefined, new Date()),
        [runKeys("c", "b").control]: '{"action":"pause","requestedAt":"t"}',
        [campaignControlKey("c")]: controlBody("stop", undefined, new Date()),
    };
    const reads: string[] = [];
    const client = {
        send: async (command: GetObjectCommand) => {
            const key = command.input.Key!;
            reads.push(key);
            const body = objects[key];
            if (body === undefined) throw Object.assign(new Error("NoSuchKey"), { name: "NoSuchKey", $metadata: { httpStatusCode: 404 } });
            return { Body: { transformToString: async () => body } };
        },
    } as unknown as S3Client;
    const reader = new S3CampaignState(client, "bucket", "c");
    assert.deepEqual(await reader.control("a"), { action: "stop" }, "the campaign's stop wins over the run's restart");
    const b = await reader.control("b");
    assert.equal(b.action, "stop");
    assert.match(b.problem ?? "", /s3:\/\/bucket\/runs\/c\/b\/control\.json asks for "pause"/);
    assert.equal(reads.filter((k) => k === campaignControlKey("c")).length, 1, "the campaign's object is read once");
    delete objects[campaignControlKey("c")];
    assert.deepEqual(await new S3CampaignState(client, "bucket", "c").control("a"), { action: "restart" });
    assert.deepEqual(await new S3CampaignState(client, "bucket", "c").control("z"), {});
});
