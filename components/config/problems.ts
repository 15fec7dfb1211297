// Config problems: every one names its path, the bad value and what is allowed, and all of them are
// reported together before anything is created.
import type { z } from "zod";
import { nearest } from "./suggest";

export interface Problem {
    readonly severity: "error" | "warning";
    /** Dotted path in the experiment config, e.g. training.learningRate or runs[1].model.id. */
    readonly path: string;
    readonly message: string;
}

export class ConfigError extends Error {
    constructor(
        readonly problems: readonly Problem[],
        readonly source: string = "the experiment config",
    ) {
        super(formatProblems(problems.filter((p) => p.severity === "error"), source));
        this.name = "ConfigError";
    }
}

export function formatProblems(problems: readonly Problem[], source: string): string {
    const errors = problems.filter((p) => p.severity === "error");
    const head = errors.length
        ? `${source} has ${errors.length} problem${errors.length === 1 ? "" : "s"}; nothing was created:`
        : `${source}: warnings:`;
    return [head, ...problems.map((p) => `  - ${p.path || "(top level)"}: ${p.message}`)].join("\n");
}

export function joinPath(path: ReadonlyArray<PropertyKey>): string {
    let out = "";
    for (const part of path) {
        if (typeof part === "number") out += `[${part}]`;
        else out += out ? `.${String(part)}` : String(part);
    }
    return out;
}

export function show(value: unknown): string {
    if (value === undefined) return "nothing";
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function expectedName(expected: string): string {
    const names: Record<string, string> = { int: "an integer", number: "a number", object: "a mapping", array: "a list", string: "a string", boolean: "true or false" };
    return names[expected] ?? `a ${expected}`;
}

function typeName(value: unknown): string {
    if (value === null) return "null";
    if (Array.isArray(value)) return "a list";
    return typeof value === "object" ? "a mapping" : typeof value;
}

/** Turns zod's issues into problems a person can act on. Needs safeParse(..., { reportInput: true }). */
export function problemsFromZod(
    error: z.ZodError,
    knownKeysAt: (path: ReadonlyArray<PropertyKey>) => string[] = () => [],
): Problem[] {
    const problems: Problem[] = [];
    for (const issue of error.issues) {
        const path = issue.path;
        const input = (issue as { input?: unknown }).input;
        switch (issue.code) {
            case "invalid_type": {
                const expected = expectedName(issue.expected);
                const message = input === undefined ? `required, ${expected} (missing)` : `got ${show(input)} (${typeName(input)}); expected ${expected}`;
                problems.push({ severity: "error", path: joinPath(path), message });
                break;
            }
            case "invalid_value": {
                const allowed = issue.values.map((v) => JSON.stringify(v));
                const guess = typeof input === "string" ? nearest(input, issue.values.map(String)) : undefined;
                problems.push({
                    severity: "error",
                    path: joinPath(path),
                    message: `got ${show(input)}; allowed: ${allowed.join(", ")}` + (guess ? `; did you mean "${guess}"?` : ""),
                });
                break;
            }
            case "unrecognized_keys": {
                const known = knownKeysAt(path);
                for (const key of issue.keys) {
                    const guess = known.length ? nearest(key, known) : undefined;
                    problems.push({
                        severity: "error",
                        path: joinPath([...path, key]),
                        message: `unknown setting` + (guess ? `; did you mean "${guess}"?` : known.length ? `; known here: ${known.join(", ")}` : ""),
                    });
                }
                break;
            }
            case "invalid_union": {
                const options = (issue as { options?: unknown[] }).options;
                const discriminator = (issue as { discriminator?: string }).discriminator;
                if (options && discriminator) {
                    const value = isRecord(input) ? input[discriminator] : input;
                    const guess = typeof value === "string" ? nearest(value, options.map(String)) : undefined;
                    const at = path[path.length - 1] === discriminator ? path : [...path, discriminator];
                    problems.push({
                        severity: "error",
                        path: joinPath(at),
                        message: `got ${show(value)}; allowed: ${options.map((o) => JSON.stringify(o)).join(", ")}` + (guess ? `; did you mean "${guess}"?` : ""),
                    });
                } else {
                    problems.push({ severity: "error", path: joinPath(path), message: `${issue.message}; got ${show(input)}` });
                }
                break;
            }
            case "too_small":
            case "too_big": {
                const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
                const word = issue.code === "too_small" ? (issue.inclusive === false ? "greater than" : "at least") : issue.inclusive === false ? "less than" : "at most";
                const what = issue.origin === "array" ? `a list of ${word} ${String(bound)} item(s)` : issue.origin === "string" ? `${word} ${String(bound)} characters` : `${word} ${String(bound)}`;
                problems.push({ severity: "error", path: joinPath(path), message: `got ${show(input)}; must be ${what}` });
                break;
            }
            case "invalid_key": {
                // A record's key failed its own check: the nested issues say why.
                const reasons = issue.issues.map((i) => i.message).join("; ");
                problems.push({ severity: "error", path: joinPath(path), message: `the key ${show(path[path.length - 1])} is not allowed: ${reasons}` });
                break;
            }
            default:
                problems.push({ severity: "error", path: joinPath(path), message: `${issue.message}; got ${show(input)}` });
        }
    }
    return problems;
}

function isRecord(value: unknown): value is Record<string, unknown> {
    return value !== null && typeof value === "object" && !Array.isArray(value);
}
