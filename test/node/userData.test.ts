// The node user data (components/node/userData.ts): every variant renders as #cloud-config that
// `cloud-init schema` accepts, stays within EC2's 16 KB, carries SSM parameter names and never a value,
// and installs the runner either inline (checked byte for byte) or by a download checked by sha256.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import YAML from "yaml";
import { runnerEnv, UNIT_STOP_TIMEOUT_SECONDS, type RunnerSettings } from "../../components/node/runnerSettings";
import {
    RUNNER_ENV_PATH,
    RUNNER_FETCH_PATH,
    RUNNER_PATH,
    RUNNER_UNIT,
    STOP_POST_COMMAND,
    USER_DATA_LIMIT_BYTES,
    CLOUDWATCH_AGENT_CONFIG_PATH,
    DOCKER_IF_MISSING,
    LOCAL_NVME_SERVICE,
    hardCapMinutes,
    loadRunnerScript,
    renderNodeUserData,
    renderRunnerEnvFile,
    renderUserData,
    runnerObject,
    runnerSha256,
    type RenderedUserData,
} from "../../components/node/userData";

const BUCKET = "campaign-123456789012-qwen";
const run = (name: string) => `s3://${BUCKET}/runs/qwen-sweep/${name}/`;
const HF_TOKEN_VALUE = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";

const train: RunnerSettings = {
    role: "train",
    campaign: "qwen-sweep",
    run: "lr-1e-5",
    region: "us-east-1",
    specUri: `${run("lr-1e-5")}spec.json`,
    statusUri: `${run("lr-1e-5")}status.json`,
    logsUri: `${run("lr-1e-5")}logs/`,
    outputUri: `${run("lr-1e-5")}output/`,
    checkpointsUri: `${run("lr-1e-5")}checkpoints/`,
    dataUri: `s3://${BUCKET}/datasets/0123456789abcdef/`,
    modelUri: `s3://${BUCKET}/models/Qwen/Qwen2.5-7B/main/`,
    jobMode: "docker",
    image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign-trainer:abc",
    maxRuntimeSeconds: 36_000,
    gpuIdleMinutes: 20,
    gpuIdleThreshold: 5,
    keepCheckpoints: 2,
    secretParameters: { HF_TOKEN: "/campaign/qwen-sweep/hf-token", WANDB_API_KEY: "/campaign/qwen-sweep/wandb-key" },
};

const prep: RunnerSettings = {
    ...train,
    role: "prep",
    run: "prep",
    specUri: `${run("prep")}spec.json`,
    statusUri: `${run("prep")}status.json`,
    logsUri: `${run("prep")}logs/`,
    outputUri: `s3://${BUCKET}/datasets/0123456789abcdef/`,
    checkpointsUri: undefined,
    dataUri: undefined,
    modelUri: undefined,
    inputUri: `s3://${BUCKET}/inputs/${"a".repeat(64)}/train.jsonl`,
    modelOutputUri: `s3://${BUCKET}/models/`,
    image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/campaign-prep:abc",
    maxRuntimeSeconds: 7_200,
    gpuIdleMinutes: 0,
};

const processTrain: RunnerSettings = { ...train, jobMode: "process", image: undefined, command: "python3 -m trainer --spec /job/spec.json" };

const realRunner = loadRunnerScript();
const smallRunner = "#!/usr/bin/env bash\nset -euo pipefail\necho 'a small runner'\n";
const runnerUri = (s: RunnerSettings) => runnerObject(s, realRunner).uri;

interface CloudConfig {
    write_files: Array<{ path: string; content: string; permissions: string; owner: string; encoding?: string }>;
    runcmd: Array<string | string[]>;
}

function parse(rendered: RenderedUserData): CloudConfig {
    assert.ok(rendered.text.startsWith("#cloud-config\n"), "starts with #cloud-config");
    assert.equal(rendered.bytes, Buffer.byteLength(rendered.text, "utf8"));
    assert.ok(rendered.bytes <= USER_DATA_LIMIT_BYTES, `${rendered.bytes} bytes fit EC2's limit`);
    return YAML.parse(rendered.text) as CloudConfig;
}

