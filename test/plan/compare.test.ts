// The instance comparison (npm run plan -- --compare): the memory filter and the cost ranking on every preset.
//
//   node --import tsx --test test/plan/compare.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { resolveCampaign } from "../../components/campaign/resolve";
import { EBS_GP3_USD_PER_GB_MONTH, HOURS_PER_MONTH, INSTANCES, getInstance } from "../../components/plan/catalog";
import { compareInstances, renderComparison, type InstanceOption } from "../../components/plan/compare";
import { runEstimates } from "../../components/plan/runEstimates";
import { listPresets, loadPreset } from "../../components/config/presets";

const root = path.join(__dirname, "..", "..");
const gpuTypes = INSTANCES.filter((i) => i.kind === "gpu").map((i) => i.type);

for (const preset of listPresets()) {
    test(`${preset}: every fitting GPU type is listed, every other one is named as not fitting, cheapest first`, () => {
        const campaign = resolveCampaign(loadPreset(preset));
        const { experiment } = campaign;
        const volumeUsdPerHour = ((experiment.compute.rootVolumeGb + (experiment.compute.dataVolumeGb ?? 0)) * EBS_GP3_USD_PER_GB_MONTH) / HOURS_PER_MONTH;
        const comparison = compareInstances(campaign);
        assert.equal(comparison.runs.length, campaign.runs.length);
        comparison.runs.forEach((r, i) => {
            const run = campaign.runs[i]!;
            assert.ok(r.options, `${preset}/${r.run}: every preset's model is estimated`);
            // The filter: each GPU type is either an option or rejected, by the estimate the checks use.
            assert.deepEqual([...r.options.map((o) => o.instanceType), ...r.rejected.map((x) => x.instanceType)].sort(), [...gpuTypes].sort());
            for (const type of gpuTypes) {
                const e = runEstimates(experiment, { ...run, instanceType: type })!;
                const listed: InstanceOption | undefined = r.options.find((o) => o.instanceType === type);
                assert.equal(Boolean(listed), e.memory.fits, `${preset}/${r.run}: ${type} listed exactly when it fits`);
                if (!listed) continue;
                // Totals: hours x (price + volumes), on demand and at the typical spot figure.
                const instance = getInstance(type);
                assert.ok(Math.abs(listed.hours - e.time.hours) < 1e-9);
                assert.ok(Math.abs(listed.onDemandUsd - e.time.hours * (instance.onDemandUsdPerHour + volumeUsdPerHour)) < 1e-6);
                if (instance.typicalSpotUsdPerHour === undefined) assert.equal(listed.typicalSpotUsd, null);
                else assert.ok(Math.abs(listed.typicalSpotUsd! - e.time.hours * (instance.typicalSpotUsdPerHour + volumeUsdPerHour)) < 1e-6);
                assert.equal(listed.overCap, e.time.hours > experiment.compute.maxHours);
            }
            // The ranking: ascending on-demand totals; cheapest and fastest named among the options that finish
            // within compute.maxHours (all of them when none does).
            for (let k = 1; k < r.options.length; k++) assert.ok(r.options[k - 1]!.onDemandUsd <= r.options[k]!.onDemandUsd, `${preset}/${r.run}: sorted at ${k}`);
            const finishing = r.options.some((o) => !o.overCap) ? r.options.filter((o) => !o.overCap) : r.options;
            assert.equal(r.cheapest, finishing[0]!.instanceType);
            const minHours = Math.min(...finishing.map((o) => o.hours));
            assert.equal(r.options.find((o) => o.instanceType === r.fastest)!.hours, minHours);
            // The configured type fits (the checks refuse a preset otherwise) and is marked once.
            assert.deepEqual(r.options.filter((o) => o.configured).map((o) => o.instanceType), [run.instanceType]);
        });
        const text = renderComparison(comparison, `stacks/${preset}.yaml`);
        for (const r of comparison.runs) {
            assert.match(text, new RegExp(`cheapest( within compute\\.maxHours)?: ${r.cheapest!.replace(/\./g, "\\.")} `));
            assert.match(text, new RegExp(`fastest( within compute\\.maxHours)?: +${r.fastest!.replace(/\./g, "\\.")} `));
            assert.match(text, new RegExp(`\\*  ${r.configured.replace(/\./g, "\\.")} `), "the configured type is marked");
        }
    });
}

