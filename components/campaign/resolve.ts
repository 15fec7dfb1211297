// From a raw experiment to a campaign: the runs (a list, a grid, or one), the prep job's spec and one
// training spec per run, plus every cross-field problem, all found before anything is created.
import { z } from "zod";
import { lora as loraSchema, methodKinds, model as modelSchema, training as trainingSchema, type Experiment, type ModelConfig } from "../config/schema";
import { parseExperiment } from "../config/experiment";
import { JOB_SPEC_VERSION, shortHash, trainSpec as trainSpecSchema, withHashes, type EvaluationSet, type PrepSpec, type TrainEvaluation, type TrainSpec, type TrainSpecBody } from "./jobSpec";
import { baselineOwners, type BaselineOwner } from "./baseline";
import { checkEvaluation, checkSelection } from "./evaluationChecks";
import { IMAGE_FOLDER, PREP_RUN, RESERVED_RUN_NAMES } from "./layout";
import { mergeConfig } from "../config/presets";
import { ConfigError, joinPath, problemsFromZod, type Problem } from "../config/problems";
import { checkRun, checkCampaign } from "./checks";
import type { ResolvedCampaign, ResolvedRun } from "./types";
import { getInstance } from "../plan/catalog";

/** Runs a campaign may hold: a grid that expands past this is almost always a mistake, and each run is a node. */
export const MAX_RUNS = 32;

/** Bumped when the prep job's output format changes, so old prepared datasets are not reused. */
export const PREP_FORMAT_VERSION = 1;

const methodSchema = z.object({ kind: z.enum(methodKinds), lora: loraSchema }).strict();

export function resolveCampaign(raw: unknown, source = "the experiment config"): ResolvedCampaign {
    const experiment = parseExperiment(raw, source);
    const problems: Problem[] = [];
    const runs = expandRuns(experiment, problems);
    for (const run of runs) problems.push(...checkRun(experiment, run));
    problems.push(...checkCampaign(experiment, runs));
    problems.push(...checkEvaluation(experiment));
    problems.push(...checkSelection(experiment, runs));
    if (problems.some((p) => p.severity === "error")) throw new ConfigError(problems, source);

    const { spec: prepSpec, trainingDataHash } = renderPrepSpec(experiment, runs);
    const owners = baselineOwners(runs);
    const trainSpecs = runs.map((run) => renderTrainSpec(experiment, run, prepSpec.prepHash, trainingDataHash, owners));
    return { experiment, runs, prepSpec, trainSpecs, warnings: problems };
}

// ---------------------------------------------------------------- runs

function expandRuns(experiment: Experiment, problems: Problem[]): ResolvedRun[] {
    const base = {
        model: experiment.model,
        method: experiment.method,
        training: experiment.training,
        compute: { instanceType: experiment.compute.instanceType },
    };
    const listed = experiment.runs ?? [{ name: "main" }];
    const grid = experiment.sweep ? gridCombinations(experiment.sweep.grid) : [[]];
    const total = listed.length * grid.length;
    if (total > MAX_RUNS) {
        problems.push({
            severity: "error",
            path: experiment.sweep ? "sweep.grid" : "runs",
            message: `expands to ${total} runs (${listed.length} run(s) x ${grid.length} grid point(s)); at most ${MAX_RUNS} per campaign, each run is one GPU node: split the sweep into several stacks`,
        });
        return [];
    }

    const runs: ResolvedRun[] = [];
    listed.forEach((entry, i) => {
        const { name, ...overrides } = entry;
        const path = experiment.runs ? `runs[${i}]` : "";
        for (const point of grid) {
            let merged = mergeConfig(base, overrides) as Record<string, unknown>;
            for (const [dotted, value] of point) merged = setPath(merged, dotted, value);
            const runName = point.length === 0 ? name : gridRunName(experiment.runs ? name : "", point, runs.length);
            const parsed = parseRunParts(merged, path, problems);
            if (parsed) runs.push({ name: runName, path, ...parsed });
        }
    });

    const seen = new Map<string, number>();
    runs.forEach((run, i) => {
        if (RESERVED_RUN_NAMES.includes(run.name)) {
            problems.push({ severity: "error", path: `${run.path || "runs"}.name`, message: `"${run.name}" is reserved for the campaign's own folder runs/<campaign>/${run.name}/ (${run.name === PREP_RUN ? "the prep job" : run.name === IMAGE_FOLDER ? "the image build" : "the node runner"}); choose another run name` });
        }
        const first = seen.get(run.name);
        if (first !== undefined) problems.push({ severity: "error", path: `${run.path || "runs"}.name`, message: `run name "${run.name}" is used twice (runs ${first + 1} and ${i + 1}); names must be unique` });
        seen.set(run.name, i);
    });
    return runs;
}

function parseRunParts(merged: Record<string, unknown>, path: string, problems: Problem[]): Omit<ResolvedRun, "name" | "path"> | undefined {
    const parts = z
        .object({ model: modelSchema, method: methodSchema, training: trainingSchema, compute: z.object({ instanceType: z.string() }) })
        .safeParse(merged, { reportInput: true });
    if (!parts.success) {
        for (const p of problemsFromZod(parts.error)) problems.push({ ...p, path: path ? `${path}.${p.path}` : p.path });
        return undefined;
    }
    return { model: parts.data.model, method: parts.data.method, training: parts.data.training, instanceType: parts.data.compute.instanceType };
}

type GridPoint = Array<[string, unknown]>;