function file(config: CloudConfig, path: string) {
    return config.write_files.find((f) => f.path === path);
}

const dir = mkdtempSync(join(tmpdir(), "campaign-userdata-"));

function cloudInitSchema(name: string, text: string): void {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(path, text);
    const res = spawnSync("cloud-init", ["schema", "--config-file", path], { encoding: "utf8" });
    assert.equal(res.status, 0, `cloud-init schema ${name}: ${res.stdout}${res.stderr}`);
}

const variants: Array<[string, RunnerSettings, string, Parameters<typeof renderUserData>[2], "inline" | "fetch"]> = [
    ["train-docker-small", train, smallRunner, {}, "inline"],
    ["train-docker-large", train, realRunner, { runnerS3Uri: runnerUri(train) }, "fetch"],
    ["train-process-small", processTrain, smallRunner, {}, "inline"],
    ["train-process-large", processTrain, realRunner, { runnerS3Uri: runnerUri(processTrain) }, "fetch"],
    ["prep-docker-small", prep, smallRunner, {}, "inline"],
    ["prep-docker-large", prep, realRunner, { runnerS3Uri: runnerUri(prep) }, "fetch"],
];

for (const [name, settings, script, options, variant] of variants) {
    test(`user data ${name}: ${variant} variant, valid cloud-config, no secret, the right files`, () => {
        const rendered = renderUserData(settings, script, options);
        assert.equal(rendered.variant, variant);
        assert.equal(rendered.runnerSha256, runnerSha256(script));
        const config = parse(rendered);
        cloudInitSchema(name, rendered.text);

        const env = file(config, RUNNER_ENV_PATH)!;
        assert.equal(env.permissions, "0600");
        assert.match(env.content, new RegExp(`^CAMPAIGN_ROLE='${settings.role}'$`, "m"));
        assert.match(env.content, /^CAMPAIGN_SECRET_PARAMETERS='HF_TOKEN=\/campaign\/qwen-sweep\/hf-token,WANDB_API_KEY=\/campaign\/qwen-sweep\/wandb-key'$/m);
        assert.ok(!rendered.text.includes(HF_TOKEN_VALUE));
        assert.doesNotMatch(rendered.text, /AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|hf_[A-Za-z0-9]{20,}/);

        const unit = file(config, `/etc/systemd/system/${RUNNER_UNIT}`)!.content;
        assert.match(unit, /^ExecStart=\/opt\/campaign\/run-job\.sh$/m);
        // The DLAMI mounts its NVMe from a service, not a mount unit: the runner is ordered after that service.
        const unitList = (key: string) => unit.split("\n").filter((l) => l.startsWith(`${key}=`)).flatMap((l) => l.slice(key.length + 1).split(" "));
        assert.equal(LOCAL_NVME_SERVICE, "dlami-nvme.service");
        assert.ok(unitList("Wants").includes(LOCAL_NVME_SERVICE) && unitList("After").includes(LOCAL_NVME_SERVICE), unit);
        assert.ok(unitList("RequiresMountsFor").length === 1, "a work dir on a declared mount still waits for it");
        assert.ok(unit.split("\n").includes(`ExecStopPost=/bin/sh -c '${STOP_POST_COMMAND}'`), "the node powers off whenever the runner stops");
        assert.match(unit, new RegExp(`^TimeoutStopSec=${UNIT_STOP_TIMEOUT_SECONDS}$`, "m"), "the runner's exit path fits in the unit's stop timeout");
        assert.equal(runnerEnv(settings).CAMPAIGN_UNIT_STOP_SECONDS, String(UNIT_STOP_TIMEOUT_SECONDS), "the runner is told the same timeout");
        const cap = hardCapMinutes(settings);
        assert.match(unit, new RegExp(`^ExecStartPre=-/usr/sbin/shutdown -h \\+${cap}$`, "m"));
        assert.deepEqual(config.runcmd[0], ["shutdown", "-h", `+${cap}`], "the backstop is armed first");
        assert.deepEqual(config.runcmd.at(-1), ["systemctl", "enable", "--now", "--no-block", RUNNER_UNIT]);

        const gpu = settings.role === "train";
        assert.equal(file(config, CLOUDWATCH_AGENT_CONFIG_PATH) !== undefined, gpu, "GPU nodes get the CloudWatch agent config");
        assert.ok(!JSON.stringify(config.runcmd).includes("amazon-cloudwatch-agent"), "the agent is not started at boot: the runner starts it with the job");
        const installsDocker = !gpu && settings.jobMode === "docker";
        assert.deepEqual(config.runcmd.slice(1), [
            ...(installsDocker ? [["sh", "-c", DOCKER_IF_MISSING]] : []),
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "--no-block", RUNNER_UNIT],
        ], "prep nodes in docker mode install Docker when the AMI lacks it");
        const agentSetting = /^CAMPAIGN_METRICS_AGENT_CONFIG='(.*)'$/m.exec(env.content);
        assert.equal(agentSetting?.[1], gpu ? CLOUDWATCH_AGENT_CONFIG_PATH : undefined, "GPU nodes tell the runner where the agent config is; prep nodes do not");
        if (gpu) {
            const agent = JSON.parse(file(config, CLOUDWATCH_AGENT_CONFIG_PATH)!.content);
            assert.deepEqual(agent.metrics.append_dimensions, { InstanceId: "${aws:InstanceId}" });
            assert.ok(agent.metrics.metrics_collected.nvidia_gpu.measurement.includes("utilization_gpu"));
            assert.ok(agent.metrics.metrics_collected.nvidia_gpu.measurement.includes("memory_used"));
        }

        if (variant === "inline") {
            const runner = file(config, RUNNER_PATH)!;
            assert.equal(runner.encoding, "gz+b64");
            assert.equal(runner.permissions, "0755");
            assert.equal(gunzipSync(Buffer.from(runner.content, "base64")).toString("utf8"), script, "the inline runner is the script, byte for byte");
            assert.equal(file(config, RUNNER_FETCH_PATH), undefined);
        } else {
            assert.equal(file(config, RUNNER_PATH), undefined, "the large runner is not inline");
            const fetch = file(config, RUNNER_FETCH_PATH)!;
            assert.match(fetch.content, new RegExp(`^want=${runnerSha256(script)}$`, "m"));
            assert.ok(fetch.content.includes(options!.runnerS3Uri!));
            assert.match(unit, /^ExecStartPre=\/opt\/campaign\/fetch-runner\.sh$/m);
        }
    });
}

