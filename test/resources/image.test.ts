// The Image component and its regional builds (components/resources/image.ts, imageBuild.ts) under Pulumi mocks:
// images.buildOn local or region, given image URIs, content tags, and the image build's IAM policy.
//
//   node --import tsx --test --test-concurrency=1 test/resources/image.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
// The harness installs the Pulumi mocks: import it before any component.
import { ACCOUNT, assertSafe, build, byType, gpuInstances, prepInstances, presets, REGION, resolved } from "./harness";
import { contentTag } from "../../components/resources/image";
import { buildPolicyDocument, codebuildAssumeRolePolicy } from "../../components/resources/imageBuild";

test("image tags follow content: another job's files do not change a job's tag", () => {
    const fs = require("node:fs") as typeof import("node:fs");
    const os = require("node:os") as typeof import("node:os");
    const path = require("node:path") as typeof import("node:path");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ctx-"));
    for (const d of ["trainer", "prep", "common"]) fs.mkdirSync(path.join(dir, d));
    fs.writeFileSync(path.join(dir, "trainer", "Dockerfile"), "FROM a\n");
    fs.writeFileSync(path.join(dir, "prep", "Dockerfile"), "FROM b\n");
    fs.writeFileSync(path.join(dir, "common", "x.py"), "x = 1\n");
    const t1 = contentTag(dir, "trainer");
    fs.writeFileSync(path.join(dir, "prep", "main.py"), "print(1)\n");
    assert.equal(contentTag(dir, "trainer"), t1);
    fs.writeFileSync(path.join(dir, "common", "x.py"), "x = 2\n");
    assert.notEqual(contentTag(dir, "trainer"), t1);
    fs.rmSync(dir, { recursive: true });
});

test("image build IAM policy: read its context, write its log, push to one repository; bad inputs refused", () => {
    const base = { bucketArn: "arn:aws:s3:::b-123", contextPrefix: "runs/c/image/trainer-0123456789abcdef/", logsPrefix: "runs/c/image/logs/", repositoryArn: `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/campaign-c-s` };
    const doc = buildPolicyDocument(base);
    assert.deepEqual(
        doc.Statement.map((st) => [st.Sid, st.Action, st.Resource]),
        [
            ["ReadBuildContext", ["s3:GetObject"], ["arn:aws:s3:::b-123/runs/c/image/trainer-0123456789abcdef/*"]],
            ["WriteBuildLog", ["s3:PutObject"], ["arn:aws:s3:::b-123/runs/c/image/logs/*"]],
            ["BuildLogBucket", ["s3:GetBucketAcl", "s3:GetBucketLocation"], "arn:aws:s3:::b-123"],
            ["EcrLogin", ["ecr:GetAuthorizationToken"], "*"],
            ["PushCampaignImage", ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], [base.repositoryArn]],
        ],
    );
    assert.ok(!JSON.stringify(doc).match(/"(s3:\*|s3:DeleteObject|s3:ListBucket|ecr:\*|logs:[A-Za-z]+|iam:[A-Za-z]+)"/), "no wider action");
    assert.throws(() => buildPolicyDocument({ ...base, contextPrefix: "runs/*" }), /context prefix must be a non-empty folder/);
    assert.throws(() => buildPolicyDocument({ ...base, logsPrefix: "" }), /logs prefix/);
    assert.throws(() => buildPolicyDocument({ ...base, repositoryArn: "*" }), /not an ECR repository ARN/);
    assert.throws(() => buildPolicyDocument({ ...base, bucketArn: "arn:aws:s3:::*" }), /not a bucket ARN/);
    assert.deepEqual(JSON.parse(codebuildAssumeRolePolicy(ACCOUNT)).Statement[0].Condition, { StringEquals: { "aws:SourceAccount": ACCOUNT } });
});

for (const preset of presets) {
    test(`${preset}: images.buildOn local builds with docker here, and nothing in CodeBuild`, async () => {
        const campaign = resolved(preset, { images: { buildOn: "local" } });
        const g = await build(`local-img-${preset}`, campaign);
        assertSafe(g);
        const builds = byType(g, "docker:index/image:Image");
        assert.equal(builds.length, 1 + (campaign.experiment.prep.runOn === "ec2" ? 1 : 0));
        for (const b of builds) assert.match(b.inputs.imageName, /:(trainer|prep)-[0-9a-f]{16}$/);
        assert.equal(byType(g, "aws:codebuild/project:Project").length, 0);
        assert.equal(byType(g, "aws:ecr/repository:Repository")[0].inputs.imageTagMutability, "MUTABLE");
        const gate = g.resources.find((r) => r.name === `${g.name}-gate`)!;
        assert.doesNotMatch(gate.inputs.create, /--image-repository/, "the docker build finished before the gate: nothing to wait for");
    });

    test(`${preset}: given image URIs are used and nothing is built`, async () => {
        const trainer = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/given/trainer:v1`;
        const prep = "ghcr.io/example/prep:v1";
        const g = await build(`img-${preset}`, resolved(preset, { images: { trainer, prep } }));
        assertSafe(g);
        assert.equal(byType(g, "docker:index/image:Image").length, 0, "no docker build");
        assert.equal(byType(g, "aws:codebuild/project:Project").length, 0, "no regional build");
        assert.equal(byType(g, "aws:ecr/repository:Repository").length, 0, "no repository");
        for (const gpu of gpuInstances(g)) assert.ok(gpu.inputs.userData.includes(trainer));
        for (const p of prepInstances(g)) assert.ok(p.inputs.userData.includes(prep));
        // The given ECR image may be pulled, from its repository only.
        for (const rp of byType(g, "aws:iam/rolePolicy:RolePolicy").filter((r) => r.name.includes("-run-"))) {
            const pull = JSON.parse(rp.inputs.policy).Statement.find((s: any) => s.Sid === "PullCampaignImages");
            assert.deepEqual(pull.Resource, [`arn:aws:ecr:${REGION}:${ACCOUNT}:repository/given/trainer`]);
        }
    });
}
