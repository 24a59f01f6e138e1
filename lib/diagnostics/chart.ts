/**
 * Charts as SVG, drawn by the library's own renderer (svg.ts): loss curves, gradient flow on a log
 * scale, forget-gate time constants, and line charts of any named series (numbers or ISO dates
 * on x). The functions are async for the callers written when they were rendered by Vega.
 */
import type { GateStatisticsLayer, GradientFlow } from './diagnostics';
import { heatmap, histogram, lineChart } from './svg';

export interface Series {
  name: string;
  points: { x: number | string; y: number }[];
}

/** A line chart of several named series. x may be numbers or ISO dates (`temporal`, or found by parsing). */
export async function lineChartSvg(series: Series[], options: { title?: string; xTitle?: string; yTitle?: string; temporal?: boolean; width?: number; height?: number; logY?: boolean } = {}): Promise<string> {
  const temporal = options.temporal ?? series.some((s) => s.points.some((p) => typeof p.x === 'string'));
  const lines = series.map((s) => ({
    name: s.name,
    points: s.points.map((p) => ({ x: typeof p.x === 'string' ? Date.parse(p.x) : p.x, y: p.y })),
  }));
  return lineChart(lines, {
    title: options.title, xTitle: options.xTitle ?? 'x', yTitle: options.yTitle ?? 'y', width: options.width ?? 640, height: options.height ?? 320,
  }, { x: temporal ? 'time' : 'linear', y: options.logY ? 'log' : 'linear' });
}

/** ||dL/dh_t|| against t on a log scale, one line per named flow (layer and direction). */
export async function gradientFlowChartSvg(flows: { name: string; flow: GradientFlow }[], options: { title?: string } = {}): Promise<string> {
  const series: Series[] = flows.flatMap(({ name, flow }) => flow.layers.map((l) => ({
    name: flow.layers.length > 1 ? `${name} layer ${l.layer}${l.direction ? ' reverse' : ''}` : name,
    points: l.norms.map((y, t) => ({ x: t, y })),
  })));
  return lineChartSvg(series, { title: options.title ?? 'Gradient flow: ||dL/dh_t|| (loss at the last step)', xTitle: 'time step t', yTitle: '||dL/dh_t|| (log scale)', logY: true });
}

/** Histogram of the LSTM forget gates' time constants tau = -1 / ln(f) (steps), per layer. */
export async function forgetTimeChartSvg(stats: { layers: GateStatisticsLayer[] }, options: { title?: string } = {}): Promise<string> {
  const groups = stats.layers.map((l) => ({
    name: `layer ${l.layer}${l.direction ? ' reverse' : ''}`,
    values: (l.forgetTimeConstants ?? []).map((tau) => Math.min(tau, 1000)),
  }));
  return histogram(groups, {
    title: options.title ?? 'LSTM memory: forget-gate time constants tau = -1 / ln(f)',
    xTitle: 'tau (steps, capped at 1000)', yTitle: 'units', width: 640, height: 240,
  });
}

/** What lossChartSvg reads of a run: fit's History has it (named here so that charts sit below training). */
export interface LossHistory {
  loss: readonly number[];
  valLoss: readonly number[];
  batchLoss: readonly number[];
  batchesPerEpoch?: number;
}

/** Training and validation loss per epoch (and per step, lightly), as an SVG chart. */
export async function lossChartSvg(history: LossHistory, options: { title?: string; yTitle?: string; scale?: number } = {}): Promise<string> {
  const scale = options.scale ?? 1;
  // steps on the epoch axis: a run stopped mid-epoch ends part of the way along it (histories
  // saved before batchesPerEpoch existed only have finished epochs to go by)
  const stepsPerEpoch = history.batchesPerEpoch ?? history.batchLoss.length / Math.max(history.loss.length, 1);
  const series: Series[] = [
    { name: 'train (per step)', points: history.batchLoss.map((y, i) => ({ x: (i + 1) / stepsPerEpoch, y: y * scale })) },
    { name: 'train (epoch mean)', points: history.loss.map((y, i) => ({ x: i + 1, y: y * scale })) },
  ];
  if (history.valLoss.length) series.push({ name: 'validation', points: history.valLoss.map((y, i) => ({ x: i + 1, y: y * scale })) });
  return lineChartSvg(series, { title: options.title ?? 'Loss', xTitle: 'epoch', yTitle: options.yTitle ?? 'loss' });
}

/**
 * Attention weights as a heat map: `weights` [target tokens][source tokens] (from
 * Seq2Seq#attentionWeights), a row per output token, a column per input token.
 */
export function attentionHeatmapSvg(weights: readonly (readonly number[])[], targetLabels: readonly string[], sourceLabels: readonly string[],
  options: { title?: string; cell?: number } = {}): string {
  if (!Array.isArray(weights) || weights.some((row) => !Array.isArray(row) || row.length !== sourceLabels.length)) {
    throw new TypeError(`attentionHeatmapSvg: expected weights to be ${targetLabels.length} rows of ${sourceLabels.length} numbers (one per source label)`);
  }
  if (weights.length !== targetLabels.length) throw new RangeError(`attentionHeatmapSvg: expected one target label per row of weights (${weights.length}) but received ${targetLabels.length}`);
  return heatmap(weights, targetLabels, sourceLabels, { title: options.title, xTitle: 'source', yTitle: 'output', cell: options.cell });
}
