// The terminal sparkline of `campaign watch`.
//
//   node --import tsx --test test/report/sparkline.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { sparkline } from "../../components/report/sparkline";

test("lowest value is the lowest block, highest the highest, one column per point up to the width", () => {
    assert.equal(sparkline([8, 4, 2, 1]), "█▄▂▁");
    assert.equal(sparkline([1, 2, 3, 4, 5, 6, 7, 8]), "▁▂▃▄▅▆▇█");
    assert.equal(sparkline([5, 5, 5]), "▄▄▄", "a flat curve sits in the middle");
    assert.equal(sparkline([]), "");
    assert.equal(sparkline([Number.NaN, 2, 1]), "█▁");
});

test("a long curve is resampled to the width: each column the mean of its points", () => {
    const falling = Array.from({ length: 1000 }, (_, i) => 1000 - i);
    const line = sparkline(falling, 10);
    assert.equal([...line].length, 10);
    const heights = [...line].map((c) => "▁▂▃▄▅▆▇█".indexOf(c));
    assert.deepEqual(heights, [...heights].sort((a, b) => b - a), `a falling curve never rises: ${line}`);
    assert.equal(heights[0], 7);
    assert.equal(heights[9], 0);
    assert.equal(sparkline([4, 0, 4, 0], 2), "▄▄", "means 2 and 2: flat");
    assert.throws(() => sparkline([1], 0), /at least 1/);
});
