/**
 * Recurrent layers: RNN, LSTM, GRU. Same options, equations, parameter names, shapes
 * and initialization as PyTorch's nn.RNN / nn.LSTM / nn.GRU, so state dicts move
 * between the two unchanged. Each layer (both directions) is one native call over the
 * whole sequence; only the loop over stacked layers runs in JS, and the whole stack is one
 * autograd node.
 */
import { isGradEnabled, noGrad } from '../core/autograd';
import { describe, expectBoolean, expectInteger, expectNumber, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from '../core/errors';
import { CellKind, layerBackward, layerForward, native, NativeStepPlan, NativeStorage, stackForward, stepPlan, stepRun, stepSample } from '../core/native';
import { drawNatively, nextSeed } from '../core/random';
import { expectSameDevice } from '../core/device';
import { allocate } from '../core/memory';
import { Tensor, emptyOn, expectTensor, record } from '../core/tensor';
import { uniform_ } from './init';
import { Module } from './module';
import { embedding, linear } from './functional';
import { sampleLogits } from './sampling';


const GATES: Record<CellKind, number> = { [CellKind.RnnTanh]: 1, [CellKind.RnnRelu]: 1, [CellKind.Lstm]: 4, [CellKind.Gru]: 3 };

// ---------------------------------------------------------------------------
// The facts of a recurrent layer that the rest of the library asks here: which modules are
// one, how their weights are named, how many gates each has.

/** Any of the recurrent layers. */
export type Recurrent = RNN | LSTM | GRU;

/** Whether `value` is an RNN, LSTM or GRU. */
export function isRecurrent(value: unknown): value is Recurrent {
  return value instanceof RecurrentBase;
}

/** PyTorch's suffix of a layer's weights: `_l0`, `_l1_reverse`, ... */
export function weightSuffix(layer: number, reverse: boolean): string {
  return `_l${layer}${reverse ? '_reverse' : ''}`;
}

/** Gates per hidden unit: the rows of weight_ih are gates x hiddenSize. */
export function gateCount(kind: 'RNN' | 'LSTM' | 'GRU'): number {
  return kind === 'LSTM' ? 4 : kind === 'GRU' ? 3 : 1;
}

/** The weights of one layer and direction, in the order the native layer takes them. */
export type LayerWeights = [weightIh: Tensor, weightHh: Tensor, biasIh: Tensor | null, biasHh: Tensor | null];

export interface RecurrentOptions {
  /** Features of each input step (I). */
  inputSize: number;
  /** Features of the hidden state (H). */
  hiddenSize: number;
  /** Stacked layers. Default 1. */
  numLayers?: number;
  /** Use bias_ih and bias_hh. Default true. */
  bias?: boolean;
  /** Input and output as [B, T, F] instead of [T, B, F]. Default false. */
  batchFirst?: boolean;
  /** Dropout on the outputs of every layer but the last, in training mode. Default 0. */
  dropout?: number;
  /** Add a reverse-direction layer (D = 2). Default false. */
  bidirectional?: boolean;
}

export interface RNNOptions extends RecurrentOptions {
  /** 'tanh' (default) or 'relu'. */
  nonlinearity?: 'tanh' | 'relu';
}

export interface ForwardOptions {
  /** Initial hidden state [numLayers * D, B, H] (zeros when absent). */
  h0?: Tensor | null;
  /** LSTM only: initial cell state [numLayers * D, B, H] (zeros when absent). */
  c0?: Tensor | null;
  /**
   * Valid length of each batch row (B integers in [1, T], any order). Steps past a
   * row's length output zeros and leave its state alone; the reverse direction starts
   * at the row's last valid step (packed-sequence semantics).
   */
  lengths?: readonly number[] | Int32Array | null;
}

/** A stacked layer's state between steps: h (and c for LSTM) [numLayers * D, B, H]. */
export interface RecurrentState {
  h: Tensor;
  c?: Tensor;
}

export interface StepOptions {
  /** Where to write the output ([B, H]; [B, outputSize] for SequenceModel), instead of a new tensor. */
  out?: Tensor;
}

export interface RecurrentOutput {
  /** [T, B, D*H] ([B, T, D*H] with batchFirst): the last layer's hidden state at every step. */
  output: Tensor;
  /** [numLayers * D, B, H]: the final hidden state of every layer and direction. */
  h: Tensor;
}

export interface LSTMOutput extends RecurrentOutput {
  /** [numLayers * D, B, H]: the final cell state of every layer and direction. */
  c: Tensor;
}

const OPTION_KEYS = ['inputSize', 'hiddenSize', 'numLayers', 'bias', 'batchFirst', 'dropout', 'bidirectional'] as const;

abstract class RecurrentBase extends Module {
  readonly inputSize: number;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly bias: boolean;
  readonly batchFirst: boolean;
  readonly dropout: number;
  readonly bidirectional: boolean;
  protected readonly cell: CellKind;
  protected readonly className: string;
  /**
   * The parameters per layer, both directions side by side, as the native stack takes them
   * (PyTorch's `_flat_weights`): kept from construction, not looked up by name at each call.
   * Parameters are never replaced (loading and moving write into them), so this stays true.
   */
  private readonly flatWeights: (Tensor | null)[][] = [];
  /** runStep's native plan and the storages it was made from (stepPlanFor) */
  private cachedStepPlan: { plan: NativeStepPlan; storages: (NativeStorage | null)[] } | null = null;

  constructor(className: string, cell: CellKind, options: Record<string, unknown>) {
    super();
    this.className = className;
    this.cell = cell;
    this.inputSize = expectInteger(options.inputSize, 'options.inputSize', 1);
    this.hiddenSize = expectInteger(options.hiddenSize, 'options.hiddenSize', 1);
    this.numLayers = options.numLayers === undefined ? 1 : expectInteger(options.numLayers, 'options.numLayers', 1);
    this.bias = options.bias === undefined ? true : expectBoolean(options.bias, 'options.bias');
    this.batchFirst = options.batchFirst === undefined ? false : expectBoolean(options.batchFirst, 'options.batchFirst');
    this.dropout = options.dropout === undefined ? 0 : expectNumber(options.dropout, 'options.dropout');
    if (this.dropout < 0 || this.dropout >= 1) throw rangeError(`Expected options.dropout to be in [0, 1) but received ${this.dropout}`);
    this.bidirectional = options.bidirectional === undefined ? false : expectBoolean(options.bidirectional, 'options.bidirectional');

    // PyTorch: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)), registered per layer
    // and direction as weight_ih, weight_hh, bias_ih, bias_hh.
    const gh = GATES[cell] * this.hiddenSize;
    const bound = 1 / Math.sqrt(this.hiddenSize);
    for (let layer = 0; layer < this.numLayers; ++layer) {
      const layerInput = layer === 0 ? this.inputSize : this.hiddenSize * this.directions;
      for (let d = 0; d < this.directions; ++d) {
        const suffix = weightSuffix(layer, d === 1);
        this.registerParameter(`weight_ih${suffix}`, uniform_(Tensor.zeros([gh, layerInput]), -bound, bound));
        this.registerParameter(`weight_hh${suffix}`, uniform_(Tensor.zeros([gh, this.hiddenSize]), -bound, bound));
        this.registerParameter(`bias_ih${suffix}`, this.bias ? uniform_(Tensor.zeros([gh]), -bound, bound) : null);
        this.registerParameter(`bias_hh${suffix}`, this.bias ? uniform_(Tensor.zeros([gh]), -bound, bound) : null);
      }
    }
    const params = new Map(this.namedParameters());
    for (let layer = 0; layer < this.numLayers; ++layer) {
      this.flatWeights.push([...Array(this.directions).keys()].flatMap((d) => this.layerWeights(layer, d === 1, params)));
    }
  }

  /** The kind of layer: 'RNN', 'LSTM' or 'GRU'. */
  get kind(): 'RNN' | 'LSTM' | 'GRU' {
    return this.cell === CellKind.Lstm ? 'LSTM' : this.cell === CellKind.Gru ? 'GRU' : 'RNN';
  }

  /** Gates per hidden unit (LSTM 4, GRU 3, RNN 1). */
  get gates(): number {
    return GATES[this.cell];
  }

  /** The weights of layer `layer` in direction `reverse`, by PyTorch's names. */
  layerWeights(layer: number, reverse: boolean, params: ReadonlyMap<string, Tensor> = new Map(this.namedParameters())): LayerWeights {
    const suffix = weightSuffix(layer, reverse);
    return [params.get(`weight_ih${suffix}`)!, params.get(`weight_hh${suffix}`)!, params.get(`bias_ih${suffix}`) ?? null, params.get(`bias_hh${suffix}`) ?? null];
  }

  override config(): Record<string, unknown> {
    return {
      inputSize: this.inputSize, hiddenSize: this.hiddenSize, numLayers: this.numLayers, bias: this.bias,
      batchFirst: this.batchFirst, dropout: this.dropout, bidirectional: this.bidirectional,
    };
  }

  /** Number of directions, D. */
  get directions(): number {
    return this.bidirectional ? 2 : 1;
  }

  /** A zero state for step(): h (and c for LSTM) [numLayers, batch, H], which step() updates in place. */
  initialState(batch = 1): RecurrentState {
    const B = expectInteger(batch, 'batch', 1);
    const shape = [this.numLayers * this.directions, B, this.hiddenSize];
    const device = this.flatWeights[0][0]!.device;
    return { h: Tensor.zeros(shape, { device }), ...(this.cell === CellKind.Lstm ? { c: Tensor.zeros(shape, { device }) } : {}) };
  }

  /**
   * One time step, for inference (generation, streaming, real-time input): input [B, inputSize]
   * -> output [B, H] (the last layer's new h); `state` (from initialState(), or a forward()'s final
   * h and c) is updated in place. The whole stack is one native call on weights packed once per
   * change of the weights, and allocates nothing but the output (nothing with options.out). The
   * values equal forward() at T = 1 with h0/c0 = state, bit for bit. Records no graph (train
   * with forward()); one direction only.
   *
   * @example
   * const state = lstm.initialState();              // batch 1
   * for (const frame of frames) {
   *   const y = lstm.step(frame, state);             // frame [1, inputSize] -> y [1, hiddenSize]
   * }
   */
  step(input: Tensor, state: RecurrentState, options: StepOptions = {}): Tensor {
    const name = `${this.className}#step()`;
    const x = expectTensor(input, 'input');
    if (x.ndim !== 2 || x.shape[1] !== this.inputSize) {
      throw rangeError(`${name}: expected input of shape [B, ${this.inputSize}] but received ${formatShape(x.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    return this.runStep(name, { x }, x.shape[0], state, options, null);
  }

  /**
   * @internal One step of the stack (step() and SequenceModel#step()): `tokens` through `embedding`
   * or `x` [B, I] in, the head's output (or the last h) out, the state updated in place.
   */
  runStep(name: string, input: { x: Tensor } | { tokens: Int32Array; embedding: Tensor }, B: number, state: RecurrentState,
    options: StepOptions, head: { weight: Tensor; bias: Tensor | null } | null): Tensor {
    if (this.bidirectional) {
      throw typeError(`${name}: step() runs one direction; a bidirectional layer needs the whole sequence (use forward())`, 'ERR_INVALID_ARG_VALUE');
    }
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['out'], 'options');
    const H = this.hiddenSize;
    const { h, c } = this.stepState(name, B, state);
    const outputs = head ? head.weight.shape[0] : H;
    const outShape = [B, outputs];
    const given = opts.out === undefined ? null : expectTensor(opts.out, 'options.out');
    if (given && (given.ndim !== 2 || given.shape[0] !== B || given.shape[1] !== outputs)) {
      throw rangeError(`${name}: expected options.out of shape ${formatShape(outShape)} but received ${formatShape(given.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    const first = 'x' in input ? input.x : input.embedding;
    const device = expectSameDevice(name, [['input', first], ['state.h', h], ['state.c', c], ['options.out', given],
      ['weight_ih_l0', this.flatWeights[0][0]]]);
    if (device !== 'cpu') return this.stepByForward(input, B, h, c, given, head);
    const out = given ?? emptyOn(outShape, device);
    const embedding = 'x' in input ? null : input.embedding;
    stepRun(this.stepPlanFor(embedding, head), {
      batch: B, h: h.storage, c: c ? c.storage : null, out: out.storage,
      tokens: 'x' in input ? null : input.tokens, x: 'x' in input ? input.x.storage : null,
    });
    return out;
  }

  /** state (from initialState()) checked for a step of B rows: h, and c for an LSTM, [L, B, H]. */
  private stepState(name: string, B: number, state: RecurrentState): { h: Tensor; c: Tensor | null } {
    const stateShape = [this.numLayers, B, this.hiddenSize];
    const isLstm = this.cell === CellKind.Lstm;
    if (!state || typeof state !== 'object') throw typeError(`${name}: expected state to be { h${isLstm ? ', c' : ''} } (see initialState()) but received ${describe(state)}`);
    const h = expectTensor(state.h, 'state.h');
    const c = isLstm ? expectTensor(state.c, 'state.c') : null;
    for (const [key, t] of [['h', h], ['c', c]] as const) {
      if (t && (t.ndim !== 3 || t.shape.some((size, i) => size !== stateShape[i]))) {
        throw rangeError(`${name}: expected state.${key} of shape ${formatShape(stateShape)} but received ${formatShape(t.shape)}`, 'ERR_SHAPE_MISMATCH');
      }
    }
    return { h, c };
  }

  /**
   * @internal Autoregressive sampling (SequenceModel#sample()): `length` times, each of the B rows
   * of `logits` [B, V] draws a token (sampleLogits' draw, the `excluded` tokens never), which is the
   * next step's input through `embedding`, the layers and `head`; logits and state end as after the
   * last tokens. On the CPU the whole loop is one native call; elsewhere, step() after step().
   */
  runSample(name: string, embedding: Tensor, B: number, state: RecurrentState, logits: Tensor, head: { weight: Tensor; bias: Tensor | null },
    spec: { length: number; temperature: number; topK: number | undefined; excluded: Uint8Array | null }): Int32Array {
    if (this.bidirectional) {
      throw typeError(`${name}: sampling runs one direction; a bidirectional layer needs the whole sequence`, 'ERR_INVALID_ARG_VALUE');
    }
    const { h, c } = this.stepState(name, B, state);
    const device = expectSameDevice(name, [['logits', logits], ['state.h', h], ['state.c', c], ['weight_ih_l0', this.flatWeights[0][0]]]);
    const V = head.weight.shape[0];
    if (device === 'cpu') {
      return drawNatively((rng) => stepSample(this.stepPlanFor(embedding, head), {
        batch: B, h: h.storage, c: c ? c.storage : null, out: logits.storage, length: spec.length,
        temperature: spec.temperature, topK: spec.topK ?? 0, excluded: spec.excluded, rng,
      }));
    }
    // the same draws, one step() at a time (the kernels of this device run in forward())
    const tokens = new Int32Array(spec.length * B);
    const row = new Float32Array(V);
    for (let i = 0; i < spec.length; ++i) {
      const values = logits.toArray();
      const drawn = tokens.subarray(i * B, (i + 1) * B);
      for (let b = 0; b < B; ++b) {
        row.set(values.subarray(b * V, (b + 1) * V));
        if (spec.excluded) for (let v = 0; v < V; ++v) if (spec.excluded[v]) row[v] = -Infinity;
        drawn[b] = sampleLogits(row, spec.temperature, spec.topK);
      }
      this.runStep(name, { tokens: drawn, embedding }, B, state, { out: logits }, head);
    }
    return tokens;
  }

  /**
   * The native plan of runStep for these weights (binding/recurrent.cc's stepPlan: every weight checked
   * once, not at each step), made again when any of their storages changed (a device move).
   */
  private stepPlanFor(embedding: Tensor | null, head: { weight: Tensor; bias: Tensor | null } | null): NativeStepPlan {
    const cached = this.cachedStepPlan;
    if (cached) {
      const storages = cached.storages;
      let i = 0;
      let same = storages[i++] === (embedding ? embedding.storage : null) && storages[i++] === (head ? head.weight.storage : null) &&
        storages[i++] === (head && head.bias ? head.bias.storage : null);
      for (let l = 0; same && l < this.flatWeights.length; ++l) {
        for (const w of this.flatWeights[l]) same = same && storages[i++] === (w ? w.storage : null);
      }
      if (same) return cached.plan;
    }
    const layers = this.flatWeights.map((w) => w.map((t) => (t ? t.storage : null)));
    const headStorages = head ? { weight: head.weight.storage, bias: head.bias ? head.bias.storage : null, outputs: head.weight.shape[0] } : null;
    const plan = stepPlan({
      cell: this.cell, inputSize: embedding ? embedding.shape[1] : this.inputSize, hiddenSize: this.hiddenSize, layers,
      embedding: embedding ? embedding.storage : null, head: headStorages,
    });
    this.cachedStepPlan = {
      plan, storages: [embedding ? embedding.storage : null, headStorages?.weight ?? null, headStorages?.bias ?? null, ...layers.flat()],
    };
    return plan;
  }

  /** step() where the kernel does not run (CUDA): forward() at T = 1, the state copied back. */
  private stepByForward(input: { x: Tensor } | { tokens: Int32Array; embedding: Tensor }, B: number, h: Tensor, c: Tensor | null,
    given: Tensor | null, head: { weight: Tensor; bias: Tensor | null } | null): Tensor {
    return noGrad(() => {
      const width = 'x' in input ? this.inputSize : input.embedding.shape[1];
      const step = 'x' in input ? input.x : embedding(input.tokens, input.embedding);
      const x = step.reshape(this.batchFirst ? [B, 1, width] : [1, B, width]);
      const result = this.run(x, { h0: h, ...(c ? { c0: c } : {}) });
      native.copyBetween(h.storage, 0, result.h.storage, 0, h.size);
      if (c && result.c) native.copyBetween(c.storage, 0, result.c.storage, 0, c.size);
      let output = result.output.reshape([B, this.hiddenSize]);
      if (head) output = linear(output, head.weight, head.bias);
      if (!given) return output;
      native.copyBetween(given.storage, 0, output.storage, 0, given.size);
      return given;
    });
  }

  protected run(input: Tensor, options: ForwardOptions | undefined): { output: Tensor; h: Tensor; c: Tensor | null } {
    const name = `${this.className}#forward()`;
    const x0 = expectTensor(input, 'input');
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['h0', 'c0', 'lengths'], 'options');
    const isLstm = this.cell === CellKind.Lstm;
    const D = this.directions;
    const H = this.hiddenSize;
    const stateRows = this.numLayers * D;

    const unbatched = x0.ndim === 2;
    const layout = this.batchFirst ? '[B, T' : '[T, B';
    if ((x0.ndim !== 3 && !unbatched) || x0.shape[x0.ndim - 1] !== this.inputSize || x0.size === 0) {
      throw rangeError(
        `${name}: expected input of shape ${layout}, ${this.inputSize}] (or unbatched [T, ${this.inputSize}]) ` +
          `but received ${formatShape(x0.shape)}`,
        'ERR_SHAPE_MISMATCH',
      );
    }
    let x = unbatched ? x0.reshape([x0.shape[0], 1, this.inputSize]) : this.batchFirst ? x0.transpose(0, 1) : x0;
    const [T, B] = x.shape;

    const stateShape = unbatched ? [stateRows, H] : [stateRows, B, H];
    const state = (key: 'h0' | 'c0'): Tensor | null => {
      const value = opts[key];
      if (value === undefined || value === null) return null;
      if (key === 'c0' && !isLstm) {
        throw typeError(`${name}: options.c0 is only used by LSTM; ${this.className} has no cell state`, 'ERR_INVALID_ARG_VALUE');
      }
      const t = expectTensor(value, `options.${key}`);
      if (t.ndim !== stateShape.length || t.shape.some((s, i) => s !== stateShape[i])) {
        throw rangeError(`${name}: expected ${key} of shape ${formatShape(stateShape)} but received ${formatShape(t.shape)}`, 'ERR_SHAPE_MISMATCH');
      }
      return unbatched ? t.reshape([stateRows, 1, H]) : t;
    };
    const h0 = state('h0');
    const c0 = state('c0');
    const lengths = this.checkLengths(opts.lengths, T, B, name);

    const dropoutP = this.training && this.dropout > 0 ? this.dropout : 0;
    const result = T === 1 && this.runsAsStep(x, h0, c0, lengths, dropoutP)
      ? this.forwardStep(x, h0, c0)
      : recurrentStack(this.cell, x, h0, c0, this.flatWeights, lengths, H, D, dropoutP);
    let output = result.y;
    let h = result.h;
    let c = result.c;
    if (unbatched) {
      output = output.reshape([T, D * H]);
      h = h.reshape([stateRows, H]);
      c = c && c.reshape([stateRows, H]);
    } else if (this.batchFirst) {
      output = output.transpose(0, 1);
    }
    return { output, h, c };
  }

  /**
   * Whether forward() at T = 1 runs as step() (one native call for the stack on its kept plan): on
   * the CPU, for inference (no graph to record), one direction, without lengths, dropout or a
   * diagnostic pass. The values are the same bit for bit (test/34); a call costs less: at B = 1 the
   * stack's own path spent more time in its arguments and allocations than in the arithmetic. The
   * choice is made here, before recurrentStack, whose device check and input arrays cost 4-9 us more
   * a call at B = 1 when the step ran from inside it (2 x 128 LSTM, one thread, 5 pairs).
   */
  private runsAsStep(x: Tensor, h0: Tensor | null, c0: Tensor | null, lengths: Int32Array | null, dropoutP: number): boolean {
    if (this.bidirectional || lengths || (dropoutP > 0 && this.numLayers > 1) || probes) return false;
    const w = this.flatWeights[0][0]!;
    if (x.device !== 'cpu' || w.device !== 'cpu' || (h0 && h0.device !== 'cpu') || (c0 && c0.device !== 'cpu')) return false;
    if (!isGradEnabled()) return true;
    return !x.requiresGrad && !h0?.requiresGrad && !c0?.requiresGrad && this.flatWeights.every((ws) => ws.every((t) => !t || !t.requiresGrad));
  }

  /** forward() at T = 1 through step()'s kernel: x [1, B, I]; h and c start as h0, c0 (zeros without them). */
  private forwardStep(x: Tensor, h0: Tensor | null, c0: Tensor | null): { y: Tensor; h: Tensor; c: Tensor | null } {
    const B = x.shape[1];
    const stateShape = [this.numLayers, B, this.hiddenSize];
    // (copyBetween, not Tensor#copyData: its strided copy cost a few microseconds more a call here)
    const startFrom = (given: Tensor | null): Tensor => {
      if (!given) return Tensor.zeros(stateShape);
      const t = emptyOn(stateShape, 'cpu');
      native.copyBetween(t.storage, 0, given.storage, 0, t.size);
      return t;
    };
    const h = startFrom(h0);
    const c = this.cell === CellKind.Lstm ? startFrom(c0) : null;
    const y = emptyOn([1, B, this.hiddenSize], 'cpu');
    stepRun(this.stepPlanFor(null, null), { batch: B, h: h.storage, c: c ? c.storage : null, out: y.storage, tokens: null, x: x.storage });
    return { y, h, c };
  }

  private checkLengths(value: unknown, T: number, B: number, name: string): Int32Array | null {
    if (value === undefined || value === null) return null;
    if (!Array.isArray(value) && !(value instanceof Int32Array)) {
      throw typeError(`${name}: expected options.lengths to be an array of ${B} integers but received ${describe(value)}`);
    }
    if (value.length !== B) {
      throw rangeError(`${name}: expected options.lengths to have one entry per batch row (${B}) but received ${value.length}`, 'ERR_SHAPE_MISMATCH');
    }
    const lengths = new Int32Array(B);
    for (let b = 0; b < B; ++b) lengths[b] = expectInteger(value[b], `options.lengths[${b}]`, 1, T);
    return lengths;
  }
}

/** What a diagnostic pass (lib/diagnostics.ts) learns about one layer call. */
export interface LayerProbe {
  cell: number;
  dims: { T: number; B: number; H: number; D: number };
  lengths: Int32Array | null;
  /** The reserve (gate activations of every step), while the graph holds it. */
  reserve: Tensor | null;
  /** dL/dh_t of every step, (D, T, B, H), filled by backward. */
  dhSteps: Tensor | null;
}

let probes: LayerProbe[] | null = null;

/** @internal runs fn with every recurrent layer call recorded into `into` (in call order). */
export function probeLayers<R>(into: LayerProbe[], fn: () => R): R {
  const previous = probes;
  probes = into;
  try {
    return fn();
  } finally {
    probes = previous;
  }
}

// Floats of a layer's reserve, asked of the addon once per shape.
const reserveSizes = new Map<string, number>();

function reserveSize(cell: CellKind, T: number, B: number, I: number, H: number, D: number): number {
  const key = `${cell},${T},${B},${I},${H},${D}`;
  let size = reserveSizes.get(key);
  if (size === undefined) {
    if (reserveSizes.size >= 1024) reserveSizes.clear();
    size = native.layerReserveSize(cell, T, B, I, H, D);
    reserveSizes.set(key, size);
  }
  return size;
}

/**
 * A stack of layers, both directions each, over the whole sequence, as one autograd node (as
 * PyTorch's and cuDNN's RNN ops are): one native call per layer forward and one per layer
 * backward, inverted dropout between layers (p > 0). x: [T, B, I]; h0, c0: [L*D, B, H] or null;
 * weights[layer]: [w_ih, w_hh, b_ih, b_hh] per direction. Each layer reads and writes its own
 * rows of the [L*D, B, H] state tensors and their gradients in place (an offset, no slices).
 */
function recurrentStack(
  cell: CellKind,
  x: Tensor,
  h0: Tensor | null,
  c0: Tensor | null,
  weights: (Tensor | null)[][],
  lengths: Int32Array | null,
  H: number,
  D: number,
  dropoutP: number,
): { y: Tensor; h: Tensor; c: Tensor | null } {
  const [T, B] = x.shape;
  const L = weights.length;
  const isLstm = cell === CellKind.Lstm;
  const flatWeights = weights.flat();
  // every output, the reserves and every gradient below are written entirely by the kernels
  const device = expectSameDevice(`${['RNN', 'RNN', 'LSTM', 'GRU'][cell]}`, [
    ['input', x], ['h0', h0], ['c0', c0], ...flatWeights.map((w, i) => [`weight ${i}`, w] as const),
  ]);
  const h = emptyOn([L * D, B, H], device);
  const c = isLstm ? emptyOn([L * D, B, H], device) : null;
  const stateRows = D * B * H;
  const inputs: Tensor[] = [x, ...(h0 ? [h0] : []), ...(c0 ? [c0] : []), ...flatWeights.filter((w): w is Tensor => w !== null)];
  const needsGrad = isGradEnabled() && inputs.some((t) => t.requiresGrad);

  const storages = weights.map((w) => w.map((t) => (t ? t.storage : null)));
  if (!needsGrad && D === 1 && L > 1 && dropoutP === 0 && !probes && device === 'cpu') {
    // inference through one-direction layers: one native call for the stack, which may run the
    // layers as a pipeline over time (one thread per layer) where a step is too short to split
    const ys = Array.from({ length: L }, () => emptyOn([T, B, H], device));
    stackForward({
      cell, timeSteps: T, batch: B, inputSize: x.shape[2], hiddenSize: H, x: x.storage, lengths, layers: storages,
      ys: ys.map((t) => t.storage), hN: h.storage, cN: c ? c.storage : null, h0: h0 ? h0.storage : null, c0: c0 ? c0.storage : null,
    });
    for (const t of ys.slice(0, -1)) t.dispose();
    return { y: ys[L - 1], h, c };
  }

  // per layer: its input, its reserve, and the dropout mask that made the next layer's input
  const layerInputs: Tensor[] = [];
  const reserves: NativeStorage[] = [];
  const masks: (Tensor | null)[] = [];
  const layerProbes: (LayerProbe | null)[] = [];
  let input = x;
  let y = x;
  for (let layer = 0; layer < L; ++layer) {
    const I = input.shape[2];
    y = emptyOn([T, B, D * H], device);
    const reserve = needsGrad ? allocate(reserveSize(cell, T, B, I, H, D), true, device) : null;
    layerForward({
      cell, timeSteps: T, batch: B, inputSize: I, hiddenSize: H, directions: D, x: input.storage, lengths, weights: storages[layer],
      stateOffset: layer * stateRows, y: y.storage, hN: h.storage, cN: c ? c.storage : null, reserve, h0: h0 ? h0.storage : null, c0: c0 ? c0.storage : null,
    });
    const probe: LayerProbe | null = probes
      ? { cell, dims: { T, B, H, D }, lengths, reserve: reserve ? new Tensor(reserve, [reserve.length], false, device) : null, dhSteps: null }
      : null;
    probes?.push(probe!);
    layerProbes.push(probe);
    layerInputs.push(input);
    if (reserve) reserves.push(reserve);
    if (layer < L - 1 && dropoutP > 0) {
      const mask = emptyOn(y.shape, device);
      native.dropoutMask(mask.storage, mask.size, dropoutP, nextSeed());
      masks.push(mask);
      input = noGrad(() => y.mul(mask));
      y.dispose(); // backward needs the dropped-out copy only
    } else {
      masks.push(null);
      input = y;
    }
  }
  if (!needsGrad) {
    // nothing to record: the masks and the inner layers' inputs go now, not at the next GC
    for (const mask of masks) mask?.dispose();
    for (const t of layerInputs.slice(1)) t.dispose();
    return { y, h, c };
  }

  const outputs = c ? [y, h, c] : [y, h];
  // what only backward reads, freed by backward itself: the reserves, the masks and the inner
  // layers' inputs
  const saved = [...reserves, ...masks.filter((m): m is Tensor => m !== null).map((m) => m.storage),
    ...layerInputs.slice(1).map((t) => t.storage)];
  record(`${['rnn_tanh', 'rnn_relu', 'lstm', 'gru'][cell]}`, inputs, outputs, ([dOut, dh, dc]) => {
    const dh0 = h0?.requiresGrad ? emptyOn(h0.shape, device) : null;
    const dc0 = c0?.requiresGrad ? emptyOn(c0.shape, device) : null;
    const grads = weights.map((w) => w.map((t) => (t ? emptyOn(t.shape, device) : null)));
    let dy: Tensor | null = dOut;
    for (let layer = L - 1; layer >= 0; --layer) {
      const layerInput = layerInputs[layer];
      const I = layerInput.shape[2];
      const probe = layerProbes[layer];
      if (probe) probe.dhSteps = emptyOn([D, T, B, H], device);
      // the first layer's input gradient only where the input needs one (as PyTorch): on the CPU
      // its product with w_ih, a sixth of the layer's training work at I = H, is then skipped
      const dx = layer > 0 || x.requiresGrad || device !== 'cpu' ? emptyOn(layerInput.shape, device) : null;
      layerBackward({
        cell, timeSteps: T, batch: B, inputSize: I, hiddenSize: H, directions: D, x: layerInput.storage, lengths, weights: storages[layer],
        stateOffset: layer * stateRows, dx: dx ? dx.storage : null, dh0: dh0 ? dh0.storage : null, dc0: dc0 ? dc0.storage : null,
        grads: grads[layer].map((g) => (g ? g.storage : null)), dy: dy ? dy.storage : null, dhN: dh ? dh.storage : null,
        dcN: dc ? dc.storage : null, reserve: reserves[layer], dhSteps: probe?.dhSteps?.storage ?? null,
      });
      const mask = layer > 0 ? masks[layer - 1] : null;
      dy = mask && dx ? dx.mul(mask) : dx;
    }
    return [dy, ...(h0 ? [dh0] : []), ...(c0 ? [dc0] : []), ...grads.flat().filter((g): g is Tensor => g !== null)];
  }, saved);
  return { y, h, c };
}

/**
 * Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh), act = tanh or relu.
 *
 * Options: inputSize, hiddenSize, numLayers = 1, nonlinearity = 'tanh', bias = true,
 * batchFirst = false, dropout = 0, bidirectional = false.
 * Inputs: input [T, B, I] ([B, T, I] with batchFirst, or unbatched [T, I]);
 *   options.h0 [numLayers * D, B, H]; options.lengths (B integers).
 * Outputs: { output [T, B, D*H], h [numLayers * D, B, H] }.
 *
 * @example
 * const rnn = new RNN({ inputSize: 10, hiddenSize: 20, numLayers: 2, nonlinearity: 'relu' });
 * const { output, h } = rnn.forward(Tensor.randn([5, 3, 10]));
 */
export class RNN extends RecurrentBase {
  readonly nonlinearity: 'tanh' | 'relu';

  constructor(options: RNNOptions) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, [...OPTION_KEYS, 'nonlinearity'], 'options');
    const nonlinearity = opts.nonlinearity ?? 'tanh';
    if (nonlinearity !== 'tanh' && nonlinearity !== 'relu') {
      throw rangeError(`Expected options.nonlinearity to be 'tanh' or 'relu' but received ${describe(nonlinearity)}`);
    }
    super('RNN', nonlinearity === 'relu' ? CellKind.RnnRelu : CellKind.RnnTanh, opts);
    this.nonlinearity = nonlinearity;
  }

  override config(): Record<string, unknown> {
    return { ...super.config(), nonlinearity: this.nonlinearity };
  }

  forward(input: Tensor, options?: ForwardOptions): RecurrentOutput {
    const { output, h } = this.run(input, options);
    return { output, h };
  }
}

/**
 * Long short-term memory (PyTorch's gate order i, f, g, o):
 *   i = s(W_ii x + b_ii + W_hi h + b_hi)    f = s(W_if x + b_if + W_hf h + b_hf)
 *   g = tanh(W_ig x + b_ig + W_hg h + b_hg) o = s(W_io x + b_io + W_ho h + b_ho)
 *   c' = f * c + i * g                      h' = o * tanh(c')
 *
 * Options: inputSize, hiddenSize, numLayers = 1, bias = true, batchFirst = false,
 * dropout = 0, bidirectional = false.
 * Inputs: input [T, B, I]; options.h0, options.c0 [numLayers * D, B, H]; options.lengths.
 * Outputs: { output [T, B, D*H], h, c [numLayers * D, B, H] }.
 * Parameters: weight_ih_l{k}[_reverse] (4H, I or D*H), weight_hh_l{k} (4H, H),
 * bias_ih_l{k}, bias_hh_l{k} (4H).
 *
 * @example
 * const lstm = new LSTM({ inputSize: 32, hiddenSize: 64, numLayers: 2, bidirectional: true });
 * const { output, h, c } = lstm.forward(x, { lengths: [10, 7, 3] });
 */
export class LSTM extends RecurrentBase {
  constructor(options: RecurrentOptions) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, OPTION_KEYS, 'options');
    super('LSTM', CellKind.Lstm, opts);
  }

  forward(input: Tensor, options?: ForwardOptions): LSTMOutput {
    const { output, h, c } = this.run(input, options);
    return { output, h, c: c! };
  }
}

/**
 * Gated recurrent unit (PyTorch's variant: reset applied after the recurrent matmul):
 *   r = s(W_ir x + b_ir + W_hr h + b_hr)    z = s(W_iz x + b_iz + W_hz h + b_hz)
 *   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
 *   h' = (1 - z) * n + z * h
 *
 * Options and shapes as LSTM, without the cell state; gates r, z, n (3H rows).
 */
export class GRU extends RecurrentBase {
  constructor(options: RecurrentOptions) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, OPTION_KEYS, 'options');
    super('GRU', CellKind.Gru, opts);
  }

  forward(input: Tensor, options?: ForwardOptions): RecurrentOutput {
    const { output, h } = this.run(input, options);
    return { output, h };
  }
}
