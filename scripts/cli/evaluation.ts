// Task metrics of a campaign from S3: each run's eval.json beside its base model's (the baseline), and the best
// run by the first metric the config lists. Read the way status.json is read; the table is pure rendering.
import type { S3Client } from "@aws-sdk/client-s3";
import { z } from "zod";
import { baselineOf, baselineOwners } from "../../components/campaign/baseline";
import { baselineEvaluationKeys, evaluationKeys } from "../../components/campaign/layout";
import type { ResolvedCampaign } from "../../components/campaign/types";
import type { EvaluationConfig, EvaluationMetric } from "../../components/config/schema";
import { readText } from "./s3Read";

/** What the CLI reads of eval.json (containers/trainer/evaluate.py writes more). */
export const evalReport = z
    .object({
        run: z.string(),
        model: z.object({ kind: z.enum(["fine-tuned", "base"]), id: z.string() }).loose(),
        split: z.string(),
        rows: z.number().int().min(0),
        counts: z.object({ rows: z.number().int(), scored: z.number().int(), parsed: z.number().int(), unparsed: z.number().int() }).loose(),
        metrics: z.record(z.string(), z.number().nullable()),
    })
    .loose();
export type EvalReport = z.output<typeof evalReport>;

/** An eval.json read from S3: absent (not evaluated yet), read, or there but unreadable (with why). */
export interface EvalRead {
    readonly report: EvalReport | null;
    readonly note?: string;
}

export interface CampaignEvaluation {
    /** One per run, in run order. */
    readonly runs: ReadonlyArray<{ readonly run: string; readonly model: string; readonly read: EvalRead }>;
    /** One per base model evaluated, keyed by model id@revision. */
    readonly baselines: ReadonlyArray<{ readonly model: string; readonly ownerRun: string; readonly read: EvalRead }>;
}

async function readEval(client: S3Client, bucket: string, key: string): Promise<EvalRead> {
    const body = await readText(client, bucket, key);
    if (body === undefined) return { report: null };
    let json: unknown;
    try {
        json = JSON.parse(body);
    } catch {
        return { report: null, note: "eval.json is not valid JSON" };
    }
    const parsed = evalReport.safeParse(json);
    return parsed.success ? { report: parsed.data } : { report: null, note: "eval.json does not have the expected fields" };
}

const modelName = (m: { id: string; revision: string }) => (m.revision === "main" ? m.id : `${m.id}@${m.revision}`);

export async function readEvaluations(client: S3Client, bucket: string, campaign: ResolvedCampaign): Promise<CampaignEvaluation> {
    const name = campaign.experiment.name;
    const runs = await Promise.all(
        campaign.runs.map(async (r) => ({ run: r.name, model: modelName(r.model), read: await readEval(client, bucket, evaluationKeys(name, r.name).metrics) })),
    );
    const baselines = campaign.experiment.evaluation?.baseline
        ? await Promise.all(
              baselineOwners(campaign.runs).map(async (o) => ({ model: modelName(o.model), ownerRun: o.run, read: await readEval(client, bucket, baselineEvaluationKeys(name, o.run).metrics) })),
          )
        : [];
    return { runs, baselines };
}

// ---------------------------------------------------------------- rendering

/** The value a configured metric shows as (rouge: its ROUGE-L F-measure). */
export function metricKey(metric: EvaluationMetric): string {
    return metric === "rouge" ? "rougeL" : metric;
}

export function higherIsBetter(metric: EvaluationMetric): boolean {
    return metric !== "mae" && metric !== "rmse";
}

/** The metric runs are ranked by: the first one the config lists. */
export function primaryMetric(evaluation: EvaluationConfig): EvaluationMetric {
    return evaluation.metrics[0];
}

function format(key: string, value: number | null | undefined): string {
    if (value === null || value === undefined) return "-";
    return key === "bleu" ? value.toFixed(2) : value.toFixed(4);
}

/** The best run by the primary metric among runs that have a value for it; undefined when none has. */
export function bestRun(evaluation: EvaluationConfig, result: CampaignEvaluation): { run: string; value: number } | undefined {
    const metric = primaryMetric(evaluation);
    const key = metricKey(metric);
    let best: { run: string; value: number } | undefined;
    for (const r of result.runs) {
        const value = r.read.report?.metrics[key];
        if (value === null || value === undefined) continue;
        if (!best || (higherIsBetter(metric) ? value > best.value : value < best.value)) best = { run: r.run, value };
    }
    return best;
}

/** `campaign status` and the rehearsal's report: task metrics per run, the baselines, the best run. */
export function renderEvaluation(campaign: ResolvedCampaign, result: CampaignEvaluation): string {
    const evaluation = campaign.experiment.evaluation;
    if (!evaluation) return "Task metrics: none configured (add evaluation to the experiment config).";
    const metric = primaryMetric(evaluation);
    const keys = evaluation.metrics.map(metricKey);
    const primary = metricKey(metric);
    const header = ["model", "rows", ...keys, `${primary} vs base`];
    const rows: string[][] = [header];
    const baselineValue = (run: string): number | null | undefined => {
        const owner = baselineOf(campaign.runs, run);
        return result.baselines.find((b) => b.ownerRun === owner?.run)?.read.report?.metrics[primary];
    };
    const cells = (read: EvalRead): string[] => {
        if (!read.report) return keys.map(() => "-");
        return keys.map((k) => format(k, read.report?.metrics[k]));
    };
    const rowsOf = (read: EvalRead) => (read.report ? `${read.report.counts.parsed}/${read.report.rows} parsed` : read.note ? `unreadable: ${read.note}` : "not evaluated yet");
    for (const b of result.baselines) rows.push([`base ${b.model}`, rowsOf(b.read), ...cells(b.read), ""]);
    for (const r of result.runs) {
        const value = r.read.report?.metrics[primary];
        const base = baselineValue(r.run);
        const delta = value !== null && value !== undefined && base !== null && base !== undefined ? `${value - base >= 0 ? "+" : ""}${format(primary, value - base)}` : "-";
        rows.push([`run ${r.run}`, rowsOf(r.read), ...cells(r.read), delta]);
    }
    const widths = header.map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    const table = rows.map((row) => row.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd());
    const best = bestRun(evaluation, result);
    const direction = higherIsBetter(metric) ? "highest" : "lowest";
    const verdict = best
        ? `best run: ${best.run} (${primary} ${format(primary, best.value)}, the ${direction} of ${result.runs.filter((r) => r.read.report?.metrics[primary] != null).length} evaluated)`
        : `best run: none yet (no run has ${primary})`;
    return [`Task metrics on the ${evaluation.split} split (${evaluation.answer.shape} answers; unparsed answers count as wrong):`, ...table.map((l) => `  ${l}`), `  ${verdict}`].join("\n");
}
