// The campaign report's S3 reads (components/report/ renders it): each run's attempts under runs/<campaign>/<run>/
// metrics/ (<attempt>.jsonl and, once that node ended, <attempt>.status.json), the live status.json for the attempt
// still running, and the campaign's objects for the artifacts table. Used by `campaign report` and the rehearsal;
// `campaign watch` draws each run's loss so far as a sparkline from the same reads.
import * as fs from "node:fs";
import * as path from "node:path";
import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { status as statusSchema, type Status } from "../../components/campaign/jobSpec";
import { campaignPrefix, datasetPrefix, runKeys } from "../../components/campaign/layout";
import type { ResolvedCampaign } from "../../components/campaign/types";
import type { Plan } from "../../components/plan/plan";
import { mergeAttempts, type AttemptInput, type RunHistory } from "../../components/report/history";
import { measuredFigures } from "../../components/report/figures";
import { renderReportHtml, reportFigures, type ReportInput } from "../../components/report/html";
import { sparkline } from "../../components/report/sparkline";
import { readStatus, readText } from "./s3Read";

export async function listObjects(client: S3Client, bucket: string, prefix: string): Promise<Array<{ key: string; size: number }>> {
    const out: Array<{ key: string; size: number }> = [];
    let token: string | undefined;
    do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0 });
        token = page.NextContinuationToken;
    } while (token);
    return out;
}

function parseStatus(body: string | undefined): Status | null {
    if (body === undefined) return null;
    try {
        const parsed = statusSchema.safeParse(JSON.parse(body));
        return parsed.success ? parsed.data : null;
    } catch {
        return null;
    }
}

/** One run's attempts, merged; the newest attempt without a final status gets the live status.json. */
export async function readRunHistory(client: S3Client, bucket: string, campaign: string, run: string): Promise<RunHistory> {
    const prefix = runKeys(campaign, run).metrics;
    const ids = new Set<string>();
    for (const o of await listObjects(client, bucket, prefix)) {
        const m = /^(.+?)\.(jsonl|status\.json)$/.exec(o.key.slice(prefix.length));
        if (m && !m[1]!.includes("/")) ids.add(m[1]!);
    }
    const attempts: AttemptInput[] = await Promise.all(
        [...ids].sort().map(async (id) => ({
            id,
            history: (await readText(client, bucket, `${prefix}${id}.jsonl`)) ?? "",
            status: parseStatus(await readText(client, bucket, `${prefix}${id}.status.json`)),
        })),
    );
    const last = attempts.at(-1);
    if (last && last.status === null) {
        const live = (await readStatus(client, bucket, campaign, run)).status;
        attempts[attempts.length - 1] = { ...last, status: live };
    }
    return mergeAttempts(attempts);
}

export async function readReportInput(
    client: S3Client,
    bucket: string,
    campaign: ResolvedCampaign,
    plan: Plan,
    source: string,
    notes: readonly string[] = [],
): Promise<ReportInput> {
    const name = campaign.experiment.name;
    const runs = await Promise.all(campaign.runs.map(async (r) => ({ run: r.name, history: await readRunHistory(client, bucket, name, r.name) })));
    const objects = [
        ...(await listObjects(client, bucket, datasetPrefix(campaign.prepSpec.prepHash))),
        ...(await listObjects(client, bucket, "models/")),
        ...(await listObjects(client, bucket, campaignPrefix(name))),
    ];
    return { campaign, plan, source, bucket, runs, objects, generatedAt: new Date(), notes };
}

/** Where the measured figures go beside a report: report.html -> report.json (read by `npm run plan -- --calibrate-from`). */
export function measuredFiguresFile(reportFile: string): string {
    return reportFile.replace(/\.html?$/i, "") + ".json";
}

/** Writes the report, and its measured figures beside it as JSON; returns the report's absolute path. */
export function writeReport(input: ReportInput, file: string): string {
    const target = path.resolve(file);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, renderReportHtml(input));
    const figures = measuredFigures(input.campaign, input.source, input.generatedAt, reportFigures(input));
    fs.writeFileSync(measuredFiguresFile(target), JSON.stringify(figures, null, 2) + "\n");
    return target;
}

/** `campaign watch`: each run's training loss so far as a sparkline, from the same merged history as the report. */
export async function lossSparklines(client: S3Client, bucket: string, campaign: ResolvedCampaign, width = 40): Promise<string> {
    const width0 = Math.max(...campaign.runs.map((r) => r.name.length));
    const lines = await Promise.all(
        campaign.runs.map(async (r) => {
            const losses = (await readRunHistory(client, bucket, campaign.experiment.name, r.name)).train.flatMap((t) => (t.loss === null ? [] : [t.loss]));
            if (!losses.length) return undefined;
            const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));
            return `  ${r.name.padEnd(width0)}  loss ${sparkline(losses, width)}  ${fmt(losses[0]!)} -> ${fmt(losses[losses.length - 1]!)} (${losses.length} logged steps)`;
        }),
    );
    return lines.filter((l): l is string => l !== undefined).join("\n");
}
