// The Pulumi program under mocks: the whole graph for every preset in stacks/, the safety defaults on every
// resource, and what the state read from S3 removes (finished runs, a prepared dataset). Nodes get the
// user data index.ts gives them (components/node/userData.ts's renderNodeUserData): the fetch variant, whose
// runner object the Campaign uploads; the tests read the user data back and check the two agree.
//
//   node --import tsx --test --test-concurrency=1 test/resources/program.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";

// ---------------------------------------------------------------- mocks: every resource and option recorded

const ACCOUNT = "123456789012";
const REGION = "us-east-1";
const HF_TOKEN = "hf_SECRET_token_value_0123456789";
const WANDB_KEY = "wandb_SECRET_key_value_9876543210";

interface Registered {
    type: string;
    name: string;
    inputs: Record<string, any>;
}
interface Declared {
    type: string;
    name: string;
    opts: pulumi.CustomResourceOptions & { retainOnDelete?: boolean };
}
const registered: Registered[] = [];
const declared: Declared[] = [];
/** repository:tag of every digest the program asked ECR for. */
const imageLookups: string[] = [];

function arnOf(type: string, name: string, inputs: Record<string, any>): string | undefined {
    switch (type) {
        case "aws:s3/bucket:Bucket":
            return `arn:aws:s3:::${inputs.bucket}`;
        case "aws:ssm/parameter:Parameter":
            return `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${inputs.name}`;
        case "aws:cloudwatch/logGroup:LogGroup":
            return `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${inputs.name}`;
        case "aws:ecr/repository:Repository":
            return `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/${inputs.name}`;
        case "aws:iam/role:Role":
            return `arn:aws:iam::${ACCOUNT}:role/${name}`;
        default:
            return `arn:aws:mock:${REGION}:${ACCOUNT}:${name}`;
    }
}

pulumi.runtime.setMocks(
    {
        newResource(args) {
            // Components reach the mocks too; only real resources are recorded.
            if (!args.type.startsWith("campaign:index:")) registered.push({ type: args.type, name: args.name, inputs: args.inputs });
            const state: Record<string, any> = { ...args.inputs, arn: arnOf(args.type, args.name, args.inputs) };
            if (args.type === "aws:ecr/repository:Repository") {
                state.repositoryUrl = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/${args.inputs.name}`;
                state.registryId = ACCOUNT;
            }
            if (args.type === "docker:index/image:Image") {
                // As the docker provider reports a pushed image: repository@sha256:<digest of the manifest>.
                state.repoDigest = `${String(args.inputs.imageName).split(":")[0]}@sha256:${createHash("sha256").update(args.name).digest("hex")}`;
            }
            if (args.type === "command:local:Command" && args.name.endsWith("-build-start")) {
                // What scripts/image-build.ts prints when it starts the build (the tag is not in ECR yet).
                state.stdout = formatBuildStart({ kind: "started", buildId: `${args.name}:0f1e2d3c-0000-4000-8000-000000000000` });
            }
            if (args.type === "aws:iam/role:Role" || args.type === "aws:iam/instanceProfile:InstanceProfile") state.name = args.name;
            if (args.type === "aws:cloudwatch/metricAlarm:MetricAlarm") state.name = args.name;
            return { id: args.type === "aws:ec2/instance:Instance" ? `i-${args.name}` : `${args.name}-id`, state };
        },
        call(args) {
            switch (args.token) {
                case "aws:index/getCallerIdentity:getCallerIdentity":
                    return { accountId: ACCOUNT, arn: `arn:aws:iam::${ACCOUNT}:user/test`, userId: "TEST", id: ACCOUNT };
                case "aws:ssm/getParameter:getParameter":
                    return { name: args.inputs.name, value: "ami-0123456789abcdef0", insecureValue: "ami-0123456789abcdef0", type: "String", arn: "arn", version: 1 };
                case "aws:ec2/getVpc:getVpc":
                    return { id: "vpc-0default", default: true };
                case "aws:ec2/getSubnet:getSubnet":
                    return { id: args.inputs.id, vpcId: "vpc-0given", availabilityZone: "us-east-1b" };
                case "aws:ecr/getImage:getImage":
                    // ECR's digest of the pushed tag, as DescribeImages reports it.
                    imageLookups.push(`${args.inputs.repositoryName}:${args.inputs.imageTag}`);
                    return { repositoryName: args.inputs.repositoryName, imageTag: args.inputs.imageTag, imageDigest: `sha256:${createHash("sha256").update(String(args.inputs.imageTag)).digest("hex")}`, id: "x", imageTags: [args.inputs.imageTag], imagePushedAt: 0, imageSizeInBytes: 1, imageUri: "x", registryId: ACCOUNT };
                case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
                    return { userName: "AWS", password: "ecr-password", proxyEndpoint: `https://${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`, authorizationToken: "x" };
                default:
                    throw new Error(`unmocked call ${args.token}`);
            }
        },
    },
    "campaign",
    "test",
    false,
);

// Imported after setMocks, so every resource is created against the mocks.
import { Campaign, type CampaignArgs } from "../../components/resources/campaign";
import { resolveCampaign } from "../../components/campaign/resolve";
import type { ResolvedCampaign } from "../../components/campaign/types";
import { declarations, NEW_CAMPAIGN, readCampaignState, StaticCampaignState, type CampaignState } from "../../components/campaign/state";
import { nodePolicyDocument, ssmDecryptStatement } from "../../components/resources/jobNode";
import { datasetPrefix, PREP_RUN, runKeys } from "../../components/campaign/layout";
import { campaignBucketName } from "../../components/campaign/naming";
import { gateCommand } from "../../components/campaign/gate";
import type { UserDataRenderer } from "../../components/node/userData";
import { listPresets, loadPreset, mergeConfig } from "../../components/config/presets";
import { program } from "../../components/resources/program";
import { loadRunnerScript, renderNodeUserData, runnerObject, RUNNER_ENV_PATH, RUNNER_FETCH_PATH, RUNNER_PATH, RUNNER_UNIT, USER_DATA_LIMIT_BYTES } from "../../components/node/userData";
import { lifecycleRules } from "../../components/resources/artifactStore";
import { contentTag } from "../../components/resources/image";
import { buildPolicyDocument, codebuildAssumeRolePolicy } from "../../components/resources/imageBuild";
import { BUILDSPEC, formatBuildStart, imageSource } from "../../components/campaign/imageTag";
import { imageContextKey, imageLogsPrefix } from "../../components/campaign/layout";

/** The program's own renderer, as index.ts passes it: #cloud-config that fetches the runner from the bucket. */
const renderUserData: UserDataRenderer = renderNodeUserData;

interface FetchedRunner {
    readonly uri: string;
    readonly sha256: string;
}

