/**
 * A small SVG renderer for the charts the library draws (line charts on linear, log or time
 * axes, and stacked histograms): plain strings, no dependencies, the same picture in Node and
 * in any viewer. Axes carry aria-labels that say what they show ("X-axis titled 'epoch' for a
 * linear scale with values from 0 to 0.444"), as Vega's SVG does.
 */

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

export interface Line {
  name: string;
  points: { x: number; y: number }[];
}

export interface Frame {
  title?: string;
  xTitle: string;
  yTitle: string;
  width: number;
  height: number;
}

export type AxisKind = 'linear' | 'log' | 'time';

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function round(value: number): string {
  return String(Math.round(value * 100) / 100);
}

/** About `count` round tick values covering [min, max] (steps of 1, 2 or 5 times a power of 10). */
export function linearTicks(min: number, max: number, count = 6): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / Math.max(count - 1, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const every = Math.max(1, Math.ceil((hi - lo) / 8));
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e += every) ticks.push(10 ** e);
  return ticks;
}

function label(value: number, kind: AxisKind, step: number): string {
  if (kind === 'time') return new Date(value).toISOString().slice(0, step >= 300 * 86_400_000 ? 4 : 7);
  if (kind === 'log') return value >= 1e4 || value < 1e-3 ? value.toExponential(0) : String(Number(value.toPrecision(3)));
  if (value === 0) return '0';
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  if (Math.abs(value) >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`;
  if (Math.abs(value) >= 1e4) return `${Number((value / 1e3).toPrecision(3))}k`;
  return value.toFixed(Math.min(digits, 6));
}

/** A scale from data to pixels, its ticks and their labels. */
interface Scale {
  map(value: number): number;
  ticks: number[];
  labels: string[];
  domain: [number, number];
  kind: AxisKind;
}

function scale(values: number[], kind: AxisKind, from: number, to: number, zero: boolean): Scale {
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (kind === 'log') {
    min = 10 ** Math.floor(Math.log10(min));
    max = 10 ** Math.ceil(Math.log10(max));
    if (max <= min) max = min * 10;
    const ticks = logTicks(min, max);
    const map = (v: number) => from + ((Math.log10(v) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (to - from);
    return { map, ticks, labels: ticks.map((t) => label(t, kind, 1)), domain: [min, max], kind };
  }
  if (zero) min = Math.min(min, 0);
  if (max === min) {
    const pad = Math.abs(max) > 0 ? Math.abs(max) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const ticks = kind === 'time' ? timeTicks(min, max) : linearTicks(min, max);
  // the domain reaches the outer ticks, so the axis ends on a round value
  const lo = Math.min(min, ticks[0]);
  const hi = Math.max(max, ticks[ticks.length - 1]);
  const map = (v: number) => from + ((v - lo) / (hi - lo)) * (to - from);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : Math.abs(hi - lo) || 1;
  return { map, ticks, labels: ticks.map((t) => label(t, kind, step)), domain: [lo, hi], kind };
}

function timeTicks(min: number, max: number): number[] {
  const day = 86_400_000;
  const spanDays = (max - min) / day;
  const stepMonths = [1, 2, 3, 6, 12, 24, 60, 120].find((m) => spanDays / (m * 30.44) <= 8) ?? 240;
  const start = new Date(min);
  const ticks: number[] = [];
  let year = start.getUTCFullYear();
  let month = Math.ceil(start.getUTCMonth() / stepMonths) * stepMonths;
  for (;;) {
    const t = Date.UTC(year + Math.floor(month / 12), month % 12, 1);
    if (t > max) break;
    if (t >= min) ticks.push(t);
    month += stepMonths;
    if (month >= 12) {
      year += Math.floor(month / 12);
      month %= 12;
    }
  }
  return ticks.length > 0 ? ticks : [min];
}

function describeAxis(axis: 'X' | 'Y', title: string, s: Scale): string {
  const show = (v: number) => (s.kind === 'time' ? new Date(v).toISOString().slice(0, 10) : s.kind === 'log' ? v.toExponential(0) : String(Number(v.toPrecision(3))));
  return `${axis}-axis titled '${title}' for a ${s.kind} scale with values from ${show(s.domain[0])} to ${show(s.domain[1])}`;
}

/** The frame of a chart: title, plot area, axes with ticks, labels and grid, and the legend. */
function frame(f: Frame, x: Scale, y: Scale, legend: string[], plot: { left: number; top: number; right: number; bottom: number }, body: string): string {
  const { left, top, right, bottom } = plot;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" ${FONT} font-size="11">`);
  parts.push(`<rect width="${f.width}" height="${f.height}" fill="white"/>`);
  if (f.title) parts.push(`<text x="${round((left + right) / 2)}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${escape(f.title)}</text>`);
  // grid and axes
  const xAxis = [`<g class="axis x" aria-label="${escape(describeAxis('X', f.xTitle, x))}" role="graphics-object">`];
  x.ticks.forEach((t, i) => {
    const px = round(x.map(t));
    xAxis.push(`<line x1="${px}" y1="${top}" x2="${px}" y2="${bottom}" stroke="#eee"/>`);
    xAxis.push(`<line x1="${px}" y1="${bottom}" x2="${px}" y2="${bottom + 5}" stroke="#888"/>`);
    xAxis.push(`<text x="${px}" y="${bottom + 17}" text-anchor="middle">${escape(x.labels[i])}</text>`);
  });
  xAxis.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#888"/>`);
  xAxis.push(`<text x="${round((left + right) / 2)}" y="${bottom + 34}" text-anchor="middle" font-weight="bold">${escape(f.xTitle)}</text></g>`);
  const yAxis = [`<g class="axis y" aria-label="${escape(describeAxis('Y', f.yTitle, y))}" role="graphics-object">`];
  y.ticks.forEach((t, i) => {
    const py = round(y.map(t));
    yAxis.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#eee"/>`);
    yAxis.push(`<line x1="${left - 5}" y1="${py}" x2="${left}" y2="${py}" stroke="#888"/>`);
    yAxis.push(`<text x="${left - 8}" y="${py}" dy="0.32em" text-anchor="end">${escape(y.labels[i])}</text>`);
  });
  yAxis.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#888"/>`);
  yAxis.push(`<text transform="translate(${left - 52},${round((top + bottom) / 2)}) rotate(-90)" text-anchor="middle" font-weight="bold">${escape(f.yTitle)}</text></g>`);
  parts.push(...xAxis, ...yAxis, body);
  // legend, right of the plot
  legend.forEach((name, i) => {
    const ly = top + 6 + i * 16;
    parts.push(`<g class="legend"><rect x="${right + 14}" y="${ly - 5}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>` +
      `<text x="${right + 30}" y="${ly}" dy="0.32em">${escape(name)}</text></g>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function plotArea(f: Frame, legend: string[]): { left: number; top: number; right: number; bottom: number } {
  const widest = Math.max(0, ...legend.map((n) => n.length));
  return { left: 70, top: f.title ? 32 : 12, right: f.width - (legend.length ? 40 + widest * 6.2 : 16), bottom: f.height - 46 };
}

/** Several named lines; points are drawn too where a line has few of them. */
export function lineChart(lines: Line[], f: Frame, axes: { x: AxisKind; y: AxisKind }): string {
  const visible = lines.map((l) => ({ ...l, points: l.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (axes.y !== 'log' || p.y > 0)) }));
  const all = visible.flatMap((l) => l.points);
  const names = visible.map((l) => l.name);
  const area = plotArea(f, names);
  if (all.length === 0) {
    const x = scale([0, 1], 'linear', area.left, area.right, false);
    const y = scale([0, 1], 'linear', area.bottom, area.top, false);
    return frame(f, x, y, names, area, `<text x="${round((area.left + area.right) / 2)}" y="${round((area.top + area.bottom) / 2)}" text-anchor="middle" fill="#888">(no data)</text>`);
  }
  const x = scale(all.map((p) => p.x), axes.x, area.left, area.right, false);
  const y = scale(all.map((p) => p.y), axes.y, area.bottom, area.top, false);
  const body: string[] = [];
  visible.forEach((l, i) => {
    const color = PALETTE[i % PALETTE.length];
    const path = l.points.map((p, k) => `${k === 0 ? 'M' : 'L'}${round(x.map(p.x))},${round(y.map(p.y))}`).join('');
    body.push(`<g class="series" aria-label="${escape(l.name)}">`);
    if (l.points.length > 1) body.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="${l.points.length > 200 ? 1 : 1.6}"/>`);
    if (l.points.length <= 60) for (const p of l.points) body.push(`<circle cx="${round(x.map(p.x))}" cy="${round(y.map(p.y))}" r="2.6" fill="${color}"/>`);
    body.push('</g>');
  });
  return frame(f, x, y, names, area, body.join('\n'));
}

