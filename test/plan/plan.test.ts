// The plan: every preset plans, stages in order, the money adds up, the CLI says what is wrong.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as path from "node:path";
import { resolveCampaign } from "../../components/campaign/resolve";
import { getInstance } from "../../components/plan/catalog";
import { listPresets, loadPreset, mergeConfig } from "../../components/config/presets";
import { buildPlan, renderPlan } from "../../components/plan/plan";
import { parsePlanArgs } from "../../scripts/plan";

const root = path.join(__dirname, "..", "..");

test("every preset plans: prep first, one GPU node per run, money adds up", () => {
    for (const name of listPresets()) {
        const campaign = resolveCampaign(loadPreset(name));
        const plan = buildPlan(campaign);
        assert.equal(plan.runs.length, campaign.runs.length, name);
        const sumRuns = plan.runs.reduce((s, r) => s + (r.estimatedUsd ?? 0), 0);
        assert.ok(Math.abs(plan.totals.estimatedUsd - (plan.prep.estimatedUsd + plan.image.estimatedUsd + sumRuns)) < 1e-9, name);
        for (const r of plan.runs) {
            const instance = getInstance(r.instanceType);
            assert.ok(r.memory, `${name}/${r.run}: every preset model is in the catalog`);
            assert.ok(r.memory.fits, `${name}/${r.run} fits its GPU`);
            // Worst case: the cap times (price + volumes while it runs) - never less than cap x price.
            assert.ok(r.worstCaseUsd >= r.maxHours * instance.onDemandUsdPerHour, name);
            assert.ok(r.worstCaseUsd < r.maxHours * instance.onDemandUsdPerHour * 1.05, name);
            assert.ok((r.estimatedUsd ?? 0) <= r.worstCaseUsd + 1e-9, `${name}: the cap bounds the estimate`);
        }
        const text = renderPlan(plan, `stacks/${name}.yaml`);
        assert.ok(text.indexOf("1. Prep") < text.indexOf("2. Training"), "prep is shown before training");
        assert.match(text, /Worst case allowed by the max-hours caps: \$\d/);
        assert.match(text, /After `pulumi destroy`:/);
        assert.match(text, /Assumptions:\n(   - .+\n)+/);
    }
});

test("socsci210-qwen14b-qlora lands near its campaign's own 25-30 h estimate on 8x A100-80GB", () => {
    const plan = buildPlan(resolveCampaign(loadPreset("socsci210-qwen14b-qlora")));
    const run = plan.runs[0];
    assert.equal(run.instanceType, "p4de.24xlarge");
    assert.ok(run.estimatedHours! > 22 && run.estimatedHours! < 35, `${run.estimatedHours}`);
    assert.equal(run.steps, Math.ceil(2468761 / 1024));
    // Hand check: hours x $27.44705 plus the root volume while it runs.
    const volume = (200 * 0.08) / 730;
    assert.ok(Math.abs(run.estimatedUsd! - run.estimatedHours! * (27.44705 + volume)) < 1e-6);
});

test("keepOnDestroy false leaves nothing and costs nothing a month", () => {
    const plan = buildPlan(resolveCampaign(mergeConfig(loadPreset("dev"), { storage: { keepOnDestroy: false } })));
    assert.equal(plan.afterDestroy.keepArtifacts, false);
    assert.equal(plan.afterDestroy.monthlyUsd, 0);
    assert.match(renderPlan(plan, "x"), /nothing: the bucket and every artifact are deleted/);
    const kept = buildPlan(resolveCampaign(loadPreset("dev")));
    assert.ok(kept.afterDestroy.monthlyUsd > 0 && kept.afterDestroy.storedGb > 0);
});

test("a local prep costs nothing in AWS; an EC2 prep is priced by its instance", () => {
    const local = buildPlan(resolveCampaign(loadPreset("dev")));
    assert.equal(local.prep.runOn, "local");
    assert.equal(local.prep.estimatedUsd, 0);
    const ec2 = buildPlan(resolveCampaign(mergeConfig(loadPreset("dev"), { prep: { runOn: "ec2", instanceType: "c6i.4xlarge", maxHours: 3 } })));
    assert.equal(ec2.prep.instanceType, "c6i.4xlarge");
    assert.ok(ec2.prep.worstCaseUsd >= 3 * 0.68);
});

