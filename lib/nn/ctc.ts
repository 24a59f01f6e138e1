/**
 * Connectionist Temporal Classification (Graves et al., 2006): a loss for label sequences whose
 * alignment to the input frames is unknown (speech, handwriting, grapheme-to-phoneme), with
 * torch.nn.functional.ctc_loss's values, gradients and reductions, and its two decoders.
 *
 * The loss sums p(alignment) over every path through the extended sequence
 * (blank, l1, blank, l2, ..., blank) that a frame-by-frame output can take, where a blank may be
 * skipped between two different labels (a repeated label needs a blank between its copies).
 * One native call computes the losses of the whole batch and their gradient (threads over rows).
 */
import { describe, expectBoolean, expectInteger, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from '../core/errors';
import { native } from '../core/native';
import { Tensor, emptyOn, expectTensor, record } from '../core/tensor';
import type { Reduction } from './losses';

export interface CtcLossOptions {
  /** The blank class. Default 0. */
  blank?: number;
  /** 'mean' (the default): each row's loss divided by its target length, then the batch mean; 'sum'; 'none': [B]. */
  reduction?: Reduction;
  /** An impossible alignment costs +Infinity; with zeroInfinity, 0 and a zero gradient instead. Default false. */
  zeroInfinity?: boolean;
}

/** The label sequences of a batch: number[][], or padded [B, S] (a Tensor or an Int32Array). */
export type CtcTargets = readonly (readonly number[])[] | Tensor | Int32Array;

interface Checked {
  logProbs: Tensor;
  T: number;
  B: number;
  C: number;
  inputLengths: Int32Array;
}

function checkLogProbs(logProbs: unknown, inputLengths: unknown, name: string): Checked {
  const lp = expectTensor(logProbs, 'logProbs');
  if (lp.shape.length !== 3) throw rangeError(`${name}: expected logProbs of shape [T, B, C] but received ${formatShape(lp.shape)}`, 'ERR_SHAPE_MISMATCH');
  const [T, B, C] = lp.shape;
  if (C < 1) throw rangeError(`${name}: logProbs has no classes (shape ${formatShape(lp.shape)})`, 'ERR_SHAPE_MISMATCH');
  const lengths = lengthsOf(inputLengths, 'inputLengths', B, name);
  lengths.forEach((n, b) => {
    if (n > T) throw rangeError(`${name}: inputLengths[${b}] is ${n}, longer than the ${T} frames of logProbs`, 'ERR_INVALID_ARG_VALUE');
  });
  return { logProbs: lp, T, B, C, inputLengths: lengths };
}

function lengthsOf(value: unknown, name: string, batch: number, fn: string): Int32Array {
  if (!Array.isArray(value) && !(value instanceof Int32Array)) {
    throw typeError(`${fn}: expected ${name} to be an array of ${batch} integers but received ${describe(value)}`);
  }
  if (value.length !== batch) {
    throw rangeError(`${fn}: expected ${name} to have one entry per batch row (${batch}) but received ${value.length}`, 'ERR_SHAPE_MISMATCH');
  }
  return Int32Array.from(value as ArrayLike<number>, (n, i) => expectInteger(n, `${name}[${i}]`, 0, 2 ** 31 - 1));
}

function blankOf(options: Record<string, unknown>, classes: number): number {
  return options.blank === undefined ? 0 : expectInteger(options.blank, 'options.blank', 0, classes - 1);
}

/** The labels of every row back to back (checked against blank and the classes) and their lengths. */
function targetsOf(targets: unknown, targetLengths: unknown, B: number, C: number, blank: number): { labels: Int32Array; lengths: Int32Array } {
  const lengths = lengthsOf(targetLengths, 'targetLengths', B, 'ctcLoss');
  let rows: ArrayLike<number>[];
  if (Array.isArray(targets)) {
    if (targets.length !== B) throw rangeError(`ctcLoss: expected targets to have one label sequence per batch row (${B}) but received ${targets.length}`, 'ERR_SHAPE_MISMATCH');
    rows = targets.map((row, b) => {
      if (!Array.isArray(row) && !ArrayBuffer.isView(row)) throw typeError(`ctcLoss: expected targets[${b}] to be an array of labels but received ${describe(row)}`);
      return row as ArrayLike<number>;
    });
  } else if (targets instanceof Tensor || targets instanceof Int32Array) {
    const flat = targets instanceof Tensor ? targets.toArray() : targets;
    if (targets instanceof Tensor && (targets.shape.length !== 2 || targets.shape[0] !== B)) {
      throw rangeError(`ctcLoss: expected padded targets of shape [${B}, S] but received ${formatShape(targets.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    if (flat.length % Math.max(B, 1) !== 0) throw rangeError(`ctcLoss: padded targets of ${flat.length} labels do not split into ${B} rows`, 'ERR_SHAPE_MISMATCH');
    const S = B > 0 ? flat.length / B : 0;
    rows = Array.from({ length: B }, (_, b) => flat.subarray(b * S, (b + 1) * S));
  } else {
    throw typeError(`ctcLoss: expected targets to be number[][], a Tensor [B, S] or an Int32Array but received ${describe(targets)}`);
  }
  const total = lengths.reduce((a, n) => a + n, 0);
  const labels = new Int32Array(total);
  let at = 0;
  rows.forEach((row, b) => {
    if (lengths[b] > row.length) throw rangeError(`ctcLoss: targetLengths[${b}] is ${lengths[b]} but targets[${b}] holds ${row.length} labels`, 'ERR_INVALID_ARG_VALUE');
    for (let i = 0; i < lengths[b]; ++i) {
      const label = row[i];
      if (!Number.isInteger(label) || label < 0 || label >= C) {
        throw rangeError(`ctcLoss: targets[${b}][${i}] is ${label}, not a class in [0, ${C})`, 'ERR_INVALID_ARG_VALUE');
      }
      if (label === blank) throw rangeError(`ctcLoss: targets[${b}][${i}] is the blank (${blank}); label sequences hold no blanks`, 'ERR_INVALID_ARG_VALUE');
      labels[at++] = label;
    }
  });
  return { labels, lengths };
}

/**
 * The CTC loss of `targets` given `logProbs` [T, B, C] (log-probabilities over C classes, e.g.
 * a logSoftmax over the last dimension), as torch.nn.functional.ctc_loss: same values, same
 * gradients, same reductions. The gradient flows into logProbs; as torch's, it is the gradient
 * of the loss with respect to the logits when logProbs = logSoftmax(logits) (it already holds
 * the softmax's share), and zero past a row's input length.
 *
 * @example
 * const logProbs = head.forward(lstm.forward(x).output).logSoftmax();   // [T, B, C]
 * const loss = ctcLoss(logProbs, [[3, 1, 4], [1, 5]], [T, T - 2], [3, 2]);
 * loss.backward();
 */
export function ctcLoss(logProbs: Tensor, targets: CtcTargets, inputLengths: readonly number[] | Int32Array, targetLengths: readonly number[] | Int32Array,
  options: CtcLossOptions = {}): Tensor {
  const checked = checkLogProbs(logProbs, inputLengths, 'ctcLoss');
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['blank', 'reduction', 'zeroInfinity'], 'options');
  const { T, B, C } = checked;
  const blank = blankOf(opts, C);
  const reduction = opts.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw rangeError(`Expected options.reduction to be 'mean', 'sum' or 'none' but received ${describe(reduction)}`);
  }
  const zeroInfinity = opts.zeroInfinity === undefined ? false : expectBoolean(opts.zeroInfinity, 'options.zeroInfinity');
  const { labels, lengths } = targetsOf(targets, targetLengths, B, C, blank);

  // the kernels run on the CPU: a CUDA input comes over and its loss goes back (both differentiable)
  const device = checked.logProbs.device;
  const lp = device === 'cpu' ? checked.logProbs : checked.logProbs.to('cpu');
  const losses = emptyOn([B], 'cpu');
  const grad = lp.requiresGrad ? emptyOn([T, B, C], 'cpu') : null;
  native.ctcLoss(losses.storage, grad ? grad.storage : null, lp.storage, T, B, C, blank, labels, lengths, checked.inputLengths, zeroInfinity);

  // the reduction by tensor ops (queued like the kernel in async mode: nothing here reads values);
  // 'mean' divides each row's loss by its target length (at least 1), then takes the batch mean
  const factors = Float32Array.from(lengths, (n) => (reduction === 'mean' ? 1 / Math.max(n, 1) / Math.max(B, 1) : 1));
  let out = reduction === 'none' ? losses : losses.mul(Tensor.from(factors, [B])).sum();
  if (grad) {
    const rowGrads = grad;
    const weights = Tensor.from(factors, [1, B, 1]);
    out = record('ctc_loss', [lp], out, ([g]) => {
      // dL/dlogProbs = the kernel's per-row gradient times d out / d losses[b] times the incoming gradient
      const scale = reduction === 'none' ? g!.reshape([1, B, 1]) : weights.mul(g!);
      return [rowGrads.mul(scale)];
    }, [grad.storage]);
  }
  return device === 'cpu' ? out : out.to(device);
}

export interface CtcDecodeOptions {
  /** The blank class. Default 0. */
  blank?: number;
}

function decode(name: string, logProbs: unknown, inputLengths: unknown, options: unknown, beamWidth: number | null): number[][] {
  const { logProbs: lp, T, B, C, inputLengths: lengths } = checkLogProbs(logProbs, inputLengths, name);
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, beamWidth === null ? ['blank'] : ['blank', 'beamWidth'], 'options');
  const blank = blankOf(opts, C);
  const beam = beamWidth === null ? 0 : opts.beamWidth === undefined ? beamWidth : expectInteger(opts.beamWidth, 'options.beamWidth', 1, 65536);
  const host = lp.device === 'cpu' ? lp : lp.to('cpu');
  return native.ctcDecode(host.storage, T, B, C, blank, lengths, beam).map((row) => Array.from(row));
}

/**
 * Best-path decoding: the likeliest class of every frame (within each row's input length),
 * repeats merged, blanks removed. Returns one label sequence per batch row.
 */
export function ctcGreedyDecode(logProbs: Tensor, inputLengths: readonly number[] | Int32Array, options: CtcDecodeOptions = {}): number[][] {
  return decode('ctcGreedyDecode', logProbs, inputLengths, options, null);
}

/**
 * Prefix beam search (Hannun et al., 2014): keeps the `beamWidth` likeliest label prefixes,
 * each scored by the probability of every alignment that spells it (ending in a blank or in
 * its last label), and returns the best of each row. Finds sequences best-path decoding misses
 * when a label's probability is spread over several alignments.
 */
export function ctcBeamSearch(logProbs: Tensor, inputLengths: readonly number[] | Int32Array, options: CtcDecodeOptions & { beamWidth?: number } = {}): number[][] {
  return decode('ctcBeamSearch', logProbs, inputLengths, options, 10);
}