/** Counts of `values` per group in about `maxBins` equal bins, stacked. */
export function histogram(groups: { name: string; values: number[] }[], f: Frame, maxBins = 30): string {
  const all = groups.flatMap((g) => g.values).filter(Number.isFinite);
  const names = groups.map((g) => g.name);
  const area = plotArea(f, names);
  const lo = all.length ? Math.min(...all) : 0;
  const hi = all.length ? Math.max(...all) : 1;
  const edges = linearTicks(lo, hi > lo ? hi : lo + 1, maxBins);
  if (edges[0] > lo) edges.unshift(edges[0] - (edges[1] - edges[0]));
  if (edges[edges.length - 1] <= hi) edges.push(edges[edges.length - 1] + (edges[1] - edges[0]));
  const width = edges[1] - edges[0];
  const counts = groups.map((g) => {
    const c = new Array<number>(edges.length - 1).fill(0);
    for (const v of g.values) if (Number.isFinite(v)) c[Math.min(c.length - 1, Math.floor((v - edges[0]) / width))] += 1;
    return c;
  });
  const totals = edges.slice(1).map((_, b) => counts.reduce((s, c) => s + c[b], 0));
  const x = scale([edges[0], edges[edges.length - 1]], 'linear', area.left, area.right, false);
  const y = scale([0, Math.max(1, ...totals)], 'linear', area.bottom, area.top, true);
  const body: string[] = [];
  for (let b = 0; b < edges.length - 1; ++b) {
    let base = 0;
    counts.forEach((c, g) => {
      if (c[b] === 0) return;
      const x0 = x.map(edges[b]);
      const x1 = x.map(edges[b + 1]);
      const y0 = y.map(base);
      const y1 = y.map(base + c[b]);
      body.push(`<rect x="${round(x0 + 0.5)}" y="${round(y1)}" width="${round(Math.max(0, x1 - x0 - 1))}" height="${round(y0 - y1)}" fill="${PALETTE[g % PALETTE.length]}"/>`);
      base += c[b];
    });
  }
  return frame(f, x, y, names, area, body.join('\n'));
}