/** What a node's user data downloads and the sha256 it checks, read back from the rendered #cloud-config. */
function fetchedRunner(userData: string, label: string): FetchedRunner {
    assert.ok(userData.startsWith("#cloud-config\n"), `${label}: #cloud-config`);
    assert.ok(Buffer.byteLength(userData, "utf8") <= USER_DATA_LIMIT_BYTES, `${label}: fits EC2's user data limit`);
    const config = YAML.parse(userData) as { write_files: Array<{ path: string; content: string }> };
    const file = (path: string) => config.write_files.find((f) => f.path === path);
    assert.equal(file(RUNNER_PATH), undefined, `${label}: the runner is not inline`);
    const fetch = file(RUNNER_FETCH_PATH);
    assert.ok(fetch, `${label}: the fetch script is written`);
    const uri = /^uri='(s3:\/\/[^']+)'$/m.exec(fetch.content)?.[1];
    const sha256 = /^want=([0-9a-f]{64})$/m.exec(fetch.content)?.[1];
    assert.ok(uri && sha256, `${label}: the fetch script names a URI and a sha256`);
    assert.match(fetch.content, /sha256sum --check/, `${label}: the download is checked`);
    assert.ok(file(`/etc/systemd/system/${RUNNER_UNIT}`)?.content.includes(`ExecStartPre=${RUNNER_FETCH_PATH}\n`), `${label}: the unit fetches before it starts the runner`);
    return { uri, sha256 };
}

const schemaDir = mkdtempSync(join(tmpdir(), "campaign-program-"));

function assertCloudInitAccepts(name: string, text: string): void {
    const file = join(schemaDir, `${name}.yaml`);
    writeFileSync(file, text);
    const res = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" });
    assert.equal(res.status, 0, `cloud-init schema ${name}: ${res.stdout}${res.stderr}${res.error ?? ""}`);
}

function unwrap<T>(o: pulumi.Input<T>): Promise<T> {
    return new Promise((resolve) => (pulumi.Output.isInstance(o) ? (o as pulumi.Output<T>).apply((v) => (resolve(v), v)) : resolve(o as T)));
}

const recorder: pulumi.ResourceTransformation = ({ type, name, opts }) => {
    declared.push({ type, name, opts });
    return undefined;
};

interface Graph {
    name: string;
    campaign: ResolvedCampaign;
    component: Campaign;
    resources: Registered[];
    decls: Declared[];
    /** name -> names it waits for (dependsOn and parents' dependsOn). */
    deps: Map<string, Set<string>>;
}

function ofComponent<T extends { name: string }>(list: T[], name: string): T[] {
    return list.filter((r) => r.name === name || r.name.startsWith(`${name}-`));
}

async function urnName(r: pulumi.Resource): Promise<string> {
    const urn = await unwrap(r.urn);
    return urn.slice(urn.lastIndexOf("::") + 2);
}

/** Builds a Campaign and waits until every declared custom resource reached the mocks. */
async function build(name: string, campaign: ResolvedCampaign, state: CampaignState = NEW_CAMPAIGN, extra: Partial<CampaignArgs> = {}): Promise<Graph> {
    const component = new Campaign(
        name,
        { campaign, stack: "test", accountId: ACCOUNT, state, hfToken: pulumi.secret(HF_TOKEN), wandbKey: pulumi.secret(WANDB_KEY), renderUserData, ...extra },
        { transformations: [recorder] },
    );
    await unwrap(component.nodes);
    const customs = () => ofComponent(declared, name).filter((d) => !d.type.startsWith("campaign:index:")).length;
    for (let i = 0; i < 200 && ofComponent(registered, name).length < customs(); i++) await new Promise((r) => setTimeout(r, 10));
    const resources = ofComponent(registered, name);
    const decls = ofComponent(declared, name);
    assert.equal(resources.length, decls.filter((d) => !d.type.startsWith("campaign:index:")).length, "every declared resource was registered");

    const deps = new Map<string, Set<string>>();
    for (const d of decls) {
        const set = new Set<string>();
        const list = d.opts.dependsOn === undefined ? [] : Array.isArray(d.opts.dependsOn) ? d.opts.dependsOn : [d.opts.dependsOn];
        for (const r of list as pulumi.Resource[]) set.add(await urnName(r));
        if (d.opts.parent) set.add(`parent:${await urnName(d.opts.parent)}`);
        deps.set(d.name, set);
    }
    return { name, campaign, component, resources, decls, deps };
}

/** Whether `from` waits for `target`: through dependsOn, a parent's dependsOn, or a dependency on a component holding target. */
function waitsFor(g: Graph, from: string, target: string): boolean {
    const seen = new Set<string>();
    const stack = [from];
    const isInside = (child: string, component: string) => {
        let cur: string | undefined = child;
        for (let i = 0; cur && i < 50; i++) {
            if (cur === component) return true;
            cur = [...(g.deps.get(cur) ?? [])].find((d) => d.startsWith("parent:"))?.slice("parent:".length);
        }
        return false;
    };
    while (stack.length) {
        const cur = stack.pop()!;
        if (seen.has(cur)) continue;
        seen.add(cur);
        for (const dep of g.deps.get(cur) ?? []) {
            const isParent = dep.startsWith("parent:");
            const n = isParent ? dep.slice("parent:".length) : dep;
            if (!isParent && (n === target || isInside(target, n))) return true;
            stack.push(n);
        }
    }
    return false;
}

const byType = (g: Graph, type: string) => g.resources.filter((r) => r.type === type);
const INSTANCE = "aws:ec2/instance:Instance";
const OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2";
const ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy";
/** Actions AWS cannot scope to a resource: the only ones a node's policy may grant on "*". */
const UNSCOPABLE = /^(ecr:GetAuthorizationToken|cloudwatch:PutMetricData|ssm:UpdateInstanceInformation|ssmmessages:[A-Za-z]+|ec2messages:[A-Za-z]+)$/;
const gpuInstances = (g: Graph) => byType(g, INSTANCE).filter((r) => r.inputs.tags?.role === "train");
const prepInstances = (g: Graph) => byType(g, INSTANCE).filter((r) => r.inputs.tags?.role === "prep");

const TAGGABLE = new Set([
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketObjectv2:BucketObjectv2",
    "aws:ec2/instance:Instance",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ebs/volume:Volume",
    "aws:iam/role:Role",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:ssm/parameter:Parameter",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:ecr/repository:Repository",
    "aws:budgets/budget:Budget",
    "aws:codebuild/project:Project",
]);
/** Types that take no tags in AWS (settings of another resource, or not AWS resources). */
const UNTAGGABLE = new Set([
    "pulumi:providers:aws",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy",
    "aws:ec2/volumeAttachment:VolumeAttachment",
    "docker:index/image:Image",
    "command:local:Command",
]);

