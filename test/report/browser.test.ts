// The rehearsal's HTML report in a real browser: the socratiq-t5-lora campaign (three runs, three base models) is
// rehearsed in a short form (12 steps, every one logged), then headless Chromium (Debian's `chromium`,
// driven by playwright-core through its executablePath; no browser is downloaded) loads the report: no console
// error, no request beyond the file itself, and one training-loss curve per run with as many points as the run's
// metrics files have distinct steps. A screenshot goes to .rehearsal/socratiq-t5-lora/report.png
// (CAMPAIGN_UPDATE_SCREENSHOT=1 also copies it to docs/images/, where the README shows it).
//
//   node --import tsx --test test/report/browser.test.ts      (slow: a rehearsal of three runs)
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { parseHistory } from "../../components/report/history";

const root = path.join(__dirname, "..", "..");
const stack = "socratiq-t5-lora";
const CHROMIUM = process.env.CAMPAIGN_CHROMIUM ?? "/usr/bin/chromium";

/** Distinct training steps with a loss over all of a run's attempt files, as the mirror holds them. */
function loggedSteps(metricsDir: string): number {
    const steps = new Set<number>();
    for (const f of fs.readdirSync(metricsDir).filter((n) => n.endsWith(".jsonl"))) {
        for (const r of parseHistory(fs.readFileSync(path.join(metricsDir, f), "utf8")).records) if (r.kind === "train" && r.loss !== null) steps.add(r.step);
    }
    return steps.size;
}

test("the rehearsal's report loads in Chromium offline and shows every run's curve", { timeout: 1_500_000 }, async (t) => {
    assert.ok(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install -y --no-install-recommends chromium (or set CAMPAIGN_CHROMIUM)`);
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const started = Date.now();
    const run = spawnSync(tsx, ["scripts/rehearse.ts", "--stack", stack, "--max-steps", "12", "--max-batch", "4"], { cwd: root, encoding: "utf8", timeout: 1_400_000 });
    t.diagnostic(`${stack} rehearsed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const report = path.join(root, ".rehearsal", stack, "report.html");
    assert.match(run.stdout, /\nReport: \.rehearsal\/socratiq-t5-lora\/report\.html/);
    const runsDir = path.join(root, ".rehearsal", stack, "s3", "campaign-rehearsal", "runs", "socratiq-t5");
    const runs = fs.readdirSync(runsDir).filter((r) => r !== "prep" && fs.existsSync(path.join(runsDir, r, "metrics")));
    assert.deepEqual(runs.sort(), ["flan-t5-base", "flan-t5-small", "t5-base"]);

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
        const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
        const problems: string[] = [];
        const requests: string[] = [];
        page.on("console", (m) => {
            if (m.type() === "error" || m.type() === "warning") problems.push(`${m.type()}: ${m.text()}`);
        });
        page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
        page.on("request", (r) => requests.push(r.url()));
        const url = `file://${report}`;
        await page.goto(url, { waitUntil: "load" });
        assert.deepEqual(problems, []);
        assert.deepEqual(requests, [url], "the report loads nothing beyond itself");

        for (const r of runs) {
            const expected = loggedSteps(path.join(runsDir, r, "metrics"));
            assert.equal(expected, 12, `${r}: the rehearsal logs every one of its 12 steps`);
            const curve = page.locator(`.chart-train-loss .linear-only polyline.raw[data-run="${r}"]`);
            assert.equal(await curve.count(), 1, `one training-loss curve for ${r}`);
            assert.ok(await curve.isVisible(), `${r}'s curve is drawn`);
            assert.equal(Number(await curve.getAttribute("data-points")), expected, r);
            assert.equal((await curve.getAttribute("points"))!.trim().split(/\s+/).length, expected, r);
        }
        // The winner is marked once, and the log-scale switch swaps the loss charts without a script.
        assert.equal(await page.locator("text=★ winner").count(), 1);
        assert.equal(await page.locator(".chart-train-loss .log-only svg").isVisible(), false);
        await page.locator("#log").check();
        assert.equal(await page.locator(".chart-train-loss .log-only svg").isVisible(), true);
        await page.locator("#log").uncheck();

        const shot = path.join(root, ".rehearsal", stack, "report.png");
        await page.screenshot({ path: shot, fullPage: false });
        assert.ok(fs.statSync(shot).size > 10_000);
        if (process.env.CAMPAIGN_UPDATE_SCREENSHOT === "1") fs.copyFileSync(shot, path.join(root, "docs", "images", "report-socratiq-t5-lora.png"));
    } finally {
        await browser.close();
    }
});
