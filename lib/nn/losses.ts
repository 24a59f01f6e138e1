/**
 * Loss functions with PyTorch's semantics and reductions.
 */
import { describe, expectInteger, expectNumber, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from '../core/errors';
import { native } from '../core/native';
import { Tensor, emptyOn, expectTensor, record } from '../core/tensor';

export type Reduction = 'mean' | 'sum' | 'none';

function reductionOf(options: Record<string, unknown>): Reduction {
  const reduction = options.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw rangeError(`Expected options.reduction to be 'mean', 'sum' or 'none' but received ${describe(reduction)}`);
  }
  return reduction;
}

function reduce(values: Tensor, reduction: Reduction): Tensor {
  return reduction === 'none' ? values : reduction === 'sum' ? values.sum() : values.mean();
}

/** Integer class targets as an Int32Array, from a Tensor, an Int32Array or numbers. */
function classTargets(targets: unknown, expectedShape: number[]): Int32Array {
  const count = expectedShape.reduce((a, b) => a * b, 1);
  let values: ArrayLike<number>;
  if (targets instanceof Tensor) {
    expectTensor(targets, 'targets');
    const shape = targets.shape;
    if (shape.length !== expectedShape.length || shape.some((s, i) => s !== expectedShape[i])) {
      throw rangeError(`crossEntropyLoss: expected targets of shape ${formatShape(expectedShape)} but received ${formatShape(shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    values = targets.toArray();
  } else if (targets instanceof Int32Array || Array.isArray(targets)) {
    values = targets;
  } else {
    throw typeError(`crossEntropyLoss: expected targets to be a Tensor, an Int32Array or an array of integers but received ${describe(targets)}`);
  }
  if (values.length !== count) {
    throw rangeError(`crossEntropyLoss: expected ${count} targets (shape ${formatShape(expectedShape)}) but received ${values.length}`, 'ERR_SHAPE_MISMATCH');
  }
  if (values instanceof Int32Array) return values;
  const out = new Int32Array(count);
  for (let i = 0; i < count; ++i) {
    if (!Number.isInteger(values[i])) throw rangeError(`crossEntropyLoss: targets[${i}] must be an integer class index but is ${values[i]}`);
    out[i] = values[i];
  }
  return out;
}

/**
 * Softmax cross-entropy from unnormalized logits, fused (one native pass).
 *
 * logits: [N, V], or [T, B, V] (any leading dims; the last is classes).
 * targets: class indices with the leading shape of logits ([N] or [T, B]), as a Tensor
 * of integers, an Int32Array or numbers. Steps whose target equals `ignoreIndex`
 * (default -100) count neither in the loss nor in the mean.
 * labelSmoothing s in [0, 1] (PyTorch's label_smoothing, default 0) trains toward
 * (1 - s) onehot(target) + s / V instead of onehot(target).
 * Returns a one-element tensor (reduction 'mean' or 'sum') or per-element losses ('none').
 */
export function crossEntropyLoss(
  logits: Tensor,
  targets: Tensor | Int32Array | readonly number[],
  options: { reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  const x = expectTensor(logits, 'logits');
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['reduction', 'ignoreIndex', 'labelSmoothing'], 'options');
  const smoothing = opts.labelSmoothing === undefined ? 0 : expectNumber(opts.labelSmoothing, 'options.labelSmoothing');
  if (!(smoothing >= 0 && smoothing <= 1)) throw rangeError(`crossEntropyLoss: expected options.labelSmoothing in [0, 1] but received ${describe(opts.labelSmoothing)}`);
  const reduction = reductionOf(opts);
  const ignoreIndex = opts.ignoreIndex === undefined ? -100 : expectInteger(opts.ignoreIndex, 'options.ignoreIndex', -(2 ** 31), 2 ** 31 - 1);
  if (x.ndim < 2 || x.shape[x.ndim - 1] === 0) {
    throw rangeError(`crossEntropyLoss: expected logits of shape [N, V] or [T, B, V] but received ${formatShape(x.shape)}`, 'ERR_SHAPE_MISMATCH');
  }
  const leading = x.shape.slice(0, -1);
  const classes = x.shape[x.ndim - 1];
  const rows = x.size / classes;
  const t = classTargets(targets, leading);
  for (let i = 0; i < rows; ++i) {
    if (t[i] !== ignoreIndex && (t[i] < 0 || t[i] >= classes)) {
      throw rangeError(`crossEntropyLoss: targets[${i}] = ${t[i]} is not a class index in [0, ${classes - 1}]`);
    }
  }
  const losses = emptyOn([rows], x.device);
  native.crossEntropy(losses.storage, x.storage, t, rows, classes, ignoreIndex, smoothing);
  record('crossEntropy', [x], losses, ([g]) => {
    const grad = emptyOn(x.shape, x.device);
    native.crossEntropyBackward(grad.storage, x.storage, t, g!.storage, rows, classes, ignoreIndex, smoothing);
    return [grad];
  });
  if (reduction === 'none') return losses.reshape(leading);
  if (reduction === 'sum') return losses.sum();
  let counted = 0;
  for (let i = 0; i < rows; ++i) if (t[i] !== ignoreIndex) counted += 1;
  return losses.sum().mul(1 / counted); // NaN when every target is ignored, as in PyTorch
}

function checkPair(input: unknown, target: unknown, name: string): [Tensor, Tensor] {
  const a = expectTensor(input, 'input');
  const b = expectTensor(target, 'target');
  const sa = a.shape;
  const sb = b.shape;
  if (sa.length !== sb.length || sa.some((s, i) => s !== sb[i])) {
    throw rangeError(`${name}: expected target of shape ${formatShape(sa)} (the input's) but received ${formatShape(sb)}`, 'ERR_SHAPE_MISMATCH');
  }
  return [a, b];
}

/** Mean squared error: mean((input - target)^2). Shapes must match. */
export function mseLoss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  const [a, b] = checkPair(input, target, 'mseLoss');
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['reduction'], 'options');
  return reduce(a.sub(b).square(), reductionOf(opts));
}

/**
 * Huber loss: 0.5 d^2 where |d| < delta, else delta * (|d| - 0.5 delta), d = input - target.
 */
export function huberLoss(input: Tensor, target: Tensor, options: { reduction?: Reduction; delta?: number } = {}): Tensor {
  const [a, b] = checkPair(input, target, 'huberLoss');
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['reduction', 'delta'], 'options');
  const delta = opts.delta === undefined ? 1 : expectNumber(opts.delta, 'options.delta');
  if (delta <= 0) throw rangeError(`Expected options.delta to be positive but received ${delta}`);
  const absolute = a.sub(b).abs();
  // quadratic part q = min(|d|, delta) = delta - relu(delta - |d|); linear part |d| - q
  const q = absolute.neg().add(delta).relu().neg().add(delta);
  const values = q.square().mul(0.5).add(absolute.sub(q).mul(delta));
  return reduce(values, reductionOf(opts));
}
