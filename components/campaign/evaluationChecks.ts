// Cross-field checks of experiment.evaluation: what no single field shows (the answer shape against the data
// format, the evaluated split against the split ratios). Each names the path and the fix.
import type { Experiment } from "../config/schema";
import type { Problem } from "../config/problems";

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
