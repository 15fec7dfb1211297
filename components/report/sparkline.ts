// A run's loss as one line of terminal text for `campaign watch`: the curve resampled to `width` columns (each
// column the mean of the points it covers) and drawn with the eight block heights.
const BLOCKS = "▁▂▃▄▅▆▇█";

export function sparkline(values: readonly number[], width = 40): string {
    if (!(width >= 1)) throw new Error(`sparkline width must be at least 1, got ${width}`);
    const finite = values.filter(Number.isFinite);
    if (!finite.length) return "";
    const columns = Math.min(width, finite.length);
    const means: number[] = [];
    for (let c = 0; c < columns; c++) {
        const from = Math.floor((c * finite.length) / columns);
        const to = Math.floor(((c + 1) * finite.length) / columns);
        const slice = finite.slice(from, Math.max(to, from + 1));
        means.push(slice.reduce((s, v) => s + v, 0) / slice.length);
    }
    const lo = Math.min(...means);
    const hi = Math.max(...means);
    return means.map((v) => BLOCKS[hi === lo ? 3 : Math.round(((v - lo) / (hi - lo)) * (BLOCKS.length - 1))]).join("");
}
