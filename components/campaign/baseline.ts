// Which run evaluates which base model. With `evaluation.baseline`, each distinct base model of a campaign is
// evaluated once, on the same rows as the runs, by the first run (in config order) that trains it: that run's
// trainer evaluates the base weights on its own node after training and writes them under output/baseline/.
// The choice is a pure function of the config, so the spec records it (computeBaseline) and every reader
// (the status, the report) finds the baseline without any coordination between nodes.
import type { ModelConfig } from "../config/schema";

export interface BaselineOwner {
    /** The base model evaluated. */
    readonly model: ModelConfig;
    /** The run whose node evaluates it. */
    readonly run: string;
}

function modelKey(model: ModelConfig): string {
    return `${model.id}@${model.revision}`;
}

/** One owner per distinct base model, in run order. */
export function baselineOwners(runs: ReadonlyArray<{ readonly name: string; readonly model: ModelConfig }>): BaselineOwner[] {
    const owners = new Map<string, BaselineOwner>();
    for (const run of runs) if (!owners.has(modelKey(run.model))) owners.set(modelKey(run.model), { model: run.model, run: run.name });
    return [...owners.values()];
}

/** The owner of the baseline a run is compared with (the one of its own base model). */
export function baselineOf(runs: ReadonlyArray<{ readonly name: string; readonly model: ModelConfig }>, run: string): BaselineOwner | undefined {
    const model = runs.find((r) => r.name === run)?.model;
    return model ? baselineOwners(runs).find((o) => modelKey(o.model) === modelKey(model)) : undefined;
}
