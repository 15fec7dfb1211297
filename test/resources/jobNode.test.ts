// JobNode (components/resources/jobNode.ts) under Pulumi mocks: the runner uploaded once and fetched by every node
// with the sha256 it checks, one zone or a Capacity Block (one instance), several zones or fallback types (a launch
// template and the fallback launch step, keyed by the run's ended attempts), and the node's IAM policy.
//
//   node --import tsx --test --test-concurrency=1 test/resources/jobNode.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
// The harness installs the Pulumi mocks: import it before any component.
import { assertCloudInitAccepts, assertRunner, assertSafe, build, byType, gpuInstances, gpuNodes, INSTANCE, LAUNCH_TEMPLATE, prepInstances, presets, resolved, type Registered } from "./harness";
import { declarations, readCampaignState, StaticCampaignState } from "../../components/campaign/state";
import { nodePolicyDocument, ssmDecryptStatement } from "../../components/resources/jobNode";
import { loadRunnerScript, runnerObject } from "../../components/node/userData";

test("one zone: the node is one instance there, with the dataset volume; a Capacity Block: the GPU node launches into it, prep does not", async () => {
    const zones = await build("zones", resolved("dev", { compute: { availabilityZones: ["us-east-1b"], dataVolumeGb: 100 } }));
    assertSafe(zones);
    assert.equal(gpuInstances(zones)[0].inputs.availabilityZone, "us-east-1b");
    assert.equal(byType(zones, "aws:ebs/volume:Volume")[0].inputs.availabilityZone, "us-east-1b");
    assert.equal(byType(zones, LAUNCH_TEMPLATE).length, 0, "one place to launch: no fallback step");
    const block = await build("block", resolved("socsci210-qwen14b-qlora", { compute: { availabilityZone: null, availabilityZones: ["us-east-1c"], capacityReservationId: "cr-0abc123", capacityBlock: true } }));
    assertSafe(block);
    const gpu = gpuInstances(block)[0];
    assert.deepEqual(gpu.inputs.instanceMarketOptions, { marketType: "capacity-block" });
    assert.deepEqual(gpu.inputs.capacityReservationSpecification, { capacityReservationTarget: { capacityReservationId: "cr-0abc123" } });
    assert.equal(gpu.inputs.availabilityZone, "us-east-1c");
    const prep = byType(block, INSTANCE).filter((r) => r.inputs.tags?.role === "prep");
    assert.equal(prep.length, 1);
    assert.equal(prep[0].inputs.capacityReservationSpecification, undefined);
    // Spot cannot launch into a reservation: the config refuses it before any resource.
    assert.throws(() => resolved("dev", { compute: { capacityReservationId: "cr-0abc123" } }), /compute\.capacityReservationId: .*set compute\.market: on-demand/);
});

test("several zones and fallback types: each GPU node launches through one fleet request over its launch order, with the instance's guarantees", async () => {
    const zones = ["us-east-1c", "us-east-1a"];
    const g = await build("fleet", resolved("dev", { prep: { runOn: "ec2" }, compute: { availabilityZones: zones, fallbackInstanceTypes: ["g6.2xlarge"] } }));
    assertSafe(g); // every guarantee of the template and the step: assertFleetNode
    assert.equal(gpuInstances(g).length, 0, "no single instance for the GPU node");
    const nodes = gpuNodes(g);
    assert.equal(nodes.length, 1);
    const request = JSON.parse(nodes[0]!.launched.inputs.environment.CAMPAIGN_LAUNCH);
    assert.deepEqual(
        request.candidates.map((c: { instanceType: string; zone: string }) => `${c.instanceType}@${c.zone}`),
        ["g5.2xlarge@us-east-1c", "g5.2xlarge@us-east-1a", "g6.2xlarge@us-east-1c", "g6.2xlarge@us-east-1a"],
    );
    assert.equal(request.launchKey, "attempt-1", "a new run's first node");
    // Prep is a CPU node: one instance in the first zone, whatever the GPU fallback.
    assert.equal(prepInstances(g).length, 1);
    assert.equal(prepInstances(g)[0]!.inputs.availabilityZone, "us-east-1c");
    // The node's id, for the GPU-idle alarm and the stack's outputs, is the instance the step launched.
    const alarm = byType(g, "aws:cloudwatch/metricAlarm:MetricAlarm").find((a) => a.inputs.dimensions?.InstanceId);
    assert.match(String(alarm?.inputs.dimensions.InstanceId), /^i-[0-9a-f]{17}$/);

    // A given subnet: each type in that subnet, in order.
    const subnet = await build("fleet-subnet", resolved("dev", { compute: { subnetId: "subnet-0abc123", fallbackInstanceTypes: ["g6.2xlarge", "g6e.xlarge"] } }));
    assertSafe(subnet);
    assert.equal(gpuNodes(subnet).filter((n) => n.template).length, 1);
});