/**
 * A heat map of `values` [rows][columns] in [0, 1] (attention weights: a row per output token, a
 * column per input token), white to dark blue, with the labels along the axes and each cell's
 * value in its title (shown on hover).
 */
export function heatmap(values: readonly (readonly number[])[], rowLabels: readonly string[], columnLabels: readonly string[],
  options: { title?: string; xTitle?: string; yTitle?: string; cell?: number } = {}): string {
  const cell = options.cell ?? 28;
  const left = 16 + 8 * Math.max(2, ...rowLabels.map((l) => l.length)) + 24;
  const top = (options.title ? 34 : 12) + 8 * Math.max(2, ...columnLabels.map((l) => l.length)) + 10;
  const columns = columnLabels.length;
  const width = left + columns * cell + 16;
  const height = top + rowLabels.length * cell + 34;
  const body: string[] = [];
  values.forEach((row, r) => row.forEach((v, c) => {
    const shade = Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0));
    const red = Math.round(255 - 222 * shade);
    const green = Math.round(255 - 185 * shade);
    const blue = Math.round(255 - 75 * shade);
    body.push(`<rect x="${left + c * cell}" y="${top + r * cell}" width="${cell - 1}" height="${cell - 1}" fill="rgb(${red},${green},${blue})">` +
      `<title>${escape(rowLabels[r] ?? '')} / ${escape(columnLabels[c] ?? '')}: ${round(v)}</title></rect>`);
  }));
  rowLabels.forEach((label, r) => body.push(`<text x="${left - 6}" y="${top + r * cell + cell / 2 + 4}" text-anchor="end" font-size="12" ${FONT}>${escape(label)}</text>`));
  columnLabels.forEach((label, c) => {
    const x = left + c * cell + cell / 2 + 4;
    body.push(`<text x="${x}" y="${top - 6}" transform="rotate(-90 ${x} ${top - 6})" font-size="12" ${FONT}>${escape(label)}</text>`);
  });
  if (options.title) body.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600" ${FONT}>${escape(options.title)}</text>`);
  if (options.xTitle) body.push(`<text x="${left + (columns * cell) / 2}" y="${height - 10}" text-anchor="middle" font-size="12" ${FONT}>${escape(options.xTitle)}</text>`);
  if (options.yTitle) body.push(`<text x="12" y="${top + (rowLabels.length * cell) / 2}" transform="rotate(-90 12 ${top + (rowLabels.length * cell) / 2})" text-anchor="middle" font-size="12" ${FONT}>${escape(options.yTitle)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escape(options.title ?? 'heat map')}">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}
