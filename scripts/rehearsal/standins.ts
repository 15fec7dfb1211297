// What the local rehearsal swaps in where the real thing cannot run on this machine: a small sample of
// the same shape for data it cannot reach, a tiny model of the same family for weights it cannot load
// or train on a CPU, and CPU-safe settings. Every swap is listed, so the report says what was rehearsed.
//
// A stand-in keeps every invariant the real campaign is checked for: the stand-in campaign goes through
// the same checks as the real config (components/campaign/checks.ts), its specs through the job-spec
// schemas, and its training specs through the rules the trainer's preflight applies on a CPU
// (containers/trainer/run.py). A generated sample is built to pass the preset's cleaning rules and to fill
// every split the preset asks for. What cannot be kept is a StandInError that names the invariant and why,
// raised before anything runs.
import * as fs from "node:fs";
import * as path from "node:path";
import type { ResolvedCampaign, ResolvedRun } from "../../components/campaign/types";
import type { DataConfig, Experiment } from "../../components/config/schema";
import { prepSpec as prepSpecSchema, shortHash, trainSpec as trainSpecSchema, withHashes, type PrepSpec, type TrainSpec } from "../../components/campaign/jobSpec";
import { checkCampaign, checkRun } from "../../components/campaign/checks";
import { parseExperiment } from "../../components/config/experiment";
import { ConfigError } from "../../components/config/problems";
import { getInstance, INSTANCES } from "../../components/plan/catalog";

/** LoRA's share of a tiny stand-in model's parameters is far above the real model's (about 27% for the tiny T5). */
const TINY_MODEL_TRAINABLE_BOUND = 0.5;

/** The rehearsal trains each run in one CPU process. */
export const STAND_IN_PROCESSES = 1;

/** Groups per split when a group split's exact counts are scaled down for the sample. */
const SAMPLE_GROUPS = { train: 8, validation: 2, test: 2 } as const;
/** Groups in the sample when a group split is by ratios. */
const SAMPLE_RATIO_GROUPS = 24;

/** A stand-in that cannot keep one of the real campaign's invariants; the message names it and why. */
export class StandInError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "StandInError";
    }
}

export interface StandIns {
    readonly prepSpec: PrepSpec;
    readonly trainSpecs: readonly TrainSpec[];
    /** Human-readable list of every substitution. */
    readonly substitutions: readonly string[];
    /** The stand-in campaign as the checks saw it (data, runs on the check instance). */
    readonly experiment: Experiment;
    readonly runs: readonly ResolvedRun[];
}

export interface StandInOptions {
    /** The project root: relative data paths are read from here. */
    readonly root: string;
    /** Where sample data may be written. */
    readonly workDir: string;
    /** family -> directory of a tiny model of that family (config.json + tokenizer). */
    readonly tinyModels: Readonly<Record<"causal-lm" | "seq2seq", string>>;
    /** Cap on training steps per run, so a rehearsal finishes in minutes. */
    readonly maxSteps: number;
    /** At most this many examples per optimizer step: gradientAccumulation, then perDeviceBatch, are lowered to fit. */
    readonly maxBatch?: number;
    /** Rows of sample data to generate when the real source cannot be reached (more when a split needs them). */
    readonly sampleRows: number;
}

function isLocalSource(source: string): boolean {
    return !source.startsWith("s3://") && !source.startsWith("hf://");
}

function isLocalModel(id: string): boolean {
    return fs.existsSync(path.join(id, "config.json"));
}

