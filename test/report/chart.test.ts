// The chart geometry: nice ticks, linear and log scales, smoothing, and the SVG's series and escaping.
//
//   node --import tsx --test test/report/chart.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatNumber, lineChart, linearScale, logScale, niceStep, niceTicks, smooth } from "../../components/report/chart";
import { escapeHtml } from "../../components/report/escape";

test("nice steps are 1, 2 or 5 times a power of ten", () => {
    assert.equal(niceStep(10, 5), 2);
    assert.equal(niceStep(1, 5), 0.2);
    assert.equal(niceStep(700, 5), 200);
    assert.equal(niceStep(0.03, 6), 0.005);
    assert.throws(() => niceStep(0, 5), /positive span/);
});

test("ticks cover the values at a nice step and print without float noise", () => {
    assert.deepEqual(niceTicks(0, 24, 6), [0, 5, 10, 15, 20, 25]);
    assert.deepEqual(niceTicks(2.31, 3.94, 5), [2, 2.5, 3, 3.5, 4], "1.63 / 5 = 0.33 rounds up to a step of 0.5");
    assert.deepEqual(niceTicks(0.1, 0.3, 2), [0.1, 0.2, 0.3]);
    assert.deepEqual(niceTicks(5, 5, 5), [4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6], "one value: widened by 10% each side");
    assert.deepEqual(niceTicks(0, 0, 2), [-1, 0, 1]);
});

test("a linear scale maps the rounded-out domain onto the range (SVG y grows downwards)", () => {
    const y = linearScale([1.2, 9.7], [260, 20], 5);
    assert.deepEqual(y.domain, [0, 10]);
    assert.equal(y.map(0), 260);
    assert.equal(y.map(10), 20);
    assert.equal(y.map(5), 140);
    assert.throws(() => linearScale([Number.NaN], [0, 1]), /finite/);
});

test("a log scale spans whole decades, puts equal ratios at equal distances and refuses non-positive data", () => {
    const y = logScale([0.5, 30], [300, 0]);
    assert.deepEqual(y.domain, [0.1, 100]);
    assert.deepEqual(y.ticks, [0.1, 1, 10, 100], "three decades: decades only");
    assert.equal(y.map(0.1), 300);
    assert.equal(y.map(100), 0);
    assert.ok(Math.abs(y.map(1) - 200) < 1e-9 && Math.abs(y.map(10) - 100) < 1e-9);
    assert.deepEqual(logScale([0.5, 3], [1, 0]).ticks, [0.1, 0.2, 0.5, 1, 2, 5, 10], "two decades: 1, 2 and 5 of each");
    const wide = logScale([1e-5, 1], [100, 0]);
    assert.deepEqual(wide.ticks, [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1], "five decades: decades only");
    assert.deepEqual(logScale([3, 3], [1, 0]).domain, [1, 10]);
    assert.throws(() => logScale([0, -1], [0, 1]), /positive/);
});

test("smoothing: weight 0 is the identity, the first value is debiased, a constant stays constant", () => {
    assert.deepEqual(smooth([3, 1, 2], 0), [3, 1, 2]);
    assert.deepEqual(smooth([4, 4, 4], 0.9).map((v) => Number(v.toFixed(12))), [4, 4, 4]);
    const s = smooth([10, 0], 0.5);
    assert.equal(s[0], 10);
    assert.ok(Math.abs(s[1]! - 10 / 3) < 1e-12, `(0.5*0.5*10 + 0.5*0) / (1 - 0.25) = 10/3, got ${s[1]}`);
    assert.throws(() => smooth([1], 1), /\[0, 1\)/);
});

test("numbers print short", () => {
    assert.deepEqual([0, 0.000123, 2.5e-5, 12345.6, 3.14159, 2e7].map(formatNumber), ["0", "1.2e-4", "2.5e-5", "12,346", "3.142", "2.0e7"]);
});

test("the SVG has one polyline per series with all its points, and escapes names", () => {
    const svg = lineChart({
        title: "Loss <train>",
        xLabel: "step",
        yLabel: "loss",
        series: [
            { name: 'a"b', color: "#123456", points: [[1, 3], [2, 2], [3, 1]] },
            { name: "<script>", color: "#654321", points: [[1, 4], [2, 0.5]] },
            { name: "empty", color: "#000", points: [] },
        ],
    });
    const lines = [...svg.matchAll(/<polyline class="line" data-run="([^"]*)" data-points="(\d+)"[^>]* points="([^"]*)"/g)];
    assert.deepEqual(lines.map((m) => [m[1], Number(m[2]), m[3]!.split(" ").length]), [["a&quot;b", 3, 3], ["&lt;script&gt;", 2, 2]]);
    assert.ok(!svg.includes("<script>") && svg.includes("Loss &lt;train&gt;"));
    // x grows to the right with the steps; SVG y grows downwards, so a falling loss descends on the page
    const first = lines[0]![3]!.split(" ").map((p) => p.split(",").map(Number));
    assert.ok(first[0]![0]! < first[1]![0]! && first[0]![1]! < first[2]![1]!, `points ${lines[0]![3]}`);
    assert.match(lineChart({ title: "t", xLabel: "x", yLabel: "y", series: [{ name: "z", color: "#000", points: [[1, 0]] }], log: true }), /nothing recorded yet/);
    assert.equal(escapeHtml(`&<>"'`), "&amp;&lt;&gt;&quot;&#39;");
});

test("with smoothing, each series has its raw line and a smoothed one of the same length", () => {
    const svg = lineChart({ title: "t", xLabel: "x", yLabel: "y", smoothing: 0.6, series: [{ name: "r", color: "#000", points: [[1, 3], [2, 1], [3, 2]] }] });
    assert.match(svg, /<polyline class="raw" data-run="r" data-points="3"/);
    const smoothed = /<polyline class="smoothed"[^>]* points="([^"]*)"/.exec(svg);
    assert.equal(smoothed?.[1]?.split(" ").length, 3);
});
