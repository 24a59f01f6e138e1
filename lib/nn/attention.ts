/**
 * Attention over a set of encoder states (keys and values), for a batch of queries:
 * Bahdanau's additive score (Bahdanau et al., 2015) and Luong's multiplicative ones ('general'
 * and 'dot', Luong et al., 2015). Built from differentiable tensor ops, so they train anywhere in
 * a graph; padded source positions are masked out by lengths or a 0/1 mask.
 *
 * Shapes, batch-first: query [B, Tq, Hq] (or [B, Hq] for one query per row), keys [B, S, Hk],
 * values [B, S, Hv] (default: the keys). Output: context [B, Tq, Hv] and weights [B, Tq, S] (each
 * row sums to 1 over the unmasked positions), without the Tq dimension for a [B, Hq] query.
 */
import { describe, expectInteger, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from '../core/errors';
import { native } from '../core/native';
import { Tensor, emptyOn, expectTensor, record } from '../core/tensor';
import { Linear } from './layers';
import { Module } from './module';

export interface AttentionOptions {
  /** Valid source positions per row (the rest are padding), or */
  lengths?: readonly number[] | Int32Array | null;
  /** a [B, S] tensor of 1 (attend) and 0 (padding). */
  mask?: Tensor | null;
}

export interface AttentionOutput {
  /** [B, Tq, Hv] ([B, Hv] for a [B, Hq] query) */
  context: Tensor;
  /** [B, Tq, S] ([B, S] for a [B, Hq] query) */
  weights: Tensor;
}

/** Added to the scores of masked positions: their weight is exactly 0 (and a row masked entirely stays finite). */
const MASKED = -1e30;

/** The additive mask [B, 1, S] (0 where attended, MASKED on padding), or null when nothing is masked. */
export function attentionMask(name: string, options: AttentionOptions, B: number, S: number, device: Tensor['device']): Tensor | null {
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['lengths', 'mask'], 'options');
  const lengths = opts.lengths ?? null;
  const mask = opts.mask ?? null;
  if (lengths !== null && mask !== null) throw rangeError(`${name}: pass options.lengths or options.mask, not both`);
  const additive = new Float32Array(B * S);
  let any = false;
  if (lengths !== null) {
    if (!Array.isArray(lengths) && !(lengths instanceof Int32Array)) {
      throw typeError(`${name}: expected options.lengths to be an array of ${B} integers but received ${describe(lengths)}`);
    }
    if (lengths.length !== B) throw rangeError(`${name}: expected options.lengths to have one entry per batch row (${B}) but received ${lengths.length}`, 'ERR_SHAPE_MISMATCH');
    for (let b = 0; b < B; ++b) {
      const n = expectInteger(lengths[b], `options.lengths[${b}]`, 1, S);
      for (let j = n; j < S; ++j) additive[b * S + j] = MASKED;
      any ||= n < S;
    }
  } else if (mask !== null) {
    const m = expectTensor(mask, 'options.mask');
    if (m.ndim !== 2 || m.shape[0] !== B || m.shape[1] !== S) {
      throw rangeError(`${name}: expected options.mask of shape ${formatShape([B, S])} but received ${formatShape(m.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    const values = m.toArray();
    values.forEach((v, i) => {
      if (v !== 0 && v !== 1) throw rangeError(`${name}: options.mask must hold 0 and 1 but holds ${v} at ${i}`);
      if (v === 0) {
        additive[i] = MASKED;
        any = true;
      }
    });
  }
  return any ? Tensor.from(additive, [B, 1, S], { device }) : null;
}

/** Shared by both kinds: checks, scores -> masked softmax -> weighted values. */
abstract class Attention extends Module {
  readonly querySize: number;
  readonly keySize: number;

  constructor(querySize: number, keySize: number) {
    super();
    this.querySize = querySize;
    this.keySize = keySize;
  }

  /**
   * The keys as the score reads them, [B, S, K] (a projection for 'bahdanau' and 'general', the
   * keys themselves for 'dot'). A decoder computes them once per source and scores every step on them.
   */
  abstract projectKeys(keys: Tensor): Tensor;

  /** Unnormalized scores [B, Tq, S] of queries [B, Tq, Hq] against projected keys [B, S, K]. */
  abstract score(query: Tensor, projectedKeys: Tensor): Tensor;

  forward(query: Tensor, keys: Tensor, values: Tensor | null = null, options: AttentionOptions = {}): AttentionOutput {
    const name = `${this.constructor.name}#forward()`;
    const q = expectTensor(query, 'query');
    const k = expectTensor(keys, 'keys');
    const v = values === null || values === undefined ? k : expectTensor(values, 'values');
    if (k.ndim !== 3 || k.shape[2] !== this.keySize) {
      throw rangeError(`${name}: expected keys of shape [B, S, ${this.keySize}] but received ${formatShape(k.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    const [B, S] = k.shape;
    if (S === 0) throw rangeError(`${name}: keys has no positions (shape ${formatShape(k.shape)})`, 'ERR_SHAPE_MISMATCH');
    const single = q.ndim === 2;
    if ((q.ndim !== 2 && q.ndim !== 3) || q.shape[0] !== B || q.shape[q.ndim - 1] !== this.querySize) {
      throw rangeError(`${name}: expected query of shape [${B}, Tq, ${this.querySize}] or [${B}, ${this.querySize}] but received ${formatShape(q.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    if (v.ndim !== 3 || v.shape[0] !== B || v.shape[1] !== S) {
      throw rangeError(`${name}: expected values of shape [${B}, ${S}, Hv] but received ${formatShape(v.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    const mask = attentionMask(name, options, B, S, k.device);
    const queries = single ? q.reshape([B, 1, this.querySize]) : q;
    const { context, weights } = this.attend(queries, this.projectKeys(k), v, mask);
    return single ? { context: context.reshape([B, v.shape[2]]), weights: weights.reshape([B, S]) } : { context, weights };
  }

  /** @internal queries [B, Tq, Hq], projected keys, values [B, S, Hv], additive mask [B, 1, S] or null. */
  attend(queries: Tensor, projectedKeys: Tensor, values: Tensor, mask: Tensor | null): AttentionOutput {
    let scores = this.score(queries, projectedKeys);
    if (mask) scores = scores.add(mask);
    const weights = scores.softmax(-1);
    return { context: weights.matmul(values), weights };
  }
}

export interface BahdanauAttentionOptions {
  /** Width of the queries (the decoder's state). */
  querySize: number;
  /** Width of the keys (the encoder's outputs). */
  keySize: number;
  /** Width of the hidden layer of the score. Default: querySize. */
  attentionSize?: number;
}

/**
 * Additive attention (Bahdanau et al., 2015): score(q, k_j) = v . tanh(W_q q + b_q + W_k k_j).
 * Parameters: query.weight [A, Hq], query.bias [A], key.weight [A, Hk], v.weight [1, A].
 *
 * @example
 * const attention = new BahdanauAttention({ querySize: 256, keySize: 512 });
 * const { context, weights } = attention.forward(decoderStates, encoderOutputs, null, { lengths });
 */
export class BahdanauAttention extends Attention {
  readonly attentionSize: number;
  readonly query: Linear;
  readonly key: Linear;
  readonly v: Linear;

  constructor(options: BahdanauAttentionOptions) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['querySize', 'keySize', 'attentionSize'], 'options');
    const querySize = expectInteger(opts.querySize, 'options.querySize', 1);
    super(querySize, expectInteger(opts.keySize, 'options.keySize', 1));
    this.attentionSize = opts.attentionSize === undefined ? querySize : expectInteger(opts.attentionSize, 'options.attentionSize', 1);
    this.query = this.registerModule('query', new Linear({ inFeatures: querySize, outFeatures: this.attentionSize }));
    this.key = this.registerModule('key', new Linear({ inFeatures: this.keySize, outFeatures: this.attentionSize, bias: false }));
    this.v = this.registerModule('v', new Linear({ inFeatures: this.attentionSize, outFeatures: 1, bias: false }));
  }

  projectKeys(keys: Tensor): Tensor {
    return this.key.forward(keys);
  }

  score(query: Tensor, projectedKeys: Tensor): Tensor {
    const [B, Tq] = query.shape;
    const S = projectedKeys.shape[1];
    const A = this.attentionSize;
    const q = this.query.forward(query);
    if (q.device === 'cpu') return additiveScores(q, projectedKeys, this.v.weight);
    // elsewhere as tensor ops, through a [B, Tq, S, A] intermediate
    const hidden = q.reshape([B, Tq, 1, A]).add(projectedKeys.reshape([B, 1, S, A])).tanh();
    return this.v.forward(hidden).reshape([B, Tq, S]);
  }

  override config(): Record<string, unknown> {
    return { querySize: this.querySize, keySize: this.keySize, attentionSize: this.attentionSize };
  }
}

/**
 * scores [B, Tq, S] = v . tanh(q [B, Tq, A] + k [B, S, A]) in one native pass (cpp/attention.h),
 * and its gradient in another, which recomputes the tanh instead of keeping B * Tq * S * A values.
 */
function additiveScores(q: Tensor, k: Tensor, v: Tensor): Tensor {
  const [B, Tq, A] = q.shape;
  const S = k.shape[1];
  const scores = emptyOn([B, Tq, S], q.device);
  native.additiveAttention(scores.storage, q.storage, k.storage, v.storage, B, Tq, S, A);
  return record('additiveAttention', [q, k, v], scores, ([g]) => {
    const dq = emptyOn(q.shape, q.device);
    const dk = emptyOn(k.shape, k.device);
    const dv = emptyOn(v.shape, v.device);
    native.additiveAttentionBackward(dq.storage, dk.storage, dv.storage, g!.storage, q.storage, k.storage, v.storage, B, Tq, S, A);
    return [dq, dk, dv];
  });
}

export interface LuongAttentionOptions {
  querySize: number;
  keySize: number;
  /** 'general' (default): q . W_a k; 'dot': q . k (needs keySize = querySize). */
  score?: 'general' | 'dot';
}

/**
 * Multiplicative attention (Luong et al., 2015): 'general' score(q, k_j) = q . (W_a k_j) with
 * key.weight W_a [Hq, Hk]; 'dot' score(q, k_j) = q . k_j, no parameters.
 */
export class LuongAttention extends Attention {
  readonly scoring: 'general' | 'dot';
  readonly key: Linear | null;

  constructor(options: LuongAttentionOptions) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['querySize', 'keySize', 'score'], 'options');
    const querySize = expectInteger(opts.querySize, 'options.querySize', 1);
    const keySize = expectInteger(opts.keySize, 'options.keySize', 1);
    super(querySize, keySize);
    const scoring = opts.score ?? 'general';
    if (scoring !== 'general' && scoring !== 'dot') throw rangeError(`Expected options.score to be 'general' or 'dot' but received ${describe(scoring)}`);
    if (scoring === 'dot' && keySize !== querySize) {
      throw rangeError(`LuongAttention: 'dot' needs keySize (${keySize}) equal to querySize (${querySize}); use 'general'`);
    }
    this.scoring = scoring;
    this.key = scoring === 'general' ? this.registerModule('key', new Linear({ inFeatures: keySize, outFeatures: querySize, bias: false })) : null;
  }

  projectKeys(keys: Tensor): Tensor {
    return this.key ? this.key.forward(keys) : keys;
  }

  score(query: Tensor, projectedKeys: Tensor): Tensor {
    return query.matmul(projectedKeys.transpose(1, 2));
  }

  override config(): Record<string, unknown> {
    return { querySize: this.querySize, keySize: this.keySize, score: this.scoring };
  }
}
