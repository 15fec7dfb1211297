// aws:assumeRoles for the campaign's own readers: the AssumeRole requests a chain makes (pure), then against the
// local emulator (moto supports STS AssumeRole) with its request recorder on: the state reader and the gate call
// AssumeRole with the configured arguments, in order, each hop signed with the credentials the one before
// returned, and read S3 with the last hop's credentials.
//
//   node --import tsx --test --test-concurrency=1 test/campaign/assumeRoles.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { ASSUME_ROLES_ENV, assumeRoleChain, assumeRoleRequests, clientCredentials, goDurationSeconds, type AssumeRoleSetting } from "../../components/campaign/assumeRoles";
import { S3CampaignState } from "../../components/campaign/state";
import { fakeAwsEnv, startMoto, type Moto } from "../../scripts/local/moto";
import { S3Helper } from "../helpers/aws";

const root = join(__dirname, "..", "..");
const CHAIN: AssumeRoleSetting[] = [
    { roleArn: "arn:aws:iam::111122223333:role/hub", sessionName: "campaign-hub", externalId: "ext-1", duration: "1h" },
    { roleArn: "arn:aws:iam::444455556666:role/ml-campaigns", sessionName: "campaign", duration: "15m" },
];

// ---------------------------------------------------------------- pure

test("the chain's requests: every configured argument, in order; durations in the provider's Go format", () => {
    const requests = assumeRoleRequests(
        [
            ...CHAIN,
            { roleArn: "arn:aws:iam::444455556666:role/scoped", policyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"], tags: { team: "ml" }, transitiveTagKeys: ["team"], sourceIdentity: "me" },
        ],
        () => 1700000000000,
    );
    assert.deepEqual(requests, [
        { RoleArn: "arn:aws:iam::111122223333:role/hub", RoleSessionName: "campaign-hub", DurationSeconds: 3600, ExternalId: "ext-1" },
        { RoleArn: "arn:aws:iam::444455556666:role/ml-campaigns", RoleSessionName: "campaign", DurationSeconds: 900 },
        {
            RoleArn: "arn:aws:iam::444455556666:role/scoped",
            RoleSessionName: "campaign-1700000000000",
            DurationSeconds: 900,
            PolicyArns: [{ arn: "arn:aws:iam::aws:policy/ReadOnlyAccess" }],
            SourceIdentity: "me",
            Tags: [{ Key: "team", Value: "ml" }],
            TransitiveTagKeys: ["team"],
        },
    ]);
    assert.equal(goDurationSeconds("1h30m", "d"), 5400);
    assert.equal(goDurationSeconds("2700s", "d"), 2700);
});

test("a role without roleArn, a duration that is not one, or one STS refuses is an error naming the entry", () => {
    assert.throws(() => assumeRoleRequests([CHAIN[0]!, { sessionName: "x" }]), /aws:assumeRoles\[1\]\.roleArn is not set \(assume role 2 of 2\)/);
    assert.throws(() => assumeRoleRequests([{ roleArn: "arn:aws:iam::1:role/r", duration: "an hour" }]), /aws:assumeRoles\[0\]\.duration: got "an hour"; expected a duration such as "1h"/);
    assert.throws(() => assumeRoleRequests([{ roleArn: "arn:aws:iam::1:role/r", duration: "13h" }]), /STS allows 15 minutes to 12 hours/);
    assert.throws(() => assumeRoleChain([{}], { region: "us-east-1" }), /roleArn is not set/, "before any client is made");
});

// ---------------------------------------------------------------- against the emulator, with its recorder

let moto: Moto;
const savedEnv = { ...process.env };

interface Recorded {
    readonly service: string;
    readonly accessKeyId: string;
    readonly params: URLSearchParams;
    readonly url: string;
}

before(async () => {
    // moto records every request it serves (headers and body) once the recorder is started.
    process.env.MOTO_RECORDER_FILEPATH = join(mkdtempSync(join(tmpdir(), "campaign-sts-")), "recording.jsonl");
    moto = await startMoto();
    Object.assign(process.env, fakeAwsEnv, { AWS_ENDPOINT_URL: moto.endpoint });
    delete process.env.AWS_PROFILE;
});
after(async () => {
    await moto?.stop();
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
});

async function record<T>(body: () => Promise<T>): Promise<{ result: T; requests: Recorded[] }> {
    await fetch(`${moto.endpoint}/moto-api/recorder/reset-recording`, { method: "POST" });
    await fetch(`${moto.endpoint}/moto-api/recorder/start-recording`, { method: "POST" });
    const result = await body();
    await fetch(`${moto.endpoint}/moto-api/recorder/stop-recording`, { method: "POST" });
    const text = await (await fetch(`${moto.endpoint}/moto-api/recorder/download-recording`)).text();
    const requests = text
        .split("\n")
        .filter(Boolean)
        .map((line) => {
            const entry = JSON.parse(line) as { headers: Record<string, string>; body: string | null; body_encoded: boolean; url: string };
            const auth = entry.headers.Authorization ?? entry.headers.authorization ?? "";
            const m = /Credential=([^/]+)\/\d+\/[^/]+\/([^/]+)\//.exec(auth);
            const body = entry.body ? (entry.body_encoded ? Buffer.from(entry.body, "base64").toString("utf8") : entry.body) : "";
            return { service: m?.[2] ?? "?", accessKeyId: m?.[1] ?? "?", params: new URLSearchParams(body), url: entry.url };
        });
    return { result, requests };
}

/** Asserts the recorded AssumeRole calls are CHAIN's, in order, each signed by the previous hop; returns the last hop's key. */
function assertChain(requests: Recorded[], label: string): string {
    const assumes = requests.filter((r) => r.service === "sts" && r.params.get("Action") === "AssumeRole");
    assert.equal(assumes.length, CHAIN.length, `${label}: one AssumeRole per role`);
    assert.deepEqual(
        assumes.map((r) => [r.params.get("RoleArn"), r.params.get("RoleSessionName"), r.params.get("ExternalId"), r.params.get("DurationSeconds")]),
        [
            ["arn:aws:iam::111122223333:role/hub", "campaign-hub", "ext-1", "3600"],
            ["arn:aws:iam::444455556666:role/ml-campaigns", "campaign", null, "900"],
        ],
        `${label}: the configured arguments, in order`,
    );
    assert.equal(assumes[0]!.accessKeyId, fakeAwsEnv.AWS_ACCESS_KEY_ID, `${label}: the first hop uses the base credentials`);
    assert.notEqual(assumes[1]!.accessKeyId, fakeAwsEnv.AWS_ACCESS_KEY_ID, `${label}: the second hop uses the first role's credentials`);
    const s3Keys = new Set(requests.filter((r) => r.service === "s3").map((r) => r.accessKeyId));
    assert.equal(s3Keys.size, 1, `${label}: S3 is read as one identity`);
    const [s3Key] = [...s3Keys];
    assert.ok(s3Key !== fakeAwsEnv.AWS_ACCESS_KEY_ID && s3Key !== assumes[1]!.accessKeyId, `${label}: S3 is read with the last role's credentials, not the base's or the hub's`);
    return s3Key!;
}

test("the state reader assumes the roles in order and reads S3 as the last one", async () => {
    const s3 = S3Helper.forEndpoint(moto.endpoint);
    await s3.createBucket("dev-prod-123456789012");
    await s3.put("s3://dev-prod-123456789012/runs/dev/main/status.json", JSON.stringify({ phase: "interrupted" }));
    const { result, requests } = await record(async () => {
        const client = new S3Client({ region: "us-east-1", endpoint: moto.endpoint, forcePathStyle: true, ...clientCredentials({ region: "us-east-1", assumeRoles: CHAIN }) });
        return new S3CampaignState(client, "dev-prod-123456789012", "dev").runPhase("main");
    });
    assert.equal(result, "interrupted", "the state is read");
    assertChain(requests, "state reader");

    // The identity the chain hands out is the last role's, as STS itself says.
    const who = await new STSClient({ region: "us-east-1", credentials: assumeRoleChain(CHAIN, { region: "us-east-1" }) }).send(new GetCallerIdentityCommand({}));
    assert.match(who.Arn ?? "", /^arn:aws:sts::444455556666:assumed-role\/ml-campaigns\/campaign$/);
});

test("the gate (scripts/gate.ts) assumes the roles of CAMPAIGN_ASSUME_ROLES in order and reads the marker as the last one", async () => {
    const s3 = S3Helper.forEndpoint(moto.endpoint);
    await s3.createBucket("gate-roles-bucket");
    await s3.put("s3://gate-roles-bucket/datasets/abc/_SUCCESS", "");
    const { result, requests } = await record(
        () =>
            new Promise<{ code: number | null; out: string }>((resolve) => {
                const child = spawn(
                    "npx",
                    ["tsx", "scripts/gate.ts", "--marker", "s3://gate-roles-bucket/datasets/abc/_SUCCESS", "--status", "s3://gate-roles-bucket/runs/dev/prep/status.json", "--logs", "s3://gate-roles-bucket/runs/dev/prep/logs/", "--max-seconds", "120", "--interval", "1"],
                    { cwd: root, env: { ...process.env, [ASSUME_ROLES_ENV]: JSON.stringify(CHAIN) } },
                );
                let out = "";
                child.stdout.on("data", (d: Buffer) => (out += d.toString()));
                child.stderr.on("data", (d: Buffer) => (out += d.toString()));
                child.on("close", (code) => resolve({ code, out }));
            }),
    );
    assert.equal(result.code, 0, result.out);
    assert.match(result.out, /gate: /);
    assertChain(requests, "gate");
});
