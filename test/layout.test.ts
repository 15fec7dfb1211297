// The shape of the house: the imports between modules form no circle, nothing outside components/resources/
// (and the Pulumi program's entry, index.ts) imports @pulumi/*, so `npm run plan` stays pure and fast, and
// each folder of components/ imports only what its README.md allows, and every test sits in the test/ folder
// that mirrors what it tests.
//
//   node --import tsx --test test/layout.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.join(__dirname, "..");

/** Every project .ts file (not node_modules, not tests) with the specifiers it imports. */
function sourceFiles(): string[] {
    const out: string[] = [];
    const walk = (dir: string): void => {
        for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
            const rel = path.join(dir, entry.name);
            if (entry.isDirectory()) {
                if (!["node_modules", ".venv", ".git", ".rehearsal"].includes(entry.name)) walk(rel);
            } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(rel);
        }
    };
    for (const dir of ["components", "scripts"]) walk(dir);
    out.push("index.ts");
    return out.sort();
}

const importPattern = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|(?:^|\n)\s*import\s+["']([^"']+)["']/g;

function importsOf(file: string): string[] {
    const text = fs.readFileSync(path.join(root, file), "utf8");
    return [...text.matchAll(importPattern)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

/** A relative specifier resolved to a project file, or undefined for a package. */
function resolveLocal(from: string, specifier: string): string | undefined {
    if (!specifier.startsWith(".")) return undefined;
    const base = path.normalize(path.join(path.dirname(from), specifier));
    for (const candidate of [`${base}.ts`, path.join(base, "index.ts")]) if (fs.existsSync(path.join(root, candidate))) return candidate;
    throw new Error(`${from} imports ${specifier}, which resolves to no file`);
}

const files = sourceFiles();
const graph = new Map(files.map((f) => [f, importsOf(f).map((s) => resolveLocal(f, s)).filter((t): t is string => t !== undefined)]));

test("no import circle among the project's modules", () => {
    // Tarjan's strongly connected components: any component of more than one file is a circle.
    let index = 0;
    const indices = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const circles: string[][] = [];
    const visit = (v: string): void => {
        indices.set(v, index);
        low.set(v, index++);
        stack.push(v);
        onStack.add(v);
        for (const w of graph.get(v) ?? []) {
            if (!indices.has(w)) {
                visit(w);
                low.set(v, Math.min(low.get(v)!, low.get(w)!));
            } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indices.get(w)!));
        }
        if (low.get(v) === indices.get(v)) {
            const members: string[] = [];
            let w: string;
            do {
                w = stack.pop()!;
                onStack.delete(w);
                members.push(w);
            } while (w !== v);
            if (members.length > 1 || (graph.get(v) ?? []).includes(v)) circles.push(members.sort());
        }
    };
    for (const f of files) if (!indices.has(f)) visit(f);
    assert.deepEqual(circles, [], `import circles: ${circles.map((c) => c.join(" <-> ")).join("; ")}`);
});

test("only components/resources/, index.ts and the campaign CLI import @pulumi/*", () => {
    const allowed = (f: string) => f.startsWith("components/resources/") || f === "index.ts" || f === "scripts/campaign.ts";
    const offenders = files.filter((f) => !allowed(f) && importsOf(f).some((s) => s.startsWith("@pulumi/")));
    assert.deepEqual(offenders, []);
});

test("npm run plan and the rehearsal load no @pulumi/* module, directly or through another file", () => {
    for (const entry of ["scripts/plan.ts", "scripts/rehearse.ts"]) {
        const seen = new Set<string>();
        const pending = [entry];
        while (pending.length) {
            const f = pending.pop()!;
            if (seen.has(f)) continue;
            seen.add(f);
            const pulumi = importsOf(f).filter((s) => s.startsWith("@pulumi/"));
            assert.deepEqual(pulumi, [], `${entry} reaches ${f}, which imports ${pulumi.join(", ")}`);
            pending.push(...(graph.get(f) ?? []));
        }
        assert.ok(seen.size > 3, `${entry} should import several project modules, found ${seen.size}`);
    }
});

// Which other folders each folder of components/ may import, as their README.md files say. A few single
// files are allowed across a boundary that the flow otherwise runs the other way; they are named here.
const folderRules: Record<string, { folders: string[]; files?: string[] }> = {
    config: { folders: ["config"], files: ["components/plan/catalog.ts"] },
    campaign: { folders: ["campaign", "config", "plan"] },
    plan: { folders: ["plan", "config"], files: ["components/campaign/types.ts"] },
    node: { folders: ["node", "campaign", "config"] },
    resources: { folders: ["resources", "node", "campaign", "plan", "config"] },
    report: { folders: ["report", "campaign", "plan", "config"] },
};

