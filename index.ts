// The program `pulumi up` runs: config -> campaign -> state read from S3 -> resources -> outputs.
// Everything is in components/program.ts; here are only the outside world's two pieces: the S3 state
// reader and the node user-data renderer.
import * as fs from "node:fs";
import * as path from "node:path";
import { S3CampaignState } from "./components/campaignState";
import type { UserDataRenderer } from "./components/prepStage";
import { program } from "./components/program";

/**
 * The node user data: components/userData.ts renders #cloud-config from the runner's settings and the
 * runner script (scripts/node-runner/run-job.sh). Loaded when a node is rendered, so the program's
 * structure does not depend on it.
 */
const renderUserData: UserDataRenderer = (settings, options) => {
    const file = path.join(__dirname, "components", "userData.ts");
    if (!fs.existsSync(file)) throw new Error("components/userData.ts (the node user-data renderer) is missing");
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require("./components/userData") as { renderNodeUserData?: UserDataRenderer };
    if (typeof mod.renderNodeUserData !== "function") throw new Error("components/userData.ts exports no renderNodeUserData(settings, { gpu })");
    return mod.renderNodeUserData(settings, options);
};

export = program({
    stateReader: (bucket, campaign, region) => S3CampaignState.forRegion(bucket, campaign, region),
    renderUserData,
});
