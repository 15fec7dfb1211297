// The campaign's artifacts grouped by folder, as the report and the rehearsal's summary list them.
//
//   node --import tsx --test test/report/artifacts.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { artifactGroups } from "../../components/report/figures";

test("objects are grouped by run folder under runs/ and by top folder elsewhere, sorted, with counts and bytes", () => {
    const groups = artifactGroups([
        { key: "runs/c/main/output/adapter.safetensors", size: 3000 },
        { key: "runs/c/main/output/eval.json", size: 24 },
        { key: "runs/c/main/status.json", size: 100 },
        { key: "datasets/abc/train.parquet", size: 2048 },
        { key: "datasets/abc/_SUCCESS", size: 0 },
        { key: "README", size: 5 },
    ]);
    assert.deepEqual(groups, [
        { prefix: "README", count: 1, bytes: 5 },
        { prefix: "datasets/abc/", count: 2, bytes: 2048 },
        { prefix: "runs/c/main/output/", count: 2, bytes: 3024 },
        { prefix: "runs/c/main/status.json", count: 1, bytes: 100 },
    ]);
    assert.deepEqual(artifactGroups([]), []);
});
