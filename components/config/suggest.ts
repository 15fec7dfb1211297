// "Did you mean ...?" for names a user types: instance types, model ids, optimizers, preset names.
// Pure and small: an edit distance and a rule for when a candidate is close enough to offer.

/**
 * Optimal-string-alignment distance (Levenshtein plus adjacent transposition), so "g5.2xlagre" is one
 * edit from "g5.2xlarge" rather than two.
 */
export function editDistance(a: string, b: string): number {
    if (a === b) return 0;
    if (a.length === 0) return b.length;
    if (b.length === 0) return a.length;
    const rows = a.length + 1;
    const cols = b.length + 1;
    const d: number[][] = Array.from({ length: rows }, (_, i) => {
        const row = new Array<number>(cols).fill(0);
        row[0] = i;
        return row;
    });
    for (let j = 0; j < cols; j++) d[0]![j] = j;
    for (let i = 1; i < rows; i++) {
        for (let j = 1; j < cols; j++) {
            const cost = a[i - 1] === b[j - 1] ? 0 : 1;
            let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
            if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
            d[i]![j] = best;
        }
    }
    return d[a.length]![b.length]!;
}

/**
 * How far a candidate may be and still be offered: 2 edits for short names, up to 40% of the longer
 * name for long ones. Truncations ("p4d.24xl" for "p4d.24xlarge") count as close when the input is a
 * prefix of the candidate and at least 3 characters long.
 */
function allowed(input: string, candidate: string): number {
    return Math.max(2, Math.floor(0.4 * Math.max(input.length, candidate.length)));
}

/**
 * The candidate closest to `input` (case-insensitive), or undefined when none is close enough.
 * Ties go to a candidate that starts with the input, then to the earlier candidate.
 */
export function nearest(input: string, candidates: readonly string[]): string | undefined {
    const needle = input.trim().toLowerCase();
    if (needle.length === 0) return undefined;
    let best: { candidate: string; distance: number; prefix: boolean } | undefined;
    for (const candidate of candidates) {
        const hay = candidate.toLowerCase();
        if (hay === needle) return candidate;
        const distance = editDistance(needle, hay);
        const prefix = needle.length >= 3 && hay.startsWith(needle);
        if (distance > allowed(needle, hay) && !prefix) continue;
        if (
            best === undefined ||
            distance < best.distance ||
            (distance === best.distance && prefix && !best.prefix)
        ) {
            best = { candidate, distance, prefix };
        }
    }
    return best?.candidate;
}

/** "did you mean X?" for the nearest candidate, or "" when nothing is close. */
export function didYouMean(input: string, candidates: readonly string[]): string {
    const guess = nearest(input, candidates);
    return guess === undefined ? "" : `did you mean ${guess}?`;
}

/**
 * A complete message for an unknown name: `unknown instance type "g5.2xlarg": did you mean g5.2xlarge?`,
 * or, when nothing is close, the valid names (up to `listAtMost` of them).
 */
export function unknownNameMessage(what: string, input: string, candidates: readonly string[], listAtMost = 12): string {
    const hint = didYouMean(input, candidates);
    if (hint) return `unknown ${what} "${input}": ${hint}`;
    const shown = candidates.slice(0, listAtMost).join(", ");
    const more = candidates.length > listAtMost ? `, ... (${candidates.length - listAtMost} more)` : "";
    return `unknown ${what} "${input}"; valid: ${shown}${more}`;
}