test("the agent setting follows the node, not the settings passed in: GPU nodes get the written config, CPU nodes none", () => {
    const envOf = (rendered: RenderedUserData) => file(parse(rendered), RUNNER_ENV_PATH)!.content;
    const stray = "/somewhere/else.json";
    assert.match(envOf(renderUserData({ ...train, metricsAgentConfig: stray }, smallRunner)), new RegExp(`^CAMPAIGN_METRICS_AGENT_CONFIG='${CLOUDWATCH_AGENT_CONFIG_PATH}'$`, "m"));
    assert.doesNotMatch(envOf(renderUserData({ ...prep, metricsAgentConfig: stray }, smallRunner)), /CAMPAIGN_METRICS_AGENT_CONFIG/);
    assert.doesNotMatch(envOf(renderUserData(train, smallRunner, { gpu: false })), /CAMPAIGN_METRICS_AGENT_CONFIG/);
    const node = (settings: RunnerSettings, gpu: boolean) => YAML.parse(renderNodeUserData(settings, { gpu })) as CloudConfig;
    const trainNode = node(train, true);
    assert.match(file(trainNode, RUNNER_ENV_PATH)!.content, /^CAMPAIGN_METRICS_AGENT_CONFIG='/m);
    assert.ok(file(trainNode, CLOUDWATCH_AGENT_CONFIG_PATH));
    const prepNode = node(prep, false);
    assert.doesNotMatch(file(prepNode, RUNNER_ENV_PATH)!.content, /CAMPAIGN_METRICS_AGENT_CONFIG/);
    assert.equal(file(prepNode, CLOUDWATCH_AGENT_CONFIG_PATH), undefined);
});

test("the fetch script is shellcheck clean", () => {
    const rendered = renderUserData(train, realRunner, { runnerS3Uri: runnerUri(train) });
    const fetch = file(YAML.parse(rendered.text) as CloudConfig, RUNNER_FETCH_PATH)!;
    const path = join(dir, "fetch-runner.sh");
    writeFileSync(path, fetch.content);
    const res = spawnSync("shellcheck", ["--exclude=SC1091", path], { encoding: "utf8" });
    assert.equal(res.status, 0, res.stdout + res.stderr);
});

test("size limit: the real runner does not fit inline, so auto picks fetch; without a URI it is a clear error", () => {
    assert.equal(renderUserData(train, realRunner, { runnerS3Uri: runnerUri(train) }).variant, "fetch");
    assert.throws(() => renderUserData(train, realRunner), /does not fit in the 16384-byte user data: upload it .* and pass runnerS3Uri/);
    assert.throws(() => renderUserData(train, realRunner, { runnerDelivery: "inline" }), /over EC2's 16384-byte limit/);
    // A runner that gzips to just under the limit stays inline; one just over goes to fetch. Random
    // base64 text compresses to about 3/4, so the size is steered by its length.
    const noise = Buffer.concat(Array.from({ length: 2000 }, (_, i) => createHash("sha256").update(String(i)).digest()));
    const randomScript = (n: number) => `#!/bin/bash\n: '${noise.subarray(0, n).toString("base64")}'\n`;
    let lo = 1000;
    let hi = 60_000;
    while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (renderUserData(train, randomScript(mid), { runnerS3Uri: runnerUri(train) }).variant === "inline") lo = mid;
        else hi = mid;
    }
    const fits = renderUserData(train, randomScript(lo), { runnerS3Uri: runnerUri(train) });
    const over = renderUserData(train, randomScript(hi), { runnerS3Uri: runnerUri(train) });
    assert.equal(fits.variant, "inline");
    assert.ok(fits.bytes <= USER_DATA_LIMIT_BYTES && fits.bytes > USER_DATA_LIMIT_BYTES - 64, `inline up to the limit (${fits.bytes})`);
    assert.equal(over.variant, "fetch");
    assert.ok(over.bytes < 8_000, `the fetch variant is small (${over.bytes} bytes)`);
});

test("secret values are refused; only SSM parameter names are accepted", () => {
    assert.throws(() => renderUserData({ ...train, secretParameters: { HF_TOKEN: HF_TOKEN_VALUE } }, smallRunner), /looks like a Hugging Face token/);
    assert.throws(() => renderUserData({ ...train, secretParameters: { HF_TOKEN: "my token value" } }, smallRunner), /not an SSM parameter name/);
    assert.throws(() => renderUserData({ ...train, secretParameters: { "bad-name": "/p" } }, smallRunner), /not a valid environment variable name/);
    assert.throws(() => renderUserData({ ...train, command: `train --token ${HF_TOKEN_VALUE}` }, smallRunner), /CAMPAIGN_JOB_COMMAND holds what looks like a Hugging Face token/);
    assert.throws(() => renderUserData({ ...train, command: "x AKIAABCDEFGHIJKLMNOP" }, smallRunner), /AWS access key id/);
    assert.throws(() => renderRunnerEnvFile({ ...train, secretParameters: { HF_TOKEN: HF_TOKEN_VALUE } }), /Hugging Face token/);
});

test("bad input gives clear errors", () => {
    assert.throws(() => renderUserData(train, "echo no shebang"), /must start with a #! line/);
    assert.throws(() => renderUserData({ ...train, maxRuntimeSeconds: 0 }, smallRunner), /maxRuntimeSeconds must be positive/);
    assert.throws(() => renderUserData(train, smallRunner, { runnerS3Uri: "https://example.com/run-job.sh" }), /runnerS3Uri must be an s3:\/\/bucket\/key/);
    assert.throws(() => renderUserData(train, smallRunner, { runnerDelivery: "fetch" }), /pass runnerS3Uri/);
});

test("settings file: shell-quoted values source back to the same environment", () => {
    const tricky: RunnerSettings = { ...processTrain, command: `python3 -c 'print("it'"'"'s $HOME \`x\`")'` };
    const path = join(dir, "runner.env");
    writeFileSync(path, renderRunnerEnvFile(tricky));
    const out = execFileSync("bash", ["-c", `set -a; . "${path}"; printf '%s' "$CAMPAIGN_JOB_COMMAND"`], { encoding: "utf8" });
    assert.equal(out, tricky.command);
});

test("renderNodeUserData: the program's renderer fetches the repository's runner from the campaign's prefix", () => {
    const text = renderNodeUserData(train, { gpu: true });
    const obj = runnerObject(train);
    assert.equal(obj.bucket, BUCKET);
    assert.match(obj.key, /^runs\/qwen-sweep\/runner\/run-job-[0-9a-f]{16}\.sh$/);
    assert.equal(obj.sha256, runnerSha256(realRunner));
    assert.ok(text.includes(obj.uri) && text.includes(obj.sha256));
    assert.ok(Buffer.byteLength(text) <= USER_DATA_LIMIT_BYTES);
    cloudInitSchema("node-train", text);
    cloudInitSchema("node-prep", renderNodeUserData(prep, { gpu: false }));
});

test("every preset's nodes render user data that cloud-init accepts and that fits", async () => {
    // The program's own settings builders, so this follows what `pulumi up` renders.
    const { listPresets, composeExperiment } = await import("../../components/config/presets");
    const { resolveCampaign } = await import("../../components/campaign/resolve");
    const { trainRunnerSettings } = await import("../../components/resources/trainingRun");
    const { prepRunnerSettings, dataInput } = await import("../../components/resources/prepStage");
    const root = join(__dirname, "..", "..");
    const presets = listPresets();
    assert.ok(presets.length > 0, "there are presets");
    const secretParameters = { HF_TOKEN: "/campaign/x/hf-token" };
    for (const preset of presets) {
        const campaign = resolveCampaign(composeExperiment({ preset }), `preset ${preset}`);
        const e = campaign.experiment;
        const nodes: Array<[string, RunnerSettings, boolean]> = [
            [
                "prep",
                prepRunnerSettings({ bucket: BUCKET, region: e.region, prepSpec: campaign.prepSpec, input: dataInput(e.data.source, root), maxHours: e.prep.maxHours, image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/prep:x", secretParameters }),
                false,
            ],
            ...campaign.trainSpecs.map((spec): [string, RunnerSettings, boolean] => [
                spec.run,
                trainRunnerSettings({ bucket: BUCKET, region: e.region, spec, maxHours: e.compute.maxHours, gpuIdleMinutes: e.compute.gpuIdleMinutes, gpuIdleThreshold: e.compute.gpuIdleThreshold, image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:x", secretParameters }),
                true,
            ]),
        ];
        for (const [name, settings, gpu] of nodes) {
            const text = renderNodeUserData(settings, { gpu });
            assert.ok(Buffer.byteLength(text) <= USER_DATA_LIMIT_BYTES, `${preset}/${name} fits`);
            cloudInitSchema(`preset-${preset}-${name}`, text);
        }
    }
});

test("the prep node's Docker step installs Docker only when it is missing, and starts it", () => {
    const dir = mkdtempSync(join(tmpdir(), "docker-if-missing-"));
    const calls = join(dir, "calls");
    for (const tool of ["dnf", "systemctl"]) {
        writeFileSync(join(dir, tool), `#!/bin/sh\necho "${tool} $*" >> "${calls}"\n`, { mode: 0o755 });
    }
    const run = (extraPath: string) => spawnSync("/bin/sh", ["-c", DOCKER_IF_MISSING], { env: { PATH: `${extraPath}:${dir}` }, encoding: "utf8" });
    // No docker on PATH (only the recorders and sh's builtins): installed, then enabled and started.
    assert.equal(run("/nonexistent").status, 0);
    assert.deepEqual(readFileSync(calls, "utf8").trim().split("\n"), ["dnf install -y docker", "systemctl enable --now docker"]);
    // Docker present: nothing is done.
    const withDocker = mkdtempSync(join(tmpdir(), "docker-present-"));
    writeFileSync(join(withDocker, "docker"), "#!/bin/sh\n", { mode: 0o755 });
    rmSync(calls);
    assert.equal(run(withDocker).status, 0);
    assert.ok(!existsSync(calls), "no install when docker exists");
});
