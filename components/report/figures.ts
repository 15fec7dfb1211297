// What the report says about each run, computed from its merged history, its statuses and the plan: the final and
// best metrics, the winner, each attempt's timeline and billed time, the cost against the plan's estimate, the peak
// memory per GPU against the plan's estimate, and the measured throughput against the plan's assumed MFU.
import type { Status } from "../campaign/jobSpec";
import type { ResolvedCampaign } from "../campaign/types";
import { MEASURED_FIGURES_VERSION, type MeasuredFigures } from "../plan/calibration";
import type { Plan, TrainStagePlan } from "../plan/plan";
import { runEstimates } from "../plan/runEstimates";
import type { AttemptSummary, RunHistory } from "./history";

/** A node whose boot time is this long before its runner started was not booted for the run (the rehearsal's). */
const BOOT_BEFORE_RUNNER_LIMIT_MS = 3600_000;

export interface AttemptFigures {
    readonly id: string;
    readonly status: Status | null;
    readonly phase: string;
    /** When billing is counted from: the node's boot (or the runner's first event, see BOOT_BEFORE_RUNNER_LIMIT_MS). */
    readonly billedFrom: string | null;
    readonly billedFromBoot: boolean;
    /** Until the teardown, or until `now` for a node still running. */
    readonly billedHours: number;
    readonly steps: string;
}

export interface MemoryFigures {
    readonly device: number;
    readonly name: string;
    readonly allocatedGiB: number;
    readonly reservedGiB: number;
    readonly totalGiB: number;
}

export interface RunFigures {
    readonly run: string;
    readonly plan: TrainStagePlan | undefined;
    readonly attempts: AttemptFigures[];
    readonly finalTrainLoss: number | null;
    readonly bestEvalLoss: { readonly value: number; readonly step: number } | null;
    /** The newest validation and test metrics (the final evaluations after training, when the run got there). */
    readonly finalEval: Record<string, number>;
    readonly finalTest: Record<string, number>;
    readonly steps: number;
    readonly costUsd: number;
    readonly memory: MemoryFigures[];
    readonly plannedMemoryGiB: number | null;
    readonly measuredTokensPerSec: number | null;
    readonly plannedTokensPerSec: number | null;
    readonly assumedMfu: number | null;
    readonly measuredMfu: number | null;
    /** Mean over the attempts that reached a step: billing start to the first step (boot, image, staging, model load). */
    readonly setupHours: number | null;
    readonly plannedSetupHours: number | null;
}

const GIB = 1024 ** 3;

function billing(status: Status | null, now: Date): { from: string | null; fromBoot: boolean; hours: number } {
    if (!status) return { from: null, fromBoot: false, hours: 0 };
    const firstEvent = status.events?.[0]?.at ?? status.updatedAt;
    const boot = status.timings.nodeBoot;
    const fromBoot = boot !== null && Date.parse(firstEvent) - Date.parse(boot) <= BOOT_BEFORE_RUNNER_LIMIT_MS;
    const from = fromBoot ? boot : firstEvent;
    const until = status.timings.shutdown ? Date.parse(status.timings.shutdown) : now.getTime();
    return { from, fromBoot, hours: Math.max(until - Date.parse(from), 0) / 3600_000 };
}

function attemptFigures(a: AttemptSummary, now: Date): AttemptFigures {
    const b = billing(a.status, now);
    return {
        id: a.id,
        status: a.status,
        phase: a.status?.phase ?? "unknown",
        billedFrom: b.from,
        billedFromBoot: b.fromBoot,
        billedHours: b.hours,
        steps: a.firstStep === null ? "no step logged" : `steps ${a.firstStep}-${a.lastStep}`,
    };
}

