// npm run plan -- --stack <name> [--json] [--compare] [--calibrate-from <stack | file.json>]
// The plan a person reads before paying, with no AWS account and no Pulumi CLI: a stack's
// Pulumi.<name>.yaml, or a preset in stacks/ by its file name. --calibrate-from replaces the assumed MFU and setup
// time with those an earlier campaign measured, as its report recorded them (campaign-report-<stack>.json beside
// `npm run campaign -- report`'s HTML, or a rehearsal's .rehearsal/<stack>/report.json).
import * as fs from "node:fs";
import * as path from "node:path";
import { resolveCampaign } from "../components/campaign/resolve";
import { measuredFigures, type MeasuredFigures } from "../components/plan/calibration";
import { buildPlan, renderPlan } from "../components/plan/plan";
import { compareInstances, renderComparison } from "../components/plan/compare";
import { composeExperiment, resolveStack } from "../components/config/presets";
import { ConfigError } from "../components/config/problems";

const usage =
    "usage: npm run plan -- --stack <name> [--json] [--compare] [--calibrate-from <stack | file.json>]\n  <name>: a stack with a Pulumi.<name>.yaml, or a preset in stacks/ (its file name without .yaml)\n" +
    "  --compare: every catalog GPU type that fits each run, with hours and total cost, cheapest first\n" +
    "  --calibrate-from: the MFU and setup time an earlier campaign measured (its report's .json) instead of the assumed ones";

export function parsePlanArgs(argv: readonly string[]): { stack: string; json: boolean; compare: boolean; calibrateFrom?: string } {
    let stack: string | undefined;
    let json = false;
    let compare = false;
    let calibrateFrom: string | undefined;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === "--json") json = true;
        else if (arg === "--compare") compare = true;
        else if (arg === "--calibrate-from") {
            calibrateFrom = argv[++i];
            if (!calibrateFrom || calibrateFrom.startsWith("-")) throw new Error(`--calibrate-from needs a stack name or a report's .json file\n${usage}`);
        }
        else if (arg === "--stack" || arg === "-s") {
            stack = argv[++i];
            if (!stack || stack.startsWith("-")) throw new Error(`--stack needs a name\n${usage}`);
        } else if (arg.startsWith("--stack=")) stack = arg.slice("--stack=".length);
        else if (arg === "--help" || arg === "-h") throw new Error(usage);
        else throw new Error(`unknown argument ${JSON.stringify(arg)}\n${usage}`);
    }
    if (!stack) throw new Error(`--stack is required\n${usage}`);
    return { stack, json, compare, ...(calibrateFrom ? { calibrateFrom } : {}) };
}

/** The measured figures of an earlier campaign: a report's .json, or the newest report of that stack found here. */
export function loadMeasuredFigures(from: string, cwd = process.cwd()): { measured: MeasuredFigures; label: string } {
    const candidates = from.endsWith(".json") ? [from] : [`campaign-report-${from}.json`, path.join(".rehearsal", from, "report.json")];
    const file = candidates.find((c) => fs.existsSync(path.resolve(cwd, c)));
    if (!file) {
        throw new Error(
            `--calibrate-from ${from}: no measured figures at ${candidates.join(" or ")}; write them with npm run campaign -- report --stack ${from} ` +
                "(or rehearse it: npm run rehearse -- --stack <name>), or give the report's .json file",
        );
    }
    let json: unknown;
    try {
        json = JSON.parse(fs.readFileSync(path.resolve(cwd, file), "utf8"));
    } catch (e) {
        throw new Error(`--calibrate-from ${from}: ${file} is not valid JSON (${(e as Error).message})`);
    }
    const parsed = measuredFigures.safeParse(json);
    if (!parsed.success) throw new Error(`--calibrate-from ${from}: ${file} is not a report's measured figures: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    return { measured: parsed.data, label: `campaign ${parsed.data.campaign} (${file}, ${parsed.data.generatedAt})` };
}

function main(): number {
    let args;
    try {
        args = parsePlanArgs(process.argv.slice(2));
    } catch (e) {
        console.error((e as Error).message);
        return 2;
    }
    try {
        const { settings, source } = resolveStack(args.stack);
        const campaign = resolveCampaign(composeExperiment(settings), source);
        if (args.compare) {
            const comparison = compareInstances(campaign);
            console.log(args.json ? JSON.stringify({ source, ...comparison }, null, 2) : renderComparison(comparison, source));
            return 0;
        }
        const plan = buildPlan(campaign, args.calibrateFrom ? loadMeasuredFigures(args.calibrateFrom) : undefined);
        console.log(args.json ? JSON.stringify({ source, ...plan }, null, 2) : renderPlan(plan, source));
        return 0;
    } catch (e) {
        console.error(e instanceof ConfigError ? e.message : `plan: ${(e as Error).message}`);
        return 1;
    }
}

if (require.main === module) process.exitCode = main();
