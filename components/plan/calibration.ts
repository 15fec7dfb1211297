// Measured figures of an earlier campaign, to replace the plan's assumed MFU and setup time (`npm run plan --
// --calibrate-from <stack>`). The campaign report writes them (components/report/figures.ts, measuredFigures) beside
// its HTML; this is their schema and the rule that picks the figure for a run: the earlier campaign's run of the
// same model on the same instance type, else of the same model, else the mean over its runs. A run with no
// measured figure keeps the assumption, and the plan says which.
import { z } from "zod";

export const MEASURED_FIGURES_VERSION = 1;

export const measuredFigures = z
    .object({
        version: z.literal(MEASURED_FIGURES_VERSION),
        campaign: z.string(),
        /** The stack file it was resolved from, and when the report was written. */
        source: z.string(),
        generatedAt: z.string(),
        runs: z.array(
            z
                .object({
                    run: z.string(),
                    model: z.string(),
                    instanceType: z.string(),
                    /** Measured tokens/s x the plan's FLOPs per token / (GPUs x dense bf16 peak); null without a measured end. */
                    mfu: z.number().positive().nullable(),
                    /** Mean over the run's attempts of node boot (billing start) to its first training step. */
                    setupHours: z.number().min(0).nullable(),
                })
                .strict(),
        ),
    })
    .strict();
export type MeasuredFigures = z.output<typeof measuredFigures>;

export interface Calibration {
    readonly mfu?: number;
    readonly setupHours?: number;
    /** What was used, for the plan's assumptions. */
    readonly note: string;
}

const mean = (values: readonly number[]) => (values.length ? values.reduce((s, v) => s + v, 0) / values.length : undefined);

function pick(measured: MeasuredFigures, model: string, instanceType: string, field: "mfu" | "setupHours"): { value: number; from: string } | undefined {
    const withValue = measured.runs.filter((r) => r[field] !== null);
    const exact = withValue.find((r) => r.model === model && r.instanceType === instanceType);
    if (exact) return { value: exact[field]!, from: `run ${exact.run} (${model} on ${instanceType})` };
    const sameModel = withValue.find((r) => r.model === model);
    if (sameModel) return { value: sameModel[field]!, from: `run ${sameModel.run} (${model} on ${sameModel.instanceType})` };
    const all = mean(withValue.map((r) => r[field]!));
    return all === undefined ? undefined : { value: all, from: `the mean of its ${withValue.length} measured run(s)` };
}

/**
 * MFUs a GPU training run can plausibly measure. Outside it the figure is not a GPU's (a CPU rehearsal measures
 * ~3e-5 against the A10G's peak and would plan hundreds of hours) or the measurement is broken, so it is not used.
 */
export const PLAUSIBLE_MFU = { min: 0.01, max: 0.8 } as const;

/** The figures for one run of the new plan, from the earlier campaign's measured ones. */
export function calibrationFor(measured: MeasuredFigures, label: string, run: { name: string; model: string; instanceType: string }): Calibration {
    const picked = pick(measured, run.model, run.instanceType, "mfu");
    const plausible = picked !== undefined && picked.value >= PLAUSIBLE_MFU.min && picked.value <= PLAUSIBLE_MFU.max;
    const mfu = plausible ? picked : undefined;
    const setup = pick(measured, run.model, run.instanceType, "setupHours");
    const parts = [
        mfu
            ? `MFU ${mfu.value.toPrecision(3)} measured in ${label}, ${mfu.from}`
            : picked
              ? `MFU ${picked.value.toPrecision(3)} measured in ${label} (${picked.from}) is outside ${PLAUSIBLE_MFU.min}-${PLAUSIBLE_MFU.max} ` +
                `(a CPU rehearsal, or a broken measurement?): the assumed one is kept`
              : `no MFU measured in ${label}: the assumed one is kept`,
        setup ? `setup ${setup.value.toFixed(3)} h measured there, ${setup.from}` : "no setup time measured there: the assumed one is kept",
    ];
    return { ...(mfu ? { mfu: mfu.value } : {}), ...(setup ? { setupHours: setup.value } : {}), note: `${run.name}: calibrated: ${parts.join("; ")}` };
}
