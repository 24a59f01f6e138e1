/**
 * SequenceModel: the common sequence network in one module, an optional embedding for
 * token inputs, a stack of recurrent layers and a linear head, with the recurrent
 * state passed in and out so training can carry it across windows (truncated BPTT).
 */
import { describe, expectBoolean, expectInteger, expectNumber, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from '../core/errors';
import { dropout } from './functional';
import { Tensor, expectTensor } from '../core/tensor';
import { Embedding, Linear } from './layers';
import { Module } from './module';
import { GRU, LSTM, RNN, RecurrentState, StepOptions } from './recurrent';

export type CellType = 'lstm' | 'gru' | 'rnn' | 'rnn_relu';

export interface SequenceModelOptions {
  /** Recurrent cell. Default 'lstm'. 'rnn' is tanh, 'rnn_relu' relu. */
  cell?: CellType;
  /** Features per step for continuous inputs [T, B, inputSize]. */
  inputSize?: number;
  /** Token inputs [T, B] (integer ids < vocabSize) go through an Embedding first. */
  vocabSize?: number;
  /** Embedding width. Default hiddenSize. */
  embeddingDim?: number;
  hiddenSize: number;
  numLayers?: number;
  /** Dropout between recurrent layers and before the head, in training. Default 0. */
  dropout?: number;
  bidirectional?: boolean;
  /** Features of the head's output (classes, or regression targets). */
  outputSize: number;
  /** 'sequence': an output per step [T, B, outputSize]; 'last': one per sequence [B, outputSize]. Default 'sequence'. */
  outputs?: 'sequence' | 'last';
  /**
   * forward() takes [B, T, inputSize] (tokens [B, T]) and returns [B, T, outputSize], the layout
   * of fit's data and of Keras. The state stays [L*D, B, H]. Default false (time-major).
   */
  batchFirst?: boolean;
}

export type { RecurrentState } from './recurrent';

/** SequenceModel#sample()'s options. */
export interface SampleOptions {
  /** tokens to draw (per row) */
  length: number;
  /** < 1 sharpens the distribution, 0 always takes the likeliest token (the first of equals); 1 by default */
  temperature?: number;
  /** draw from the k likeliest tokens only; every token by default */
  topK?: number;
  /** token ids never drawn (such as a padding or unknown token) */
  exclude?: readonly number[] | Int32Array;
}

export class SequenceModel extends Module {
  readonly options: Required<Omit<SequenceModelOptions, 'inputSize' | 'vocabSize' | 'embeddingDim'>> & Pick<SequenceModelOptions, 'inputSize' | 'vocabSize' | 'embeddingDim'>;
  readonly embedding: Embedding | null;
  readonly rnn: RNN | LSTM | GRU;
  readonly head: Linear;

  constructor(options: SequenceModelOptions) {
    super();
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['cell', 'inputSize', 'vocabSize', 'embeddingDim', 'hiddenSize', 'numLayers', 'dropout', 'bidirectional', 'outputSize', 'outputs', 'batchFirst'], 'options');
    const cell = (opts.cell ?? 'lstm') as CellType;
    if (!['lstm', 'gru', 'rnn', 'rnn_relu'].includes(cell)) {
      throw rangeError(`Expected options.cell to be 'lstm', 'gru', 'rnn' or 'rnn_relu' but received ${describe(cell)}`);
    }
    const outputs = opts.outputs ?? 'sequence';
    if (outputs !== 'sequence' && outputs !== 'last') throw rangeError(`Expected options.outputs to be 'sequence' or 'last' but received ${describe(outputs)}`);
    const batchFirst = opts.batchFirst === undefined ? false : expectBoolean(opts.batchFirst, 'options.batchFirst');
    if ((opts.inputSize === undefined) === (opts.vocabSize === undefined)) {
      throw rangeError('SequenceModel needs exactly one of options.inputSize (continuous inputs) or options.vocabSize (tokens)');
    }
    const hiddenSize = expectInteger(opts.hiddenSize, 'options.hiddenSize', 1);
    const embeddingDim = opts.vocabSize === undefined ? undefined : opts.embeddingDim === undefined ? hiddenSize : expectInteger(opts.embeddingDim, 'options.embeddingDim', 1);
    this.embedding = opts.vocabSize === undefined ? null
      : this.registerModule('embedding', new Embedding({ numEmbeddings: expectInteger(opts.vocabSize, 'options.vocabSize', 1), embeddingDim: embeddingDim! }));
    const recurrent = {
      inputSize: this.embedding ? embeddingDim! : expectInteger(opts.inputSize, 'options.inputSize', 1),
      hiddenSize,
      numLayers: opts.numLayers as number | undefined,
      dropout: opts.dropout as number | undefined,
      bidirectional: opts.bidirectional as boolean | undefined,
    };
    this.rnn = this.registerModule('rnn', cell === 'lstm' ? new LSTM(recurrent) : cell === 'gru' ? new GRU(recurrent)
      : new RNN({ ...recurrent, nonlinearity: cell === 'rnn_relu' ? 'relu' : 'tanh' }));
    const width = hiddenSize * this.rnn.directions;
    this.head = this.registerModule('head', new Linear({ inFeatures: width, outFeatures: expectInteger(opts.outputSize, 'options.outputSize', 1) }));
    this.options = {
      cell, hiddenSize, numLayers: this.rnn.numLayers, dropout: this.rnn.dropout, bidirectional: this.rnn.bidirectional,
      outputSize: this.head.outFeatures, outputs, batchFirst,
      ...(opts.inputSize !== undefined ? { inputSize: recurrent.inputSize } : { vocabSize: opts.vocabSize as number, embeddingDim }),
    };
  }

  override config(): Record<string, unknown> {
    return { ...this.options };
  }

  /**
   * input: [T, B, inputSize] floats, or [T, B] token ids (a Tensor of integers) with vocabSize
   * ([B, T, inputSize] and [B, T] with batchFirst).
   * options.state: the state returned by a previous call (carried across windows);
   * options.lengths: valid steps per row.
   * Returns { output: [T, B, outputSize] ([B, T, outputSize] with batchFirst) or [B, outputSize], state }.
   */
  forward(input: Tensor, options: { state?: RecurrentState | null; lengths?: readonly number[] | Int32Array | null } = {}): { output: Tensor; state: RecurrentState } {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['state', 'lengths'], 'options');
    if (!(input instanceof Tensor)) throw typeError(`SequenceModel.forward: expected input to be a Tensor but received ${describe(input)}`);
    const rank = this.embedding ? 2 : 3;
    if (input.shape.length !== rank || (!this.embedding && input.shape[2] !== this.options.inputSize)) {
      const layout = this.options.batchFirst ? '[B, T' : '[T, B';
      throw rangeError(`SequenceModel.forward: expected input of shape ${layout}${this.embedding ? ']' : `, ${this.options.inputSize}]`} but received ${formatShape(input.shape)}` +
        (input.shape.length === rank - 1 ? ' (a batch of one needs its batch dimension)' : ''), 'ERR_SHAPE_MISMATCH');
    }
    const timeMajor = this.options.batchFirst ? input.transpose(0, 1) : input;
    const x = this.embedding ? this.embedding.forward(timeMajor) : timeMajor;
    const state = opts.state as RecurrentState | null | undefined;
    const result = this.rnn.forward(x, { h0: state?.h ?? null, ...(state?.c ? { c0: state.c } : {}), lengths: opts.lengths as number[] | undefined });
    const nextState: RecurrentState = { h: result.h, ...('c' in result ? { c: (result as { c: Tensor }).c } : {}) };
    let features: Tensor;
    if (this.options.outputs === 'last') {
      // the last layer's final state; both directions side by side: [B, D*H]
      const D = this.rnn.directions;
      const L = this.rnn.numLayers;
      const last = L === 1 ? result.h : result.h.slice(0, (L - 1) * D, L * D);
      features = D === 1 ? last.select(0, 0) : last.permute([1, 0, 2]).reshape([last.shape[1], D * this.options.hiddenSize]);
    } else {
      features = result.output;
    }
    if (this.training && this.options.dropout > 0) features = dropout(features, this.options.dropout, true);
    const output = this.head.forward(features);
    return { output: this.options.batchFirst && this.options.outputs === 'sequence' ? output.transpose(0, 1) : output, state: nextState };
  }

  /** A zero state for step(): h (and c for an LSTM) [numLayers, batch, hiddenSize], updated in place by step(). */
  initialState(batch = 1): RecurrentState {
    return this.rnn.initialState(batch);
  }

  /**
   * One time step for inference (generation, streaming): `input` is B token ids (an Int32Array, an
   * array or a Tensor [B]) with vocabSize, else a Tensor [B, inputSize]; returns the head's output
   * [B, outputSize] and updates `state` (from initialState(), or forward()'s state) in place. The
   * embedding, every layer and the head run in one native call on weights packed once per change,
   * and nothing is allocated but the output (nothing with options.out). The values equal forward()
   * on one step with the same state, bit for bit. Evaluation semantics (no dropout), no graph; one
   * direction only.
   *
   * @example
   * const state = model.initialState();
   * let logits = model.step([firstToken], state);     // [1, vocabSize]
   * logits = model.step([nextToken], state);          // the state carried on in place
   */
  step(input: Tensor | Int32Array | readonly number[], state: RecurrentState, options: StepOptions = {}): Tensor {
    const name = 'SequenceModel#step()';
    const head = { weight: this.head.weight, bias: this.head.bias };
    if (this.embedding) {
      const vocab = this.embedding.weight.shape[0];
      let ids: Int32Array;
      if (input instanceof Tensor) {
        if (input.ndim !== 1) throw rangeError(`${name}: expected token ids of shape [B] but received ${formatShape(input.shape)}`, 'ERR_SHAPE_MISMATCH');
        ids = Int32Array.from(input.toArray());
      } else if (input instanceof Int32Array || Array.isArray(input)) {
        ids = Int32Array.from(input as ArrayLike<number>);
      } else {
        throw typeError(`${name}: expected token ids (an Int32Array, an array or a Tensor [B]) but received ${describe(input)}`);
      }
      if (ids.length === 0) throw rangeError(`${name}: expected at least one token id`, 'ERR_SHAPE_MISMATCH');
      for (let b = 0; b < ids.length; ++b) {
        const id = ids[b];
        const given = input instanceof Tensor || input instanceof Int32Array ? id : (input as readonly number[])[b];
        if (!Number.isInteger(given) || given < 0 || given >= vocab) {
          throw rangeError(`${name}: expected input[${b}] to be a token id in [0, ${vocab}) but received ${describe(given)}`);
        }
      }
      return this.rnn.runStep(name, { tokens: ids, embedding: this.embedding.weight }, ids.length, state, options, head);
    }
    if (!(input instanceof Tensor)) throw typeError(`${name}: expected input to be a Tensor [B, ${this.options.inputSize}] but received ${describe(input)}`);
    if (input.ndim !== 2 || input.shape[1] !== this.options.inputSize) {
      throw rangeError(`${name}: expected input of shape [B, ${this.options.inputSize}] but received ${formatShape(input.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    return this.rnn.runStep(name, { x: input }, input.shape[0], state, options, head);
  }

  /**
   * Generation: draws `options.length` tokens one after another, each read back as the next step's
   * input (a model with vocabSize whose outputs are tokens). Each of the B rows of `logits` [B,
   * outputSize] (step()'s or forward()'s output for the tokens so far) draws a token as
   * sampleLogits(row, temperature, topK) draws it from the global generator (seed() repeats a run),
   * never one of `options.exclude`; then one step as step() runs it. On the CPU the whole loop is
   * one native call. Returns the tokens [length * B] (step by step: row b's i-th token at i * B + b);
   * `logits` and `state` end as step() would leave them after the last tokens, so a later call goes
   * on from there. Evaluation semantics; one direction only.
   *
   * @example
   * const state = model.initialState();
   * const logits = model.step([startToken], state);
   * const tokens = model.sample(logits, state, { length: 200, temperature: 0.8 });
   */
  sample(logits: Tensor, state: RecurrentState, options: SampleOptions): Int32Array {
    const name = 'SequenceModel#sample()';
    if (!this.embedding) throw typeError(`${name}: sampling feeds tokens back in: the model needs vocabSize (an embedding)`, 'ERR_INVALID_ARG_VALUE');
    const V = this.head.weight.shape[0];
    const vocab = this.embedding.weight.shape[0];
    if (V > vocab) throw rangeError(`${name}: the model's ${V} outputs must be tokens it reads (vocabSize ${vocab})`, 'ERR_INVALID_ARG_VALUE');
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['length', 'temperature', 'topK', 'exclude'], 'options');
    const length = expectInteger(opts.length, 'options.length', 0, 1 << 24);
    const temperature = opts.temperature === undefined ? 1 : expectNumber(opts.temperature, 'options.temperature');
    if (!(temperature >= 0) || !Number.isFinite(temperature)) throw rangeError(`Expected options.temperature to be a finite number >= 0 but received ${temperature}`);
    const topK = opts.topK === undefined ? undefined : expectInteger(opts.topK, 'options.topK', 1);
    let excluded: Uint8Array | null = null;
    if (opts.exclude !== undefined) {
      if (!Array.isArray(opts.exclude) && !(opts.exclude instanceof Int32Array)) {
        throw typeError(`Expected options.exclude to be an array of token ids but received ${describe(opts.exclude)}`);
      }
      excluded = new Uint8Array(V);
      Array.from(opts.exclude as ArrayLike<unknown>).forEach((id, i) => { excluded![expectInteger(id, `options.exclude[${i}]`, 0, V - 1)] = 1; });
    }
    const given = expectTensor(logits, 'logits');
    if (given.ndim !== 2 || given.shape[1] !== V || given.shape[0] < 1) {
      throw rangeError(`${name}: expected logits of shape [B, ${V}] but received ${formatShape(given.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    const B = given.shape[0];
    return this.inference(() => this.rnn.runSample(name, this.embedding!.weight, B, state, given, { weight: this.head.weight, bias: this.head.bias },
      { length, temperature, topK, excluded }));
  }

  /**
   * The model's outputs for fit's layout, whatever this model's own: inputs [N, T, inputSize]
   * (token ids [N, T]), run in evaluation mode without a graph, `batchSize` samples at a time.
   * Returns [N, outputSize] with outputs 'last', [N, T, outputSize] with 'sequence'; class
   * predictions are `predict(x).argmax(-1)`.
   *
   * @example
   * await fit(model, { inputs, targets }, { loss: 'crossEntropy' });
   * const classes = model.predict(testInputs).argmax(-1);   // [N]
   */
  predict(inputs: Tensor, options: { batchSize?: number; lengths?: readonly number[] | Int32Array } = {}): Tensor {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['batchSize', 'lengths'], 'options');
    if (!(inputs instanceof Tensor)) throw typeError(`SequenceModel.predict: expected inputs to be a Tensor but received ${describe(inputs)}`);
    const rank = this.embedding ? 2 : 3;
    if (inputs.shape.length !== rank || (!this.embedding && inputs.shape[2] !== this.options.inputSize)) {
      throw rangeError(`SequenceModel.predict: expected inputs of shape [N, T${this.embedding ? '' : `, ${this.options.inputSize}`}] but received ${formatShape(inputs.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    const batchSize = opts.batchSize === undefined ? 256 : expectInteger(opts.batchSize, 'options.batchSize', 1);
    const N = inputs.shape[0];
    const lengths = opts.lengths as readonly number[] | Int32Array | undefined;
    if (lengths !== undefined && (typeof lengths !== 'object' || lengths.length !== N)) {
      throw rangeError(`SequenceModel.predict: expected options.lengths to hold ${N} lengths but received ${describe(lengths)}`, 'ERR_SHAPE_MISMATCH');
    }
    return this.inference(() => {
      const parts: Tensor[] = [];
      for (let first = 0; first < N; first += batchSize) {
        const last = Math.min(N, first + batchSize);
        const batch = inputs.slice(0, first, last).to(this.device);
        const x = this.options.batchFirst ? batch : batch.transpose(0, 1);
        const { output } = this.forward(x, lengths ? { lengths: Array.from(lengths).slice(first, last) } : {});
        parts.push(this.options.outputs === 'sequence' && !this.options.batchFirst ? output.transpose(0, 1) : output);
      }
      return parts.length === 1 ? parts[0] : Tensor.cat(parts, 0);
    });
  }
}
