// TrainingRun (components/resources/trainingRun.ts) under Pulumi mocks: what the state read from S3 changes:
// finished runs are not declared, interrupted ones are again, failed ones are held back until their settings change.
//
//   node --import tsx --test --test-concurrency=1 test/resources/trainingRun.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
// The harness installs the Pulumi mocks: import it before any component.
import { assertSafe, build, byType, gpuInstances, INSTANCE, prepInstances, presets, resolved, unwrap } from "./harness";
import { declarations, readCampaignState, StaticCampaignState } from "../../components/campaign/state";
import { PREP_RUN } from "../../components/campaign/layout";

test("a campaign where every run succeeded declares no compute at all", async () => {
    const campaign = resolved("socratiq-t5-lora");
    const phases = Object.fromEntries(campaign.runs.map((r) => [r.name, "succeeded" as const]));
    const state = await readCampaignState(new StaticCampaignState({ phases }), campaign);
    assert.equal(declarations(campaign, state).prep, "none");
    const g = await build("alldone", campaign, state);
    assertSafe(g);
    assert.equal(byType(g, INSTANCE).length, 0);
    assert.equal(byType(g, "command:local:Command").length, 0);
    assert.equal(byType(g, "docker:index/image:Image").length, 0);
    assert.equal(byType(g, "aws:codebuild/project:Project").length, 0);
});

test("an interrupted run is declared again (it resumes from its checkpoint)", async () => {
    const campaign = resolved("dev");
    const state = await readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { main: "interrupted" } }), campaign);
    const g = await build("retry", campaign, state);
    assertSafe(g);
    assert.equal(gpuInstances(g).length, 1);
});

test("a failed run is held back with unchanged settings, relaunched when they change or compute.retries allows", async () => {
    const campaign = resolved("dev");
    const specHash = campaign.trainSpecs[0]!.specHash;
    const failed = (extra: object) => readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { main: "failed" }, ...extra }), campaign);

    const same = await build("failed-same", campaign, await failed({ specHashes: { main: specHash } }));
    assertSafe(same);
    assert.equal(gpuInstances(same).length, 0, "no node for a run that failed with these settings");
    assert.equal(same.component.declared.held.length, 1);
    assert.match(same.component.declared.warnings[0]!, /main: failed 1 time\(s\) with these settings .* not relaunched/);
    assert.deepEqual((await unwrap(same.component.nodes)).main, { where: "held: failed, not relaunched", phase: "failed" });

    const changed = await build("failed-changed", campaign, await failed({ specHashes: { main: "0000000000000000" } }));
    assert.equal(gpuInstances(changed).length, 1, "changed settings: a new attempt");

    const retried = resolved("dev", { compute: { retries: 1 } });
    const once = await readCampaignState(new StaticCampaignState({ phases: { main: "failed" }, specHashes: { main: retried.trainSpecs[0]!.specHash }, failures: { main: 1 } }), retried);
    assert.equal(declarations(retried, once).runs.length, 1, "retries=1 allows a second attempt");
    const twice = await readCampaignState(new StaticCampaignState({ phases: { main: "failed" }, specHashes: { main: retried.trainSpecs[0]!.specHash }, failures: { main: 2 } }), retried);
    assert.equal(declarations(retried, twice).runs.length, 0, "and no third");
});

test("a running run whose settings changed keeps its node, and pulumi up says so", async () => {
    const campaign = resolved("dev");
    const state = await readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { main: "training" }, specHashes: { main: "0000000000000000" } }), campaign);
    const g = await build("running-changed", campaign, state);
    assert.equal(gpuInstances(g).length, 1);
    assert.match(g.component.declared.warnings.join("\n"), /main: is training with spec 0000000000000000; the changed settings .* are not applied to its node/);
});

for (const preset of presets) {
    test(`${preset}: finished runs and a prepared dataset are not declared`, async () => {
        const campaign = resolved(preset);
        const [first, ...rest] = campaign.runs;
        const state = await readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { [PREP_RUN]: "succeeded", [first.name]: "succeeded" } }), campaign);
        const g = await build(`state-${preset}`, campaign, state);
        assertSafe(g);
        assert.equal(prepInstances(g).length, 0, "no prep node for a prepared dataset");
        assert.equal(byType(g, "command:local:Command").filter((r) => r.name.includes("-prep-")).length, 0, "no local prep");
        assert.equal(g.component.prep, undefined);
        const gpuRuns = gpuInstances(g).map((i) => i.inputs.tags.run).sort();
        assert.deepEqual(gpuRuns, rest.map((r) => r.name).sort(), "only unfinished runs get a node");
        assert.ok(!JSON.stringify(byType(g, "aws:cloudwatch/metricAlarm:MetricAlarm").map((a) => a.inputs.tags)).includes(`"run":"${first.name}"`));
        const nodes = await unwrap(g.component.nodes);
        assert.deepEqual(nodes[first.name], { where: "done", phase: "succeeded" });
        assert.equal(nodes[PREP_RUN].where, rest.length ? "cached" : "none");
        if (rest.length === 0) assert.equal(g.resources.filter((r) => r.name === `${g.name}-gate`).length, 0, "nothing to gate");
    });
}
