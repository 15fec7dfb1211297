// Progress of a campaign's jobs from their status.json: bars per run, a status table, spend so far.
// Pure rendering: the tests feed recorded status sequences.
import { terminalPhases } from "../../components/campaign/contract";
import type { Status } from "../../components/campaign/jobSpec";

export interface JobView {
    readonly run: string;
    /** Null until the job wrote its first status. */
    readonly status: Status | null;
    /** On-demand price of the job's node (0 for a local prep). */
    readonly usdPerHour: number;
    /** Why a status that exists could not be read. */
    readonly note?: string;
}

export function isTerminal(view: JobView): boolean {
    return view.status !== null && terminalPhases.includes(view.status.phase);
}

/** Dollars the node has billed so far: boot to shutdown (or to now while it runs). */
export function spendSoFar(view: JobView, now: Date): number {
    const boot = view.status?.timings.nodeBoot;
    if (!boot) return 0;
    const end = view.status?.timings.shutdown ?? (isTerminal(view) ? view.status?.updatedAt : null) ?? now.toISOString();
    const hours = Math.max(0, Date.parse(end) - Date.parse(boot)) / 3_600_000;
    return hours * view.usdPerHour;
}

export function bar(fraction: number, width = 24): string {
    const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
    const full = Math.round(f * width);
    return `[${"#".repeat(full)}${".".repeat(width - full)}]`;
}

export function duration(seconds: number | null | undefined): string {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "-";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function num(value: number | null | undefined, digits: number): string {
    return value === null || value === undefined ? "-" : value.toFixed(digits);
}

/** One line per job: name, phase, bar, step/total, loss, tokens/s, ETA, spend. */
/** What an evaluation under way has done (the progress file's `evaluation`), or "" while training. */
export function evaluationProgress(progress: Status["progress"]): string {
    const e = progress?.evaluation;
    if (progress?.phase !== "evaluating" || !e) return "";
    if (e.part === "loss") return `loss pass ${e.done}/${e.total} batches`;
    return `evaluating the ${e.part === "baseline" ? "base" : "fine-tuned"} model ${e.done}/${e.total} rows`;
}

export function renderProgress(views: readonly JobView[], now: Date): string {
    const width = Math.max(4, ...views.map((v) => v.run.length));
    const lines = views.map((v) => {
        const s = v.status;
        const name = v.run.padEnd(width);
        if (!s) return v.note ? `${name}  unreadable ${bar(0)} ${v.note}` : `${name}  waiting   ${bar(0)} no status yet`;
        const p = s.progress;
        const fraction = s.phase === "succeeded" ? 1 : p && p.totalSteps > 0 ? p.step / p.totalSteps : 0;
        const steps = p ? `${p.step}/${p.totalSteps}` : "-";
        let line = `${name}  ${s.phase.padEnd(11)} ${bar(fraction)} ${steps.padStart(11)}  loss ${num(p?.loss, 4)}  ${num(p?.tokensPerSec, 0)} tok/s  ETA ${duration(p?.etaSeconds)}  $${spendSoFar(v, now).toFixed(2)}`;
        const evaluating = evaluationProgress(p);
        if (evaluating && !isTerminal(v)) line += `\n${" ".repeat(width)}  ${evaluating}`;
        if (s.phase === "failed" || s.phase === "interrupted") line += `\n${" ".repeat(width)}  ${s.phase}: ${s.reason ?? `exit ${s.exitCode}`}`;
        return line;
    });
    const total = views.reduce((sum, v) => sum + spendSoFar(v, now), 0);
    lines.push(`${"".padEnd(width)}  spent so far: $${total.toFixed(2)}`);
    return lines.join("\n");
}

/** `campaign status`: one table of the campaign's jobs and their nodes. */
export function renderStatusTable(views: readonly JobView[], now: Date): string {
    const rows = [["job", "phase", "node", "step", "loss", "last checkpoint", "updated", "spent"]];
    for (const v of views) {
        const s = v.status;
        rows.push([
            v.run,
            s?.phase ?? (v.note ? `unreadable: ${v.note}` : "not started"),
            s ? `${s.instanceId ?? "-"} ${s.instanceType ?? ""}`.trim() : "-",
            s?.progress ? [`${s.progress.step}/${s.progress.totalSteps}`, isTerminal(v) ? "" : evaluationProgress(s.progress)].filter(Boolean).join(", ") : "-",
            num(s?.progress?.loss, 4),
            s?.lastCheckpoint ?? "-",
            s ? `${duration((now.getTime() - Date.parse(s.updatedAt)) / 1000)} ago` : "-",
            `$${spendSoFar(v, now).toFixed(2)}`,
        ]);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

/**
 * `campaign status`: each run's attempts across nodes (status.json's `attempts`, carried forward by every runner),
 * oldest first: the node, when it ran, how it ended and why, and the spec it ran. Runs with no attempts list are left
 * out (their status was written before runners kept one); empty when no run has one.
 */
export function renderAttempts(views: readonly JobView[]): string {
    const blocks: string[] = [];
    for (const v of views) {
        const attempts = v.status?.attempts;
        if (!attempts || attempts.length === 0) continue;
        const failed = attempts.filter((a) => a.outcome === "failed").length;
        const rows = [["#", "node", "started", "ended", "outcome", "spec", "reason"]];
        attempts.forEach((a, i) => {
            rows.push([
                String(i + 1),
                `${a.node ?? "-"} ${a.instanceType ?? ""}`.trim(),
                a.startedAt ?? "-",
                a.endedAt ?? "-",
                a.outcome ?? (i === attempts.length - 1 ? "running" : "no final status"),
                a.specHash ?? "-",
                (a.reason ?? (a.exitCode !== null && a.outcome !== "succeeded" ? `exit ${a.exitCode}` : "")).replace(/\s+/g, " ").slice(0, 120),
            ]);
        });
        const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
        const table = rows.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()}`).join("\n");
        blocks.push(`${v.run}: ${attempts.length} attempt(s), ${failed} failed\n${table}`);
    }
    return blocks.length ? `Attempts per run (each node is one attempt; relaunch counts the failed ones of the current spec):\n${blocks.join("\n")}` : "";
}