export function applyStandIns(campaign: ResolvedCampaign, options: StandInOptions): StandIns {
    const substitutions: string[] = [];
    const real = campaign.prepSpec;
    const data = standInData(campaign.experiment.data, options, substitutions);

    const modelFor = (id: string, family: "causal-lm" | "seq2seq"): string => (isLocalModel(id) ? id : options.tinyModels[family]);
    const swappedModels = new Set<string>();
    const tokenizer = real.tokenizer ? { ...real.tokenizer, id: modelFor(real.tokenizer.id, real.tokenizer.family) } : undefined;
    const stageModels = real.stageModels.map((m) => {
        const id = modelFor(m.id, m.family);
        if (id !== m.id) swappedModels.add(`${m.id} -> tiny ${m.family} model`);
        return { ...m, id };
    });
    const { estimate: _estimate, ...prepData } = data;
    const { prepHash: _old, ...prepBody } = { ...real, data: prepData, stageModels, ...(tokenizer ? { tokenizer } : {}) };
    const prepSpec: PrepSpec = { ...prepBody, prepHash: shortHash(prepBody) };
    // What the runs' training hashes cover: the prepared data without the evaluation rows (jobSpec.ts, trainingHashOf).
    const trainingDataHash = shortHash({ ...prepBody, evaluation: undefined });

    const runs = campaign.runs.map((run) => {
        const { run: standIn, changes } = standInRun(run, modelFor, options);
        if (standIn.model.id !== run.model.id) swappedModels.add(`${run.model.id} -> tiny ${run.model.family} model`);
        substitutions.push(`run ${run.name}: ${changes.join(", ")}`);
        return standIn;
    });
    const experiment = checkStandIns(campaign.experiment, data, runs);

    const trainSpecs = campaign.trainSpecs.map((spec, i): TrainSpec => {
        const run = runs[i];
        const { specHash: _hash, evaluationHash: _evaluationHash, ...body } = { ...spec, prepHash: prepSpec.prepHash, model: run.model, method: run.method, training: run.training, gpus: STAND_IN_PROCESSES };
        return withHashes(body, trainingDataHash);
    });
    checkSpecs(prepSpec, trainSpecs);
    for (const s of swappedModels) substitutions.push(`model: ${s} (no hub download here; same architecture family, built locally)`);
    return { prepSpec, trainSpecs, substitutions, experiment, runs };
}

// ---------------------------------------------------------------- data

function standInData(real: DataConfig, options: StandInOptions, substitutions: string[]): DataConfig {
    // A local file is used as it is; s3:// and hf:// sources are replaced by a generated sample.
    if (isLocalSource(real.source)) return { ...real, source: path.resolve(options.root, real.source) };
    let data: DataConfig = real;
    let groups = SAMPLE_RATIO_GROUPS;
    if (data.split.kind === "group" && data.split.counts) {
        const c = data.split.counts;
        const counts = { train: Math.min(c.train, SAMPLE_GROUPS.train), validation: Math.min(c.validation, SAMPLE_GROUPS.validation), test: Math.min(c.test, SAMPLE_GROUPS.test) };
        groups = counts.train + counts.validation + counts.test;
        if (groups < c.train + c.validation + c.test) {
            substitutions.push(`split: ${c.train}/${c.validation}/${c.test} groups of ${data.split.column} scaled to ${counts.train}/${counts.validation}/${counts.test} for the sample`);
        }
        data = { ...data, split: { ...data.split, counts } };
    } else if (data.split.kind === "group" && data.split.ratios) {
        groups = Math.max(SAMPLE_RATIO_GROUPS, rowsForShares(data.split.ratios));
    }
    // Every split the preset gives a share must receive rows (prep refuses an empty one).
    const rows = Math.max(options.sampleRows, groups, data.split.kind === "random" ? rowsForShares(data.split.ratios) : 0);
    const file = path.join(options.workDir, "sample-data.jsonl");
    fs.mkdirSync(options.workDir, { recursive: true });
    fs.writeFileSync(file, sampleRows(data, rows, groups).map((r) => JSON.stringify(r)).join("\n") + "\n");
    const kept = [`${real.format.kind}`];
    const c = real.cleaning;
    kept.push(`every row passes data.cleaning (minChars ${c.minChars}, maxChars ${c.maxChars}${c.dropTruncated ? `, no short "${c.dropTruncated.marker}" answer` : ""}, no duplicate)`);
    substitutions.push(`data: ${real.source} cannot be reached from here; a generated sample of ${rows} rows of the same shape stands in (${kept.join("; ")})`);
    return { ...data, source: file, fileFormat: "jsonl" };
}

/** Rows (or groups) a split by these ratios needs so each share > 0 rounds to at least one (prep rounds half to even). */
function rowsForShares(ratios: { train: number; validation: number; test?: number }): number {
    return Math.max(1, ...[ratios.train, ratios.validation, ratios.test ?? 0].filter((r) => r > 0).map((r) => Math.floor(1 / r) + 1));
}

/** The template's {field} names (Python str.format fields; "{{" is a literal brace). */
export function templateFields(template: string | undefined): string[] {
    if (!template) return [];
    return [...template.replace(/\{\{|\}\}/g, "").matchAll(/\{([^{}!:]+)[^{}]*\}/g)].map((m) => m[1]);
}

/** Appends numbered clauses until the text has at least `length` characters. */
function padTo(text: string, length: number): string {
    let out = text;
    for (let k = 1; out.length < length; k++) out += ` Point ${k} follows from the case.`;
    return out;
}

