// Parsing an experiment: zod's checks of each field, turned into problems that name the path, the bad
// value and what is allowed. Cross-field checks live in campaignSpec.ts, where the runs are known.
import type { z } from "zod";
import { experiment, type Experiment } from "./schema";
import { findInstance, INSTANCE_TYPES } from "../plan/catalog";
import { ConfigError, problemsFromZod, type Problem } from "./problems";
import { unknownNameMessage } from "./suggest";

export function parseExperiment(raw: unknown, source = "the experiment config"): Experiment {
    const result = experiment.safeParse(raw ?? {}, { reportInput: true });
    if (!result.success) {
        const problems = problemsFromZod(result.error, (path) => knownKeysAt(experiment, path));
        // Instance names are checked against the catalog after parsing; a config that fails to parse
        // would hide a misspelt one until the next attempt, so they are checked here as well.
        const seen = new Set(problems.map((p) => p.path));
        for (const p of instanceTypeProblems(raw)) if (!seen.has(p.path)) problems.push(p);
        throw new ConfigError(problems, source);
    }
    return result.data;
}

/** Unknown instance types anywhere in a raw config, each with the nearest known type. */
export function instanceTypeProblems(raw: unknown): Problem[] {
    const problems: Problem[] = [];
    const check = (value: unknown, path: string) => {
        if (typeof value === "string" && !findInstance(value)) problems.push({ severity: "error", path, message: unknownNameMessage("instance type", value, INSTANCE_TYPES) });
    };
    const r = (raw ?? {}) as { compute?: { instanceType?: unknown }; prep?: { instanceType?: unknown }; runs?: unknown };
    check(r.compute?.instanceType, "compute.instanceType");
    check(r.prep?.instanceType, "prep.instanceType");
    if (Array.isArray(r.runs)) r.runs.forEach((run, i) => check((run as { compute?: { instanceType?: unknown } })?.compute?.instanceType, `runs[${i}].compute.instanceType`));
    return problems;
}

interface Def {
    type: string;
    shape?: Record<string, z.ZodType>;
    innerType?: z.ZodType;
    element?: z.ZodType;
    options?: z.ZodType[];
    in?: z.ZodType;
}

function def(schema: z.ZodType): Def {
    return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** The keys a mapping at `path` may hold, found by walking the schema (for "did you mean"). */
export function knownKeysAt(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string[] {
    let nodes: z.ZodType[] = [schema];
    for (const part of path) {
        nodes = nodes.flatMap((n) => unwrap(n)).flatMap((n) => {
            const d = def(n);
            if (typeof part === "number") return d.type === "array" && d.element ? [d.element] : [];
            return d.type === "object" && d.shape && part in d.shape ? [d.shape[part as string]] : [];
        });
    }
    const keys = new Set<string>();
    for (const n of nodes.flatMap((x) => unwrap(x))) {
        const d = def(n);
        if (d.type === "object" && d.shape) for (const k of Object.keys(d.shape)) keys.add(k);
    }
    return [...keys];
}

function unwrap(schema: z.ZodType): z.ZodType[] {
    const d = def(schema);
    if (d.innerType) return unwrap(d.innerType);
    if (d.type === "pipe" && d.in) return unwrap(d.in);
    if (d.type === "union" && d.options) return d.options.flatMap(unwrap);
    return [schema];
}