test("each folder of components/ imports only what its README allows, and has a README", () => {
    const problems: string[] = [];
    const folders = fs.readdirSync(path.join(root, "components"), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    assert.deepEqual(folders.sort(), Object.keys(folderRules).sort(), "a folder of components/ without a rule here (or a rule without its folder)");
    for (const folder of folders) {
        if (!fs.existsSync(path.join(root, "components", folder, "README.md"))) problems.push(`components/${folder}/README.md is missing`);
    }
    for (const [file, targets] of graph) {
        const m = /^components\/([^/]+)\//.exec(file);
        if (!m) continue;
        const rule = folderRules[m[1]!]!;
        for (const target of targets) {
            const t = /^components\/([^/]+)\//.exec(target);
            if (!t) problems.push(`${file} imports ${target}, outside components/`);
            else if (!rule.folders.includes(t[1]!) && !rule.files?.includes(target)) problems.push(`${file} imports ${target}`);
        }
    }
    assert.deepEqual(problems, []);
});

// The repository reads on its own: the campaigns behind the presets are described in docs/campaigns.md, and
// nothing cites documents kept outside the repository by their folder. (The needle is built from two parts so
// that this file does not match itself.)
const outsideCitation = "seeds" + "/";
const citationExempt = new Set(["package-lock.json"]);

test("no tracked file cites source documents outside the repository (see docs/campaigns.md)", () => {
    const tracked = execFileSync("git", ["ls-files", "-z"], { cwd: root, encoding: "utf8" }).split("\0").filter((f) => f !== "");
    assert.ok(tracked.includes("docs/campaigns.md"), "git ls-files should list docs/campaigns.md");
    const hits: string[] = [];
    for (const file of tracked) {
        if (citationExempt.has(file)) continue;
        const full = path.join(root, file);
        // A tracked path may be a submodule folder, or deleted in the working tree by a move in progress.
        if (!fs.statSync(full, { throwIfNoEntry: false })?.isFile()) continue;
        const bytes = fs.readFileSync(full);
        if (bytes.subarray(0, 8000).includes(0)) continue; // binary
        bytes.toString("utf8").split("\n").forEach((line, i) => {
            if (line.includes(outsideCitation)) hits.push(`${file}:${i + 1}: ${line.trim()}`);
        });
    }
    assert.deepEqual(hits, [], "name the campaign or its preset instead (docs/campaigns.md)");
});

// Tests mirror the folders (test/README.md): test/<folder>/x.test.ts tests components/<folder>/ or scripts/<folder>/,
// so the folder must exist in one of them; only this file, which tests the whole tree, sits at the top of test/.
// helpers/, fixtures/ and python/ hold shared code, data and the pytest suite: never a TypeScript test.
const NOT_TEST_FOLDERS = new Set(["helpers", "fixtures", "python"]);

/** Every *.test.ts under test/, relative to test/. */
function testFiles(dir = ""): string[] {
    return fs.readdirSync(path.join(root, "test", dir), { withFileTypes: true }).flatMap((entry) => {
        const rel = path.join(dir, entry.name);
        if (entry.isDirectory()) return entry.name === "node_modules" || entry.name === "__pycache__" ? [] : testFiles(rel);
        return entry.name.endsWith(".test.ts") ? [rel] : [];
    });
}

/** Why a test file sits where it should not, or undefined when it mirrors a folder. */
function strayTest(rel: string): string | undefined {
    const parts = rel.split(path.sep);
    if (parts.length === 1) return rel === "layout.test.ts" ? undefined : `test/${rel} sits at the top of test/: move it into the test/<folder>/ of what it tests`;
    const folder = parts[0]!;
    if (parts.length > 2) return `test/${rel} is nested below test/${folder}/: put it in test/${folder}/ itself`;
    if (NOT_TEST_FOLDERS.has(folder)) return `test/${rel}: test/${folder}/ holds no TypeScript tests; move it into the test/<folder>/ of what it tests`;
    const mirrored = ["components", "scripts"].some((top) => fs.statSync(path.join(root, top, folder), { throwIfNoEntry: false })?.isDirectory());
    return mirrored ? undefined : `test/${rel}: test/${folder}/ mirrors no components/${folder}/ or scripts/${folder}/`;
}

test("every TypeScript test sits in the test/ folder that mirrors what it tests (test/README.md)", () => {
    const files = testFiles();
    assert.ok(files.includes("layout.test.ts") && files.length > 10, `test files found: ${files.join(", ")}`);
    const problems = files.map(strayTest).filter((p): p is string => p !== undefined);
    assert.deepEqual(problems, []);
});

test("the mirror rule itself: what it refuses and what it accepts", () => {
    const join = (...p: string[]) => p.join(path.sep);
    assert.match(strayTest("stray.test.ts") ?? "", /sits at the top of test\//);
    assert.match(strayTest(join("helpers", "x.test.ts")) ?? "", /holds no TypeScript tests/);
    assert.match(strayTest(join("nowhere", "x.test.ts")) ?? "", /mirrors no components\/nowhere\/ or scripts\/nowhere\//);
    assert.match(strayTest(join("plan", "deep", "x.test.ts")) ?? "", /nested below test\/plan\//);
    for (const ok of ["layout.test.ts", join("plan", "x.test.ts"), join("resources", "x.test.ts"), join("cli", "x.test.ts"), join("rehearsal", "x.test.ts")]) {
        assert.equal(strayTest(ok), undefined, ok);
    }
});
