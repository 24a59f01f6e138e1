/**
 * What happens inside the recurrence: gradient flow over time and gate statistics.
 *
 * gradientFlow reads dL/dh_t of every step from the real backward pass (the native layer
 * writes it when asked; the normal path never does), so it shows vanishing and exploding
 * gradients as training sees them. gateStatistics reads the gate activations that forward
 * already saves for backward (the layer's reserve). Both run on the CPU.
 */
import { noGrad } from '../core/autograd';
import { describe, expectKnownKeys, expectOptions, rangeError, typeError } from '../core/errors';
import { LayerProbe, Recurrent, gateCount, isRecurrent, probeLayers } from '../nn/recurrent';
import { Tensor, expectTensor } from '../core/tensor';

export interface GradientFlowLayer {
  layer: number;
  direction: number;
  /** ||dL/dh_t|| (over the batch and the hidden units) for t = 0 .. T-1. */
  norms: number[];
  /** norms[0] / norms[T - 1], the first step's gradient relative to the last's (with the default loss: < 1 vanishing, > 1 exploding). */
  ratio: number;
  /** Largest singular value of W_hh (for LSTM/GRU: of each gate's H x H block, PyTorch's gate order). */
  largestSingularValue: number[];
}

export interface GradientFlow {
  layers: GradientFlowLayer[];
}

export interface GradientFlowOptions {
  /** The loss from the module's output; default: the sum of the last step's output. */
  loss?: (result: { output: Tensor; h: Tensor; c?: Tensor | null }) => Tensor;
  lengths?: readonly number[];
}

function expectRecurrent(module: unknown, name: string): Recurrent {
  if (!isRecurrent(module)) {
    throw typeError(`${name}: expected module to be an RNN, LSTM or GRU but received ${describe(module)}`);
  }
  if (module.device !== 'cpu') throw typeError(`${name}: runs on the CPU; this module is on '${module.device}' (move a copy with .to('cpu'))`, 'ERR_DEVICE_MISMATCH');
  return module;
}

/** A leaf copy of the input that requires grad, so the layers save what backward needs. */
function probeInput(input: unknown, name: string): Tensor {
  const x = expectTensor(input, 'input');
  if (x.ndim !== 3) throw rangeError(`${name}: expected input of shape [T, B, I] (or [B, T, I] with batchFirst) but received [${x.shape.join(', ')}]`, 'ERR_SHAPE_MISMATCH');
  return noGrad(() => x.clone()).requiresGrad_(true);
}

/** Largest singular value of a rows x cols block (power iteration on A^T A). */
function largestSingularValue(a: Float32Array, rows: number, cols: number, offset: number): number {
  let v = new Float64Array(cols).map((_, i) => 1 + ((i * 7919) % 13) / 13);
  let sigma = 0;
  for (let iter = 0; iter < 100; ++iter) {
    const u = new Float64Array(rows);
    for (let r = 0; r < rows; ++r) {
      let sum = 0;
      for (let c = 0; c < cols; ++c) sum += a[offset + r * cols + c] * v[c];
      u[r] = sum;
    }
    const w = new Float64Array(cols);
    for (let r = 0; r < rows; ++r) for (let c = 0; c < cols; ++c) w[c] += a[offset + r * cols + c] * u[r];
    const norm = Math.sqrt(w.reduce((s, x) => s + x * x, 0));
    if (norm === 0) return 0;
    const next = Math.sqrt(norm);
    v = w.map((x) => x / norm);
    if (Math.abs(next - sigma) <= 1e-7 * next) return next;
    sigma = next;
  }
  return sigma;
}

/**
 * The norm of dL/dh_t for every step t, per layer and direction, from one real backward pass
 * (the loss defaults to the sum of the last step's output), with the largest singular value of
 * W_hh, which decides whether a tanh RNN's gradients grow or decay. The module's parameter
 * gradients are left as they were.
 *
 * @example
 * const { layers } = gradientFlow(rnn, Tensor.randn([100, 8, 2]));
 * layers[0].norms; // [T] numbers: small at t = 0 when gradients vanish
 */