test("plan arguments: --stack required, unknown flags named", () => {
    assert.deepEqual(parsePlanArgs(["--stack", "dev"]), { stack: "dev", json: false, compare: false });
    assert.deepEqual(parsePlanArgs(["--stack=dev", "--json"]), { stack: "dev", json: true, compare: false });
    assert.deepEqual(parsePlanArgs(["--compare", "--stack", "dev"]), { stack: "dev", json: false, compare: true });
    assert.throws(() => parsePlanArgs([]), /--stack is required/);
    assert.throws(() => parsePlanArgs(["--stack"]), /--stack needs a name/);
    assert.throws(() => parsePlanArgs(["--stack", "dev", "--jsn"]), /unknown argument "--jsn"/);
});

test("npm run plan prints a plan, --json is machine-readable, a bad stack exits non-zero with the fix", () => {
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const text = execFileSync(tsx, ["scripts/plan.ts", "--stack", "socratiq-t5-lora"], { cwd: root, encoding: "utf8" });
    assert.match(text, /Training: 3 runs, one GPU node each/);
    const json = JSON.parse(execFileSync(tsx, ["scripts/plan.ts", "--stack", "dev", "--json"], { cwd: root, encoding: "utf8" }));
    assert.equal(json.campaign, "dev");
    assert.equal(json.runs[0].instanceType, "g5.2xlarge");
    const bad = spawnSync(tsx, ["scripts/plan.ts", "--stack", "socratiq-t5-lra"], { cwd: root, encoding: "utf8" });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /did you mean "socratiq-t5-lora"\?/);
});

test("the image build is in the plan: beside prep, priced per build minute in the region, nothing when local or given", () => {
    const dev = buildPlan(resolveCampaign(loadPreset("dev")));
    assert.equal(dev.image.buildOn, "region");
    assert.deepEqual(dev.image.jobs, ["trainer"], "dev prepares locally: only the trainer image is built");
    assert.ok(Math.abs(dev.image.estimatedUsd - dev.image.estimatedMinutes * dev.image.usdPerMinute) < 1e-9);
    assert.ok(dev.image.worstCaseUsd > dev.image.estimatedUsd);
    const text = renderPlan(dev, "x");
    assert.match(text, /beside it, image build \(trainer\) in us-east-1 with CodeBuild BUILD_GENERAL1_MEDIUM: about \d+ min, \$0\.\d\d \(timeouts = \$\d/);
    assert.ok(text.indexOf("image build") < text.indexOf("2. Training"), "the build is before training");
    const ec2 = buildPlan(resolveCampaign(mergeConfig(loadPreset("dev"), { prep: { runOn: "ec2", instanceType: "c6i.2xlarge" } })));
    assert.deepEqual(ec2.image.jobs, ["trainer", "prep"]);
    assert.ok(ec2.image.estimatedUsd > dev.image.estimatedUsd);
    const local = buildPlan(resolveCampaign(mergeConfig(loadPreset("dev"), { images: { buildOn: "local" } })));
    assert.equal(local.image.estimatedUsd, 0);
    assert.match(renderPlan(local, "x"), /with this machine's Docker, pushed to ECR \(images\.buildOn: local\)/);
    const given = buildPlan(resolveCampaign(mergeConfig(loadPreset("dev"), { images: { trainer: "123456789012.dkr.ecr.us-east-1.amazonaws.com/t@sha256:" + "a".repeat(64) } })));
    assert.deepEqual([given.image.jobs, given.image.estimatedUsd], [[], 0]);
    assert.ok(Math.abs(dev.totals.worstCaseUsd - (local.totals.worstCaseUsd + dev.image.worstCaseUsd)) < 1e-9, "the build's worst case is in the total");
});