test("the fallback node's launch key: kept while its node works, new once that node has ended", async () => {
    const campaign = resolved("dev", { compute: { availabilityZones: ["us-east-1c", "us-east-1a"] } });
    const keyOf = async (name: string, state: Parameters<typeof build>[2]) => {
        const g = await build(name, campaign, state);
        assertSafe(g);
        return JSON.parse(gpuNodes(g)[0]!.launched.inputs.environment.CAMPAIGN_LAUNCH).launchKey as string;
    };
    const prepared = [campaign.prepSpec.prepHash];
    // Training on its first node: the same key as at its launch, so the node is kept.
    assert.equal(await keyOf("key-running", await readCampaignState(new StaticCampaignState({ preparedHashes: prepared, phases: { main: "training" }, endedAttempts: { main: 0 } }), campaign)), "attempt-1");
    // Its first node was interrupted: a new key, so the step is replaced (the old instance terminated first).
    assert.equal(await keyOf("key-resume", await readCampaignState(new StaticCampaignState({ preparedHashes: prepared, phases: { main: "interrupted" }, endedAttempts: { main: 1 } }), campaign)), "attempt-2");
    // The second node works: the key stays.
    assert.equal(await keyOf("key-second", await readCampaignState(new StaticCampaignState({ preparedHashes: prepared, phases: { main: "training" }, endedAttempts: { main: 1 } }), campaign)), "attempt-2");
    // Its node vanished without a final status (EC2 reports it terminated): it counts as ended, and pulumi up says so.
    const lost = await readCampaignState(new StaticCampaignState({ preparedHashes: prepared, phases: { main: "training" }, endedAttempts: { main: 0 }, openNodes: { main: "i-0dead" }, goneNodes: ["i-0dead"] }), campaign);
    assert.equal(lost.runRecords?.main?.lostNode, "i-0dead");
    assert.equal(await keyOf("key-lost", lost), "attempt-2");
    assert.ok(declarations(campaign, lost).warnings.some((w) => /^main: its node i-0dead has ended without a final status .* launched again/.test(w)));
    // A node that is still there keeps its key.
    const alive = await readCampaignState(new StaticCampaignState({ preparedHashes: prepared, phases: { main: "training" }, endedAttempts: { main: 0 }, openNodes: { main: "i-0alive" }, goneNodes: ["i-0dead"] }), campaign);
    assert.equal(await keyOf("key-alive", alive), "attempt-1");
});

test("node IAM policy: bad prefixes and bucket ARNs are refused", () => {
    const base = { bucketArn: "arn:aws:s3:::b-123", readWritePrefixes: ["runs/c/r/"], readPrefixes: [], parameterArns: [], ecrRepositoryArns: [], publishMetrics: false };
    assert.throws(() => nodePolicyDocument({ ...base, readWritePrefixes: [""] }), /non-empty folder/);
    assert.throws(() => nodePolicyDocument({ ...base, readPrefixes: ["runs/*"] }), /non-empty folder/);
    assert.throws(() => nodePolicyDocument({ ...base, bucketArn: "*" }), /not a bucket ARN/);
    const doc = nodePolicyDocument(base);
    assert.deepEqual(doc.Statement.find((s) => s.Sid === "ReadWriteCampaignObjects")!.Resource, ["arn:aws:s3:::b-123/runs/c/r/*"]);
    assert.ok(!JSON.stringify(doc).includes("AmazonSSMManagedInstanceCore"));
});

