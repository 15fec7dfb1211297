// The Campaign component (components/resources/campaign.ts) under Pulumi mocks: every preset in stacks/ builds
// the full graph with the safety defaults on every resource (the shared checks of harness.ts's assertSafe),
// one GPU node per run, prep where the preset runs it, images built by content tag and pulled by digest.
//
//   node --import tsx --test --test-concurrency=1 test/resources/campaign.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import YAML from "yaml";
import { createHash } from "node:crypto";
// The harness installs the Pulumi mocks: import it before any component.
import { assertSafe, build, byType, gpuInstances, imageLookups, INSTANCE, prepInstances, presets, resolved } from "./harness";
import { gateCommand } from "../../components/campaign/gate";
import { RUNNER_ENV_PATH } from "../../components/node/userData";
import { imageSource } from "../../components/campaign/imageTag";

test("there are presets to test", () => {
    assert.ok(presets.length >= 3, presets.join(","));
});

for (const preset of presets) {
    test(`${preset}: a new campaign builds the full graph with the safety defaults`, async () => {
        const campaign = resolved(preset);
        const g = await build(`new-${preset}`, campaign);
        assertSafe(g);
        assert.equal(gpuInstances(g).length, campaign.runs.length, "one GPU node per run");
        const ec2Prep = campaign.experiment.prep.runOn === "ec2";
        assert.equal(prepInstances(g).length, ec2Prep ? 1 : 0);
        const local = byType(g, "command:local:Command").filter((r) => r.name.endsWith("-prep-local"));
        assert.equal(local.length, ec2Prep ? 0 : 1);
        if (!ec2Prep) {
            assert.match(local[0].inputs.create, /scripts\/local-prep\.sh/);
            assert.equal(local[0].inputs.environment.CAMPAIGN_JOB_MODE, "process");
        }
        for (const gpu of gpuInstances(g)) assert.equal(gpu.inputs.instanceType, campaign.runs.find((r) => r.name === gpu.inputs.tags.run)!.instanceType);
        // Images are built (content-tagged) when no URI is given: in the region by default, no docker build here.
        const builds = byType(g, "aws:codebuild/project:Project");
        assert.equal(builds.length, 1 + (ec2Prep ? 1 : 0));
        assert.equal(g.resources.filter((r) => r.type.startsWith("docker:")).length, 0, "no docker resource with buildOn: region");
        for (const b of builds) assert.match(b.inputs.environment.environmentVariables.find((v: { name: string }) => v.name === "IMAGE_TAG").value, /^(trainer|prep)-[0-9a-f]{16}$/);
        // Every node pulls the image it was built for by digest, never by the mutable tag.
        for (const i of byType(g, INSTANCE)) {
            const env = (YAML.parse(i.inputs.userData) as { write_files: Array<{ path: string; content: string }> }).write_files.find((f) => f.path === RUNNER_ENV_PATH)!.content;
            const image = /^CAMPAIGN_IMAGE='([^']*)'$/m.exec(env)?.[1];
            assert.ok(image, `${i.name}: no CAMPAIGN_IMAGE in its settings`);
            if (builds.length > 0) assert.match(image, /^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com\/[^@:]+@sha256:[0-9a-f]{64}$/, `${i.name} pulls ${image}`);
        }
        assert.equal(byType(g, "aws:ecr/repository:Repository").length, 1);
        // Each node's digest is the one ECR reports for its content tag, asked for after the image exists.
        for (const job of ["trainer", ...(ec2Prep ? ["prep"] : [])]) {
            const tag = imageSource("containers", job as "trainer" | "prep").tag;
            const digest = createHash("sha256").update(tag).digest("hex");
            assert.ok(imageLookups.includes(`campaign-${campaign.experiment.name}-test:${tag}`), `ECR asked for ${tag}`);
            const nodes = job === "trainer" ? gpuInstances(g) : prepInstances(g);
            for (const n of nodes) assert.ok(n.inputs.userData.includes(`@sha256:${digest}'`), `${n.name} pulls the ${job} image by ECR's digest`);
        }
        // The gate's command names the bucket, the prep hash, the prep cap and the trainer image with its build.
        const gate = g.resources.find((r) => r.name === `${g.name}-gate`)!;
        const prepNode = prepInstances(g)[0];
        assert.equal(
            gate.inputs.create,
            gateCommand({
                bucket: g.component.bucketName,
                prepHash: campaign.prepSpec.prepHash,
                campaign: campaign.experiment.name,
                maxHours: campaign.experiment.prep.maxHours,
                ...(prepNode ? { instanceId: `i-${prepNode.name}` } : {}),
                image: { repository: `campaign-${campaign.experiment.name}-test`, tag: imageSource("containers", "trainer").tag, buildId: `${g.name}-image-trainer-build-start:0f1e2d3c-0000-4000-8000-000000000000`, timeoutMinutes: 150 },
            }),
        );
    });
}
