// The prep node's role reaches each staged model's own folder models/<id>/<revision>/, never all of models/: the
// policy document for a campaign with two models (pure), and the graph of the preset that stages three.
//
//   node --import tsx --test --test-concurrency=1 test/resources/prepModelScope.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
// The harness installs the Pulumi mocks: import it before any component.
import { ACCOUNT, assertSafe, build, byType, prepInstances, resolved } from "./harness";
import { nodePolicyDocument } from "../../components/resources/jobNode";
import { prepPrefixes } from "../../components/resources/prepStage";
import { campaignBucketName } from "../../components/campaign/naming";
import { datasetPrefix, modelPrefix, runKeys } from "../../components/campaign/layout";

test("prep policy for a campaign with two models: each model's folder, listed by s3:prefix, and nothing else of models/", () => {
    // Two runs on two base models, so prep stages two.
    const campaign = resolved("socratiq-t5-lora", {
        runs: [
            { name: "small", model: { id: "google/flan-t5-small" } },
            { name: "base", model: { id: "google/flan-t5-base", revision: "v2" }, training: { gradientCheckpointing: true } },
        ],
    });
    assert.deepEqual(
        campaign.prepSpec.stageModels.map((m) => `${m.id}@${m.revision}`),
        ["google/flan-t5-small@main", "google/flan-t5-base@v2"],
    );
    const prefixes = prepPrefixes("b-123", campaign.prepSpec, { kind: "hub" } as never);
    const models = ["models/google/flan-t5-small/main/", "models/google/flan-t5-base/v2/"];
    assert.deepEqual(prefixes.readWrite, [runKeys(campaign.experiment.name, "prep").prefix, datasetPrefix(campaign.prepSpec.prepHash), ...models]);
    assert.deepEqual(models, campaign.prepSpec.stageModels.map((m) => modelPrefix(m.id, m.revision)), "the layout's one model prefix");

    const doc = nodePolicyDocument({ bucketArn: "arn:aws:s3:::b-123", readWritePrefixes: prefixes.readWrite, readPrefixes: prefixes.read, parameterArns: [], ecrRepositoryArns: [], publishMetrics: false });
    const list = doc.Statement.find((s) => s.Sid === "ListCampaignPrefixes")!;
    const listed = (list.Condition as { StringLike: { "s3:prefix": string[] } }).StringLike["s3:prefix"];
    for (const m of models) assert.ok(listed.includes(m) && listed.includes(`${m}*`), `lists ${m}`);
    assert.ok(!listed.some((p) => p === "models/" || p === "models/*"), "never all of models/");
    const write = doc.Statement.find((s) => s.Sid === "ReadWriteCampaignObjects")!;
    const resources = [write.Resource].flat() as string[];
    assert.deepEqual(
        resources.filter((r) => r.includes(":::b-123/models/")),
        models.map((m) => `arn:aws:s3:::b-123/${m}*`),
    );
});

test("graph: the preset's prep node may write the three staged models' folders only", async () => {
    const campaign = resolved("socratiq-t5-lora", { prep: { runOn: "ec2" } });
    const g = await build("prepscope", campaign);
    assertSafe(g);
    const prep = prepInstances(g);
    assert.equal(prep.length, 1, "a prep node");
    const policy = byType(g, "aws:iam/rolePolicy:RolePolicy").find((rp) => rp.name === prep[0]!.name.replace(/-instance$/, "-policy"))!;
    const doc = JSON.parse(policy.inputs.policy) as { Statement: Array<{ Sid: string; Resource: string | string[]; Condition?: any }> };
    const bucketArn = `arn:aws:s3:::${campaignBucketName(campaign.experiment.name, "test", ACCOUNT)}`;
    const expected = campaign.prepSpec.stageModels.map((m) => modelPrefix(m.id, m.revision));
    assert.equal(expected.length, 3, "flan-t5-small, flan-t5-base, t5-base");
    const written = ([doc.Statement.find((s) => s.Sid === "ReadWriteCampaignObjects")!.Resource].flat() as string[]).filter((r) => r.startsWith(`${bucketArn}/models/`));
    assert.deepEqual(written, expected.map((p) => `${bucketArn}/${p}*`));
    const listed: string[] = doc.Statement.find((s) => s.Sid === "ListCampaignPrefixes")!.Condition.StringLike["s3:prefix"];
    assert.deepEqual(listed.filter((p) => p.startsWith("models/")), expected.flatMap((p) => [p, `${p}*`]));
    // The runner is told the models/ root and syncs each model below it (campaign_runner/models.py).
    assert.equal(g.component.prep?.settings.modelOutputUri, `s3://${bucketArn.slice("arn:aws:s3:::".length)}/models/`);
});
