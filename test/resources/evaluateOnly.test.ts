// An evaluation-only change under Pulumi mocks: in a campaign whose runs all succeeded, the run whose evaluation was
// computed with other settings gets one GPU node in evaluate-only mode (CAMPAIGN_EVALUATE_ONLY in its runner
// settings) behind the gate, and the prep of the new evaluation rows; the runs whose evaluation is current get none.
//
//   node --import tsx --test --test-concurrency=1 test/resources/evaluateOnly.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import YAML from "yaml";
// The harness installs the Pulumi mocks: import it before any component.
import { assertSafe, build, gpuInstances, resolved, waitsFor } from "./harness";
import { declarations, readCampaignState, StaticCampaignState } from "../../components/campaign/state";
import { RUNNER_ENV_PATH } from "../../components/node/userData";

function runnerEnvOf(userData: string): string {
    return (YAML.parse(userData) as { write_files: Array<{ path: string; content: string }> }).write_files.find((f) => f.path === RUNNER_ENV_PATH)!.content;
}

test("a succeeded run whose evaluation settings changed gets one evaluate-only node; the others none", async () => {
    const campaign = resolved("socratiq-t5-lora");
    assert.ok(campaign.runs.length >= 2 && campaign.trainSpecs.every((s) => s.evaluationHash), "the preset evaluates several runs");
    const [stale, ...current] = campaign.trainSpecs;
    const OLD = "0000000000000000";
    const byRun = <T>(f: (spec: (typeof campaign.trainSpecs)[number]) => T) => Object.fromEntries(campaign.trainSpecs.map((s) => [s.run, f(s)]));
    const state = await readCampaignState(
        new StaticCampaignState({
            phases: byRun(() => "succeeded" as const),
            specHashes: byRun((s) => s.specHash),
            outputSpecHashes: byRun((s) => s.specHash),
            evaluatedHashes: byRun((s) => (s === stale ? OLD : s.evaluationHash!)),
            baselineEvaluatedHashes: byRun((s) => (s === stale ? OLD : s.evaluationHash!)),
        }),
        campaign,
    );
    const declared = declarations(campaign, state);
    assert.deepEqual(declared.evaluateOnly, [stale!.run]);
    assert.deepEqual(declared.finished, current.map((s) => s.run));
    assert.ok(declared.warnings.some((w) => w.startsWith(`${stale!.run}: succeeded, but its evaluation was computed with settings ${OLD}`) && /evaluate-only mode/.test(w)), declared.warnings.join("\n"));

    const g = await build("evalonly", campaign, state);
    assertSafe(g);
    const gpus = gpuInstances(g);
    assert.deepEqual(gpus.map((n) => n.inputs.tags.run), [stale!.run], "one GPU node, for the run to evaluate again");
    const env = runnerEnvOf(gpus[0]!.inputs.userData);
    assert.match(env, /^CAMPAIGN_EVALUATE_ONLY='1'$/m);
    assert.ok(waitsFor(g, gpus[0]!.name, `${g.name}-gate`), "the evaluate-only node waits for the gate (the new evaluation rows are prepared first)");
});

test("a run being trained has no evaluate-only setting", async () => {
    const campaign = resolved("socratiq-t5-lora");
    const g = await build("training", campaign);
    assertSafe(g);
    for (const node of gpuInstances(g)) assert.doesNotMatch(runnerEnvOf(node.inputs.userData), /CAMPAIGN_EVALUATE_ONLY/);
});
