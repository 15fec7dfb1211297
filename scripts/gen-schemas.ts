// Writes containers/schemas/ from the one TypeScript source of each contract: the job spec, progress and
// status schemas (components/campaign/jobSpec.ts), the training history's line (metricsHistory.ts), the manifest schema and contract.json with the phases,
// exit codes, job paths and marker names (components/campaign/contract.ts). The Python jobs and the node
// runner read these files. `--check` exits 1 when a committed file is stale (npm test runs it).
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { contractJson, controlRequest, manifest } from "../components/campaign/contract";
import { jobSpec, progress, status } from "../components/campaign/jobSpec";
import { metricsRecord } from "../components/campaign/metricsHistory";

export const schemaDir = path.join(__dirname, "..", "containers", "schemas");

export function renderSchemas(): Record<string, string> {
    const render = (schema: z.ZodType, title: string) =>
        JSON.stringify({ title, ...z.toJSONSchema(schema, { io: "output", target: "draft-2020-12" }) }, null, 2) + "\n";
    return {
        "job-spec.schema.json": render(jobSpec, "campaign job spec"),
        "progress.schema.json": render(progress, "campaign job progress file"),
        "status.schema.json": render(status, "campaign run status.json"),
        "manifest.schema.json": render(manifest, "campaign prepared dataset manifest.json"),
        "control.schema.json": render(controlRequest, "campaign control object (control.json): a graceful stop or restart"),
        "metrics-history.schema.json": render(metricsRecord, "campaign training history: one line of metrics.jsonl"),
        "contract.json": JSON.stringify({ title: "campaign constants shared by TypeScript, the node runner and the jobs", ...contractJson() }, null, 2) + "\n",
    };
}

function main(): void {
    const check = process.argv.includes("--check");
    let stale = 0;
    for (const [file, text] of Object.entries(renderSchemas())) {
        const target = path.join(schemaDir, file);
        const current = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
        if (current === text) continue;
        if (check) {
            console.error(`${path.relative(process.cwd(), target)} is stale: run npx tsx scripts/gen-schemas.ts`);
            stale++;
        } else {
            fs.mkdirSync(schemaDir, { recursive: true });
            fs.writeFileSync(target, text);
            console.log(`wrote ${path.relative(process.cwd(), target)}`);
        }
    }
    process.exit(stale ? 1 : 0);
}

if (require.main === module) main();
