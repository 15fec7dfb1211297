// The plan calibrated by an earlier campaign's measured figures (npm run plan -- --calibrate-from <stack>).
//
//   node --import tsx --test test/plan/calibration.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveCampaign } from "../../components/campaign/resolve";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import { calibrationFor, MEASURED_FIGURES_VERSION, type MeasuredFigures } from "../../components/plan/calibration";
import { buildPlan } from "../../components/plan/plan";
import { loadMeasuredFigures, parsePlanArgs } from "../../scripts/plan";

const measured: MeasuredFigures = {
    version: MEASURED_FIGURES_VERSION,
    campaign: "socratiq-t5",
    source: "stacks/socratiq-t5-lora.yaml",
    generatedAt: "2026-11-30T12:00:00.000Z",
    runs: [
        { run: "flan-t5-small", model: "google/flan-t5-small", instanceType: "g5.2xlarge", mfu: 0.05, setupHours: 0.1 },
        { run: "flan-t5-base", model: "google/flan-t5-base", instanceType: "g6.2xlarge", mfu: 0.2, setupHours: 0.3 },
        { run: "t5-base", model: "t5-base", instanceType: "g5.2xlarge", mfu: null, setupHours: null },
    ],
};

test("a run takes the figure of the same model on the same type, else of the same model, else the mean", () => {
    const exact = calibrationFor(measured, "L", { name: "a", model: "google/flan-t5-small", instanceType: "g5.2xlarge" });
    assert.deepEqual([exact.mfu, exact.setupHours], [0.05, 0.1]);
    assert.match(exact.note, /^a: calibrated: MFU 0\.0500 measured in L, run flan-t5-small \(google\/flan-t5-small on g5\.2xlarge\); setup 0\.100 h/);
    const sameModel = calibrationFor(measured, "L", { name: "b", model: "google/flan-t5-base", instanceType: "g5.2xlarge" });
    assert.deepEqual([sameModel.mfu, sameModel.setupHours], [0.2, 0.3]);
    assert.match(sameModel.note, /google\/flan-t5-base on g6\.2xlarge/);
    const other = calibrationFor(measured, "L", { name: "c", model: "t5-base", instanceType: "g5.2xlarge" });
    assert.ok(Math.abs(other.mfu! - 0.125) < 1e-12 && Math.abs(other.setupHours! - 0.2) < 1e-12, "t5-base measured nothing: the mean of the two measured runs");
    assert.match(other.note, /the mean of its 2 measured run\(s\)/);
    const none = calibrationFor({ ...measured, runs: [] }, "L", { name: "d", model: "x", instanceType: "g5.2xlarge" });
    assert.deepEqual([none.mfu, none.setupHours], [undefined, undefined]);
    assert.match(none.note, /no MFU measured in L: the assumed one is kept; no setup time measured there/);
});

test("an implausible MFU (a CPU rehearsal's ~3e-5) is not used, and the plan says why; the setup time still is", () => {
    const cpu: MeasuredFigures = { ...measured, runs: [{ run: "main", model: "m", instanceType: "g5.2xlarge", mfu: 3e-5, setupHours: 0.2 }] };
    const c = calibrationFor(cpu, "dev", { name: "main", model: "m", instanceType: "g5.2xlarge" });
    assert.equal(c.mfu, undefined);
    assert.equal(c.setupHours, 0.2);
    assert.match(c.note, /MFU 0\.0000300 measured in dev \(run main \(m on g5\.2xlarge\)\) is outside 0\.01-0\.8 \(a CPU rehearsal, or a broken measurement\?\): the assumed one is kept/);
    const high = calibrationFor({ ...cpu, runs: [{ ...cpu.runs[0]!, mfu: 0.95 }] }, "dev", { name: "main", model: "m", instanceType: "g5.2xlarge" });
    assert.equal(high.mfu, undefined);
});

test("the calibrated plan uses the measured MFU and setup time, and says so in its assumptions", () => {
    const campaign = resolveCampaign(mergeConfig(loadPreset("socratiq-t5-lora"), {}));
    const assumed = buildPlan(campaign);
    const calibrated = buildPlan(campaign, { measured, label: "campaign socratiq-t5 (x.json)" });
    const small = (p: typeof assumed) => p.runs.find((r) => r.run === "flan-t5-small")!;
    // flan-t5-small is assumed at MFU 0.175 (0.35 halved under 1B parameters) and 0.25 h of setup: figures measured
    // equal to those give the same hours; a lower measured MFU gives more.
    const same = buildPlan(campaign, { measured: { ...measured, runs: [{ ...measured.runs[0]!, mfu: 0.175, setupHours: 0.25 }] }, label: "L" });
    assert.ok(Math.abs(small(same).estimatedHours! - small(assumed).estimatedHours!) < 1e-9, `${small(same).estimatedHours} vs ${small(assumed).estimatedHours}`);
    assert.ok(small(calibrated).estimatedHours! > small(assumed).estimatedHours!, `${small(assumed).estimatedHours} -> ${small(calibrated).estimatedHours}`);
    assert.ok(calibrated.assumptions.some((a) => a.startsWith("flan-t5-small: calibrated: MFU 0.0500 measured in campaign socratiq-t5 (x.json)")));
    assert.ok(calibrated.assumptions.some((a) => /MFU 0\.05 given against/.test(a)));
    assert.ok(calibrated.assumptions.some((a) => /setup: 0\.1 h for boot/.test(a)));
    assert.ok(!assumed.assumptions.some((a) => a.includes("calibrated")));
});

test("--calibrate-from: the stack's report figures found here, or a clear error naming where it looked", () => {
    assert.deepEqual(parsePlanArgs(["--stack", "dev", "--calibrate-from", "socratiq-t5-lora"]), { stack: "dev", json: false, compare: false, calibrateFrom: "socratiq-t5-lora" });
    assert.throws(() => parsePlanArgs(["--stack", "dev", "--calibrate-from"]), /--calibrate-from needs a stack name/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "campaign-calibrate-"));
    assert.throws(() => loadMeasuredFigures("old", dir), /no measured figures at campaign-report-old\.json or \.rehearsal\/old\/report\.json; write them with npm run campaign -- report --stack old/);
    fs.mkdirSync(path.join(dir, ".rehearsal", "old"), { recursive: true });
    fs.writeFileSync(path.join(dir, ".rehearsal", "old", "report.json"), JSON.stringify(measured));
    const found = loadMeasuredFigures("old", dir);
    assert.equal(found.measured.runs.length, 3);
    assert.equal(found.label, "campaign socratiq-t5 (.rehearsal/old/report.json, 2026-11-30T12:00:00.000Z)");
    fs.writeFileSync(path.join(dir, "bad.json"), JSON.stringify({ ...measured, version: 9 }));
    assert.throws(() => loadMeasuredFigures("bad.json", dir), /bad\.json is not a report's measured figures: version/);
});
