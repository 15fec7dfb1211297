// campaign preflight's launch order against the local emulator (moto_server's offerings data: p4de.24xlarge is
// offered in us-east-1b and us-east-1c, not in us-east-1a), with EC2 quotas answered as given.
//
//   node --import tsx --test test/cli/preflightFallback.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { resolveCampaign } from "../../components/campaign/resolve";
import { loadPreset, mergeConfig } from "../../components/config/presets";
import { runPreflight, sdkReads, type AwsReads } from "../../scripts/cli/preflight";
import { fakeAwsEnv, startMoto, type Moto } from "../../scripts/local/moto";

const REGION = "us-east-1";
const credentials = { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY };

let moto: Moto;
before(async () => {
    moto = await startMoto();
});
after(async () => {
    await moto?.stop();
});

function reads(): AwsReads {
    const sdk = sdkReads({ region: REGION, endpoint: moto.endpoint, credentials });
    return { ...sdk, quota: async () => 10_000 };
}

test("the first zone does not offer the type: preflight warns that the launch moves on, and names where it starts with the config that starts there", async () => {
    const campaign = resolveCampaign(mergeConfig(loadPreset("socsci210-qwen14b-qlora"), { compute: { availabilityZones: ["us-east-1a", "us-east-1b"], fallbackInstanceTypes: ["p5.48xlarge"] } } as never));
    const offered = await reads().offeredZones("p4de.24xlarge");
    assert.ok(!offered.includes("us-east-1a") && offered.includes("us-east-1b"), `the emulator's offerings changed: ${offered.join(", ")}`);

    const results = await runPreflight(campaign, "socsci210-qwen14b-qlora", reads());
    const launch = results.find((r) => r.check === "launch main");
    assert.ok(launch, results.map((r) => r.check).join(", "));
    assert.equal(launch.status, "warn", "the fleet request answers the first candidate with an error and moves on");
    assert.match(launch.detail, /^the first choice p4de\.24xlarge in us-east-1a cannot launch \(not offered\); the launch moves on through the order, and the first that is offered is p4de\.24xlarge in us-east-1b: .*p5\.48xlarge in us-east-1a/);
    assert.equal(launch.fix, "to start there (and be priced as it), set compute.availabilityZones: [us-east-1b, us-east-1a]");

    // One zone and no fallback type: one candidate, no launch-order check (the offerings check covers it).
    const single = resolveCampaign(mergeConfig(loadPreset("socsci210-qwen14b-qlora"), { compute: { availabilityZone: "us-east-1b" } } as never));
    assert.ok(!(await runPreflight(single, "socsci210-qwen14b-qlora", reads())).some((r) => r.check.startsWith("launch ")));
});
