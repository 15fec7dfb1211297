// The Pulumi mocks and the graph helpers that the tests of test/resources/ share. Importing this module installs
// the mocks (pulumi.runtime.setMocks, once per process): a test file imports it before any component, so every
// resource is created against them, and each test file runs alone. The mocks record every resource and option;
// build() declares a Campaign and waits for its graph; assertSafe() holds the safety defaults every graph must
// keep. Nodes get the user data index.ts gives them (components/node/userData.ts's renderNodeUserData): the fetch
// variant, whose runner object the Campaign uploads; assertRunner() reads the user data back and checks the two agree.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";

// ---------------------------------------------------------------- mocks: every resource and option recorded

export const ACCOUNT = "123456789012";
export const REGION = "us-east-1";
export const HF_TOKEN = "hf_SECRET_token_value_0123456789";
export const WANDB_KEY = "wandb_SECRET_key_value_9876543210";

export interface Registered {
    type: string;
    name: string;
    inputs: Record<string, any>;
}
export interface Declared {
    type: string;
    name: string;
    opts: pulumi.CustomResourceOptions & { retainOnDelete?: boolean };
}
export const registered: Registered[] = [];
export const declared: Declared[] = [];
/** repository:tag of every digest the program asked ECR for. */
export const imageLookups: string[] = [];

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

