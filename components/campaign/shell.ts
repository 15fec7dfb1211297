// Shell quoting for the commands and files the program renders (the gate's command line, the runner's
// settings file, the user data's small scripts): one rule, so no two renderers quote differently.

/** `value` as one POSIX shell word: single quotes, with each embedded quote closed, escaped and reopened. */
export function shellQuote(value: string): string {
    return `'${value.replace(/'/g, `'\\''`)}'`;
}