/**
 * The node runner: uploaded once per campaign to the campaign's bucket, at the key runnerObject gives for
 * every node's settings; each node's user data fetches exactly that object and checks the sha256 of what
 * was uploaded; every instance names the upload in dependsOn; every node role may s3:GetObject that one
 * key, in the campaign's bucket only. Returns the upload (undefined when no node is declared).
 */
function assertRunner(g: Graph, bucket: string): Registered | undefined {
    const label = g.name;
    const bucketArn = `arn:aws:s3:::${bucket}`;
    const uploads = byType(g, OBJECT).filter((o) => o.inputs.tags?.role === "runner");
    const instances = byType(g, INSTANCE);
    if (instances.length === 0) {
        assert.equal(uploads.length, 0, `${label}: no node, no runner upload`);
        assert.equal(g.component.runner, undefined);
        return undefined;
    }
    assert.equal(uploads.length, 1, `${label}: the runner is uploaded once per campaign`);
    const upload = uploads[0];
    assert.equal(upload.name, `${g.name}-runner`);
    assert.equal(upload.inputs.bucket, bucket, `${label}: the runner goes to the campaign's bucket`);
    assert.equal(upload.inputs.serverSideEncryption, "AES256");
    assert.match(upload.inputs.content, /^#!/);
    const key: string = upload.inputs.key;
    const sha256 = createHash("sha256").update(upload.inputs.content, "utf8").digest("hex");

    // The key is the one runnerObject gives for each node's settings (what renderNodeUserData fetches).
    const settings = [...Object.values(g.component.runs).map((r) => r.settings), ...(g.component.prep?.node ? [g.component.prep.settings] : [])];
    assert.equal(settings.length, instances.length, `${label}: a settings object per node`);
    for (const st of settings) {
        const obj = runnerObject(st);
        assert.deepEqual([obj.bucket, obj.key, obj.sha256], [bucket, key, sha256], `${label}: runnerObject of ${st.run}`);
    }
    for (const i of instances) {
        const fetched = fetchedRunner(i.inputs.userData, `${label}: ${i.name}`);
        assert.equal(fetched.uri, `s3://${bucket}/${key}`, `${label}: ${i.name} fetches the uploaded object`);
        assert.equal(fetched.sha256, sha256, `${label}: ${i.name} checks the uploaded content's sha256`);
        assert.ok(g.deps.get(i.name)?.has(upload.name), `${label}: ${i.name} does not name the runner upload in dependsOn`);
    }
    const policies = byType(g, ROLE_POLICY).filter((rp) => isNodePolicy(g, rp));
    assert.equal(policies.length, instances.length, `${label}: a policy per node`);
    const target = `${bucketArn}/${key}`;
    const covers = (r: string) => r === target || (r.endsWith("*") && target.startsWith(r.slice(0, -1)));
    for (const rp of policies) {
        // Exactly one statement reaches the runner: the exact key, not a wider grant that happens to cover it.
        const grants = (JSON.parse(rp.inputs.policy).Statement as any[]).filter((st) => [st.Action].flat().some((a: string) => a.startsWith("s3:")) && [st.Resource].flat().some(covers));
        assert.equal(grants.length, 1, `${label}: ${rp.name} may read the runner`);
        assert.deepEqual([grants[0].Sid, grants[0].Action, grants[0].Resource], ["FetchRunner", ["s3:GetObject"], [target]], `${label}: ${rp.name} reads the runner and only it, in the campaign's bucket`);
    }
    return upload;
}

/** A node's role policy (its instance is <node>-instance); the other role policies are the image builds'. */
function isNodePolicy(g: Graph, rp: Registered): boolean {
    return byType(g, INSTANCE).some((i) => i.name === rp.name.replace(/-policy$/, "-instance"));
}

/**
 * The regional image builds (images.buildOn: region): one per image the campaign builds, none otherwise; no docker
 * build unless buildOn is local. Each build's context is uploaded under runs/<campaign>/image/<tag>/, its CodeBuild
 * project is privileged and logs to the campaign's bucket only, its role may read that context, write its log
 * and push to the campaign's repository, and nothing else; its step waits for the project, the context and the
 * role's policy; the gate waits for the trainer's step, and every GPU node for the gate.
 */
function assertImageBuilds(g: Graph, bucket: string): void {
    const x = g.campaign.experiment;
    const label = g.name;
    const bucketArn = `arn:aws:s3:::${bucket}`;
    const projects = byType(g, "aws:codebuild/project:Project");
    const dockerBuilds = g.resources.filter((r) => r.type.startsWith("docker:"));
    const repos = byType(g, "aws:ecr/repository:Repository");
    if (x.images.buildOn === "region") assert.equal(dockerBuilds.length, 0, `${label}: a docker resource without buildOn: local`);
    else assert.equal(projects.length, 0, `${label}: a CodeBuild project with buildOn: local`);
    const expected = [...(gpuInstances(g).length > 0 && !x.images.trainer && !x.customJob ? ["trainer"] : []), ...(prepInstances(g).length > 0 && !x.images.prep ? ["prep"] : [])];
    const built = x.images.buildOn === "region" ? projects.map((p) => p.name.replace(/^.*-image-(trainer|prep)-build-project$/, "$1")) : dockerBuilds.map((d) => d.name.replace(/^.*-image-/, ""));
    assert.deepEqual(built.sort(), [...expected].sort(), `${label}: the images built`);
    if (x.images.buildOn !== "region") return;
    for (const project of projects) {
        const job = project.name.replace(/^.*-image-(trainer|prep)-build-project$/, "$1") as "trainer" | "prep";
        const prefix = project.name.replace(/-project$/, "");
        const tag = imageSource("containers", job).tag;
        assert.deepEqual([project.inputs.source.type, project.inputs.source.buildspec, project.inputs.artifacts.type], ["NO_SOURCE", BUILDSPEC, "NO_ARTIFACTS"], `${label}: ${project.name} source`);
        assert.equal(project.inputs.environment.privilegedMode, true, `${label}: ${project.name} runs Docker`);
        const vars = Object.fromEntries((project.inputs.environment.environmentVariables as Array<{ name: string; value: string }>).map((v) => [v.name, v.value]));
        assert.deepEqual(vars, { REPOSITORY_URI: `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/${repos[0].inputs.name}`, IMAGE_TAG: tag, CONTEXT_URI: `s3://${bucket}/${imageContextKey(x.name, tag)}`, DOCKERFILE: `${job}/Dockerfile` }, `${label}: ${project.name} builds the content tag`);
        assert.deepEqual(project.inputs.logsConfig, { cloudwatchLogs: { status: "DISABLED" }, s3Logs: { status: "ENABLED", location: `${bucket}/${imageLogsPrefix(x.name).slice(0, -1)}`, encryptionDisabled: true } }, `${label}: ${project.name} logs to the campaign's bucket only`);
        const context = g.resources.find((r) => r.name === `${prefix}-context`)!;
        assert.deepEqual([context.inputs.bucket, context.inputs.key, context.inputs.serverSideEncryption], [bucket, imageContextKey(x.name, tag), "AES256"], `${label}: ${prefix} context`);
        assert.equal(repos[0].inputs.imageTagMutability, "IMMUTABLE", `${label}: a content tag names one image`);
        // The role: CodeBuild of this account only; the policy: exactly the pure document.
        const role = g.resources.find((r) => r.name === `${prefix}-role`)!;
        assert.equal(role.inputs.assumeRolePolicy, codebuildAssumeRolePolicy(ACCOUNT));
        const policy = g.resources.find((r) => r.name === `${prefix}-policy`)!;
        assert.deepEqual(
            JSON.parse(policy.inputs.policy),
            buildPolicyDocument({ bucketArn, contextPrefix: `runs/${x.name}/image/${tag}/`, logsPrefix: imageLogsPrefix(x.name), repositoryArn: `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/${repos[0].inputs.name}` }),
            `${label}: ${prefix} policy`,
        );
        const start = `${prefix}-start`;
        for (const dep of [project.name, context.name]) assert.ok(g.deps.get(start)?.has(dep), `${label}: ${start} does not wait for ${dep}`);
        assert.ok(waitsFor(g, start, policy.name), `${label}: ${start} does not wait for its role's policy`);
        assert.match(g.resources.find((r) => r.name === start)!.inputs.create, new RegExp(`^npx tsx scripts/image-build\\.ts --project '[^']+' --repository '${repos[0].inputs.name}' --tag '${tag}'${job === "prep" ? " --wait" : "$"}`));
        if (job === "trainer") {
            assert.ok(g.deps.get(`${g.name}-gate`)?.has(start), `${label}: the gate does not name the trainer's build step`);
            for (const gpu of gpuInstances(g)) assert.ok(waitsFor(g, gpu.name, start), `${label}: ${gpu.name} does not wait for the image build`);
        }
    }
}

/** Every assertion the issue lists, for one built graph. */
function assertSafe(g: Graph): void {
    const x = g.campaign.experiment;
    const bucket = x.storage.existingBucket ?? campaignBucketName(x.name, "test", ACCOUNT);
    const bucketArn = `arn:aws:s3:::${bucket}`;
    const label = `${g.name}`;

    // Tags: campaign, run, stack, role on every taggable resource; every type is classified.
    for (const r of g.resources) {
        assert.ok(TAGGABLE.has(r.type) || UNTAGGABLE.has(r.type), `${label}: ${r.type} is neither taggable nor known untaggable`);
        if (!TAGGABLE.has(r.type)) continue;
        for (const key of ["campaign", "run", "stack", "role"]) assert.ok(r.inputs.tags?.[key], `${label}: ${r.type} ${r.name} lacks tag ${key}`);
        assert.equal(r.inputs.tags.campaign, x.name);
        assert.equal(r.inputs.tags.stack, "test");
    }

    // Logs live in S3 (each job's logs/ folder): no log group that nothing writes to, and no role may write one.
    assert.equal(byType(g, "aws:cloudwatch/logGroup:LogGroup").length, 0, `${label}: a log group nothing writes to`);
    for (const rp of byType(g, "aws:iam/rolePolicy:RolePolicy")) assert.doesNotMatch(rp.inputs.policy, /"logs:/, `${label}: ${rp.name} may write CloudWatch Logs`);

    // Instances: terminate on shutdown, IMDSv2, encrypted gp3 root, spot exactly when asked.
    for (const i of byType(g, INSTANCE)) {
        // Never replaced while it trains: the AMI and the user data are fixed at creation; a replacement deletes first.
        const opts = g.decls.find((d) => d.name === i.name)!.opts;
        assert.deepEqual([...(opts.ignoreChanges ?? [])].sort(), ["ami", "userData"], `${label}: ${i.name} ignoreChanges`);
        assert.equal(opts.deleteBeforeReplace, true, `${label}: ${i.name} deleteBeforeReplace`);
        assert.equal(i.inputs.userDataReplaceOnChange, false, `${label}: ${i.name} userDataReplaceOnChange`);
        assert.equal(i.inputs.instanceInitiatedShutdownBehavior, "terminate", `${label}: ${i.name} shutdown behaviour`);
        assert.equal(i.inputs.metadataOptions?.httpTokens, "required", `${label}: ${i.name} IMDSv2`);
        assert.equal(i.inputs.rootBlockDevice?.encrypted, true, `${label}: ${i.name} root volume encrypted`);
        assert.equal(i.inputs.rootBlockDevice?.volumeType, "gp3");
        for (const v of i.inputs.ebsBlockDevices ?? []) assert.equal(v.encrypted, true, `${label}: ${i.name} data volume encrypted`);
        for (const key of ["campaign", "run", "stack", "role"]) assert.ok(i.inputs.rootBlockDevice?.tags?.[key], `${label}: ${i.name} root volume tag ${key}`);
        const train = i.inputs.tags.role === "train";
        const spot = train && x.compute.market === "spot";
        if (spot) {
            assert.deepEqual(i.inputs.instanceMarketOptions, { marketType: "spot", spotOptions: { spotInstanceType: "one-time", instanceInterruptionBehavior: "terminate" } }, `${label}: ${i.name} spot options`);
        } else if (train && x.compute.capacityBlock) {
            assert.deepEqual(i.inputs.instanceMarketOptions, { marketType: "capacity-block" }, `${label}: ${i.name} launches into its Capacity Block`);
        } else {
            assert.equal(i.inputs.instanceMarketOptions, undefined, `${label}: ${i.name} must be on-demand`);
        }
        // A capacity reservation: the configured one, on GPU nodes only.
        const reservation = train && x.compute.capacityReservationId ? { capacityReservationTarget: { capacityReservationId: x.compute.capacityReservationId } } : undefined;
        assert.deepEqual(i.inputs.capacityReservationSpecification, reservation, `${label}: ${i.name} capacity reservation`);
    }
    for (const v of byType(g, "aws:ebs/volume:Volume")) assert.equal(v.inputs.encrypted, true, `${label}: volume ${v.name} encrypted`);

    // No inbound rules anywhere.
    for (const sg of byType(g, "aws:ec2/securityGroup:SecurityGroup")) assert.deepEqual(sg.inputs.ingress ?? [], [], `${label}: ${sg.name} has ingress`);
    assert.equal(g.resources.filter((r) => /securityGroupIngressRule|securityGroupRule/.test(r.type)).length, 0, `${label}: separate security-group rules`);

    // GPU instances wait for the gate; the gate waits for the prep job when there is one.
    const gateName = `${g.name}-gate`;
    const gpus = gpuInstances(g);
    if (gpus.length > 0) assert.ok(g.resources.some((r) => r.name === gateName && r.type === "command:local:Command"), `${label}: a gate exists`);
    const prepJob = g.component.prep?.job;
    const prepJobName = prepJob ? g.decls.find((d) => d.name.startsWith(`${g.name}-prep`) && (d.type === INSTANCE || (d.type === "command:local:Command" && d.name.endsWith("-local"))))?.name : undefined;
    if (prepJob) assert.ok(prepJobName, `${label}: the prep job is declared`);
    for (const gpu of gpus) {
        assert.ok(waitsFor(g, gpu.name, gateName), `${label}: ${gpu.name} does not wait for the gate`);
        // Not only through its parents: the instance itself names the gate, so the engine records the edge.
        assert.ok(g.deps.get(gpu.name)?.has(gateName), `${label}: ${gpu.name} does not name the gate in dependsOn`);
        if (prepJobName) assert.ok(waitsFor(g, gpu.name, prepJobName), `${label}: ${gpu.name} does not wait for the prep job ${prepJobName}`);
    }
    if (prepJobName && gpus.length) assert.ok(waitsFor(g, gateName, prepJobName), `${label}: the gate does not wait for prep`);

    // IAM: S3 actions name only the campaign's bucket and the campaign's prefixes; never "*".
    const allowed = [`runs/${x.name}/`, datasetPrefix(g.campaign.prepSpec.prepHash), "models/", "inputs/"];
    for (const rp of byType(g, "aws:iam/rolePolicy:RolePolicy")) {
        const doc = JSON.parse(rp.inputs.policy);
        for (const st of doc.Statement) {
            const actions: string[] = [st.Action].flat();
            if (!actions.some((a) => a.startsWith("s3:"))) continue;
            assert.ok(actions.every((a) => a.startsWith("s3:")), `${label}: S3 statement mixes services`);
            if (/^(List|Read)GivenFolder\d+$/.test(st.Sid)) {
                // A model given as s3://...: read-only, and only where a train spec points.
                const given = g.campaign.trainSpecs.map((t) => t.model.id).filter((id) => id.startsWith("s3://"));
                assert.ok(actions.every((a) => a === "s3:ListBucket" || a === "s3:GetObject"), `${label}: ${rp.name} ${st.Sid} is read-only`);
                for (const res of [st.Resource].flat() as string[]) {
                    assert.ok(given.some((uri) => uri.replace(/^s3:\/\//, "arn:aws:s3:::").startsWith(res.replace(/\*$/, ""))), `${label}: ${rp.name} ${st.Sid} names ${res}`);
                }
                continue;
            }
            for (const res of [st.Resource].flat() as string[]) {
                assert.notEqual(res, "*", `${label}: ${rp.name} S3 on *`);
                assert.ok(res === bucketArn || res.startsWith(`${bucketArn}/`), `${label}: ${rp.name} names ${res}`);
                if (res !== bucketArn) {
                    const key = res.slice(bucketArn.length + 1);
                    if (key.endsWith("*")) {
                        assert.ok(!key.slice(0, -1).includes("*"), `${label}: ${res} wildcards`);
                    } else {
                        // One object without wildcards: only the runner, read-only.
                        assert.ok(!key.includes("*") && st.Sid === "FetchRunner", `${label}: ${rp.name} names the single object ${res}`);
                        assert.match(key, new RegExp(`^runs/${x.name}/runner/run-job-[0-9a-f]{16}\\.sh$`));
                        assert.deepEqual(actions, ["s3:GetObject"], `${label}: the runner is read-only`);
                    }
                    assert.ok(allowed.some((p) => key.startsWith(p)), `${label}: ${res} outside the campaign's prefixes`);
                }
            }
            for (const p of (st.Condition?.StringLike?.["s3:prefix"] ?? []) as string[]) assert.ok(allowed.some((a) => p.startsWith(a)), `${label}: list prefix ${p}`);
        }
    }

    // IAM: "*" only for actions AWS cannot scope; kms:Decrypt only through SSM, for the node's own parameters;
    // GPU metrics only in the CWAgent namespace, and only from GPU nodes.
    const parameters = byType(g, "aws:ssm/parameter:Parameter");
    for (const rp of byType(g, ROLE_POLICY)) {
        const statements: any[] = JSON.parse(rp.inputs.policy).Statement;
        for (const st of statements) {
            const actions: string[] = [st.Action].flat();
            if ([st.Resource].flat().includes("*")) for (const a of actions) assert.match(a, UNSCOPABLE, `${label}: ${rp.name} grants ${a} on *`);
            if (actions.includes("cloudwatch:PutMetricData")) assert.deepEqual(st.Condition, { StringEquals: { "cloudwatch:namespace": "CWAgent" } }, `${label}: ${rp.name} metrics namespace`);
        }
        const secrets = statements.find((st) => st.Sid === "ReadOwnSecrets");
        const kms = statements.filter((st) => [st.Action].flat().some((a: string) => a.startsWith("kms:")));
        assert.equal(kms.length, secrets ? 1 : 0, `${label}: ${rp.name} kms:Decrypt exactly when it reads secrets`);
        if (secrets) {
            assert.deepEqual([secrets.Action, secrets.Resource.length], [["ssm:GetParameter", "ssm:GetParameters"], parameters.length], `${label}: ${rp.name} reads its own parameters`);
            for (const arn of secrets.Resource) assert.ok(parameters.some((p) => arn === `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${p.inputs.name}`), `${label}: ${rp.name} reads ${arn}`);
            assert.deepEqual(kms[0].Action, ["kms:Decrypt"]);
            assert.deepEqual(kms[0].Resource, [`arn:aws:kms:${x.region}:${ACCOUNT}:key/*`]);
            assert.deepEqual(kms[0].Condition, { StringEquals: { "kms:ViaService": [`ssm.${x.region}.amazonaws.com`], "kms:EncryptionContext:PARAMETER_ARN": secrets.Resource } });
        }
        const node = rp.name.replace(/-policy$/, "-instance");
        const gpu = gpuInstances(g).some((i) => i.name === node);
        assert.equal(statements.some((st) => st.Sid === "PublishAgentMetrics"), gpu, `${label}: ${rp.name} publishes GPU metrics exactly when it is a GPU node`);
        const pull = statements.find((st) => st.Sid === "PullCampaignImages");
        if (pull) {
            assert.deepEqual(pull.Action, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]);
            for (const arn of pull.Resource) assert.match(arn, new RegExp(`^arn:aws:ecr:[a-z0-9-]+:\\d{12}:repository/[a-z0-9._/-]+$`), `${label}: ${rp.name} pulls from ${arn}`);
            assert.ok(statements.some((st) => st.Sid === "EcrLogin" && st.Resource === "*" && st.Action.join() === "ecr:GetAuthorizationToken"), `${label}: ${rp.name} can log in to ECR`);
        }
        const repos = byType(g, "aws:ecr/repository:Repository");
        if (!isNodePolicy(g, rp)) {
            // Not a node's: an image build's (checked statement by statement in assertImageBuilds).
            assert.match(rp.name, new RegExp(`^${g.name}-image-(trainer|prep)-build-policy$`), `${label}: ${rp.name} is neither a node's nor an image build's`);
            assert.equal(pull, undefined, `${label}: ${rp.name} pulls images`);
            continue;
        }
        if (repos.length > 0) assert.deepEqual(pull?.Resource, [`arn:aws:ecr:${REGION}:${ACCOUNT}:repository/${repos[0].inputs.name}`], `${label}: ${rp.name} pulls from the campaign's repository`);
    }

    assertRunner(g, bucket);
    assertImageBuilds(g, bucket);

    // Secrets: parameters are SecureStrings; no value in user data, specs, commands or any other input.
    const params = byType(g, "aws:ssm/parameter:Parameter");
    assert.equal(params.length, 2, `${label}: two secret parameters`);
    for (const p of params) assert.equal(p.inputs.type, "SecureString");
    for (const r of g.resources) {
        if (r.type === "aws:ssm/parameter:Parameter") continue;
        const text = JSON.stringify(r.inputs);
        assert.ok(!text.includes(HF_TOKEN) && !text.includes(WANDB_KEY), `${label}: a secret value in ${r.type} ${r.name}`);
    }
    for (const i of byType(g, INSTANCE)) assert.match(i.inputs.userData, /CAMPAIGN_SECRET_PARAMETERS/, `${label}: nodes get parameter names`);

    // Job specs in S3 where the layout says, one per declared run.
    const objects = byType(g, "aws:s3/bucketObjectv2:BucketObjectv2").map((o) => o.inputs.key as string);
    for (const run of g.component.declared.runs) assert.ok(objects.includes(runKeys(x.name, run.name).spec), `${label}: spec of ${run.name}`);

    // The bucket: hardened, and retained exactly when asked.
    const buckets = byType(g, "aws:s3/bucket:Bucket");
    if (x.storage.existingBucket) {
        assert.equal(buckets.length, 0, `${label}: an existing bucket is not created`);
    } else {
        assert.equal(buckets.length, 1);
        assert.equal(buckets[0].inputs.bucket, bucket);
        const decl = g.decls.find((d) => d.type === "aws:s3/bucket:Bucket")!;
        assert.equal(decl.opts.retainOnDelete ?? false, x.storage.keepOnDestroy, `${label}: retainOnDelete`);
        assert.equal(buckets[0].inputs.forceDestroy, !x.storage.keepOnDestroy);
        const pab = byType(g, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0];
        for (const k of ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"]) assert.equal(pab.inputs[k], true);
        assert.ok(byType(g, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0].inputs.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm);
        const policy = JSON.parse(byType(g, "aws:s3/bucketPolicy:BucketPolicy")[0].inputs.policy);
        assert.equal(policy.Statement[0].Effect, "Deny");
        assert.equal(policy.Statement[0].Condition.Bool["aws:SecureTransport"], "false");
        const rules = byType(g, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0].inputs.rules;
        assert.ok(rules.some((r: any) => r.abortIncompleteMultipartUpload?.daysAfterInitiation > 0));
        for (const run of g.campaign.runs) assert.ok(rules.some((r: any) => r.filter?.prefix === runKeys(x.name, run.name).checkpoints && r.expiration?.days === x.storage.checkpointExpiryDays));
    }

    // Guardrails: one idle alarm per GPU node that terminates it.
    const alarms = byType(g, "aws:cloudwatch/metricAlarm:MetricAlarm");
    assert.equal(alarms.length, gpus.length, `${label}: one alarm per GPU node`);
    for (const a of alarms) {
        assert.deepEqual(a.inputs.alarmActions, [`arn:aws:automate:${x.region}:ec2:terminate`]);
        assert.equal(a.inputs.evaluationPeriods, x.compute.gpuIdleMinutes);
        assert.ok(gpus.some((gpu) => a.inputs.dimensions.InstanceId === `i-${gpu.name}`), `${label}: alarm ${a.name} names a GPU node`);
    }
}

// ---------------------------------------------------------------- every preset

const presets = listPresets();
const resolved = (preset: string, override: unknown = {}) => resolveCampaign(mergeConfig(loadPreset(preset), override), `stacks/${preset}.yaml`);

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

    test(`${preset}: finished runs and a prepared dataset are not declared`, async () => {
        const campaign = resolved(preset);
        const [first, ...rest] = campaign.runs;
        const state = await readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { [PREP_RUN]: "succeeded", [first.name]: "succeeded" } }), campaign);
        const g = await build(`state-${preset}`, campaign, state);
        assertSafe(g);
        assert.equal(prepInstances(g).length, 0, "no prep node for a prepared dataset");
        assert.equal(byType(g, "command:local:Command").filter((r) => r.name.includes("-prep-")).length, 0, "no local prep");
        assert.equal(g.component.prep, undefined);
        const gpuRuns = gpuInstances(g).map((i) => i.inputs.tags.run).sort();
        assert.deepEqual(gpuRuns, rest.map((r) => r.name).sort(), "only unfinished runs get a node");
        assert.ok(!JSON.stringify(byType(g, "aws:cloudwatch/metricAlarm:MetricAlarm").map((a) => a.inputs.tags)).includes(`"run":"${first.name}"`));
        const nodes = await unwrap(g.component.nodes);
        assert.deepEqual(nodes[first.name], { where: "done", phase: "succeeded" });
        assert.equal(nodes[PREP_RUN].where, rest.length ? "cached" : "none");
        if (rest.length === 0) assert.equal(g.resources.filter((r) => r.name === `${g.name}-gate`).length, 0, "nothing to gate");
    });

    test(`${preset}: keepOnDestroy false deletes the bucket with its objects`, async () => {
        const g = await build(`drop-${preset}`, resolved(preset, { storage: { keepOnDestroy: false } }));
        assertSafe(g);
        assert.equal(g.component.kept.monthlyUsd, 0);
    });
}

// ---------------------------------------------------------------- variants

test("a campaign where every run succeeded declares no compute at all", async () => {
    const campaign = resolved("socratiq-t5-lora");
    const phases = Object.fromEntries(campaign.runs.map((r) => [r.name, "succeeded" as const]));
    const state = await readCampaignState(new StaticCampaignState({ phases }), campaign);
    assert.equal(declarations(campaign, state).prep, "none");
    const g = await build("alldone", campaign, state);
    assertSafe(g);
    assert.equal(byType(g, INSTANCE).length, 0);
    assert.equal(byType(g, "command:local:Command").length, 0);
    assert.equal(byType(g, "docker:index/image:Image").length, 0);
    assert.equal(byType(g, "aws:codebuild/project:Project").length, 0);
});

test("an interrupted run is declared again (it resumes from its checkpoint)", async () => {
    const campaign = resolved("dev");
    const state = await readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { main: "interrupted" } }), campaign);
    const g = await build("retry", campaign, state);
    assertSafe(g);
    assert.equal(gpuInstances(g).length, 1);
});

