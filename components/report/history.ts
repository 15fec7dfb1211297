// A run's training history, read back: each attempt's metrics.jsonl parsed line by line (a last line cut short by a
// node that died mid-write is skipped, as is any line that does not follow the schema, with its reason), then the
// attempts merged into one continuous curve. A resumed attempt recomputes the steps after its checkpoint, so for any
// step logged by several attempts the later attempt's record wins, and an earlier attempt's records from the later
// one's first step onwards are dropped (they were trained on weights the resume threw away).
import { metricsRecord, type EndRecord, type EvalRecord, type MemoryRecord, type MetricsRecord, type TrainRecord } from "../campaign/metricsHistory";
import type { Status } from "../campaign/jobSpec";

export interface SkippedLine {
    /** 1-based line number in the attempt's file. */
    readonly line: number;
    readonly why: string;
}

export interface ParsedHistory {
    readonly records: MetricsRecord[];
    readonly skipped: SkippedLine[];
}

/** Every whole, valid line of one metrics.jsonl. */
export function parseHistory(text: string): ParsedHistory {
    const records: MetricsRecord[] = [];
    const skipped: SkippedLine[] = [];
    const lines = text.split("\n");
    const partial = lines.pop() ?? ""; // after the last newline: "" when the file ends with a whole line
    lines.forEach((line, i) => {
        if (line.trim() === "") return;
        let json: unknown;
        try {
            json = JSON.parse(line);
        } catch {
            skipped.push({ line: i + 1, why: "not valid JSON" });
            return;
        }
        const parsed = metricsRecord.safeParse(json);
        if (parsed.success) records.push(parsed.data);
        else skipped.push({ line: i + 1, why: `does not follow metrics-history.schema.json (${parsed.error.issues[0]?.message ?? "invalid"})` });
    });
    if (partial.trim() !== "") skipped.push({ line: lines.length + 1, why: "partial last line (the node stopped while writing it)" });
    return { records, skipped };
}

/** One attempt's objects: <attempt>.jsonl and, once the node has ended, <attempt>.status.json. */
export interface AttemptInput {
    /** The attempt id, `<start, UTC>-<instance>`: sorting by it orders the attempts in time. */
    readonly id: string;
    readonly history: string;
    readonly status: Status | null;
}

export interface AttemptSummary {
    readonly id: string;
    readonly status: Status | null;
    readonly firstStep: number | null;
    readonly lastStep: number | null;
    readonly skipped: SkippedLine[];
    readonly end: EndRecord | null;
    readonly memory: MemoryRecord | null;
}

export interface RunHistory {
    /** One record per step, ascending: the continuous curve. */
    readonly train: TrainRecord[];
    /** One record per split and step, ascending by step. */
    readonly evals: EvalRecord[];
    readonly attempts: AttemptSummary[];
}

function firstTrainStep(records: readonly MetricsRecord[]): number | null {
    const steps = records.filter((r) => r.kind === "train").map((r) => r.step);
    return steps.length ? Math.min(...steps) : null;
}

/** The attempts merged in time order into one curve without duplicated steps. */
export function mergeAttempts(inputs: readonly AttemptInput[]): RunHistory {
    const ordered = [...inputs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const train = new Map<number, TrainRecord>();
    const evals = new Map<string, EvalRecord>();
    const attempts: AttemptSummary[] = [];
    for (const input of ordered) {
        const { records, skipped } = parseHistory(input.history);
        const first = firstTrainStep(records);
        if (first !== null) {
            // Resumed at first - 1 or earlier: what the earlier attempts logged from here on is superseded.
            for (const step of [...train.keys()]) if (step >= first) train.delete(step);
            for (const [key, r] of [...evals]) if (r.step >= first) evals.delete(key);
        }
        for (const r of records) {
            if (r.kind === "train") train.set(r.step, r);
            else if (r.kind === "eval") evals.set(`${r.split}@${r.step}`, r);
        }
        const steps = records.filter((r) => r.kind === "train").map((r) => r.step);
        attempts.push({
            id: input.id,
            status: input.status,
            firstStep: first,
            lastStep: steps.length ? Math.max(...steps) : null,
            skipped,
            end: records.filter((r): r is EndRecord => r.kind === "end").at(-1) ?? null,
            memory: records.filter((r): r is MemoryRecord => r.kind === "memory").at(-1) ?? null,
        });
    }
    return {
        train: [...train.values()].sort((a, b) => a.step - b.step),
        evals: [...evals.values()].sort((a, b) => a.step - b.step || a.split.localeCompare(b.split)),
        attempts,
    };
}
