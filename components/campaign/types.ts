// The resolved campaign's types, shared by resolve.ts, checks.ts and the plan's estimates. A leaf: it imports
// only other leaves' types, so resolve -> checks -> plan/runEstimates -> types is a straight line.
import type { Experiment, MethodConfig, ModelConfig, TrainingConfig } from "../config/schema";
import type { PrepSpec, TrainSpec } from "./jobSpec";
import type { Problem } from "../config/problems";

export interface ResolvedRun {
    readonly name: string;
    /** Where this run's settings came from in the config, for error paths. */
    readonly path: string;
    readonly model: ModelConfig;
    readonly method: MethodConfig;
    readonly training: TrainingConfig;
    readonly instanceType: string;
}

/** An experiment resolved into runs and job specs: what the plan and the resources are built from. */
export interface ResolvedCampaign {
    readonly experiment: Experiment;
    readonly runs: readonly ResolvedRun[];
    readonly prepSpec: PrepSpec;
    /** In the order of `runs`. */
    readonly trainSpecs: readonly TrainSpec[];
    readonly warnings: readonly Problem[];
}