test("a failed run is held back with unchanged settings, relaunched when they change or compute.retries allows", async () => {
    const campaign = resolved("dev");
    const specHash = campaign.trainSpecs[0]!.specHash;
    const failed = (extra: object) => readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { main: "failed" }, ...extra }), campaign);

    const same = await build("failed-same", campaign, await failed({ specHashes: { main: specHash } }));
    assertSafe(same);
    assert.equal(gpuInstances(same).length, 0, "no node for a run that failed with these settings");
    assert.equal(same.component.declared.held.length, 1);
    assert.match(same.component.declared.warnings[0]!, /main: failed 1 time\(s\) with these settings .* not relaunched/);
    assert.deepEqual((await unwrap(same.component.nodes)).main, { where: "held: failed, not relaunched", phase: "failed" });

    const changed = await build("failed-changed", campaign, await failed({ specHashes: { main: "0000000000000000" } }));
    assert.equal(gpuInstances(changed).length, 1, "changed settings: a new attempt");

    const retried = resolved("dev", { compute: { retries: 1 } });
    const once = await readCampaignState(new StaticCampaignState({ phases: { main: "failed" }, specHashes: { main: retried.trainSpecs[0]!.specHash }, failures: { main: 1 } }), retried);
    assert.equal(declarations(retried, once).runs.length, 1, "retries=1 allows a second attempt");
    const twice = await readCampaignState(new StaticCampaignState({ phases: { main: "failed" }, specHashes: { main: retried.trainSpecs[0]!.specHash }, failures: { main: 2 } }), retried);
    assert.equal(declarations(retried, twice).runs.length, 0, "and no third");
});

