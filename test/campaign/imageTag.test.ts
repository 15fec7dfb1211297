// The image's content tag: it changes when (and only when) something the image is built from changes, the
// build context holds exactly those files, and the build step's output is read back.
//
//   node --import tsx --test test/campaign/imageTag.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BUILDSPEC, contextArchive, dockerfileFacts, formatBuildStart, imageSource, isPinned, parseBuildStart, type ImageJob } from "../../components/campaign/imageTag";

const containers = path.join(__dirname, "..", "..", "containers");

/** A copy of the repository's build context, without caches, to change one file at a time. */
function copyContext(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "image-tag-"));
    fs.cpSync(containers, dir, { recursive: true, filter: (src) => !src.includes("__pycache__") });
    return dir;
}

const edit = (dir: string, file: string, change: (text: string) => string) => fs.writeFileSync(path.join(dir, file), change(fs.readFileSync(path.join(dir, file), "utf8")));

const table: Array<[string, (dir: string) => void, Record<ImageJob, boolean>]> = [
    ["a trainer requirement changes", (d) => edit(d, "trainer/requirements.txt", (t) => `${t}\nrich==13.9.4\n`), { trainer: true, prep: false }],
    ["a trainer file changes", (d) => edit(d, "trainer/data.py", (t) => `${t}\n# changed\n`), { trainer: true, prep: false }],
    ["a new trainer file", (d) => fs.writeFileSync(path.join(d, "trainer", "extra.py"), "x = 1\n"), { trainer: true, prep: false }],
    ["a prep file changes", (d) => edit(d, "prep/split.py", (t) => `${t}\n# changed\n`), { trainer: false, prep: true }],
    ["shared code changes", (d) => edit(d, "common/jobspec.py", (t) => `${t}\n# changed\n`), { trainer: true, prep: true }],
    ["the base image changes", (d) => edit(d, "trainer/Dockerfile", (t) => t.replace("nvcr.io/nvidia/pytorch:25.11-py3", "nvcr.io/nvidia/pytorch:25.12-py3")), { trainer: true, prep: false }],
    ["the context's README changes (not copied)", (d) => edit(d, "README.md", (t) => `${t}\nmore words\n`), { trainer: false, prep: false }],
    ["the CPU requirements for local runs change (not copied)", (d) => edit(d, "requirements-cpu.txt", (t) => `${t}\nrich==13.9.4\n`), { trainer: false, prep: false }],
    ["a compiled cache appears", (d) => {
            fs.mkdirSync(path.join(d, "trainer", "__pycache__"), { recursive: true });
            fs.writeFileSync(path.join(d, "trainer", "__pycache__", "data.cpython-311.pyc"), "x");
        }, { trainer: false, prep: false }],
];