test("node IAM policy: the runner is one exact key; kms:Decrypt only through SSM for the node's parameters", () => {
    const base = { bucketArn: "arn:aws:s3:::b-123", readWritePrefixes: ["runs/c/r/"], readPrefixes: [], parameterArns: [], ecrRepositoryArns: [], publishMetrics: false };
    const doc = nodePolicyDocument({ ...base, runnerKey: "runs/c/runner/run-job-0123456789abcdef.sh" });
    assert.deepEqual(doc.Statement.find((s) => s.Sid === "FetchRunner"), { Sid: "FetchRunner", Effect: "Allow", Action: ["s3:GetObject"], Resource: ["arn:aws:s3:::b-123/runs/c/runner/run-job-0123456789abcdef.sh"] });
    for (const bad of ["", "runs/c/runner/", "runs/c/runner/*", "/runs/c/runner/x.sh"]) assert.throws(() => nodePolicyDocument({ ...base, runnerKey: bad }), /one object/, bad);
    assert.equal(nodePolicyDocument(base).Statement.some((s) => s.Action.some((a) => a.startsWith("kms:"))), false, "no secrets, no kms");

    const eu = "arn:aws:ssm:eu-west-1:111122223333:parameter/campaign/c/s/hf-token";
    const withSecrets = nodePolicyDocument({ ...base, parameterArns: [eu] });
    assert.deepEqual(withSecrets.Statement.find((s) => s.Sid === "DecryptOwnSecretsViaSsm"), {
        Sid: "DecryptOwnSecretsViaSsm",
        Effect: "Allow",
        Action: ["kms:Decrypt"],
        Resource: ["arn:aws:kms:eu-west-1:111122223333:key/*"],
        Condition: { StringEquals: { "kms:ViaService": ["ssm.eu-west-1.amazonaws.com"], "kms:EncryptionContext:PARAMETER_ARN": [eu] } },
    });
    const cn = ssmDecryptStatement(["arn:aws-cn:ssm:cn-north-1:111122223333:parameter/campaign/c/s/hf-token"]);
    assert.deepEqual([cn.Resource, cn.Condition?.StringEquals["kms:ViaService"]], [["arn:aws-cn:kms:cn-north-1:111122223333:key/*"], ["ssm.cn-north-1.amazonaws.com.cn"]]);
    assert.throws(() => ssmDecryptStatement(["*"]), /not an SSM parameter ARN/);
});

test("a run named like the runner's folder never reaches the program: the config refuses it", () => {
    assert.throws(() => resolved("dev", { runs: [{ name: "runner" }] }), /"runner" is reserved .*\(the node runner\)/);
});

test("a model at s3://other-bucket/weights/ is readable by its node, and by nothing else", async () => {
    const base = resolved("dev");
    const campaign = resolved("dev", { model: { id: "s3://other-bucket/weights/qwen/", family: base.runs[0]!.model.family } });
    const g = await build("s3-model", campaign);
    assertSafe(g);
    const grants = (rp: Registered) =>
        (JSON.parse(rp.inputs.policy).Statement as Array<{ Action: string[]; Resource: string | string[]; Condition?: any }>).filter((st) =>
            [st.Resource].flat().some((r) => r.startsWith("arn:aws:s3:::other-bucket")),
        );
    const policies = byType(g, "aws:iam/rolePolicy:RolePolicy");
    const train = policies.filter((rp) => rp.name.includes("-run-"));
    assert.equal(train.length, 1);
    const statements = grants(train[0]!);
    assert.deepEqual(
        statements.map((st) => [st.Action, st.Resource, st.Condition ?? null]),
        [
            [["s3:ListBucket"], "arn:aws:s3:::other-bucket", { StringLike: { "s3:prefix": ["weights/qwen/", "weights/qwen/*"] } }],
            [["s3:GetObject"], ["arn:aws:s3:::other-bucket/weights/qwen/*"], null],
        ],
        "list and read that folder only, never write",
    );
    for (const rp of policies.filter((p) => !p.name.includes("-run-"))) assert.deepEqual(grants(rp), [], `${rp.name} reaches the other bucket`);
});

for (const preset of presets) {
    test(`${preset}: the runner is uploaded once, where every node's user data fetches it, with the sha256 it checks`, async () => {
        const campaign = resolved(preset);
        const g = await build(`runner-${preset}`, campaign);
        assertSafe(g);
        const upload = assertRunner(g, g.component.bucketName);
        assert.ok(upload, "a runner upload");
        // The key runnerObject gives (what renderNodeUserData fetches), content-addressed under the campaign's prefix.
        assert.equal(upload.inputs.key, runnerObject(g.component.runs[campaign.runs[0].name].settings).key);
        assert.match(upload.inputs.key, new RegExp(`^runs/${campaign.experiment.name}/runner/run-job-[0-9a-f]{16}\\.sh$`));
        assert.equal(upload.inputs.content, loadRunnerScript(), "the repository's runner");
        assert.ok(upload.inputs.key.includes(createHash("sha256").update(loadRunnerScript()).digest("hex").slice(0, 16)));
        // cloud-init accepts what the nodes get: a GPU node, and the prep node when there is one.
        assertCloudInitAccepts(`${preset}-train`, gpuInstances(g)[0].inputs.userData);
        const prep = prepInstances(g)[0];
        if (prep) assertCloudInitAccepts(`${preset}-prep`, prep.inputs.userData);
    });
}