/**
 * Rows in the shape the data format expects, with the split's group column when it has one, built to
 * pass the cleaning rules: every row distinct, the answer (the text for classification, whose answer is a
 * fixed label) at least minChars long, no short answer holding the truncation marker, nothing over maxChars.
 * A StandInError when the rules leave no room for such a row.
 */
export function sampleRows(data: Omit<DataConfig, "estimate">, rows: number, groups = SAMPLE_RATIO_GROUPS): Array<Record<string, unknown>> {
    const f = data.format;
    const c = data.cleaning;
    const group = data.split.kind === "group" ? data.split.column : undefined;
    const topics = ["budget", "trust", "risk", "fairness", "time", "health", "work", "school", "travel", "news", "sport", "science"];
    const answerLength = Math.max(c.minChars, c.dropTruncated ? c.dropTruncated.maxChars : 0);
    const longAnswer = (text: string): string => padTo(text, c.dropTruncated && text.includes(c.dropTruncated.marker) ? answerLength : c.minChars);
    const out: Array<Record<string, unknown>> = [];
    for (let i = 0; i < rows; i++) {
        const topic = topics[i % topics.length];
        const detail = `case ${i} about ${topic}, with ${(i * 7) % 13} details and a ${i % 2 ? "short" : "longer"} context for the model`;
        let row: Record<string, unknown>;
        switch (f.kind) {
            case "alpaca":
                row = { [f.instructionField]: `Predict the answer for case ${i} about ${topic}.`, [f.inputField]: `Scenario: ${detail}.`, [f.outputField]: longAnswer(`Response: ${(i * 3) % 7}, as case ${i} shows`) };
                break;
            case "chat":
                row = { [f.messagesField]: [{ role: "user", content: `Tell me about ${detail}.` }, { role: "assistant", content: longAnswer(`Case ${i} is about ${topic}.`) }] };
                break;
            case "seq2seq":
                row = { [f.inputField]: `I believe ${detail}.`, [f.targetField]: longAnswer(`Why do you think ${topic} matters in case ${i}?`) };
                break;
            case "classification":
                row = { [f.textField]: padTo(`An article on ${detail}.`, c.minChars), [f.labelField]: i % f.labels.length };
                break;
        }
        for (const name of templateFields(data.template.prompt)) if (!(name in row)) row[name] = `Field ${name} of case ${i}.`;
        if (group) row[group] = `group-${(i % groups) + 1}`;
        const problem = cleaningProblem(row, data);
        if (problem) throw new StandInError(`the generated sample cannot pass data.cleaning: row ${i} ${problem}`);
        out.push(row);
    }
    return out;
}

/** The user text and the answer prep's cleaning rules look at (containers/prep/transform.py), for a generated row. */
function userAndAnswer(row: Record<string, unknown>, data: Omit<DataConfig, "estimate">): { user: string; answer: string } {
    const f = data.format;
    const fill = (template: string) => template.replace(/\{\{/g, "\u0000").replace(/\}\}/g, "\u0001").replace(/\{([^{}!:]+)[^{}]*\}/g, (_, name: string) => String(row[name] ?? "")).replace(/\u0000/g, "{").replace(/\u0001/g, "}");
    const template = data.template.prompt;
    switch (f.kind) {
        case "alpaca": {
            const input = String(row[f.inputField] ?? "");
            const user = template ? fill(template) : input ? `${row[f.instructionField]}\n\n${input}` : String(row[f.instructionField]);
            return { user, answer: String(row[f.outputField]) };
        }
        case "seq2seq":
            return { user: template ? fill(template) : String(row[f.inputField]), answer: String(row[f.targetField]) };
        case "classification":
            return { user: template ? fill(template) : String(row[f.textField]), answer: JSON.stringify({ [f.answerKey]: f.labels[row[f.labelField] as number] }) };
        case "chat": {
            const messages = row[f.messagesField] as Array<{ role: string; content: string }>;
            return { user: messages.slice(0, -1).filter((m) => m.role !== "system").map((m) => m.content).join("\n"), answer: messages[messages.length - 1].content };
        }
    }
}

