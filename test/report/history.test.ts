// The training history read back: lines parsed (a partial last line skipped), attempts merged into one curve.
//
//   node --import tsx --test test/report/history.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { mergeAttempts, parseHistory, type AttemptInput } from "../../components/report/history";

const train = (step: number, loss: number) => JSON.stringify({ kind: "train", step, epoch: step / 100, at: `2026-11-30T12:00:${String(step).padStart(2, "0")}Z`, loss, learningRate: 1e-3, gradNorm: 1, tokensPerSec: 100, tokens: step * 10 });
const evaluation = (step: number, loss: number) => JSON.stringify({ kind: "eval", step, epoch: 0, at: "2026-11-30T12:01:00Z", split: "validation", metrics: { eval_loss: loss } });
const file = (...lines: string[]) => lines.map((l) => `${l}\n`).join("");
const attempt = (id: string, history: string): AttemptInput => ({ id, history, status: null });

test("appended lines parse in order; a partial last line is skipped and said so", () => {
    const whole = file(train(1, 3), train(2, 2.5));
    assert.deepEqual(parseHistory(whole).records.map((r) => r.step), [1, 2]);
    assert.deepEqual(parseHistory(whole).skipped, []);
    const cut = whole + train(3, 2).slice(0, 20);
    const parsed = parseHistory(cut);
    assert.deepEqual(parsed.records.map((r) => r.step), [1, 2]);
    assert.deepEqual(parsed.skipped, [{ line: 3, why: "partial last line (the node stopped while writing it)" }]);
    assert.deepEqual(parseHistory("").records, []);
});

test("a line that is not JSON or breaks the schema is skipped with its line number, the rest is kept", () => {
    const parsed = parseHistory(file(train(1, 3), "{oops", JSON.stringify({ kind: "train", step: -1 }), train(2, 2)));
    assert.deepEqual(parsed.records.map((r) => r.step), [1, 2]);
    assert.deepEqual(parsed.skipped.map((s) => s.line), [2, 3]);
    assert.match(parsed.skipped[0]!.why, /not valid JSON/);
    assert.match(parsed.skipped[1]!.why, /metrics-history\.schema\.json/);
});

test("a resumed run is one continuous curve: the later attempt's records win from its first step on, no step twice", () => {
    // Attempt 1 logged steps 1-12 with a checkpoint at 10, then died (its last line cut short); attempt 2 resumed
    // from checkpoint-10 and logged 11-24 again. The ids sort by start time, whatever order they are listed in.
    const first = file(...Array.from({ length: 12 }, (_, i) => train(i + 1, 10 - i * 0.1)), evaluation(8, 9), evaluation(12, 8.5)) + '{"kind":"tra';
    const second = file(...Array.from({ length: 14 }, (_, i) => train(i + 11, 5 - i * 0.1)), evaluation(16, 4));
    const merged = mergeAttempts([attempt("20261130T130000Z-i-2", second), attempt("20261130T120000Z-i-1", first)]);
    assert.deepEqual(merged.train.map((r) => r.step), Array.from({ length: 24 }, (_, i) => i + 1));
    assert.equal(merged.train.find((r) => r.step === 11)!.loss, 5, "step 11 comes from the attempt that resumed");
    assert.equal(merged.train.find((r) => r.step === 10)!.loss, 10 - 9 * 0.1, "step 10 stays the first attempt's");
    assert.deepEqual(merged.evals.map((r) => r.step), [8, 16], "the first attempt's evaluation at step 12 was superseded");
    assert.deepEqual(merged.attempts.map((a) => [a.id, a.firstStep, a.lastStep, a.skipped.length]), [
        ["20261130T120000Z-i-1", 1, 12, 1],
        ["20261130T130000Z-i-2", 11, 24, 0],
    ]);
});

test("an attempt that logged nothing (it stopped while staging) changes nothing; a repeated evaluation keeps the newer", () => {
    const merged = mergeAttempts([
        attempt("a1", file(train(1, 3), train(2, 2), evaluation(2, 2.2), evaluation(2, 2.1))),
        attempt("a2", ""),
    ]);
    assert.deepEqual(merged.train.map((r) => r.step), [1, 2]);
    assert.deepEqual(merged.evals.map((r) => r.metrics.eval_loss), [2.1]);
    assert.deepEqual(merged.attempts.map((a) => a.firstStep), [1, null]);
});
