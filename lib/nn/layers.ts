/**
 * Feed-forward building blocks: Linear, Embedding, Dropout, Sequential.
 */
import { describe, expectBoolean, expectInteger, expectNumber, expectOptions, expectKnownKeys, rangeError, typeError } from '../core/errors';
import { dropout, embedding, linear } from './functional';
import { Tensor } from '../core/tensor';
import { normal_, uniform_ } from './init';
import { Module } from './module';

export interface LinearOptions {
  inFeatures: number;
  outFeatures: number;
  /** Learn an additive bias. Default true. */
  bias?: boolean;
}

/**
 * Applies an affine map to the last dimension: y = x W^T + b.
 *
 * Parameters: `weight` (outFeatures, inFeatures), `bias` (outFeatures), both initialized
 * U(-1/sqrt(inFeatures), 1/sqrt(inFeatures)) as in PyTorch.
 * Input (..., inFeatures); output (..., outFeatures).
 *
 * @example
 * const head = new Linear({ inFeatures: 128, outFeatures: 64 });
 * const logits = head.forward(output); // [T, B, 64]
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(options: LinearOptions) {
    super();
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['inFeatures', 'outFeatures', 'bias'], 'options');
    this.inFeatures = expectInteger(opts.inFeatures, 'options.inFeatures', 1);
    this.outFeatures = expectInteger(opts.outFeatures, 'options.outFeatures', 1);
    const hasBias = opts.bias === undefined ? true : expectBoolean(opts.bias, 'options.bias');
    const bound = 1 / Math.sqrt(this.inFeatures);
    this.weight = this.registerParameter('weight', uniform_(Tensor.zeros([this.outFeatures, this.inFeatures]), -bound, bound))!;
    this.bias = this.registerParameter('bias', hasBias ? uniform_(Tensor.zeros([this.outFeatures]), -bound, bound) : null);
  }

  forward(input: Tensor): Tensor {
    return linear(input, this.weight, this.bias);
  }

  override config(): Record<string, unknown> {
    return { inFeatures: this.inFeatures, outFeatures: this.outFeatures, bias: this.bias !== null };
  }
}

export interface EmbeddingOptions {
  numEmbeddings: number;
  embeddingDim: number;
  /** This index maps to a zero vector that receives no gradient. */
  paddingIdx?: number;
}

/**
 * A lookup table: integer indices (any shape) to rows of `weight` (numEmbeddings,
 * embeddingDim), initialized N(0, 1) as in PyTorch. Output [...indices.shape, embeddingDim].
 */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly paddingIdx: number | null;
  readonly weight: Tensor;

  constructor(options: EmbeddingOptions) {
    super();
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['numEmbeddings', 'embeddingDim', 'paddingIdx'], 'options');
    this.numEmbeddings = expectInteger(opts.numEmbeddings, 'options.numEmbeddings', 1);
    this.embeddingDim = expectInteger(opts.embeddingDim, 'options.embeddingDim', 1);
    this.paddingIdx = opts.paddingIdx === undefined ? null : expectInteger(opts.paddingIdx, 'options.paddingIdx', 0, this.numEmbeddings - 1);
    const weight = normal_(Tensor.zeros([this.numEmbeddings, this.embeddingDim]));
    if (this.paddingIdx !== null) {
      const data = weight.toArray();
      data.fill(0, this.paddingIdx * this.embeddingDim, (this.paddingIdx + 1) * this.embeddingDim);
      weight.storage.write(data, 0);
    }
    this.weight = this.registerParameter('weight', weight)!;
  }

  forward(indices: Tensor | Int32Array | readonly number[]): Tensor {
    return embedding(indices, this.weight, this.paddingIdx);
  }

  override config(): Record<string, unknown> {
    return { numEmbeddings: this.numEmbeddings, embeddingDim: this.embeddingDim, ...(this.paddingIdx === null ? {} : { paddingIdx: this.paddingIdx }) };
  }
}

/** Inverted dropout with probability p (default 0.5), active in training mode only. */
export class Dropout extends Module {
  readonly p: number;

  constructor(p = 0.5) {
    super();
    expectNumber(p, 'p');
    if (p < 0 || p >= 1) throw rangeError(`Expected p to be in [0, 1) but received ${p}`);
    this.p = p;
  }

  forward(input: Tensor): Tensor {
    return dropout(input, this.p, this.training);
  }

  override config(): Record<string, unknown> {
    return { p: this.p };
  }
}

type Forwardable = Module & { forward(input: never): unknown };

/**
 * Chains modules: each one's output feeds the next. A recurrent layer's `{ output }`
 * passes on its `output`, so `new Sequential(embedding, lstm, head)` works.
 * Children are named '0', '1', ... as in PyTorch.
 */
export class Sequential extends Module {
  readonly layers: Module[];

  constructor(...modules: Module[]) {
    super();
    modules.forEach((m, i) => {
      if (!(m instanceof Module)) throw typeError(`Expected modules[${i}] to be a Module but received ${describe(m)}`);
      this.registerModule(String(i), m);
    });
    this.layers = modules;
  }

  forward(input: unknown): Tensor {
    let value: unknown = input;
    for (const layer of this.layers) {
      value = (layer as Forwardable).forward(value as never);
      if (!(value instanceof Tensor) && value && typeof value === 'object' && (value as { output?: unknown }).output instanceof Tensor) {
        value = (value as { output: Tensor }).output;
      }
    }
    if (!(value instanceof Tensor)) throw typeError(`Sequential: the last module returned ${describe(value)} instead of a Tensor`);
    return value;
  }

  override config(): Record<string, unknown> {
    return { layers: this.layers.map((m) => ({ class: m.constructor.name, config: m.config() })) };
  }
}
