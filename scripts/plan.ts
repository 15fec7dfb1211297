// npm run plan -- --stack <name> [--json] [--compare]
// The plan a person reads before paying, with no AWS account and no Pulumi CLI: a stack's
// Pulumi.<name>.yaml, or a preset in stacks/ by its file name.
import { resolveCampaign } from "../components/campaign/resolve";
import { buildPlan, renderPlan } from "../components/plan/plan";
import { compareInstances, renderComparison } from "../components/plan/compare";
import { composeExperiment, resolveStack } from "../components/config/presets";
import { ConfigError } from "../components/config/problems";

const usage =
    "usage: npm run plan -- --stack <name> [--json] [--compare]\n  <name>: a stack with a Pulumi.<name>.yaml, or a preset in stacks/ (its file name without .yaml)\n" +
    "  --compare: every catalog GPU type that fits each run, with hours and total cost, cheapest first";

export function parsePlanArgs(argv: readonly string[]): { stack: string; json: boolean; compare: boolean } {
    let stack: string | undefined;
    let json = false;
    let compare = false;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === "--json") json = true;
        else if (arg === "--compare") compare = true;
        else if (arg === "--stack" || arg === "-s") {
            stack = argv[++i];
            if (!stack || stack.startsWith("-")) throw new Error(`--stack needs a name\n${usage}`);
        } else if (arg.startsWith("--stack=")) stack = arg.slice("--stack=".length);
        else if (arg === "--help" || arg === "-h") throw new Error(usage);
        else throw new Error(`unknown argument ${JSON.stringify(arg)}\n${usage}`);
    }
    if (!stack) throw new Error(`--stack is required\n${usage}`);
    return { stack, json, compare };
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
        const plan = buildPlan(campaign);
        console.log(args.json ? JSON.stringify({ source, ...plan }, null, 2) : renderPlan(plan, source));
        return 0;
    } catch (e) {
        console.error(e instanceof ConfigError ? e.message : `plan: ${(e as Error).message}`);
        return 1;
    }
}

if (require.main === module) process.exitCode = main();
