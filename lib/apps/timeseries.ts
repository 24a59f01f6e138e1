/**
 * Time series: sliding windows over several aligned series, and TimeSeriesForecaster,
 * a multi-step forecaster whose predictions come back in the original units.
 *
 * Windows are expressed relative to the last observed value of each series and
 * scaled by the spread of those differences, so the model learns shapes and changes
 * rather than levels: a trend that leaves the training range still forecasts well.
 * The scaling statistics are saved in the model file.
 *
 * @example
 * const f = new TimeSeriesForecaster({ lookback: 36, horizon: 12 });
 * await f.train([co2], { epochs: 30 });
 * f.predict([co2.slice(-36)]); // the next 12 values, in ppm
 */
import { describe, expectBoolean, expectInteger, expectOptions, expectKnownKeys, rangeError, typeError } from '../core/errors';
import { fit, FitOptions, History } from '../train/fit';
import { Adam } from '../optim/optimizers';
import { loadModel, parseJson, save } from '../io/serialize';
import { SequenceModel, CellType } from '../nn/sequence-model';
import { Tensor } from '../core/tensor';

/** Series as channels: a single number[] (one series) or number[][] (channel, time). */
export type SeriesInput = ArrayLike<number> | ArrayLike<number>[];

function channelsOf(series: unknown, name: string): Float64Array[] {
  const list = Array.isArray(series) && series.length > 0 && typeof series[0] !== 'number' ? (series as ArrayLike<number>[]) : [series as ArrayLike<number>];
  return list.map((s, c) => {
    if (!s || typeof (s as ArrayLike<number>).length !== 'number') throw typeError(`Expected ${name}[${c}] to be an array of numbers but received ${describe(s)}`);
    const values = Float64Array.from(s as ArrayLike<number>);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw rangeError(`${name}[${c}][${bad}] is not a finite number`);
    if (values.length !== (list[0] as ArrayLike<number>).length) throw rangeError(`${name}: every series must have the same length`);
    return values;
  });
}

export interface WindowOptions {
  lookback: number;
  horizon: number;
  /** Channels to forecast. Default [0]. */
  targets?: number[];
}

export interface ForecasterConfig {
  lookback: number;
  horizon: number;
  targets: number[];
  channels: number;
  /** per channel: scale of (value - last observed value) */
  scale: number[];
}

/**
 * Every window of `lookback` steps followed by `horizon` steps: inputs [N, lookback,
 * channels] and targets [N, horizon * targets.length], relative to the last input step
 * of each channel and divided by `scale`.
 */
export function makeWindows(series: SeriesInput, options: WindowOptions & { scale?: number[] }): { inputs: Tensor; targets: Tensor; scale: number[] } {
  const channels = channelsOf(series, 'series');
  const opts = expectOptions(options, 'options');
  const lookback = expectInteger(opts.lookback, 'options.lookback', 1);
  const horizon = expectInteger(opts.horizon, 'options.horizon', 1);
  const targets = (opts.targets as number[] | undefined) ?? [0];
  targets.forEach((t, i) => expectInteger(t, `options.targets[${i}]`, 0, channels.length - 1));
  const length = channels[0].length;
  const count = length - lookback - horizon + 1;
  if (count < 1) throw rangeError(`The series (${length} steps) is shorter than lookback + horizon (${lookback + horizon})`);
  const scale = (opts.scale as number[] | undefined) ?? channels.map((c) => differenceScale(c, lookback + horizon));
  const C = channels.length;
  const x = new Float32Array(count * lookback * C);
  const y = new Float32Array(count * horizon * targets.length);
  for (let i = 0; i < count; ++i) {
    for (let c = 0; c < C; ++c) {
      const last = channels[c][i + lookback - 1];
      for (let t = 0; t < lookback; ++t) x[(i * lookback + t) * C + c] = (channels[c][i + t] - last) / scale[c];
    }
    targets.forEach((c, k) => {
      const last = channels[c][i + lookback - 1];
      for (let h = 0; h < horizon; ++h) y[(i * targets.length + k) * horizon + h] = (channels[c][i + lookback + h] - last) / scale[c];
    });
  }
  return { inputs: Tensor.from(x, [count, lookback, C]), targets: Tensor.from(y, [count, horizon * targets.length]), scale };
}

/** Root mean square of value changes over `span` steps (at least a tiny positive number). */
function differenceScale(values: Float64Array, span: number): number {
  let sum = 0;
  let n = 0;
  for (let i = span; i < values.length; ++i) {
    sum += (values[i] - values[i - span]) ** 2;
    n += 1;
  }
  if (n === 0) for (let i = 1; i < values.length; ++i, ++n) sum += (values[i] - values[i - 1]) ** 2;
  return Math.max(Math.sqrt(sum / Math.max(n, 1)), 1e-8);
}

export interface ForecasterOptions {
  lookback: number;
  horizon: number;
  targets?: number[];
  cell?: CellType;
  hiddenSize?: number;
  numLayers?: number;
  dropout?: number;
}

export class TimeSeriesForecaster {
  readonly lookback: number;
  readonly horizon: number;
  readonly targets: number[];
  private readonly options: ForecasterOptions;
  model: SequenceModel | null = null;
  config: ForecasterConfig | null = null;
  history: History | null = null;