export function gradientFlow(module: Recurrent, input: Tensor, options: GradientFlowOptions = {}): GradientFlow {
  const m = expectRecurrent(module, 'gradientFlow');
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['loss', 'lengths'], 'options');
  if (opts.loss !== undefined && typeof opts.loss !== 'function') throw typeError(`gradientFlow: expected options.loss to be a function but received ${describe(opts.loss)}`);
  const x = probeInput(input, 'gradientFlow');
  const params = m.parameters();
  const savedGrads = params.map((p) => p.takeGrad());
  const probes: LayerProbe[] = [];
  try {
    const result = probeLayers(probes, () => m.forward(x, opts.lengths ? { lengths: opts.lengths as number[] } : {}));
    const timeAxis = m.batchFirst ? 1 : 0;
    const loss = opts.loss ? (opts.loss as NonNullable<GradientFlowOptions['loss']>)(result as { output: Tensor; h: Tensor; c?: Tensor | null })
      : result.output.select(timeAxis, result.output.shape[timeAxis] - 1).sum();
    if (!(loss instanceof Tensor) || loss.size !== 1) throw typeError('gradientFlow: options.loss must return a one-element Tensor');
    loss.backward();
  } finally {
    params.forEach((p, i) => {
      p.releaseGrad();
      p.restoreGrad(savedGrads[i]);
    });
  }
  const named = new Map(m.namedParameters());
  const layers: GradientFlowLayer[] = [];
  probes.forEach((probe, layer) => {
    const { T, B, H, D } = probe.dims;
    const dh = probe.dhSteps ? probe.dhSteps.toArray() : new Float32Array(D * T * B * H);
    probe.dhSteps?.dispose();
    for (let d = 0; d < D; ++d) {
      const norms: number[] = [];
      for (let t = 0; t < T; ++t) {
        let sum = 0;
        const base = (d * T + t) * B * H;
        for (let i = 0; i < B * H; ++i) sum += dh[base + i] * dh[base + i];
        norms.push(Math.sqrt(sum));
      }
      const whh = m.layerWeights(layer, d === 1, named)[1].toArray();
      const gates = m.gates;
      const sigmas = Array.from({ length: gates }, (_, g) => largestSingularValue(whh, H, H, g * H * H));
      layers.push({ layer, direction: d, norms, ratio: norms[T - 1] > 0 ? norms[0] / norms[T - 1] : NaN, largestSingularValue: sigmas });
    }
  });
  return { layers };
}

export interface GateSummary {
  mean: number;
  /** Share of activations below 0.05 or above 0.95. */
  saturated: number;
  /** Counts in 20 equal bins over [0, 1]. */
  histogram: number[];
}

export interface GateStatisticsLayer {
  layer: number;
  direction: number;
  /** LSTM: i, f, o; GRU: r, z (the sigmoid gates). A tanh RNN has none. */
  gates: Record<string, GateSummary>;
  /** LSTM: tau = -1 / ln(mean f) per unit, in steps: how long the cell remembers. */
  forgetTimeConstants?: number[];
}

/** The sigmoid gates of each kind and their places in its gate order (LSTM i, f, g, o; GRU r, z, n). */
const SIGMOID_GATES: Record<Recurrent['kind'], [string, number][]> = {
  LSTM: [['i', 0], ['f', 1], ['o', 3]],
  GRU: [['r', 0], ['z', 1]],
  RNN: [],
};

/**
 * Statistics of the gate activations over one batch (steps past a row's length left out):
 * per layer and direction, each sigmoid gate's mean, saturated share and histogram, and for
 * an LSTM the forget gate's memory time constant per unit.
 */
export function gateStatistics(module: Recurrent, input: Tensor, options: { lengths?: readonly number[] } = {}): { layers: GateStatisticsLayer[] } {
  const m = expectRecurrent(module, 'gateStatistics');
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['lengths'], 'options');
  const x = probeInput(input, 'gateStatistics');
  const probes: LayerProbe[] = [];
  const result = probeLayers(probes, () => m.forward(x, opts.lengths ? { lengths: opts.lengths as number[] } : {}));
  const layers: GateStatisticsLayer[] = [];
  probes.forEach((probe, layer) => {
    const { T, B, H, D } = probe.dims;
    const G = gateCount(m.kind);
    const reserve = probe.reserve!.toArray();
    // per direction: gates (T, B, G*H), then the states (see cpp/recurrent.cc's Reserve)
    const perDirection = reserve.length / D;
    for (let d = 0; d < D; ++d) {
      const gates: Record<string, GateSummary> = {};
      let forget: number[] | undefined;
      for (const [name, q] of SIGMOID_GATES[m.kind]) {
        const histogram = new Array<number>(20).fill(0);
        const unitSums = new Float64Array(H);
        let sum = 0;
        let saturated = 0;
        let count = 0;
        for (let t = 0; t < T; ++t) {
          for (let b = 0; b < B; ++b) {
            if (probe.lengths && t >= probe.lengths[b]) continue;
            const base = d * perDirection + (t * B + b) * G * H + q * H;
            for (let j = 0; j < H; ++j) {
              const v = reserve[base + j];
              sum += v;
              unitSums[j] += v;
              if (v < 0.05 || v > 0.95) saturated += 1;
              histogram[Math.min(19, Math.max(0, Math.floor(v * 20)))] += 1;
            }
            count += 1;
          }
        }
        gates[name] = { mean: sum / (count * H), saturated: saturated / (count * H), histogram };
        if (name === 'f') forget = Array.from(unitSums, (s) => { const f = s / count; return f >= 1 ? Infinity : -1 / Math.log(f); });
      }
      layers.push({ layer, direction: d, gates, ...(forget ? { forgetTimeConstants: forget } : {}) });
    }
  });
  // nothing will run backward through this graph: give the reserves back now
  for (const probe of probes) probe.reserve?.dispose();
  result.output.dispose();
  return { layers };
}
