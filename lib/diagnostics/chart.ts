/**
 * Charts as SVG, rendered in Node by Vega-Lite + Vega (no browser).
 */
import type { GateStatisticsLayer, GradientFlow } from './diagnostics';

export interface Series {
  name: string;
  points: { x: number | string; y: number }[];
}

/** A line chart of several named series. x may be numbers or ISO dates. */
export async function lineChartSvg(series: Series[], options: { title?: string; xTitle?: string; yTitle?: string; temporal?: boolean; width?: number; height?: number; logY?: boolean } = {}): Promise<string> {
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const values = series.flatMap((s) => s.points.filter((p) => Number.isFinite(p.y) && (!options.logY || p.y > 0)).map((p) => ({ x: p.x, y: p.y, series: s.name })));
  return renderSvg(vega, vegaLite, {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: options.title,
    width: options.width ?? 640,
    height: options.height ?? 320,
    data: { values },
    mark: { type: 'line', point: values.length < 200 },
    encoding: {
      x: { field: 'x', type: options.temporal ? 'temporal' : 'quantitative', title: options.xTitle ?? 'x' },
      y: { field: 'y', type: 'quantitative', title: options.yTitle ?? 'y', scale: options.logY ? { type: 'log' } : { zero: false } },
      color: { field: 'series', type: 'nominal', title: null },
    },
  });
}

async function renderSvg(vega: typeof import('vega'), vegaLite: typeof import('vega-lite'), spec: Record<string, unknown>): Promise<string> {
  const view = new vega.View(vega.parse(vegaLite.compile(spec as never).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
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
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const values = stats.layers.flatMap((l) => (l.forgetTimeConstants ?? []).map((tau) => ({
    tau: Math.min(tau, 1000), layer: `layer ${l.layer}${l.direction ? ' reverse' : ''}`,
  })));
  return renderSvg(vega, vegaLite, {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: options.title ?? 'LSTM memory: forget-gate time constants tau = -1 / ln(f)',
    width: 640, height: 240, data: { values },
    mark: 'bar',
    encoding: {
      x: { field: 'tau', type: 'quantitative', bin: { maxbins: 30 }, title: 'tau (steps, capped at 1000)' },
      y: { aggregate: 'count', type: 'quantitative', title: 'units' },
      color: { field: 'layer', type: 'nominal', title: null },
    },
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