  constructor(options: ForecasterOptions) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['lookback', 'horizon', 'targets', 'cell', 'hiddenSize', 'numLayers', 'dropout'], 'options');
    this.lookback = expectInteger(opts.lookback, 'options.lookback', 1);
    this.horizon = expectInteger(opts.horizon, 'options.horizon', 1);
    this.targets = (opts.targets as number[] | undefined) ?? [0];
    if (!Array.isArray(this.targets) || this.targets.length === 0) throw typeError('Expected options.targets to be a non-empty array of channel indices');
    this.options = options;
  }

  /** Trains on every window of the series (the last `validationSplit` of windows held out). */
  async train(series: SeriesInput, options: Omit<FitOptions, 'validationData' | 'loss'> & { lr?: number; validationSplit?: number } = {}): Promise<History> {
    const channels = channelsOf(series, 'series');
    const { lr, validationSplit = 0.1, ...fitOptions } = options;
    const windows = makeWindows(channels, { lookback: this.lookback, horizon: this.horizon, targets: this.targets });
    this.targets.forEach((t, i) => expectInteger(t, `options.targets[${i}]`, 0, channels.length - 1));
    this.config = { lookback: this.lookback, horizon: this.horizon, targets: this.targets, channels: channels.length, scale: windows.scale };
    this.model ??= new SequenceModel({
      cell: this.options.cell ?? 'lstm', inputSize: channels.length, hiddenSize: this.options.hiddenSize ?? 64,
      numLayers: this.options.numLayers ?? 1, dropout: this.options.dropout ?? 0, outputSize: this.horizon * this.targets.length, outputs: 'last',
    });
    const n = windows.inputs.shape[0];
    const held = Math.floor(n * validationSplit);
    const part = (from: number, to: number) => ({ inputs: windows.inputs.slice(0, from, to), targets: windows.targets.slice(0, from, to) });
    this.history = await fit(this.model, held > 0 ? part(0, n - held) : windows, {
      batchSize: 32, ...fitOptions, loss: 'mse',
      optimizer: fitOptions.optimizer ?? new Adam(this.model.parameters(), { lr: lr ?? 3e-3 }),
      validationData: held > 0 ? part(n - held, n) : undefined,
    });
    return this.history;
  }

  /**
   * The next `horizon` values after `recent` (at least the last `lookback` steps of every
   * channel), in original units. With one target series: a flat [horizon] array. With
   * `{ perTarget: true }`: [targets][horizon], for any number of targets (a forecaster of
   * several targets needs it, so that the type says what comes back).
   */
  predict(recent: SeriesInput): number[];
  predict(recent: SeriesInput, options: { perTarget: true }): number[][];
  predict(recent: SeriesInput, options: { perTarget?: boolean } = {}): number[] | number[][] {
    if (!this.model || !this.config) throw typeError('predict() needs a trained or loaded forecaster', 'ERR_INVALID_ARG_VALUE');
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['perTarget'], 'options');
    const perTarget = opts.perTarget === undefined ? false : expectBoolean(opts.perTarget, 'options.perTarget');
    if (!perTarget && this.targets.length > 1) {
      throw rangeError(`predict(): this forecaster has ${this.targets.length} target series; call predict(recent, { perTarget: true }) for [targets][horizon]`, 'ERR_INVALID_ARG_VALUE');
    }
    const channels = channelsOf(recent, 'recent');
    if (channels.length !== this.config.channels) throw rangeError(`Expected ${this.config.channels} series but received ${channels.length}`, 'ERR_SHAPE_MISMATCH');
    const L = this.lookback;
    if (channels[0].length < L) throw rangeError(`predict() needs at least ${L} steps of history but received ${channels[0].length}`);
    const C = channels.length;
    const x = new Float32Array(L * C);
    const start = channels[0].length - L;
    for (let c = 0; c < C; ++c) {
      const last = channels[c][start + L - 1];
      for (let t = 0; t < L; ++t) x[t * C + c] = (channels[c][start + t] - last) / this.config.scale[c];
    }
    const model = this.model;
    const out = model.inference(() => model.forward(Tensor.from(x, [L, 1, C], { device: model.device })).output.toArray());
    const result = this.targets.map((c, k) => {
      const last = channels[c][start + L - 1];
      return Array.from(out.subarray(k * this.horizon, (k + 1) * this.horizon), (v) => last + v * this.config!.scale[c]);
    });
    return perTarget ? result : result[0];
  }

  async save(path: string): Promise<void> {
    if (!this.model || !this.config) throw typeError('save() needs a trained forecaster', 'ERR_INVALID_ARG_VALUE');
    await save(this.model, path, {
      'recurrent.forecaster': JSON.stringify(this.config),
      ...(this.history ? { 'recurrent.history': JSON.stringify(this.history) } : {}),
    });
  }

  static async load(path: string): Promise<TimeSeriesForecaster> {
    const { model, metadata } = await loadModel(path);
    if (!(model instanceof SequenceModel) || !metadata['recurrent.forecaster']) throw rangeError(`${path} is not a forecaster`, 'ERR_INVALID_ARG_VALUE');
    const config = parseJson(metadata['recurrent.forecaster'], 'recurrent.forecaster', path) as ForecasterConfig;
    const f = new TimeSeriesForecaster({ lookback: config.lookback, horizon: config.horizon, targets: config.targets });
    f.model = model;
    f.config = config;
    f.history = metadata['recurrent.history'] ? (parseJson(metadata['recurrent.history'], 'recurrent.history', path) as History) : null;
    return f;
  }
}