/** Which cleaning rule would remove this row, or undefined (duplicates are avoided by the row number in every row). */
function cleaningProblem(row: Record<string, unknown>, data: Omit<DataConfig, "estimate">): string | undefined {
    const c = data.cleaning;
    const { user, answer } = userAndAnswer(row, data);
    if (!answer.trim()) return "has a blank answer (emptyCompletion)";
    if (user.length < c.minChars && answer.length < c.minChars) return `has user text and answer both under data.cleaning.minChars ${c.minChars} (tooShort)`;
    if (user.length + answer.length > c.maxChars) return `needs ${user.length + answer.length} characters to pass data.cleaning.minChars ${c.minChars}, over data.cleaning.maxChars ${c.maxChars} (tooLong)`;
    if (c.dropTruncated && answer.includes(c.dropTruncated.marker) && answer.length < c.dropTruncated.maxChars) return `has an answer holding "${c.dropTruncated.marker}" under ${c.dropTruncated.maxChars} characters (truncated)`;
    return undefined;
}

// ---------------------------------------------------------------- runs

function standInRun(run: ResolvedRun, modelFor: (id: string, family: "causal-lm" | "seq2seq") => string, options: StandInOptions): { run: ResolvedRun; changes: string[] } {
    const changes: string[] = [];
    const model = { ...run.model, id: modelFor(run.model.id, run.model.family) };
    let method = run.method.kind === "qlora" ? { ...run.method, kind: "lora" as const } : run.method;
    if (method !== run.method) changes.push("qlora -> lora (4-bit needs CUDA)");
    if (model.id !== run.model.id && method.kind !== "full" && method.lora.maxTrainableFraction < TINY_MODEL_TRAINABLE_BOUND) {
        // LoRA adapters are a far larger share of a tiny model than of the real one.
        changes.push(`maxTrainableFraction ${method.lora.maxTrainableFraction} -> ${TINY_MODEL_TRAINABLE_BOUND} (adapters are a larger share of a tiny model)`);
        method = { ...method, lora: { ...method.lora, maxTrainableFraction: TINY_MODEL_TRAINABLE_BOUND } };
    }
    const training = { ...run.training };
    if (training.precision !== "fp32") changes.push(`${training.precision} -> fp32`);
    training.precision = "fp32";
    if (training.zeroStage !== 0) changes.push(`ZeRO-${training.zeroStage} -> none (one CPU process)`);
    training.zeroStage = 0;
    if (training.optimizer !== "adamw_torch") changes.push(`${training.optimizer} -> adamw_torch`);
    training.optimizer = "adamw_torch";
    training.tf32 = false;
    if (training.maxSteps === undefined || training.maxSteps > options.maxSteps) {
        changes.push(`at most ${options.maxSteps} steps`);
        training.maxSteps = options.maxSteps;
        delete training.epochs;
    }
    // Keep checkpoints and evaluation inside the shortened run, so both are rehearsed; early stopping
    // keeps the best checkpoint, so saves stay on evaluation steps.
    const every = Math.max(1, Math.floor(options.maxSteps / 3));
    if (training.saveSteps > every) training.saveSteps = every;
    if (training.evalSteps > every) training.evalSteps = every;
    if (training.earlyStopping && training.saveSteps % training.evalSteps !== 0) training.saveSteps = training.evalSteps;
    // Every step is logged: a rehearsal's run is a few steps long, and its report draws one point per logged step.
    training.loggingSteps = 1;
    const gpus = getInstance(run.instanceType).gpuCount;
    if (options.maxBatch !== undefined && training.perDeviceBatch * training.gradientAccumulation > options.maxBatch) {
        const before = `perDeviceBatch ${training.perDeviceBatch} x gradientAccumulation ${training.gradientAccumulation}`;
        training.perDeviceBatch = Math.min(training.perDeviceBatch, options.maxBatch);
        training.gradientAccumulation = Math.max(1, Math.floor(options.maxBatch / training.perDeviceBatch));
        changes.push(`${before} -> ${training.perDeviceBatch} x ${training.gradientAccumulation} (at most ${options.maxBatch} examples per step)`);
    }
    if (training.globalBatch !== undefined) {
        // The global batch is per optimizer step across all GPUs; one process keeps the per-device batch
        // and the accumulation, so the global batch shrinks with the device count.
        const scaled = STAND_IN_PROCESSES * training.perDeviceBatch * training.gradientAccumulation;
        if (scaled !== training.globalBatch) {
            changes.push(`globalBatch ${training.globalBatch} -> ${scaled} (${STAND_IN_PROCESSES} process x perDeviceBatch ${training.perDeviceBatch} x gradientAccumulation ${training.gradientAccumulation}, scaled with the device count ${gpus} -> ${STAND_IN_PROCESSES})`);
        }
        training.globalBatch = scaled;
    }
    const checkedAs = checkInstanceFor(run.instanceType);
    changes.push(`on ${STAND_IN_PROCESSES} CPU process instead of ${gpus} GPU(s)${checkedAs !== run.instanceType ? ` (checked as one ${checkedAs} GPU)` : ""}`);
    return { run: { ...run, model, method, training, instanceType: checkedAs }, changes };
}