export function runFigures(campaign: ResolvedCampaign, plan: Plan, run: string, history: RunHistory, now: Date): RunFigures {
    const planned = plan.runs.find((r) => r.run === run);
    const resolved = campaign.runs.find((r) => r.name === run);
    const estimates = resolved ? runEstimates(campaign.experiment, resolved) : undefined;
    const attempts = history.attempts.map((a) => attemptFigures(a, now));
    const validation = history.evals.filter((e) => e.split === "validation");
    const losses = validation.filter((e) => e.metrics.eval_loss !== undefined).map((e) => ({ value: e.metrics.eval_loss!, step: e.step }));
    const best = losses.reduce<{ value: number; step: number } | null>((b, l) => (b === null || l.value < b.value ? l : b), null);
    const ends = history.attempts.map((a) => a.end).filter((e) => e !== null);
    const seconds = ends.reduce((s, e) => s + e.trainSeconds, 0);
    const tokens = ends.reduce((s, e) => s + e.tokens, 0);
    const measured = seconds > 0 && tokens > 0 ? tokens / seconds : null;
    const time = estimates?.time;
    const peak = estimates ? estimates.instance.gpuCount * estimates.instance.bf16DenseTflops * 1e12 : null;
    const setups = attempts.flatMap((a) => (a.billedFrom && a.status?.timings.firstStep ? [(Date.parse(a.status.timings.firstStep) - Date.parse(a.billedFrom)) / 3600_000] : []));
    const memoryRecord = [...history.attempts].reverse().find((a) => a.memory !== null)?.memory ?? null;
    return {
        run,
        plan: planned,
        attempts,
        finalTrainLoss: history.train.at(-1)?.loss ?? null,
        bestEvalLoss: best,
        finalEval: validation.at(-1)?.metrics ?? {},
        finalTest: history.evals.filter((e) => e.split === "test").at(-1)?.metrics ?? {},
        steps: history.train.at(-1)?.step ?? 0,
        costUsd: attempts.reduce((s, a) => s + a.billedHours, 0) * (planned?.usdPerHour ?? 0),
        memory: (memoryRecord?.devices ?? []).map((d) => ({ device: d.device, name: d.name, allocatedGiB: d.allocatedBytes / GIB, reservedGiB: d.reservedBytes / GIB, totalGiB: d.totalBytes / GIB })),
        plannedMemoryGiB: planned?.memory?.totalGiB ?? null,
        measuredTokensPerSec: measured,
        plannedTokensPerSec: time && time.trainingHours > 0 ? time.tokens / (time.trainingHours * 3600) : null,
        assumedMfu: time?.mfu ?? null,
        measuredMfu: measured !== null && time && peak ? (measured * time.flopsPerToken) / peak : null,
        setupHours: setups.length ? setups.reduce((s, h) => s + h, 0) / setups.length : null,
        plannedSetupHours: time?.setupHours ?? null,
    };
}

/** The run with the lowest best validation loss; without evaluations, the lowest final training loss. */
export function winner(runs: readonly RunFigures[]): { run: string; by: string } | null {
    const byEval = runs.filter((r) => r.bestEvalLoss !== null).sort((a, b) => a.bestEvalLoss!.value - b.bestEvalLoss!.value);
    if (byEval.length) return { run: byEval[0]!.run, by: "the lowest validation loss (eval_loss)" };
    const byTrain = runs.filter((r) => r.finalTrainLoss !== null).sort((a, b) => a.finalTrainLoss! - b.finalTrainLoss!);
    return byTrain.length ? { run: byTrain[0]!.run, by: "the lowest final training loss (no evaluation recorded)" } : null;
}

/** What `npm run plan -- --calibrate-from` reads (components/plan/calibration.ts): each run's measured MFU and setup. */
export function measuredFigures(campaign: ResolvedCampaign, source: string, generatedAt: Date, runs: readonly RunFigures[]): MeasuredFigures {
    return {
        version: MEASURED_FIGURES_VERSION,
        campaign: campaign.experiment.name,
        source,
        generatedAt: generatedAt.toISOString(),
        runs: runs.map((f) => {
            const run = campaign.runs.find((r) => r.name === f.run);
            return { run: f.run, model: run?.model.id ?? "", instanceType: run?.instanceType ?? "", mfu: f.measuredMfu !== null && f.measuredMfu > 0 ? f.measuredMfu : null, setupHours: f.setupHours };
        }),
    };
}

/** The campaign's objects by folder (runs/<campaign>/<run>/<kind>/, datasets/<hash>/, models/<id>/, ...), sorted by
 *  key: how the report and the rehearsal's summary list its artifacts. */
export function artifactGroups(objects: ReadonlyArray<{ key: string; size: number }>): Array<{ prefix: string; count: number; bytes: number }> {
    const groups = new Map<string, { count: number; bytes: number }>();
    for (const o of objects) {
        const parts = o.key.split("/");
        const depth = o.key.startsWith("runs/") ? 4 : 2;
        const prefix = parts.length > depth ? parts.slice(0, depth).join("/") + "/" : o.key;
        const g = groups.get(prefix) ?? { count: 0, bytes: 0 };
        g.count++;
        g.bytes += o.size;
        groups.set(prefix, g);
    }
    // Code-unit order, the same on every machine (localeCompare depends on the locale).
    return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([prefix, g]) => ({ prefix, ...g }));
}
