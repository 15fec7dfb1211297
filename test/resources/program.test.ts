// The Pulumi program (components/resources/program.ts) under mocks, as index.ts runs it: it reads config and
// state, its outputs say where things are, the stack's credentials reach every reader, and an existing bucket
// that cannot work stops it before anything is declared.
//
//   node --import tsx --test --test-concurrency=1 test/resources/program.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
// The harness installs the Pulumi mocks: import it before any component.
import { ACCOUNT, declared, HF_TOKEN, ofComponent, recorder, registered, renderUserData, unwrap, WANDB_KEY } from "./harness";
import { StaticCampaignState } from "../../components/campaign/state";
import { campaignBucketName } from "../../components/campaign/naming";
import { program } from "../../components/resources/program";

test("the program reads config and state, and its outputs say where things are, what they cost and how to stop them", async () => {
    pulumi.runtime.setAllConfig(
        {
            "campaign:preset": "dev",
            "campaign:experiment": JSON.stringify({ compute: { maxHours: 1 } }),
            "campaign:hfToken": HF_TOKEN,
            "campaign:wandbKey": WANDB_KEY,
        },
        ["campaign:hfToken", "campaign:wandbKey"],
    );
    const seen: string[] = [];
    const outputs = await program({
        name: "prog",
        renderUserData,
        stateReader: (bucket, campaign) => {
            seen.push(`${bucket}/${campaign}`);
            return new StaticCampaignState();
        },
        opts: { transformations: [recorder] },
    });
    const bucket = campaignBucketName("dev", "test", ACCOUNT);
    assert.deepEqual(seen, [`${bucket}/dev`], "state is read from the campaign's bucket before declaring");
    assert.equal(outputs.bucket, bucket);
    const commands = outputs.commands as Record<string, unknown>;
    assert.equal(commands.destroy, "pulumi destroy --stack test");
    assert.deepEqual(commands.watch, [`aws s3 cp s3://${bucket}/runs/dev/main/status.json -`]);
    const cost = outputs.estimatedCost as { estimatedUsd: number; worstCaseUsd: number };
    assert.ok(cost.estimatedUsd > 0 && cost.worstCaseUsd >= cost.estimatedUsd);
    assert.match((outputs.afterDestroy as { kept: string }).kept, new RegExp(bucket));
    assert.match((outputs.logs as Record<string, string>).main, /runs%2Fdev%2Fmain%2Flogs%2F/);
    const nodes = await unwrap(outputs.nodes as pulumi.Output<Record<string, { where: string }>>);
    assert.equal(nodes.main.where, "i-prog-run-main-node-instance");
    const plain = JSON.stringify({ ...outputs, nodes });
    assert.ok(!plain.includes(HF_TOKEN) && !plain.includes(WANDB_KEY));
    for (const r of ofComponent(registered, "prog")) {
        if (r.type === "aws:ssm/parameter:Parameter") continue;
        assert.ok(!JSON.stringify(r.inputs).includes(HF_TOKEN), `secret in ${r.name}`);
    }
});

test("the stack's aws:profile and aws:assumeRoles reach the campaign's provider, its state reader and its local commands", async () => {
    const role = { roleArn: `arn:aws:iam::${ACCOUNT}:role/ml-campaigns`, sessionName: "campaign" };
    pulumi.runtime.setAllConfig({
        "campaign:preset": "dev",
        "aws:profile": "ml-team",
        "aws:assumeRoles": JSON.stringify([role]),
    });
    const profiles: Array<string | undefined> = [];
    await program({
        name: "creds",
        renderUserData,
        stateReader: (_bucket, _campaign, _region, profile) => {
            profiles.push(profile);
            return new StaticCampaignState();
        },
        opts: { transformations: [recorder] },
    });
    for (let i = 0; i < 200 && !ofComponent(registered, "creds").some((r) => r.name === "creds-gate"); i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(profiles, ["ml-team"], "the state is read as the stack's profile");
    const provider = registered.find((r) => r.type === "pulumi:providers:aws" && r.name === "creds-aws")!;
    assert.equal(provider.inputs.profile, "ml-team");
    assert.deepEqual(JSON.parse(provider.inputs.assumeRoles), [role]);
    const gate = ofComponent(registered, "creds").find((r) => r.name === "creds-gate")!;
    assert.equal(gate.inputs.environment.AWS_PROFILE, "ml-team", "the gate's AWS CLI uses the same profile");
});

test("an existing bucket that cannot work stops the program before anything is declared; a warning does not", async () => {
    pulumi.runtime.setAllConfig({ "campaign:preset": "dev", "campaign:experiment": JSON.stringify({ storage: { existingBucket: "team-kms" } }) });
    const checked: string[] = [];
    let stateRead = false;
    const run = (problems: Array<{ severity: "error" | "warning"; message: string }>, name: string) =>
        program({
            name,
            renderUserData,
            bucketCheck: async (bucket, accountId) => {
                checked.push(`${bucket}@${accountId}`);
                return problems;
            },
            stateReader: () => {
                stateRead = true;
                return new StaticCampaignState();
            },
            opts: { transformations: [recorder] },
        });
    await assert.rejects(run([{ severity: "error", message: "storage.existingBucket (team-kms) encrypts new objects with the customer-managed KMS key k" }], "badbucket"), /customer-managed KMS key k/);
    assert.deepEqual(checked, [`team-kms@${ACCOUNT}`]);
    assert.equal(stateRead, false, "nothing read or declared after a failed bucket check");
    assert.equal(ofComponent(declared, "badbucket").length, 0);
    await run([{ severity: "warning", message: "in another region" }], "warnbucket");
    assert.equal(stateRead, true);
});
