// What the local rehearsal swaps in where the real thing cannot run on this machine: a small sample of
// the same shape for data it cannot reach, a tiny model of the same family for weights it cannot load
// or train on a CPU, and CPU-safe settings. Every swap is listed, so the report says what was rehearsed.
import * as fs from "node:fs";
import * as path from "node:path";
import type { ResolvedCampaign } from "../../components/campaign/types";
import type { DataConfig } from "../../components/config/schema";
import { shortHash, type PrepSpec, type TrainSpec } from "../../components/campaign/jobSpec";

/** LoRA's share of a tiny stand-in model's parameters is far above the real model's (about 27% for the tiny T5). */
const TINY_MODEL_TRAINABLE_BOUND = 0.5;

export interface StandIns {
    readonly prepSpec: PrepSpec;
    readonly trainSpecs: readonly TrainSpec[];
    /** Human-readable list of every substitution. */
    readonly substitutions: readonly string[];
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
    /** Rows of sample data to generate when the real source cannot be reached. */
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

    // Data: a local file is used as it is; s3:// and hf:// sources are replaced by a generated sample.
    let data = real.data;
    if (isLocalSource(real.data.source)) {
        data = { ...real.data, source: path.resolve(options.root, real.data.source) };
    } else {
        let groups = 24;
        if (data.split.kind === "group" && data.split.counts) {
            const c = data.split.counts;
            const counts = { train: Math.min(c.train, 8), validation: Math.min(c.validation, 2), test: Math.min(c.test, 2) };
            groups = counts.train + counts.validation + counts.test;
            if (groups < c.train + c.validation + c.test) {
                substitutions.push(`split: ${c.train}/${c.validation}/${c.test} groups of ${data.split.column} scaled to ${counts.train}/${counts.validation}/${counts.test} for the sample`);
            }
            data = { ...data, split: { ...data.split, counts } };
        }
        const file = path.join(options.workDir, "sample-data.jsonl");
        fs.mkdirSync(options.workDir, { recursive: true });
        fs.writeFileSync(file, sampleRows(data, options.sampleRows, groups).map((r) => JSON.stringify(r)).join("\n") + "\n");
        data = { ...data, source: file, fileFormat: "jsonl" };
        substitutions.push(`data: ${real.data.source} cannot be reached from here; a generated sample of ${options.sampleRows} rows of the same shape (${real.data.format.kind}) stands in`);
    }

    const modelFor = (id: string, family: "causal-lm" | "seq2seq"): string => (isLocalModel(id) ? id : options.tinyModels[family]);
    const swappedModels = new Set<string>();
    const tokenizer = real.tokenizer ? { ...real.tokenizer, id: modelFor(real.tokenizer.id, real.tokenizer.family) } : undefined;
    const stageModels = real.stageModels.map((m) => {
        const id = modelFor(m.id, m.family);
        if (id !== m.id) swappedModels.add(`${m.id} -> tiny ${m.family} model`);
        return { ...m, id };
    });
    const { prepHash: _old, ...prepBody } = { ...real, data, stageModels, ...(tokenizer ? { tokenizer } : {}) };
    const prepSpec: PrepSpec = { ...prepBody, prepHash: shortHash(prepBody) };

    const trainSpecs = campaign.trainSpecs.map((spec): TrainSpec => {
        const changes: string[] = [];
        const model = { ...spec.model, id: modelFor(spec.model.id, spec.model.family) };
        if (model.id !== spec.model.id) swappedModels.add(`${spec.model.id} -> tiny ${spec.model.family} model`);
        let method = spec.method.kind === "qlora" ? { ...spec.method, kind: "lora" as const } : spec.method;
        if (method !== spec.method) changes.push("qlora -> lora (4-bit needs CUDA)");
        if (model.id !== spec.model.id && method.kind !== "full" && method.lora.maxTrainableFraction < TINY_MODEL_TRAINABLE_BOUND) {
            // LoRA adapters are a far larger share of a tiny model than of the real one.
            changes.push(`maxTrainableFraction ${method.lora.maxTrainableFraction} -> ${TINY_MODEL_TRAINABLE_BOUND} (adapters are a larger share of a tiny model)`);
            method = { ...method, lora: { ...method.lora, maxTrainableFraction: TINY_MODEL_TRAINABLE_BOUND } };
        }
        const training = { ...spec.training };
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
        // Keep checkpoints and evaluation inside the shortened run, so both are rehearsed.
        const every = Math.max(1, Math.floor(options.maxSteps / 3));
        if (training.saveSteps > every) training.saveSteps = every;
        if (training.evalSteps > every) training.evalSteps = every;
        training.loggingSteps = Math.min(training.loggingSteps, every);
        if (changes.length) substitutions.push(`run ${spec.run}: ${changes.join(", ")}, on 1 CPU process instead of ${spec.gpus} GPU(s)`);
        const { specHash: _hash, ...body } = { ...spec, prepHash: prepSpec.prepHash, model, method, training, gpus: 1 };
        return { ...body, specHash: shortHash(body) };
    });
    for (const s of swappedModels) substitutions.push(`model: ${s} (no hub download here; same architecture family, built locally)`);
    return { prepSpec, trainSpecs, substitutions };
}

/** Rows in the shape the data format expects, with the split's group column when it has one. */
export function sampleRows(data: Omit<DataConfig, "estimate">, rows: number, groups = 24): Array<Record<string, unknown>> {
    const f = data.format;
    const group = data.split.kind === "group" ? data.split.column : undefined;
    const topics = ["budget", "trust", "risk", "fairness", "time", "health", "work", "school", "travel", "news", "sport", "science"];
    const out: Array<Record<string, unknown>> = [];
    for (let i = 0; i < rows; i++) {
        const topic = topics[i % topics.length];
        const detail = `case ${i} about ${topic}, with ${(i * 7) % 13} details and a ${i % 2 ? "short" : "longer"} context for the model`;
        let row: Record<string, unknown>;
        switch (f.kind) {
            case "alpaca":
                row = { [f.instructionField]: `Predict the answer for ${topic}.`, [f.inputField]: `Scenario: ${detail}.`, [f.outputField]: `Response: ${(i * 3) % 7}` };
                break;
            case "chat":
                row = { [f.messagesField]: [{ role: "user", content: `Tell me about ${detail}.` }, { role: "assistant", content: `It is about ${topic}.` }] };
                break;
            case "seq2seq":
                row = { [f.inputField]: `I believe ${detail}.`, [f.targetField]: `Why do you think ${topic} matters here?` };
                break;
            case "classification":
                row = { [f.textField]: `An article on ${detail}.`, [f.labelField]: i % f.labels.length };
                break;
        }
        if (group) row[group] = `group-${(i % groups) + 1}`;
        out.push(row);
    }
    return out;
}
