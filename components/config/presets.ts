// Presets (stacks/*.yaml) and the merge rule that puts a stack's overrides on top of one.
//
// The merge rule, in full:
//   - objects merge key by key, recursively;
//   - every other value (numbers, strings, booleans, lists) in the override replaces the preset's;
//   - `null` in the override removes the key, so the schema's default applies again.
// Lists replace rather than append so that `runs` or `targetModules` in a stack mean exactly what they say.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { nearest } from "./suggest";

export const presetDir = path.join(__dirname, "..", "..", "stacks");

export type Plain = null | boolean | number | string | Plain[] | { [key: string]: Plain };

function isObject(value: unknown): value is Record<string, unknown> {
    return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function mergeConfig(base: unknown, override: unknown): unknown {
    if (override === undefined) return base;
    if (!isObject(base) || !isObject(override)) return override;
    const out: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(override)) {
        if (value === null) delete out[key];
        else out[key] = mergeConfig(base[key], value);
    }
    return out;
}

export function listPresets(dir: string = presetDir): string[] {
    return fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => f.slice(0, -".yaml".length))
        .sort();
}

export function loadPreset(name: string, dir: string = presetDir): unknown {
    const file = path.join(dir, `${name}.yaml`);
    if (!fs.existsSync(file)) {
        const names = listPresets(dir);
        const guess = nearest(name, names);
        throw new Error(
            `campaign:preset: no preset named "${name}" in ${path.relative(process.cwd(), dir) || dir}/` +
                (guess ? `; did you mean "${guess}"?` : "") +
                ` Presets: ${names.join(", ")}.`,
        );
    }
    return parse(fs.readFileSync(file, "utf8"));
}

/** What a stack says: an optional preset and overrides (the stack's `campaign:experiment`). */
export interface StackSettings {
    readonly preset?: string;
    readonly experiment?: unknown;
}

/** The raw experiment of a stack: the preset (if any) with the stack's overrides merged on top. */
export function composeExperiment(settings: StackSettings, dir: string = presetDir): unknown {
    const base = settings.preset ? loadPreset(settings.preset, dir) : {};
    return mergeConfig(base, settings.experiment ?? {});
}

/**
 * A stack's settings read from Pulumi.<stack>.yaml without the Pulumi CLI (for `plan` and the
 * rehearsal). `campaign:experiment` may be a mapping; secrets are not read here.
 */
export function readStackFile(file: string): StackSettings {
    const doc = parse(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> } | null;
    const config = doc?.config ?? {};
    const preset = config["campaign:preset"];
    if (preset !== undefined && typeof preset !== "string") {
        throw new Error(`${file}: campaign:preset must be a preset name (a string), got ${JSON.stringify(preset)}`);
    }
    return { preset: preset as string | undefined, experiment: config["campaign:experiment"] };
}

/**
 * Finds a stack by name: Pulumi.<name>.yaml at the project root, else a preset stacks/<name>.yaml.
 */
export function resolveStack(name: string, root: string = path.join(__dirname, "..", "..")): { settings: StackSettings; source: string } {
    const stackFile = path.join(root, `Pulumi.${name}.yaml`);
    if (fs.existsSync(stackFile)) return { settings: readStackFile(stackFile), source: path.basename(stackFile) };
    const presets = listPresets(path.join(root, "stacks"));
    if (presets.includes(name)) return { settings: { preset: name }, source: `stacks/${name}.yaml` };
    const stacks = fs
        .readdirSync(root)
        .filter((f) => /^Pulumi\..+\.yaml$/.test(f))
        .map((f) => f.slice("Pulumi.".length, -".yaml".length));
    const all = [...stacks, ...presets];
    const guess = nearest(name, all);
    throw new Error(
        `--stack ${name}: no Pulumi.${name}.yaml and no stacks/${name}.yaml` +
            (guess ? `; did you mean "${guess}"?` : "") +
            ` Known: ${all.join(", ")}.`,
    );
}
