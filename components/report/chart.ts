// Line charts as inline SVG, generated here so the report needs no script, font or network: scales with "nice"
// ticks (1, 2, 5 x 10^k), a log scale with decade ticks, exponential smoothing, and one <polyline> per series with
// hover titles. Pure functions; the geometry is unit-tested (test/report/chart.test.ts).
import { escapeHtml } from "./escape";

export interface Scale {
    readonly kind: "linear" | "log";
    /** The domain after rounding out to ticks. */
    readonly domain: readonly [number, number];
    readonly range: readonly [number, number];
    readonly ticks: readonly number[];
    map(value: number): number;
}

/** A step of 1, 2 or 5 x 10^k that gives about `count` intervals over `span`. */
export function niceStep(span: number, count: number): number {
    if (!(span > 0) || !(count >= 1)) throw new Error(`niceStep needs a positive span and count, got ${span}, ${count}`);
    const raw = span / count;
    const power = 10 ** Math.floor(Math.log10(raw));
    const fraction = raw / power;
    const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
    return nice * power;
}

/** Ticks covering [min, max] at a nice step; a degenerate domain is widened around its value. */
export function niceTicks(min: number, max: number, count = 5): number[] {
    if (!Number.isFinite(min) || !Number.isFinite(max)) throw new Error(`niceTicks needs finite bounds, got ${min}, ${max}`);
    if (min > max) [min, max] = [max, min];
    if (min === max) {
        const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
        min -= pad;
        max += pad;
    }
    const step = niceStep(max - min, count);
    const first = Math.floor(min / step + 1e-9) * step;
    const last = Math.ceil(max / step - 1e-9) * step;
    const ticks: number[] = [];
    // Rounded to the step's precision, so 0.1 + 0.2 prints as 0.3.
    const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
    for (let v = first; v <= last + step / 2; v += step) ticks.push(Number(v.toFixed(digits)));
    return ticks;
}

export function linearScale(values: readonly number[], range: readonly [number, number], count = 5): Scale {
    const finite = values.filter(Number.isFinite);
    if (!finite.length) throw new Error("linearScale needs at least one finite value");
    const ticks = niceTicks(Math.min(...finite), Math.max(...finite), count);
    const domain: [number, number] = [ticks[0]!, ticks[ticks.length - 1]!];
    const [r0, r1] = range;
    return { kind: "linear", domain, range, ticks, map: (v) => r0 + ((v - domain[0]) / (domain[1] - domain[0])) * (r1 - r0) };
}

/** Decades around the positive values; with fewer than three decades, 2 and 5 of each decade as well. */
export function logScale(values: readonly number[], range: readonly [number, number]): Scale {
    const positive = values.filter((v) => Number.isFinite(v) && v > 0);
    if (!positive.length) throw new Error("logScale needs at least one positive value (a log axis cannot show zero or less)");
    let lo = Math.floor(Math.log10(Math.min(...positive)) + 1e-9);
    let hi = Math.ceil(Math.log10(Math.max(...positive)) - 1e-9);
    if (lo === hi) hi = lo + 1;
    const ticks: number[] = [];
    for (let e = lo; e <= hi; e++) {
        const decade = 10 ** e;
        ticks.push(Number(decade.toPrecision(12)));
        if (hi - lo < 3 && e < hi) ticks.push(Number((2 * decade).toPrecision(12)), Number((5 * decade).toPrecision(12)));
    }
    const domain: [number, number] = [10 ** lo, 10 ** hi];
    const [r0, r1] = range;
    const l0 = Math.log10(domain[0]);
    const l1 = Math.log10(domain[1]);
    return { kind: "log", domain, range, ticks, map: (v) => r0 + ((Math.log10(v) - l0) / (l1 - l0)) * (r1 - r0) };
}

/**
 * Exponential moving average with the first values debiased (as TensorBoard's smoothing slider does): weight 0
 * returns the values unchanged, weight 0.9 follows a trend over about ten points.
 */
export function smooth(values: readonly number[], weight: number): number[] {
    if (!(weight >= 0 && weight < 1)) throw new Error(`smoothing weight must be in [0, 1), got ${weight}`);
    let last = 0;
    let debias = 1;
    return values.map((v) => {
        last = last * weight + (1 - weight) * v;
        debias *= weight;
        return last / (1 - debias);
    });
}

/** A number short enough for an axis label or a title. */
export function formatNumber(v: number): string {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e6 || a < 1e-3) return v.toExponential(1).replace("e+", "e");
    if (a >= 1000) return Math.round(v).toLocaleString("en-US");
    return Number(v.toPrecision(4)).toString();
}