for (const [what, change, expected] of table) {
    test(`image tag: ${what} -> ${Object.entries(expected).map(([job, changes]) => `${job} ${changes ? "changes" : "stays"}`).join(", ")}`, () => {
        const dir = copyContext();
        try {
            const before = { trainer: imageSource(dir, "trainer").tag, prep: imageSource(dir, "prep").tag };
            change(dir);
            for (const job of ["trainer", "prep"] as const) {
                const after = imageSource(dir, job).tag;
                if (expected[job]) assert.notEqual(after, before[job], `${job}: the tag must change`);
                else assert.equal(after, before[job], `${job}: the tag must not change`);
            }
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
}

test("the repository's images: their inputs are the Dockerfile and what it copies; the NVIDIA base is a tag, not a digest", () => {
    const trainer = imageSource(containers, "trainer");
    assert.match(trainer.tag, /^trainer-[0-9a-f]{16}$/);
    assert.deepEqual(trainer.baseImages, ["nvcr.io/nvidia/pytorch:25.11-py3"]);
    assert.equal(trainer.basePinned, false);
    assert.ok(trainer.files.includes("trainer/Dockerfile") && trainer.files.includes("trainer/requirements.txt") && trainer.files.includes("common/jobspec.py") && trainer.files.includes("schemas/contract.json"));
    assert.ok(!trainer.files.some((f) => f.startsWith("prep/") || f === "README.md" || f.includes("__pycache__")), trainer.files.join(","));
    assert.equal(imageSource(containers, "trainer").tag, trainer.tag, "stable");
    assert.equal(isPinned("nvcr.io/nvidia/pytorch@sha256:" + "a".repeat(64)), true);
});

test("Dockerfile parsing: continuations, JSON form, stage copies; wildcards and URLs are refused", () => {
    const facts = dockerfileFacts('FROM --platform=linux/amd64 base:1 AS build\n# comment\nCOPY --chown=1 a.txt \\\n  b/ /app/\nCOPY ["c d.txt", "/x"]\nFROM base:2\nCOPY --from=build /app /app\n');
    assert.deepEqual(facts, { baseImages: ["base:1", "base:2"], copySources: ["a.txt", "b", "c d.txt"] });
    assert.throws(() => dockerfileFacts("FROM a\nCOPY *.py /app/\n"), /wildcards are not supported/);
    assert.throws(() => dockerfileFacts("FROM a\nADD https://example.com/x.tgz /x\n"), /a URL cannot be part/);
    assert.throws(() => dockerfileFacts("COPY a /b\n"), /no FROM/);
});

test("the build context archive holds exactly the image's files, byte for byte, and is the same for the same content", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "image-ctx-"));
    try {
        const source = imageSource(containers, "prep");
        const archive = contextArchive(containers, source);
        assert.deepEqual(contextArchive(containers, source), archive, "deterministic");
        fs.writeFileSync(path.join(dir, "context.tar.gz"), archive);
        const listed = spawnSync("tar", ["-tzf", path.join(dir, "context.tar.gz")], { encoding: "utf8" });
        assert.equal(listed.status, 0, listed.stderr);
        assert.deepEqual(listed.stdout.trim().split("\n"), [...source.files]);
        const out = path.join(dir, "x");
        fs.mkdirSync(out);
        assert.equal(spawnSync("tar", ["-xzf", path.join(dir, "context.tar.gz"), "-C", out]).status, 0);
        for (const file of source.files) assert.deepEqual(fs.readFileSync(path.join(out, file)), fs.readFileSync(path.join(containers, file)), file);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("the buildspec fetches the context, logs in, builds and pushes the content tag in the build phase", () => {
    const lines = BUILDSPEC.split("\n");
    assert.equal(lines[0], "version: 0.2");
    assert.ok(!BUILDSPEC.includes("post_build"), "a push after a failed build must not run");
    for (const v of ["$CONTEXT_URI", "$DOCKERFILE", "$REPOSITORY_URI:$IMAGE_TAG", "docker push"]) assert.ok(BUILDSPEC.includes(v), v);
});

test("the build step's output: a started build or an existing image; anything else is an error that quotes it", () => {
    for (const start of [{ kind: "started", buildId: "campaign-dev-test-trainer:0f1e2d3c" }, { kind: "exists", digest: `sha256:${"b".repeat(64)}` }] as const) {
        assert.deepEqual(parseBuildStart(`some progress\n${formatBuildStart(start)}\n`), start);
    }
    assert.throws(() => parseBuildStart("AccessDenied: not allowed\n"), /printed neither .*AccessDenied: not allowed/);
});

test("the rehearsal's image stand-in names the content tag the campaign would build, and where", async () => {
    const { resolveCampaign } = await import("../../components/campaign/resolve");
    const { loadPreset, mergeConfig } = await import("../../components/config/presets");
    const { imageStandIns } = await import("../../components/campaign/imageTag");
    const dev = resolveCampaign(loadPreset("dev")).experiment;
    assert.deepEqual(imageStandIns(dev, containers), [
        `image trainer: ${imageSource(containers, "trainer").tag} built in us-east-1 by CodeBuild, unless ECR already has that tag -> containers/trainer/ runs in process mode here, no image is built`,
    ]);
    const local = resolveCampaign(mergeConfig(loadPreset("dev"), { images: { buildOn: "local" }, prep: { runOn: "ec2", instanceType: "c6i.2xlarge" } })).experiment;
    assert.deepEqual(imageStandIns(local, containers).map((l) => l.split(":")[0]), ["image trainer", "image prep"]);
    assert.match(imageStandIns(local, containers)[1]!, /with this machine's Docker \(images\.buildOn: local\)/);
});