/**
 * The instance type the stand-in run is checked as: the real one when it has one GPU, else a one-GPU type
 * of the same GPU model, else the catalog's first one-GPU type. The checks take the device count from the
 * instance, and the stand-in trains on one device.
 */
function checkInstanceFor(instanceType: string): string {
    const real = getInstance(instanceType);
    if (real.gpuCount === STAND_IN_PROCESSES) return real.type;
    const single = INSTANCES.filter((i) => i.kind === "gpu" && i.gpuCount === STAND_IN_PROCESSES);
    const same = single.find((i) => i.gpuModel === real.gpuModel) ?? single[0];
    if (!same) throw new StandInError(`no one-GPU instance type in components/plan/catalog.ts to check the one-process stand-in of ${instanceType} against`);
    return same.type;
}

// ---------------------------------------------------------------- the same checks as the real campaign

/** The stand-in campaign through the schema and the checks of the real config; a StandInError lists every error. */
export function checkStandIns(real: Experiment, data: DataConfig, runs: readonly ResolvedRun[]): Experiment {
    let experiment: Experiment;
    try {
        experiment = parseExperiment({ ...real, data }, "the stand-in campaign");
    } catch (e) {
        throw new StandInError(`the stand-ins break the config schema: ${e instanceof ConfigError ? e.message : (e as Error).message}`);
    }
    const problems = [...runs.flatMap((run) => checkRun(experiment, run)), ...checkCampaign(experiment, runs)].filter((p) => p.severity === "error");
    if (problems.length) {
        throw new StandInError(`the stand-ins break checks the real campaign passes (components/campaign/checks.ts):\n${problems.map((p) => `  - ${p.path}: ${p.message}`).join("\n")}`);
    }
    return experiment;
}

/**
 * The job-spec schemas, and the preflight rules the trainer applies on a machine without CUDA, DeepSpeed or
 * bitsandbytes (containers/trainer/run.py preflight): the specs the rehearsal renders must pass them here,
 * not in the trainer after prep.
 */
export function checkSpecs(prep: PrepSpec, trains: readonly TrainSpec[]): void {
    const problems: string[] = [];
    if (!prepSpecSchema.safeParse(prep).success) problems.push("the prep spec does not match the job-spec schema");
    for (const spec of trains) {
        const t = spec.training;
        const at = `run ${spec.run}`;
        if (!trainSpecSchema.safeParse(spec).success) problems.push(`${at}: the train spec does not match the job-spec schema`);
        if (spec.method.kind === "qlora") problems.push(`${at}: QLoRA needs CUDA`);
        if (["paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit"].includes(t.optimizer)) problems.push(`${at}: training.optimizer ${t.optimizer} needs bitsandbytes on CUDA`);
        if (t.zeroStage > 0) problems.push(`${at}: training.zeroStage ${t.zeroStage} needs DeepSpeed`);
        if (t.globalBatch !== undefined && t.globalBatch !== spec.gpus * t.perDeviceBatch * t.gradientAccumulation) {
            problems.push(`${at}: training.globalBatch ${t.globalBatch} != gpus ${spec.gpus} x perDeviceBatch ${t.perDeviceBatch} x gradientAccumulation ${t.gradientAccumulation}`);
        }
        if (t.earlyStopping && t.saveSteps % t.evalSteps !== 0) problems.push(`${at}: early stopping needs saveSteps ${t.saveSteps} to be a multiple of evalSteps ${t.evalSteps}`);
        if (spec.data.packing && spec.model.family !== "causal-lm") problems.push(`${at}: packed data is for causal LMs`);
        if (spec.data.packing && spec.data.maxLength > t.maxSeqLength) problems.push(`${at}: packed rows of ${spec.data.maxLength} tokens exceed training.maxSeqLength ${t.maxSeqLength}`);
        if (spec.prepHash !== prep.prepHash) problems.push(`${at}: trains on prep ${spec.prepHash}, not the stand-in prep ${prep.prepHash}`);
    }
    if (problems.length) throw new StandInError(`the stand-in specs would fail the trainer's preflight:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
}