/** The instance id the mocked launch step reports for the step `name`. */
export function launchedInstanceId(name: string): string {
    return `i-${createHash("sha256").update(name).digest("hex").slice(0, 17)}`;
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
            if (args.type === "command:local:Command" && args.name.endsWith("-launch")) {
                // What scripts/launch-node.ts prints when it launched: the record, here of the first candidate.
                const request = JSON.parse(String(args.inputs.environment?.CAMPAIGN_LAUNCH ?? "{}")) as { candidates?: Array<{ instanceType: string; subnetId: string; zone: string }>; launchKey?: string };
                const first = request.candidates?.[0];
                state.stdout = JSON.stringify({ instanceId: launchedInstanceId(args.name), instanceType: first?.instanceType, zone: first?.zone, subnetId: first?.subnetId, fleetId: "fleet-mock", launchKey: request.launchKey, skipped: [] });
            }
            if (args.type === "aws:iam/role:Role" || args.type === "aws:iam/instanceProfile:InstanceProfile") state.name = args.name;
            if (args.type === "aws:cloudwatch/metricAlarm:MetricAlarm") state.name = args.name;
            const id = args.type === "aws:ec2/instance:Instance" ? `i-${args.name}` : args.type === "aws:s3/bucket:Bucket" ? String(args.inputs.bucket) : `${args.name}-id`;
            return { id, state };
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
                    // By id: the given subnet; by zone: the zone's default subnet, as the fallback launch looks it up.
                    if (args.inputs.id) return { id: args.inputs.id, vpcId: "vpc-0given", availabilityZone: "us-east-1b" };
                    return { id: `subnet-default-${args.inputs.availabilityZone}`, vpcId: args.inputs.vpcId, availabilityZone: args.inputs.availabilityZone, defaultForAz: true };
                case "aws:ec2/getAmi:getAmi":
                    return { id: "ami-0123456789abcdef0", rootDeviceName: "/dev/sda1", imageId: "ami-0123456789abcdef0" };
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
import { NEW_CAMPAIGN, type CampaignState } from "../../components/campaign/state";
import { datasetPrefix, runKeys } from "../../components/campaign/layout";
import { campaignBucketName } from "../../components/campaign/naming";
import type { UserDataRenderer } from "../../components/node/userData";
import { listPresets, loadPreset, mergeConfig } from "../../components/config/presets";
import { renderNodeUserData, runnerObject, RUNNER_FETCH_PATH, RUNNER_PATH, RUNNER_UNIT, USER_DATA_LIMIT_BYTES } from "../../components/node/userData";
import { buildPolicyDocument, codebuildAssumeRolePolicy } from "../../components/resources/imageBuild";
import { BUILDSPEC, formatBuildStart, imageSource } from "../../components/campaign/imageTag";
import { imageContextKey, imageLogsPrefix } from "../../components/campaign/layout";

/** The program's own renderer, as index.ts passes it: #cloud-config that fetches the runner from the bucket. */
export const renderUserData: UserDataRenderer = renderNodeUserData;

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

export function assertCloudInitAccepts(name: string, text: string): void {
    const file = join(schemaDir, `${name}.yaml`);
    writeFileSync(file, text);
    const res = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" });
    assert.equal(res.status, 0, `cloud-init schema ${name}: ${res.stdout}${res.stderr}${res.error ?? ""}`);
}

export function unwrap<T>(o: pulumi.Input<T>): Promise<T> {
    return new Promise((resolve) => (pulumi.Output.isInstance(o) ? (o as pulumi.Output<T>).apply((v) => (resolve(v), v)) : resolve(o as T)));
}

export const recorder: pulumi.ResourceTransformation = ({ type, name, opts }) => {
    declared.push({ type, name, opts });
    return undefined;
};

export interface Graph {
    name: string;
    campaign: ResolvedCampaign;
    component: Campaign;
    resources: Registered[];
    decls: Declared[];
    /** name -> names it waits for (dependsOn and parents' dependsOn). */
    deps: Map<string, Set<string>>;
}

export function ofComponent<T extends { name: string }>(list: T[], name: string): T[] {
    return list.filter((r) => r.name === name || r.name.startsWith(`${name}-`));
}

async function urnName(r: pulumi.Resource): Promise<string> {
    const urn = await unwrap(r.urn);
    return urn.slice(urn.lastIndexOf("::") + 2);
}

/** Builds a Campaign and waits until every declared custom resource reached the mocks. */
export async function build(name: string, campaign: ResolvedCampaign, state: CampaignState = NEW_CAMPAIGN, extra: Partial<CampaignArgs> = {}): Promise<Graph> {
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
export function waitsFor(g: Graph, from: string, target: string): boolean {
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

export const byType = (g: Graph, type: string) => g.resources.filter((r) => r.type === type);
export const INSTANCE = "aws:ec2/instance:Instance";
const OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2";
const ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy";
/** Actions AWS cannot scope to a resource: the only ones a node's policy may grant on "*". */
const UNSCOPABLE = /^(ecr:GetAuthorizationToken|cloudwatch:PutMetricData|ssm:UpdateInstanceInformation|ssmmessages:[A-Za-z]+|ec2messages:[A-Za-z]+)$/;
export const gpuInstances = (g: Graph) => byType(g, INSTANCE).filter((r) => r.inputs.tags?.role === "train");
export const prepInstances = (g: Graph) => byType(g, INSTANCE).filter((r) => r.inputs.tags?.role === "prep");
export const LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate";

/** A node as the graph holds it: one instance, or a launch template and the fallback launch step (jobNode.ts). */
export interface GraphNode {
    /** The resource whose life is the node's: the instance, or the launch step (dependsOn is checked on it). */
    readonly launched: Registered;
    readonly template?: Registered;
    /** `<node>`: the JobNode's name; its role policy is `<node>-policy`. */
    readonly node: string;
    readonly role: "train" | "prep";
    /** The user data as the instance gets it (a launch template carries it base64-encoded). */
    readonly userData: string;
}

export function graphNodes(g: Graph): GraphNode[] {
    const instances = byType(g, INSTANCE).map((i): GraphNode => ({ launched: i, node: i.name.replace(/-instance$/, ""), role: i.inputs.tags.role, userData: i.inputs.userData }));
    const fleets = byType(g, LAUNCH_TEMPLATE).map((t): GraphNode => {
        const node = t.name.replace(/-template$/, "");
        const launched = g.resources.find((r) => r.name === `${node}-launch`);
        assert.ok(launched, `${g.name}: launch template ${t.name} has no launch step ${node}-launch`);
        return { launched, template: t, node, role: t.inputs.tags.role, userData: Buffer.from(String(t.inputs.userData), "base64").toString("utf8") };
    });
    return [...instances, ...fleets];
}

export const gpuNodes = (g: Graph) => graphNodes(g).filter((n) => n.role === "train");

const TAGGABLE = new Set([
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketObjectv2:BucketObjectv2",
    "aws:ec2/instance:Instance",
    "aws:ec2/launchTemplate:LaunchTemplate",
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
export function assertRunner(g: Graph, bucket: string): Registered | undefined {
    const label = g.name;
    const bucketArn = `arn:aws:s3:::${bucket}`;
    const uploads = byType(g, OBJECT).filter((o) => o.inputs.tags?.role === "runner");
    const instances = graphNodes(g);
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
    for (const n of instances) {
        const name = n.launched.name;
        const fetched = fetchedRunner(n.userData, `${label}: ${name}`);
        assert.equal(fetched.uri, `s3://${bucket}/${key}`, `${label}: ${name} fetches the uploaded object`);
        assert.equal(fetched.sha256, sha256, `${label}: ${name} checks the uploaded content's sha256`);
        assert.ok(g.deps.get(name)?.has(upload.name), `${label}: ${name} does not name the runner upload in dependsOn`);
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

/** A node's role policy (<node>-policy beside its instance or launch step); the other role policies are the image builds'. */
function isNodePolicy(g: Graph, rp: Registered): boolean {
    return graphNodes(g).some((n) => `${n.node}-policy` === rp.name);
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
    const expected = [...(gpuNodes(g).length > 0 && !x.images.trainer && !x.customJob ? ["trainer"] : []), ...(prepInstances(g).length > 0 && !x.images.prep ? ["prep"] : [])];
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
            for (const gpu of gpuNodes(g)) assert.ok(waitsFor(g, gpu.launched.name, start), `${label}: ${gpu.launched.name} does not wait for the image build`);
        }
    }
}

/** Every assertion the issue lists, for one built graph. */
export function assertSafe(g: Graph): void {
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
    for (const n of graphNodes(g).filter((n) => n.template)) assertFleetNode(g, n);

    // No inbound rules anywhere.
    for (const sg of byType(g, "aws:ec2/securityGroup:SecurityGroup")) assert.deepEqual(sg.inputs.ingress ?? [], [], `${label}: ${sg.name} has ingress`);
    assert.equal(g.resources.filter((r) => /securityGroupIngressRule|securityGroupRule/.test(r.type)).length, 0, `${label}: separate security-group rules`);

    // GPU instances wait for the gate; the gate waits for the prep job when there is one.
    const gateName = `${g.name}-gate`;
    const gpus = gpuNodes(g).map((n) => n.launched);
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
                    } else if (st.Sid === "ReadCampaignControl") {
                        // The campaign-wide control object (a graceful stop), read-only.
                        assert.equal(key, `runs/${x.name}/control.json`, `${label}: ${rp.name} reads the campaign's control object`);
                        assert.deepEqual(actions, ["s3:GetObject"], `${label}: the control object is read-only`);
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
        const gpu = gpuNodes(g).some((n) => `${n.node}-policy` === rp.name);
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
    for (const n of graphNodes(g)) assert.match(n.userData, /CAMPAIGN_SECRET_PARAMETERS/, `${label}: nodes get parameter names`);

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
        const idOf = (r: Registered) => (r.type === INSTANCE ? `i-${r.name}` : launchedInstanceId(r.name));
        assert.ok(gpus.some((gpu) => a.inputs.dimensions.InstanceId === idOf(gpu)), `${label}: alarm ${a.name} names a GPU node`);
    }
}

// ---------------------------------------------------------------- the presets in stacks/, and one resolved with overrides

export const presets = listPresets();
export const resolved = (preset: string, override: unknown = {}) => resolveCampaign(mergeConfig(loadPreset(preset), override), `stacks/${preset}.yaml`);

/**
 * A node that launches through the fallback step keeps every guarantee of the single instance, in its launch
 * template: terminate on shutdown, IMDSv2 with hop limit 2, an encrypted gp3 root volume that goes with the instance,
 * the node's profile and security group, tags on the instance and its volumes (and the launch's own tag), no market
 * options (the fleet request sets the market). Its step: launch/update/delete through scripts/launch-node.ts, replaced
 * on a new launch key, first choice or market, deleted before its replacement, after the gate; the request names the
 * template's id and latest version, the market, and the run's launch order with one subnet per zone.
 */
export function assertFleetNode(g: Graph, n: GraphNode): void {
    const x = g.campaign.experiment;
    const label = `${g.name}: ${n.node}`;
    const t = n.template!.inputs;
    assert.equal(t.instanceInitiatedShutdownBehavior, "terminate", `${label}: shutdown behaviour`);
    assert.deepEqual(t.metadataOptions, { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 2, instanceMetadataTags: "disabled" }, `${label}: IMDSv2`);
    assert.deepEqual(t.blockDeviceMappings, [{ deviceName: "/dev/sda1", ebs: { volumeType: "gp3", volumeSize: x.compute.rootVolumeGb, encrypted: "true", deleteOnTermination: "true" } }], `${label}: the AMI's root device, encrypted gp3`);
    assert.equal(t.instanceMarketOptions, undefined, `${label}: the fleet request sets the market, not the template`);
    assert.equal(t.imageId, "ami-0123456789abcdef0", `${label}: the AMI from the SSM parameter`);
    assert.deepEqual(t.iamInstanceProfile, { name: `${n.node}-profile` }, `${label}: the node's profile`);
    assert.deepEqual(t.vpcSecurityGroupIds, [`${n.node}-sg-id`], `${label}: the node's security group`);
    const specs = t.tagSpecifications as Array<{ resourceType: string; tags: Record<string, string> }>;
    assert.deepEqual(specs.map((sp) => sp.resourceType).sort(), ["instance", "volume"], `${label}: tags on the instance and its volumes`);
    const launch = n.launched.inputs;
    const request = JSON.parse(launch.environment.CAMPAIGN_LAUNCH);
    for (const sp of specs) {
        for (const key of ["campaign", "run", "stack", "role"]) assert.ok(sp.tags[key], `${label}: ${sp.resourceType} tag ${key}`);
        assert.equal(sp.tags["campaign-launch"], `${n.node}/${request.launchKey}`, `${label}: ${sp.resourceType} carries the launch's tag`);
    }
    assert.deepEqual([launch.create, launch.update, launch.delete], ["create", "update", "delete"].map((v) => `npx tsx scripts/launch-node.ts ${v}`), `${label}: the launch step's commands`);
    const opts = g.decls.find((d) => d.name === n.launched.name)!.opts;
    assert.equal(opts.deleteBeforeReplace, true, `${label}: the old node is terminated before a new one launches`);
    const run = g.campaign.runs.find((r) => n.node === `${g.name}-run-${r.name}-node`)!;
    assert.ok(run, `${label}: the node of no run`);
    assert.deepEqual(launch.triggers, [request.launchKey, run.instanceType, x.compute.market], `${label}: replaced on a new launch key, first choice or market`);
    assert.equal(request.node, n.node);
    assert.equal(request.region, x.region);
    assert.equal(request.market, x.compute.market);
    assert.equal(request.launchTemplateId, `${n.node}-template-id`);
    assert.equal(launch.environment.AWS_REGION, x.region, `${label}: the step runs in the campaign's region`);
    const zones = x.compute.availabilityZones ?? (x.compute.availabilityZone ? [x.compute.availabilityZone] : []);
    const types = [run.instanceType, ...(x.compute.fallbackInstanceTypes ?? []).filter((t2) => t2 !== run.instanceType)];
    const expected = x.compute.subnetId
        ? types.map((instanceType) => ({ instanceType, subnetId: x.compute.subnetId, zone: "us-east-1b" }))
        : types.flatMap((instanceType) => zones.map((zone) => ({ instanceType, subnetId: `subnet-default-${zone}`, zone })));
    assert.deepEqual(request.candidates, expected, `${label}: the launch order, one subnet per zone`);
    assert.ok(request.alternatives.length >= 3, `${label}: the failure message has alternatives`);
}