export interface Series {
    readonly name: string;
    readonly color: string;
    /** [x, y] in data units, ascending in x. */
    readonly points: ReadonlyArray<readonly [number, number]>;
}

export interface ChartOptions {
    readonly title: string;
    readonly xLabel: string;
    readonly yLabel: string;
    readonly series: readonly Series[];
    readonly log?: boolean;
    /** Draw each series raw (faint) and smoothed with this weight on top. */
    readonly smoothing?: number;
    readonly width?: number;
    readonly height?: number;
    /** Draw a hoverable dot per point up to this many points per series. */
    readonly maxDots?: number;
}

const MARGIN = { left: 64, right: 16, top: 28, bottom: 40 };

/** One SVG line chart; series without points are left out. Returns a note instead when nothing can be drawn. */
export function lineChart(o: ChartOptions): string {
    const width = o.width ?? 640;
    const height = o.height ?? 300;
    const drawn = o.series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.log || y > 0)) })).filter((s) => s.points.length > 0);
    if (!drawn.length) return `<p class="empty">${escapeHtml(o.title)}: nothing recorded yet</p>`;
    const xs = drawn.flatMap((s) => s.points.map(([x]) => x));
    const ys = drawn.flatMap((s) => s.points.map(([, y]) => y));
    const x = linearScale(xs, [MARGIN.left, width - MARGIN.right], 6);
    const y = o.log ? logScale(ys, [height - MARGIN.bottom, MARGIN.top]) : linearScale(ys, [height - MARGIN.bottom, MARGIN.top], 5);
    const f = (v: number) => v.toFixed(1);
    const out: string[] = [];
    out.push(`<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(o.title)}">`);
    out.push(`<text class="title" x="${MARGIN.left}" y="18">${escapeHtml(o.title)}${o.log ? " (log scale)" : ""}</text>`);
    for (const t of y.ticks) {
        const py = f(y.map(t));
        out.push(`<line class="grid" x1="${MARGIN.left}" x2="${width - MARGIN.right}" y1="${py}" y2="${py}"/><text class="tick" x="${MARGIN.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${escapeHtml(formatNumber(t))}</text>`);
    }
    for (const t of x.ticks) {
        const px = f(x.map(t));
        out.push(`<line class="grid" x1="${px}" x2="${px}" y1="${MARGIN.top}" y2="${height - MARGIN.bottom}"/><text class="tick" x="${px}" y="${height - MARGIN.bottom + 16}" text-anchor="middle">${escapeHtml(formatNumber(t))}</text>`);
    }
    out.push(`<text class="axis" x="${(MARGIN.left + width - MARGIN.right) / 2}" y="${height - 6}" text-anchor="middle">${escapeHtml(o.xLabel)}</text>`);
    out.push(`<text class="axis" transform="translate(14 ${(MARGIN.top + height - MARGIN.bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(o.yLabel)}</text>`);
    for (const s of drawn) {
        const coords = (pts: ReadonlyArray<readonly [number, number]>) => pts.map(([px, py]) => `${f(x.map(px))},${f(y.map(py))}`).join(" ");
        const last = s.points[s.points.length - 1]!;
        const title = `<title>${escapeHtml(`${s.name}: ${s.points.length} points, last ${formatNumber(last[1])} at ${formatNumber(last[0])}`)}</title>`;
        const smoothed = o.smoothing ? smooth(s.points.map(([, v]) => v), o.smoothing).map((v, i) => [s.points[i]![0], v] as const) : null;
        out.push(`<g class="series" data-run="${escapeHtml(s.name)}">`);
        out.push(`<polyline class="${smoothed ? "raw" : "line"}" data-run="${escapeHtml(s.name)}" data-points="${s.points.length}" fill="none" stroke="${escapeHtml(s.color)}" points="${coords(s.points)}">${title}</polyline>`);
        if (smoothed) out.push(`<polyline class="smoothed" fill="none" stroke="${escapeHtml(s.color)}" points="${coords(smoothed)}">${title}</polyline>`);
        if (s.points.length <= (o.maxDots ?? 120)) {
            for (const [px, py] of s.points) {
                out.push(`<circle cx="${f(x.map(px))}" cy="${f(y.map(py))}" r="2.5" fill="${escapeHtml(s.color)}"><title>${escapeHtml(`${s.name}: ${formatNumber(py)} at ${o.xLabel} ${formatNumber(px)}`)}</title></circle>`);
            }
        }
        out.push("</g>");
    }
    out.push("</svg>");
    return out.join("\n");
}
