// Cross-field checks of experiment.evaluation: what no single field shows (the answer shape against the data
// format, the evaluated split against the split ratios). Each names the path and the fix.
import type { Experiment } from "../config/schema";
import type { Problem } from "../config/problems";
import type { ResolvedRun } from "./types";

const error = (path: string, message: string): Problem => ({ severity: "error", path, message });

/** The share (ratios) or number (counts) of the data's rows or groups a split gets; 0 when it gets none. */
function splitShare(experiment: Experiment, name: "validation" | "test"): number {
    const split = experiment.data.split;
    if (split.kind === "random") return split.ratios[name];
    return split.counts ? split.counts[name] : (split.ratios?.[name] ?? 0);
}

export function checkEvaluation(experiment: Experiment): Problem[] {
    const e = experiment.evaluation;
    if (!e) return [];
    const problems: Problem[] = [];
    const format = experiment.data.format;
    if (e.answer.shape === "label" && format.kind !== "classification") {
        problems.push(error("evaluation.answer.shape", `is label, but data.format (${format.kind}) has no label list: use data.format.kind classification with labels, or answer.shape text`));
    }
    if (e.answer.shape === "json" && format.kind === "classification" && e.answer.key !== format.answerKey) {
        problems.push(error("evaluation.answer.key", `is "${e.answer.key}" but the answers are rendered as {"${format.answerKey}": ...} (data.format.answerKey): set key: ${format.answerKey}`));
    }
    if (splitShare(experiment, e.split) === 0) {
        const where = experiment.data.split.kind === "random" ? `data.split.ratios.${e.split}` : `data.split.${experiment.data.split.counts ? "counts" : "ratios"}.${e.split}`;
        problems.push(error("evaluation.split", `is ${e.split}, but ${where} gives it nothing: give the ${e.split} split a share (e.g. 0.05 of the rows) or evaluate another split`));
    }
    if (experiment.customJob) {
        problems.push(error("evaluation", "runs in the built-in trainer, and a customJob replaces it: remove evaluation, or write eval.json from your own job"));
    }
    return problems;
}

/**
 * training.selectBy of each run: the metric is scored as the evaluation scores it, on validation rows, at every
 * evalSteps, and picks the checkpoint the trainer keeps (load_best_model_at_end).
 */
export function checkSelection(experiment: Experiment, runs: readonly ResolvedRun[]): Problem[] {
    const problems: Problem[] = [];
    const reported = new Set<string>();
    const e = experiment.evaluation;
    for (const run of runs) {
        const t = run.training;
        const s = t.selectBy;
        if (!s) continue;
        const at = (field: string) => (run.path ? `${run.path}.training.${field}` : `training.${field}`);
        const label = experiment.runs || experiment.sweep ? ` (run ${run.name})` : "";
        const once = (problem: Problem) => {
            if (!reported.has(problem.path + problem.message)) problems.push(problem);
            reported.add(problem.path + problem.message);
        };
        if (!e) {
            once(error(at("selectBy"), `scores generated answers as the evaluation does, but the experiment has no evaluation${label}: add evaluation (answer, metrics: [${s.metric}]), or remove selectBy to select by the validation loss`));
        } else if (!e.metrics.includes(s.metric)) {
            once(error(at("selectBy.metric"), `is ${s.metric}, which evaluation.metrics (${e.metrics.join(", ")}) does not compute${label}: add ${s.metric} to evaluation.metrics or select by one of them`));
        }
        if (splitShare(experiment, "validation") === 0) {
            const where = experiment.data.split.kind === "random" ? "data.split.ratios.validation" : `data.split.${experiment.data.split.counts ? "counts" : "ratios"}.validation`;
            once(error(at("selectBy"), `samples validation rows at every evaluation, but ${where} gives the validation split nothing${label}: give it a share (e.g. 0.05 of the rows)`));
        }
        if (t.saveSteps % t.evalSteps !== 0 && !t.earlyStopping) {
            // (with earlyStopping, checks.ts reports the same arithmetic)
            once(error(at("saveSteps"), `is ${t.saveSteps} but selectBy keeps the checkpoint with the best ${s.metric}, so every saved step must be an evaluated one: make saveSteps a multiple of evalSteps (${t.evalSteps})${label}, e.g. ${t.evalSteps * Math.max(1, Math.round(t.saveSteps / t.evalSteps))}`));
        }
    }
    return problems;
}