test("the 8x A100 presets list p5.48xlarge: the same tokens at H100 speed, priced at $55.04/h", () => {
    for (const preset of ["socsci210-qwen14b-qlora", "agnews-qwen7b-full"]) {
        const campaign = resolveCampaign(loadPreset(preset));
        assert.equal(campaign.runs[0]!.instanceType, "p4de.24xlarge", preset);
        const r = compareInstances(campaign).runs[0]!;
        const p4de = r.options!.find((o) => o.instanceType === "p4de.24xlarge")!;
        const p5 = r.options!.find((o) => o.instanceType === "p5.48xlarge");
        assert.ok(p5, `${preset}: p5.48xlarge is listed`);
        // Same GPU count, same MFU: the training part scales with the dense bf16 peaks, 312 vs 989 TFLOP/s.
        const setup = 0.25;
        assert.ok(Math.abs(p5.hours - setup - ((p4de.hours - setup) * 312) / 989) < 1e-6, `${preset}: ${p5.hours} vs ${p4de.hours}`);
        const volume = (campaign.experiment.compute.rootVolumeGb * 0.08) / 730;
        assert.ok(Math.abs(p5.onDemandUsd - p5.hours * (55.04 + volume)) < 1e-6);
        // Ranked by that total against p4de: above it when cheaper (SocSci210, ~30 h), below when the fixed setup
        // time dominates a short run (AG News, under an hour).
        assert.equal(r.options!.indexOf(p5) < r.options!.indexOf(p4de), p5.onDemandUsd < p4de.onDemandUsd, preset);
        if (preset === "socsci210-qwen14b-qlora") assert.ok(p5.onDemandUsd < p4de.onDemandUsd, "a 30-hour run costs less on p5");
        // 40 GB A100s and 24 GB GPUs cannot hold these runs at the configured batch.
        assert.ok(r.rejected.some((x) => x.instanceType === "g5.2xlarge"));
    }
});

test("SocSci210 on the comparison: 1x H100 is the lowest total but runs past the 36 h cap, so p5.48xlarge is named cheapest and fastest", () => {
    const r = compareInstances(resolveCampaign(loadPreset("socsci210-qwen14b-qlora"))).runs[0]!;
    assert.ok(r.rejected.some((x) => x.instanceType === "p4d.24xlarge"), "QLoRA 14B at batch 8 does not fit 40 GB");
    const fastest = r.options!.find((o) => o.instanceType === r.fastest)!;
    assert.equal(fastest.hours, Math.min(...r.options!.filter((o) => o.instanceType !== "p5en.48xlarge").map((o) => o.hours)));
    const single = r.options!.find((o) => o.instanceType === "p5.4xlarge");
    assert.ok(single && single.overCap && single.hours > 36);
    assert.equal(r.options![0]!.instanceType, "p5.4xlarge", "ranked by total, it comes first");
    assert.equal(r.cheapest, "p5.48xlarge");
    assert.equal(r.fastest, "p5.48xlarge");
});

test("npm run plan -- --compare prints the table; --json gives it to machines", () => {
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const text = execFileSync(tsx, ["scripts/plan.ts", "--stack", "dev", "--compare"], { cwd: root, encoding: "utf8" });
    assert.match(text, /Run main \(google\/flan-t5-small\), configured: g5\.2xlarge/);
    assert.match(text, /\*  g5\.2xlarge /);
    const json = JSON.parse(execFileSync(tsx, ["scripts/plan.ts", "--stack", "dev", "--compare", "--json"], { cwd: root, encoding: "utf8" }));
    assert.equal(json.runs[0].configured, "g5.2xlarge");
    assert.ok(json.runs[0].options.length > 1);
});