test("a running run whose settings changed keeps its node, and pulumi up says so", async () => {
    const campaign = resolved("dev");
    const state = await readCampaignState(new StaticCampaignState({ preparedHashes: [campaign.prepSpec.prepHash], phases: { main: "training" }, specHashes: { main: "0000000000000000" } }), campaign);
    const g = await build("running-changed", campaign, state);
    assert.equal(gpuInstances(g).length, 1);
    assert.match(g.component.declared.warnings.join("\n"), /main: is training with spec 0000000000000000; the changed settings .* are not applied to its node/);
});

test("an existing bucket is used as given: no bucket resources, IAM on its ARN", async () => {
    const g = await build("shared", resolved("reasoning-qwen7b-lora", { storage: { existingBucket: "team-ml-artifacts" } }));
    assertSafe(g);
    assert.equal(g.component.bucketName, "team-ml-artifacts");
    assert.equal(g.resources.filter((r) => r.type.startsWith("aws:s3/bucket") && r.type !== "aws:s3/bucketObjectv2:BucketObjectv2").length, 0);
    assert.match(g.component.kept.kept, /existing bucket/);
});

test("a data source in another bucket is copied in; nodes never name that bucket", async () => {
    const campaign = resolved("socratiq-t5-lora");
    assert.match(campaign.experiment.data.source, /^s3:\/\/socratiq-data\//);
    const g = await build("copyin", campaign);
    assertSafe(g);
    const copy = g.resources.find((r) => r.name.endsWith("-input-copy"))!;
    assert.match(copy.inputs.create, /^aws s3 cp 's3:\/\/socratiq-data\/socratiq\/train\.jsonl' 's3:\/\/.*\/inputs\/[0-9a-f]{64}\/train\.jsonl'/);
    const prepNode = prepInstances(g)[0];
    assert.ok(waitsFor(g, prepNode.name, copy.name), "the prep node waits for the copy");
    for (const rp of byType(g, "aws:iam/rolePolicy:RolePolicy")) assert.ok(!rp.inputs.policy.includes("socratiq-data"));
});

test("a budget, a dataset volume and a given subnet", async () => {
    const g = await build(
        "extras",
        resolved("dev", { budget: { monthlyUsd: 50, emails: ["ml@example.com"] }, compute: { dataVolumeGb: 500, availabilityZone: "us-east-1a", subnetId: "subnet-0abc123" } }),
    );
    assertSafe(g);
    const budget = byType(g, "aws:budgets/budget:Budget")[0];
    assert.equal(budget.inputs.limitAmount, "50.00");
    assert.deepEqual(budget.inputs.costFilters, [{ name: "TagKeyValue", values: ["user:campaign$dev"] }]);
    assert.ok(budget.inputs.notifications.every((n: any) => n.subscriberEmailAddresses[0] === "ml@example.com"));
    const volume = byType(g, "aws:ebs/volume:Volume")[0];
    assert.deepEqual([volume.inputs.size, volume.inputs.type, volume.inputs.availabilityZone, volume.inputs.encrypted], [500, "gp3", "us-east-1a", true]);
    assert.equal(byType(g, "aws:ec2/volumeAttachment:VolumeAttachment").length, 1);
    const gpu = gpuInstances(g)[0];
    assert.equal(gpu.inputs.subnetId, "subnet-0abc123");
    assert.equal(gpu.inputs.availabilityZone, undefined);
    for (const sg of byType(g, "aws:ec2/securityGroup:SecurityGroup")) assert.equal(sg.inputs.vpcId, "vpc-0given");
});

test("ordered zones: nodes and the dataset volume in the first one; a Capacity Block: the GPU node launches into it, prep does not", async () => {
    const zones = await build("zones", resolved("dev", { compute: { availabilityZones: ["us-east-1b", "us-east-1a"], dataVolumeGb: 100 } }));
    assertSafe(zones);
    assert.equal(gpuInstances(zones)[0].inputs.availabilityZone, "us-east-1b");
    assert.equal(byType(zones, "aws:ebs/volume:Volume")[0].inputs.availabilityZone, "us-east-1b");
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

// ---------------------------------------------------------------- the program, as index.ts runs it

test("the program reads config and state, and its outputs say where things are, what they cost and how to stop them", async () => {
    pulumi.runtime.setAllConfig(
        {
            "campaign:preset": "dev",
            "campaign:experiment": JSON.stringify({ compute: { maxHours: 1 } }),
            "campaign:hfToken": HF_TOKEN,
            "campaign:wandbKey": WANDB_KEY,
        },
        ["campaign:hfToken", "campaign:wandbKey"],
    );
    const seen: string[] = [];
    const outputs = await program({
        name: "prog",
        renderUserData,
        stateReader: (bucket, campaign) => {
            seen.push(`${bucket}/${campaign}`);
            return new StaticCampaignState();
        },
        opts: { transformations: [recorder] },
    });
    const bucket = campaignBucketName("dev", "test", ACCOUNT);
    assert.deepEqual(seen, [`${bucket}/dev`], "state is read from the campaign's bucket before declaring");
    assert.equal(outputs.bucket, bucket);
    const commands = outputs.commands as Record<string, unknown>;
    assert.equal(commands.destroy, "pulumi destroy --stack test");
    assert.deepEqual(commands.watch, [`aws s3 cp s3://${bucket}/runs/dev/main/status.json -`]);
    const cost = outputs.estimatedCost as { estimatedUsd: number; worstCaseUsd: number };
    assert.ok(cost.estimatedUsd > 0 && cost.worstCaseUsd >= cost.estimatedUsd);
    assert.match((outputs.afterDestroy as { kept: string }).kept, new RegExp(bucket));
    assert.match((outputs.logs as Record<string, string>).main, /runs%2Fdev%2Fmain%2Flogs%2F/);
    const nodes = await unwrap(outputs.nodes as pulumi.Output<Record<string, { where: string }>>);
    assert.equal(nodes.main.where, "i-prog-run-main-node-instance");
    const plain = JSON.stringify({ ...outputs, nodes });
    assert.ok(!plain.includes(HF_TOKEN) && !plain.includes(WANDB_KEY));
    for (const r of ofComponent(registered, "prog")) {
        if (r.type === "aws:ssm/parameter:Parameter") continue;
        assert.ok(!JSON.stringify(r.inputs).includes(HF_TOKEN), `secret in ${r.name}`);
    }
});

test("the stack's aws:profile and aws:assumeRoles reach the campaign's provider, its state reader and its local commands", async () => {
    const role = { roleArn: `arn:aws:iam::${ACCOUNT}:role/ml-campaigns`, sessionName: "campaign" };
    pulumi.runtime.setAllConfig({
        "campaign:preset": "dev",
        "aws:profile": "ml-team",
        "aws:assumeRoles": JSON.stringify([role]),
    });
    const profiles: Array<string | undefined> = [];
    await program({
        name: "creds",
        renderUserData,
        stateReader: (_bucket, _campaign, _region, profile) => {
            profiles.push(profile);
            return new StaticCampaignState();
        },
        opts: { transformations: [recorder] },
    });
    for (let i = 0; i < 200 && !ofComponent(registered, "creds").some((r) => r.name === "creds-gate"); i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(profiles, ["ml-team"], "the state is read as the stack's profile");
    const provider = registered.find((r) => r.type === "pulumi:providers:aws" && r.name === "creds-aws")!;
    assert.equal(provider.inputs.profile, "ml-team");
    assert.deepEqual(JSON.parse(provider.inputs.assumeRoles), [role]);
    const gate = ofComponent(registered, "creds").find((r) => r.name === "creds-gate")!;
    assert.equal(gate.inputs.environment.AWS_PROFILE, "ml-team", "the gate's AWS CLI uses the same profile");
});

test("an existing bucket that cannot work stops the program before anything is declared; a warning does not", async () => {
    pulumi.runtime.setAllConfig({ "campaign:preset": "dev", "campaign:experiment": JSON.stringify({ storage: { existingBucket: "team-kms" } }) });
    const checked: string[] = [];
    let stateRead = false;
    const run = (problems: Array<{ severity: "error" | "warning"; message: string }>, name: string) =>
        program({
            name,
            renderUserData,
            bucketCheck: async (bucket, accountId) => {
                checked.push(`${bucket}@${accountId}`);
                return problems;
            },
            stateReader: () => {
                stateRead = true;
                return new StaticCampaignState();
            },
            opts: { transformations: [recorder] },
        });
    await assert.rejects(run([{ severity: "error", message: "storage.existingBucket (team-kms) encrypts new objects with the customer-managed KMS key k" }], "badbucket"), /customer-managed KMS key k/);
    assert.deepEqual(checked, [`team-kms@${ACCOUNT}`]);
    assert.equal(stateRead, false, "nothing read or declared after a failed bucket check");
    assert.equal(ofComponent(declared, "badbucket").length, 0);
    await run([{ severity: "warning", message: "in another region" }], "warnbucket");
    assert.equal(stateRead, true);
});

// ---------------------------------------------------------------- pure parts

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

test("bucket names are valid S3 names and stable", () => {
    const long = campaignBucketName("a-very-long-campaign-name-that-goes-on-and-on", "Some_Stack.Name-with-more", ACCOUNT);
    assert.ok(long.length <= 63 && /^[a-z0-9][a-z0-9-]*[a-z0-9]$/.test(long), long);
    assert.equal(long, campaignBucketName("a-very-long-campaign-name-that-goes-on-and-on", "Some_Stack.Name-with-more", ACCOUNT));
    assert.equal(campaignBucketName("dev", "test", ACCOUNT), `dev-test-${ACCOUNT}`);
});

test("lifecycle rules: multipart uploads aborted, only checkpoints expire", () => {
    const rules = lifecycleRules("c", ["a", "b"], 14);
    assert.equal(rules.length, 3);
    assert.deepEqual(rules.slice(1).map((r) => [r.filter, r.expiration]), [[{ prefix: "runs/c/a/checkpoints/" }, { days: 14 }], [{ prefix: "runs/c/b/checkpoints/" }, { days: 14 }]]);
    assert.throws(() => lifecycleRules("c", [], 0));
});

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

test("the GPU agent config publishes the alarm's metric with the InstanceId dimension alone", async () => {
    const { gpuAgentConfig, GPU_METRIC_NAMESPACE, GPU_UTILIZATION_METRIC } = await import("../../components/node/metricsAgent");
    const { idleAlarmArgs } = await import("../../components/resources/guardrails");
    const config = gpuAgentConfig() as any;
    assert.equal(config.metrics.namespace, GPU_METRIC_NAMESPACE);
    assert.deepEqual(config.metrics.append_dimensions, { InstanceId: "${aws:InstanceId}" });
    assert.deepEqual(config.metrics.aggregation_dimensions, [["InstanceId"]]);
    assert.ok(config.metrics.metrics_collected.nvidia_gpu.measurement.includes(GPU_UTILIZATION_METRIC.replace(/^nvidia_smi_/, "")));
    const alarm = idleAlarmArgs({ region: "eu-west-1", instanceId: "i-1", idleMinutes: 20, thresholdPercent: 5, description: "d", tags: {} });
    assert.deepEqual([alarm.metricName, alarm.namespace, alarm.dimensions, alarm.alarmActions], [GPU_UTILIZATION_METRIC, GPU_METRIC_NAMESPACE, { InstanceId: "i-1" }, ["arn:aws:automate:eu-west-1:ec2:terminate"]]);
    assert.throws(() => idleAlarmArgs({ region: "r", instanceId: "i", idleMinutes: 0, thresholdPercent: 5, description: "d", tags: {} }));
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