function gridCombinations(grid: Record<string, Array<string | number | boolean>>): GridPoint[] {
    let points: GridPoint[] = [[]];
    for (const [dotted, values] of Object.entries(grid)) {
        points = points.flatMap((point) => values.map((v): GridPoint => [...point, [dotted, v]]));
    }
    return points;
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): Record<string, unknown> {
    const keys = dotted.split(".");
    const patch: Record<string, unknown> = {};
    let cursor = patch;
    keys.forEach((key, i) => {
        if (i === keys.length - 1) cursor[key] = value;
        else cursor = cursor[key] = {} as Record<string, unknown>;
    });
    return mergeConfig(target, patch) as Record<string, unknown>;
}

/** lr-1e-05-r-16 style names from a grid point; stable, and short enough for tags and S3 keys. */
function gridRunName(prefix: string, point: GridPoint, index: number): string {
    const slug = point
        .map(([dotted, value]) => `${abbreviate(dotted.split(".").pop() ?? dotted)}-${String(value)}`)
        .join("-")
        .toLowerCase()
        .replace(/[^a-z0-9-]+/g, "-")
        .replace(/-+/g, "-")
        .replace(/^-|-$/g, "");
    const name = prefix ? `${prefix}-${slug}` : slug;
    return name.length <= 40 ? name : `${(prefix || "sweep").slice(0, 30)}-${index + 1}`;
}

function abbreviate(key: string): string {
    const known: Record<string, string> = { learningRate: "lr", r: "r", alpha: "alpha", perDeviceBatch: "bs", gradientAccumulation: "ga", epochs: "ep", id: "model" };
    return known[key] ?? key;
}

// ---------------------------------------------------------------- specs

/** The prep spec, and the hash of its identity without the evaluation rows: what the runs' training hashes cover. */
function renderPrepSpec(experiment: Experiment, runs: readonly ResolvedRun[]): { spec: PrepSpec; trainingDataHash: string } {
    const { estimate: _estimate, ...data } = experiment.data;
    const tokenizer = data.tokenize.enabled ? runs[0]?.model : undefined;
    const stageModels = uniqueModels(runs).filter((m) => !m.id.startsWith("s3://"));
    const evaluation = evaluationSetOf(experiment, runs);
    const identity = { version: PREP_FORMAT_VERSION, data, tokenizer, stageModels, evaluation };
    const spec: PrepSpec = {
        schemaVersion: JOB_SPEC_VERSION,
        kind: "prep",
        campaign: experiment.name,
        prepHash: shortHash(identity),
        data,
        ...(tokenizer ? { tokenizer } : {}),
        stageModels,
        ...(evaluation ? { evaluation } : {}),
    };
    return { spec, trainingDataHash: shortHash({ ...identity, evaluation: undefined }) };
}

/** What prep keeps for the evaluation: the rows and the group column, not how they are scored; and the validation
 *  rows the runs that select by a task metric sample (the most any of them asks for). */
function evaluationSetOf(experiment: Experiment, runs: readonly ResolvedRun[]): EvaluationSet | undefined {
    const e = experiment.evaluation;
    if (!e) return undefined;
    const selectionRows = Math.max(0, ...runs.map((r) => r.training.selectBy?.rows ?? 0));
    return { split: e.split, rows: e.rows, seed: e.seed, ...(e.groupBy ? { groupBy: e.groupBy } : {}), ...(selectionRows > 0 ? { selectionRows } : {}) };
}

function trainEvaluationOf(experiment: Experiment, run: ResolvedRun, owners: readonly BaselineOwner[]): TrainEvaluation | undefined {
    const e = experiment.evaluation;
    if (!e) return undefined;
    const format = experiment.data.format;
    return {
        ...e,
        computeBaseline: e.baseline && owners.some((o) => o.run === run.name),
        ...(format.kind === "classification" ? { labels: format.labels } : {}),
    };
}

function uniqueModels(runs: readonly ResolvedRun[]): ModelConfig[] {
    const seen = new Map<string, ModelConfig>();
    for (const run of runs) seen.set(`${run.model.id}@${run.model.revision}`, run.model);
    return [...seen.values()];
}

function renderTrainSpec(experiment: Experiment, run: ResolvedRun, prepHash: string, trainingDataHash: string, owners: readonly BaselineOwner[]): TrainSpec {
    const evaluation = trainEvaluationOf(experiment, run, owners);
    const body: TrainSpecBody = {
        schemaVersion: JOB_SPEC_VERSION,
        kind: "train",
        campaign: experiment.name,
        run: run.name,
        prepHash,
        model: run.model,
        method: run.method,
        training: run.training,
        data: {
            formatKind: experiment.data.format.kind,
            tokenized: experiment.data.tokenize.enabled,
            packing: experiment.data.tokenize.packing,
            maxLength: experiment.data.tokenize.enabled ? experiment.data.tokenize.maxLength : run.training.maxSeqLength,
        },
        gpus: gpusOf(run.instanceType),
        tracking: { ...(experiment.tracking.wandbProject ? { wandbProject: experiment.tracking.wandbProject } : {}) },
        ...(experiment.customJob ? { customJob: experiment.customJob } : {}),
        ...(evaluation ? { evaluation } : {}),
    };
    const spec = withHashes(body, trainingDataHash);
    // The spec is the contract with the Python jobs: render only what the schema accepts.
    const checked = trainSpecSchema.safeParse(spec);
    if (!checked.success) throw new Error(`internal: rendered train spec for ${run.name} is invalid: ${joinPath(checked.error.issues[0]?.path ?? [])} ${checked.error.issues[0]?.message}`);
    return checked.data;
}

function gpusOf(instanceType: string): number {
    return getInstance(instanceType).gpuCount;
}
