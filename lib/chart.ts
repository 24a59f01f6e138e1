/**
 * Charts as SVG, rendered in Node by Vega-Lite + Vega (no browser).
 */
import type { History } from './fit';

export interface Series {
  name: string;
  points: { x: number | string; y: number }[];
}

/** A line chart of several named series. x may be numbers or ISO dates. */
export async function lineChartSvg(series: Series[], options: { title?: string; xTitle?: string; yTitle?: string; temporal?: boolean; width?: number; height?: number } = {}): Promise<string> {
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const values = series.flatMap((s) => s.points.filter((p) => Number.isFinite(p.y)).map((p) => ({ x: p.x, y: p.y, series: s.name })));
  const spec = vegaLite.compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: options.title,
    width: options.width ?? 640,
    height: options.height ?? 320,
    data: { values },
    mark: { type: 'line', point: values.length < 200 },
    encoding: {
      x: { field: 'x', type: options.temporal ? 'temporal' : 'quantitative', title: options.xTitle ?? 'x' },
      y: { field: 'y', type: 'quantitative', title: options.yTitle ?? 'y', scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null },
    },
  } as never).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/** Training and validation loss per epoch (and per step, lightly), as an SVG chart. */
export async function lossChartSvg(history: History, options: { title?: string; yTitle?: string; scale?: number } = {}): Promise<string> {
  const scale = options.scale ?? 1;
  const stepsPerEpoch = history.batchLoss.length / Math.max(history.loss.length, 1);
  const series: Series[] = [
    { name: 'train (per step)', points: history.batchLoss.map((y, i) => ({ x: (i + 1) / stepsPerEpoch, y: y * scale })) },
    { name: 'train (epoch mean)', points: history.loss.map((y, i) => ({ x: i + 1, y: y * scale })) },
  ];
  if (history.valLoss.length) series.push({ name: 'validation', points: history.valLoss.map((y, i) => ({ x: i + 1, y: y * scale })) });
  return lineChartSvg(series, { title: options.title ?? 'Loss', xTitle: 'epoch', yTitle: options.yTitle ?? 'loss' });
}
