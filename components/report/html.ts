// The campaign report: one self-contained HTML file (inline CSS and SVG; no script, font or request), readable in
// any browser while the campaign runs or long after its nodes are gone. The log-scale and smoothing switches are
// CSS-only checkboxes. Every string from a config or from S3 is escaped (escape.ts).
import type { ResolvedCampaign } from "../campaign/types";
import type { Plan } from "../plan/plan";
import { formatNumber, lineChart, type Series } from "./chart";
import { escapeHtml as e } from "./escape";
import { artifactGroups, runFigures, winner, type RunFigures } from "./figures";
import type { RunHistory } from "./history";

/** Distinct on white and for the common colour-vision deficiencies (Okabe-Ito), in run order. */
export const RUN_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

export interface ReportInput {
    readonly campaign: ResolvedCampaign;
    readonly plan: Plan;
    /** The stack file the campaign came from. */
    readonly source: string;
    readonly bucket: string;
    readonly runs: ReadonlyArray<{ readonly run: string; readonly history: RunHistory }>;
    readonly objects: ReadonlyArray<{ readonly key: string; readonly size: number }>;
    readonly generatedAt: Date;
    /** Said at the top: e.g. the rehearsal's stand-ins. */
    readonly notes?: readonly string[];
}

/** The smoothing weight of the training-loss chart's bold line (the raw values are drawn faint beneath). */
export const LOSS_SMOOTHING = 0.6;

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1320px;padding:0 16px;color:#1b1b1b}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#666}.win{font-weight:600}
.legend span{display:inline-block;margin-right:16px}.legend i{display:inline-block;width:14px;height:4px;margin-right:6px;vertical-align:middle}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(620px,1fr));gap:8px}
svg.chart{max-width:100%;height:auto}svg .grid{stroke:#eee}svg .tick,svg .axis{font-size:11px;fill:#555}svg .title{font-size:13px;font-weight:600}
svg polyline{stroke-width:1.8}svg polyline.raw{stroke-width:1;opacity:.35}svg polyline.smoothed{stroke-width:2}
.log-only{display:none}#log:checked~.charts .log-only{display:block}#log:checked~.charts .linear-only{display:none}
#smooth:not(:checked)~.charts polyline.smoothed{display:none}#smooth:not(:checked)~.charts polyline.raw{opacity:1;stroke-width:1.8}
code{font-size:12px;white-space:nowrap}
`;

function table(head: readonly string[], rows: ReadonlyArray<readonly string[]>, numeric: ReadonlySet<number> = new Set()): string {
    const th = head.map((h) => `<th>${e(h)}</th>`).join("");
    const trs = rows.map((r) => `<tr>${r.map((c, i) => `<td${numeric.has(i) ? ' class="n"' : ""}>${c}</td>`).join("")}</tr>`).join("\n");
    return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

const num = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? "-" : e(Number.isInteger(v) ? String(v) : v.toFixed(digits)));
const usd = (v: number | null | undefined) => (v === null || v === undefined ? "-" : `$${v < 1 ? v.toFixed(4) : v.toFixed(2)}`);
const pct = (v: number | null) => (v === null ? "-" : `${(v * 100).toFixed(v < 0.001 ? 4 : 1)}%`);

function time(iso: string | null | undefined): string {
    return iso ? e(iso.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC")) : "-";
}

function chartsSection(runs: ReportInput["runs"], colors: Map<string, string>): string {
    const series = (pick: (h: RunHistory) => Array<readonly [number, number]>): Series[] =>
        runs.map((r) => ({ name: r.run, color: colors.get(r.run)!, points: pick(r.history) }));
    const trainLoss = series((h) => h.train.filter((t) => t.loss !== null).map((t) => [t.step, t.loss!] as const));
    const evalLoss = series((h) => h.evals.filter((v) => v.split === "validation" && v.metrics.eval_loss !== undefined).map((v) => [v.step, v.metrics.eval_loss!] as const));
    const lr = series((h) => h.train.filter((t) => t.learningRate !== null).map((t) => [t.step, t.learningRate!] as const));
    const throughput = series((h) => {
        const start = h.train.length ? Date.parse(h.train[0]!.at) : 0;
        return h.train.filter((t) => t.tokensPerSec !== null).map((t) => [(Date.parse(t.at) - start) / 60_000, t.tokensPerSec!] as const);
    });
    const both = (title: string, yLabel: string, s: Series[], smoothing?: number) =>
        `<div class="linear-only">${lineChart({ title, xLabel: "step", yLabel, series: s, ...(smoothing ? { smoothing } : {}) })}</div>` +
        `<div class="log-only">${lineChart({ title, xLabel: "step", yLabel, series: s, log: true, ...(smoothing ? { smoothing } : {}) })}</div>`;
    const legend = runs.map((r) => `<span><i style="background:${e(colors.get(r.run)!)}"></i>${e(r.run)}</span>`).join("");
    return [
        `<h2>Curves</h2>`,
        `<input type="checkbox" id="log"><label for="log">log scale (losses)</label> &nbsp; <input type="checkbox" id="smooth" checked><label for="smooth">smoothing (training loss, EMA ${LOSS_SMOOTHING})</label>`,
        `<p class="legend">${legend}</p>`,
        `<div class="charts">`,
        `<div class="chart-train-loss">${both("Training loss", "loss", trainLoss, LOSS_SMOOTHING)}</div>`,
        `<div class="chart-eval-loss">${both("Evaluation loss (validation)", "eval_loss", evalLoss)}</div>`,
        `<div class="chart-lr">${lineChart({ title: "Learning rate", xLabel: "step", yLabel: "learning rate", series: lr })}</div>`,
        `<div class="chart-throughput">${lineChart({ title: "Throughput", xLabel: "minutes since the first logged step", yLabel: "tokens/s", series: throughput })}</div>`,
        `</div>`,
    ].join("\n");
}

function metricsSection(figures: readonly RunFigures[], colors: Map<string, string>): string {
    const best = winner(figures);
    const names = [...new Set(figures.flatMap((f) => [...Object.keys(f.finalEval), ...Object.keys(f.finalTest)]))].filter((k) => k !== "eval_loss").sort();
    const rows = figures.map((f) => {
        const mark = best?.run === f.run ? ' <span class="win" title="winner">&#9733; winner</span>' : "";
        return [
            `<i style="display:inline-block;width:10px;height:10px;background:${e(colors.get(f.run)!)}"></i> ${e(f.run)}${mark}`,
            num(f.steps, 0),
            num(f.finalTrainLoss),
            f.bestEvalLoss ? `${num(f.bestEvalLoss.value)} <span class="muted">at step ${f.bestEvalLoss.step}</span>` : "-",
            num(f.finalEval.eval_loss),
            ...names.map((k) => num(f.finalEval[k] ?? f.finalTest[k])),
        ];
    });
    return [
        `<h2>Final and best metrics</h2>`,
        table(["run", "steps", "final train loss", "best eval_loss", "final eval_loss", ...names], rows, new Set([1, 2, 4, ...names.map((_, i) => 5 + i)])),
        best ? `<p>Winner: <b>${e(best.run)}</b>, by ${e(best.by)}.</p>` : `<p class="muted">No run has logged a loss yet.</p>`,
    ].join("\n");
}

function runSection(f: RunFigures): string {
    const out: string[] = [`<h3>${e(f.run)}</h3>`];
    const p = f.plan;
    if (p) out.push(`<p class="muted">${e(p.model)}, ${e(p.method)} on ${e(p.instanceType)} ${e(p.market)} (${e(p.gpus)}) at $${p.usdPerHour.toFixed(3)}/h</p>`);
    out.push(
        table(
            ["attempt", "boot", "inputs ready", "first step", "job end", "teardown", "phase", "exit", "steps", "billed"],
            f.attempts.map((a) => {
                const t = a.status?.timings;
                return [
                    `<code>${e(a.id)}</code>`,
                    a.billedFromBoot ? time(t?.nodeBoot) : `${time(t?.nodeBoot)} <span class="muted">(before the runner: billed from ${time(a.billedFrom)})</span>`,
                    time(t?.inputsReady),
                    time(t?.firstStep),
                    time(t?.jobEnd),
                    time(t?.shutdown),
                    e(a.phase),
                    num(a.status?.exitCode ?? null, 0),
                    e(a.steps),
                    `${(a.billedHours * 60).toFixed(1)} min`,
                ];
            }),
        ),
    );
    const interruptions = f.attempts.filter((a) => a.status?.reason);
    for (const a of interruptions) out.push(`<p><code>${e(a.id)}</code> ${e(a.phase)}: ${e(a.status!.reason!)}</p>`);
    out.push(
        table(
            ["", "measured", "plan"],
            [
                [`cost (${f.attempts.length} attempt${f.attempts.length === 1 ? "" : "s"})`, usd(f.costUsd), p?.estimatedUsd !== undefined ? `${usd(p.estimatedUsd)} <span class="muted">(cap ${p.maxHours} h = ${usd(p.worstCaseUsd)})</span>` : "-"],
                [
                    "peak memory per GPU",
                    f.memory.length
                        ? f.memory.map((m) => `GPU ${m.device} ${e(m.name)}: ${m.allocatedGiB.toFixed(1)} GiB allocated, ${m.reservedGiB.toFixed(1)} GiB reserved of ${m.totalGiB.toFixed(1)}`).join("<br>")
                        : '<span class="muted">no CUDA device recorded</span>',
                    f.plannedMemoryGiB === null ? "-" : `${f.plannedMemoryGiB.toFixed(1)} GiB${p?.memory ? ` of ${p.memory.gpuMemoryGiB.toFixed(1)}` : ""}`,
                ],
                ["throughput", f.measuredTokensPerSec === null ? "-" : `${formatNumber(f.measuredTokensPerSec)} tokens/s`, f.plannedTokensPerSec === null ? "-" : `${formatNumber(f.plannedTokensPerSec)} tokens/s`],
                ["model FLOPs utilisation", pct(f.measuredMfu), f.assumedMfu === null ? "-" : `${pct(f.assumedMfu)} assumed`],
                ["setup (billing start to first step)", f.setupHours === null ? "-" : `${(f.setupHours * 60).toFixed(1)} min`, f.plannedSetupHours === null ? "-" : `${(f.plannedSetupHours * 60).toFixed(0)} min assumed`],
            ],
        ),
    );
    return out.join("\n");
}

function artifactsSection(bucket: string, objects: ReportInput["objects"]): string {
    const rows = artifactGroups(objects).map((g) => [`<code>${e(`s3://${bucket}/${g.prefix}`)}</code>`, String(g.count), `${(g.bytes / 1024).toFixed(0)} KiB`]);
    return [`<h2>Artifacts</h2>`, table(["S3 URI", "objects", "size"], rows, new Set([1, 2]))].join("\n");
}

/** Each run's figures, as the page shows them and as measuredFigures (figures.ts) records them for a later plan. */
export function reportFigures(input: ReportInput): RunFigures[] {
    return input.runs.map((r) => runFigures(input.campaign, input.plan, r.run, r.history, input.generatedAt));
}

/** The first note as a summary and the rest folded under it (a rehearsal lists a stand-in per run). */
function notesSection(notes: readonly string[]): string {
    if (!notes.length) return "";
    const [first, ...rest] = notes;
    if (!rest.length) return `<p class="muted">${e(first!)}</p>`;
    return `<details class="muted"><summary>${e(first!.replace(/:$/, ""))} (${rest.length})</summary><ul>${rest.map((n) => `<li>${e(n.replace(/^- /, ""))}</li>`).join("")}</ul></details>`;
}

export function renderReportHtml(input: ReportInput): string {
    const { campaign, plan } = input;
    const colors = new Map(input.runs.map((r, i) => [r.run, RUN_COLORS[i % RUN_COLORS.length]!]));
    const figures = reportFigures(input);
    const total = figures.reduce((s, f) => s + f.costUsd, 0);
    const name = campaign.experiment.name;
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        `<title>Campaign ${e(name)}: report</title>`,
        `<style>${STYLE}</style></head><body>`,
        `<h1>Campaign ${e(name)}</h1>`,
        `<p class="muted">${e(input.source)}, ${e(campaign.experiment.region)}, s3://${e(input.bucket)}/; generated ${time(input.generatedAt.toISOString())}; ${input.runs.length} run(s)</p>`,
        notesSection(input.notes ?? []),
        chartsSection(input.runs, colors),
        metricsSection(figures, colors),
        `<h2>Runs: timeline, cost, memory, throughput</h2>`,
        `<p>Cost so far ${usd(total)} against the plan's ${usd(plan.runs.reduce((s, r) => s + (r.estimatedUsd ?? 0), 0))} for the training nodes (plan total with prep and images ${usd(plan.totals.estimatedUsd)}, worst case ${usd(plan.totals.worstCaseUsd)}). A node is billed from its boot to its teardown at the plan's price per hour; a node still running is counted until now.</p>`,
        ...figures.map(runSection),
        `<p class="muted">Throughput: the trainer's non-padding input tokens per second over each attempt's training time (for seq2seq models the source side only, while the plan counts source and target), against the plan's tokens per training hour. MFU = measured tokens/s x the plan's FLOPs per token / (GPUs x dense bf16 peak).</p>`,
        artifactsSection(input.bucket, input.objects),
        "</body></html>",
        "",
    ].join("\n");
}
