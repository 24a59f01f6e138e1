/**
 * Batching plans for fit(): how a data set becomes mini-batches, time-major, in host memory.
 * Fixed-length samples (shuffled, cut into truncated-BPTT windows), variable-length sequences
 * (grouped by length, padded, with lengths and masks) and one long stream (cut into parallel
 * streams). In data-parallel training each rank plans its own share (Shard).
 */
import { describe, expectOptions, formatShape, rangeError, typeError } from '../core/errors';
import { random } from '../core/random';
import { Tensor } from '../core/tensor';

export interface Batch {
  input: Tensor;
  target: Tensor | Int32Array;
  lengths: number[] | null;
  /** continues the previous batch's sequences (carry the state) */
  carry: boolean;
  /** timesteps x samples */
  timesteps: number;
  /** weight of this batch's loss in epoch means */
  weight: number;
  /** per-step mask [T, B, 1] for padded float targets */
  mask: Tensor | null;
  /** { sources, targets } data: the batch's pairs (a model such as Seq2Seq computes its own loss on them) */
  pairs?: { sources: number[][]; targets: number[][] };
}

export interface Plan {
  batchesPerEpoch: number;
  /** serializable order for one epoch (from the global generator) */
  order(shuffle: boolean): number[][] | null;
  batch(order: number[][] | null, index: number): Batch;
}

interface HostArray {
  data: Float32Array;
  shape: number[];
}

function host(t: unknown, name: string): HostArray {
  if (!(t instanceof Tensor)) throw typeError(`fit: expected ${name} to be a Tensor but received ${describe(t)}`);
  t.live();
  return { data: t.toArray(), shape: t.shape };
}

function shuffled(count: number): number[] {
  const order = [...Array(count).keys()];
  for (let i = count - 1; i > 0; --i) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** The class index the loss skips (padded steps). */
export const IGNORE = -100;

/** This rank's share of the samples in data-parallel training. */
export interface Shard {
  rank: number;
  worldSize: number;
  /** repeat samples so every rank gets as many (training: the same number of steps everywhere) */
  pad: boolean;
}

/** The share of `order` rank `s.rank` trains on: every worldSize-th sample, like PyTorch's DistributedSampler. */
function shardOf(order: number[], s: Shard | null): number[] {
  if (!s || s.worldSize === 1) return order;
  const total = s.pad ? Math.ceil(order.length / s.worldSize) * s.worldSize : order.length;
  const out: number[] = [];
  for (let i = s.rank; i < total; i += s.worldSize) out.push(order[i % order.length]);
  return out;
}

function shareSize(count: number, s: Shard | null): number {
  if (!s || s.worldSize === 1) return count;
  return s.pad ? Math.ceil(count / s.worldSize) : Math.floor(count / s.worldSize) + (s.rank < count % s.worldSize ? 1 : 0);
}

export interface TargetSpec {
  classification: boolean;
  perStep: boolean;
}

/**
 * crossEntropy reads one class id per target (per sample, or per step): a target with more
 * values than that (one-hot rows, probabilities) would otherwise be read element by element as
 * the ids of the next samples.
 */
function expectClassIds(classification: boolean, targetShape: readonly number[], shape: readonly number[], name: string): void {
  if (!classification || targetShape.every((d) => d === 1)) return;
  throw rangeError(
    `fit: loss 'crossEntropy' expects ${name} to hold one class id per target (shape [N] or [N, T] of integers) but received ${formatShape(shape)}; ` +
    `for one-hot or probability rows pass their argmax (${name}.argmax(-1))`,
    'ERR_SHAPE_MISMATCH',
  );
}

function toInt32(values: Float32Array, name: string): Int32Array {
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; ++i) {
    if (!Number.isInteger(values[i])) throw rangeError(`fit: ${name} must hold integer class indices for crossEntropy, found ${values[i]}`);
    out[i] = values[i];
  }
  return out;
}

/**
 * Builds one batch: rows `rows` of `source` (sample-major [N, T, ...rest]) over steps
 * [t0, t1), time-major. Rows shorter than the window are zero-padded.
 */
function timeMajor(source: HostArray, sampleSteps: (row: number) => number, offsetOf: (row: number) => number, rows: number[], t0: number, t1: number, width: number): Float32Array {
  const B = rows.length;
  const T = t1 - t0;
  const out = new Float32Array(T * B * width);
  rows.forEach((row, b) => {
    const steps = Math.min(sampleSteps(row), t1) - t0;
    const base = offsetOf(row);
    for (let t = 0; t < steps; ++t) {
      const src = base + (t0 + t) * width;
      out.set(source.data.subarray(src, src + width), (t * B + b) * width);
    }
  });
  return out;
}

function fixedPlan(data: { inputs: Tensor; targets: Tensor }, batchSize: number, bptt: number | undefined, targetMode: string | undefined, classification: boolean, shard: Shard | null): Plan & { spec: TargetSpec } {
  const inputs = host(data.inputs, 'data.inputs');
  const targets = host(data.targets, 'data.targets');
  if (inputs.shape.length < 2) throw rangeError(`fit: expected data.inputs of shape [N, T, F] or [N, T] but received ${formatShape(inputs.shape)}`, 'ERR_SHAPE_MISMATCH');
  const [N, T] = inputs.shape;
  const featureShape = inputs.shape.slice(2);
  const width = featureShape.reduce((a, b) => a * b, 1);
  if (targets.shape[0] !== N) throw rangeError(`fit: data.targets must have one entry per sample (${N}) but has shape ${formatShape(targets.shape)}`, 'ERR_SHAPE_MISMATCH');
  // per step: [N, T, ...] like the inputs, or class ids [N, T] (one id per step) for crossEntropy
  const perStep = targetMode ? targetMode === 'perStep' : targets.shape.length >= 2 && targets.shape[1] === T && targets.shape.length >= (classification ? 2 : inputs.shape.length);
  const targetShape = perStep ? targets.shape.slice(2) : targets.shape.slice(1);
  const targetWidth = targetShape.reduce((a, b) => a * b, 1);
  const window = bptt ?? T;
  if (!perStep && window < T) throw rangeError('fit: bpttSteps needs per-step targets (one target per sequence is only known at its end)');
  const windows = Math.ceil(T / window);
  const sampleBatches = Math.ceil(shareSize(N, shard) / batchSize);
  expectClassIds(classification, targetShape, targets.shape, 'data.targets');
  const intTargets = classification ? toInt32(targets.data, 'data.targets') : null;
  return {
    spec: { classification, perStep },
    batchesPerEpoch: sampleBatches * windows,
    order: (shuffle) => {
      const order = shardOf(shuffle ? shuffled(N) : [...Array(N).keys()], shard);
      const out: number[][] = [];
      for (let i = 0; i < order.length; i += batchSize) out.push(order.slice(i, i + batchSize));
      return out;
    },
    batch: (order, index) => {
      const rows = order![Math.floor(index / windows)];
      const w = index % windows;
      const t0 = w * window;
      const t1 = Math.min(T, t0 + window);
      const B = rows.length;
      const inputData = timeMajor(inputs, () => T, (r) => r * T * width, rows, t0, t1, width);
      const input = Tensor.from(inputData, [t1 - t0, B, ...featureShape]);
      let target: Tensor | Int32Array;
      if (perStep) {
        const tData = timeMajor(targets, () => T, (r) => r * T * targetWidth, rows, t0, t1, targetWidth);
        target = classification ? toInt32(tData, 'data.targets') : Tensor.from(tData, [t1 - t0, B, ...targetShape]);
      } else {
        const tData = new Float32Array(B * targetWidth);
        rows.forEach((r, b) => tData.set(targets.data.subarray(r * targetWidth, (r + 1) * targetWidth), b * targetWidth));
        target = classification ? Int32Array.from(rows, (r) => intTargets![r]) : Tensor.from(tData, [B, ...targetShape]);
      }
      return { input, target, lengths: null, carry: w > 0, timesteps: (t1 - t0) * B, weight: perStep ? (t1 - t0) * B : B, mask: null };
    },
  };
}

/**
 * One epoch's batches of samples of similar length: sorted by length (shuffled first so equal
 * lengths mix), cut into batches, the batches shuffled.
 */
function lengthOrder(lengthOf: readonly number[], batchSize: number, shard: Shard | null, shuffle: boolean): number[][] {
  const N = lengthOf.length;
  const base = shardOf(shuffle ? shuffled(N) : [...Array(N).keys()], shard);
  const byLength = [...base].sort((a, b) => lengthOf[b] - lengthOf[a]);
  const out: number[][] = [];
  for (let i = 0; i < byLength.length; i += batchSize) out.push(byLength.slice(i, i + batchSize));
  if (shuffle) return shuffled(out.length).map((k) => out[k]);
  return out;
}

function sequencePlan(data: { sequences: Tensor[]; targets: Tensor[] | Tensor }, batchSize: number, targetMode: string | undefined, classification: boolean, shard: Shard | null): Plan & { spec: TargetSpec } {
  if (!Array.isArray(data.sequences) || data.sequences.length === 0) throw typeError(`fit: expected data.sequences to be a non-empty array of Tensors but received ${describe(data.sequences)}`);
  const seqs = data.sequences.map((s, i) => host(s, `data.sequences[${i}]`));
  const featureShape = seqs[0].shape.slice(1);
  const width = featureShape.reduce((a, b) => a * b, 1);
  seqs.forEach((s, i) => {
    if (s.shape.length !== featureShape.length + 1 || s.shape.slice(1).some((d, k) => d !== featureShape[k]) || s.shape[0] === 0) {
      throw rangeError(`fit: expected data.sequences[${i}] of shape [T, ${featureShape.join(', ')}] but received ${formatShape(s.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
  });
  const lengthOf = seqs.map((s) => s.shape[0]);
  const perSeqTargets = data.targets instanceof Tensor ? host(data.targets, 'data.targets') : null;
  const stepTargets = Array.isArray(data.targets) ? data.targets.map((t, i) => host(t, `data.targets[${i}]`)) : null;
  if (!perSeqTargets && !stepTargets) throw typeError(`fit: expected data.targets to be a Tensor [N, ...] or an array of Tensors but received ${describe(data.targets)}`);
  const N = seqs.length;
  if ((perSeqTargets ? perSeqTargets.shape[0] : stepTargets!.length) !== N) throw rangeError(`fit: data.targets must have one entry per sequence (${N})`, 'ERR_SHAPE_MISMATCH');
  const perStep = targetMode ? targetMode === 'perStep' : stepTargets !== null;
  if (perStep && !stepTargets) throw rangeError('fit: per-step targets for sequences must be an array of Tensors, one [T_i, ...] per sequence');
  stepTargets?.forEach((t, i) => {
    if (t.shape[0] !== lengthOf[i]) throw rangeError(`fit: data.targets[${i}] has ${t.shape[0]} steps but data.sequences[${i}] has ${lengthOf[i]}`, 'ERR_SHAPE_MISMATCH');
  });
  const targetShape = perStep ? stepTargets![0].shape.slice(1) : perSeqTargets!.shape.slice(1);
  expectClassIds(classification, targetShape, perStep ? stepTargets![0].shape : perSeqTargets!.shape, perStep ? 'data.targets[0]' : 'data.targets');
  const targetWidth = targetShape.reduce((a, b) => a * b, 1);
  // one flat array per sequence lets timeMajor() address them by row
  const concat = (parts: HostArray[]): { all: HostArray; offsets: number[] } => {
    const offsets: number[] = [];
    let total = 0;
    for (const p of parts) {
      offsets.push(total);
      total += p.data.length;
    }
    const all = new Float32Array(total);
    parts.forEach((p, i) => all.set(p.data, offsets[i]));
    return { all: { data: all, shape: [total] }, offsets };
  };
  const inputsFlat = concat(seqs);
  const targetsFlat = stepTargets ? concat(stepTargets) : null;
  return {
    spec: { classification, perStep },
    batchesPerEpoch: Math.ceil(shareSize(N, shard) / batchSize),
    order: (shuffle) => lengthOrder(lengthOf, batchSize, shard, shuffle),
    batch: (order, index) => {
      const rows = order![index];
      const B = rows.length;
      const lengths = rows.map((r) => lengthOf[r]);
      const T = Math.max(...lengths);
      const input = Tensor.from(timeMajor(inputsFlat.all, (r) => lengthOf[r], (r) => inputsFlat.offsets[r], rows, 0, T, width), [T, B, ...featureShape]);
      let target: Tensor | Int32Array;
      let mask: Tensor | null = null;
      if (perStep) {
        const tData = timeMajor(targetsFlat!.all, (r) => lengthOf[r], (r) => targetsFlat!.offsets[r], rows, 0, T, targetWidth);
        if (classification) {
          const ints = toInt32(tData, 'data.targets');
          rows.forEach((_, b) => {
            for (let t = lengths[b]; t < T; ++t) ints[t * B + b] = IGNORE;
          });
          target = ints;
        } else {
          target = Tensor.from(tData, [T, B, ...targetShape]);
          const m = new Float32Array(T * B);
          lengths.forEach((length, b) => {
            for (let t = 0; t < length; ++t) m[t * B + b] = 1;
          });
          mask = Tensor.from(m, [T, B, ...targetShape.map(() => 1)]);
        }
      } else {
        const tData = new Float32Array(B * targetWidth);
        rows.forEach((r, b) => tData.set(perSeqTargets!.data.subarray(r * targetWidth, (r + 1) * targetWidth), b * targetWidth));
        target = classification ? toInt32(tData, 'data.targets') : Tensor.from(tData, [B, ...targetShape]);
      }
      const valid = lengths.reduce((a, b) => a + b, 0);
      return { input, target, lengths, carry: false, timesteps: valid, weight: perStep ? valid : B, mask };
    },
  };
}

function streamPlan(data: { stream: Tensor; targets: Tensor }, batchSize: number, bptt: number | undefined, classification: boolean, shard: Shard | null): Plan & { spec: TargetSpec } {
  const stream = host(data.stream, 'data.stream');
  const targets = host(data.targets, 'data.targets');
  const L = stream.shape[0];
  if (targets.shape[0] !== L) throw rangeError(`fit: data.targets must have one entry per stream step (${L}) but has shape ${formatShape(targets.shape)}`, 'ERR_SHAPE_MISMATCH');
  const featureShape = stream.shape.slice(1);
  const width = featureShape.reduce((a, b) => a * b, 1);
  const targetShape = targets.shape.slice(1);
  expectClassIds(classification, targetShape, targets.shape, 'data.targets');
  const targetWidth = targetShape.reduce((a, b) => a * b, 1);
  // data-parallel: the stream is cut into batchSize x worldSize parallel streams, and rank r
  // trains on streams [r * B, (r + 1) * B), as one process with the whole batch would
  const W = shard?.worldSize ?? 1;
  const first = (shard?.rank ?? 0) * Math.min(batchSize, Math.floor(L / W));
  const B = Math.min(batchSize, Math.floor(L / W));
  if (B < 1) throw rangeError(`fit: data.stream has ${L} steps, fewer than the ${W} ranks that share it`);
  const perStream = Math.floor(L / (B * W));
  const window = Math.min(bptt ?? perStream, perStream);
  const windows = Math.ceil(perStream / window);
  const rows = [...Array(B).keys()];
  return {
    spec: { classification, perStep: true },
    batchesPerEpoch: windows,
    order: () => null,
    batch: (_, index) => {
      const t0 = index * window;
      const t1 = Math.min(perStream, t0 + window);
      const input = Tensor.from(timeMajor(stream, () => perStream, (r) => (first + r) * perStream * width, rows, t0, t1, width), [t1 - t0, B, ...featureShape]);
      const tData = timeMajor(targets, () => perStream, (r) => (first + r) * perStream * targetWidth, rows, t0, t1, targetWidth);
      const target = classification ? toInt32(tData, 'data.targets') : Tensor.from(tData, [t1 - t0, B, ...targetShape]);
      return { input, target, lengths: null, carry: index > 0, timesteps: (t1 - t0) * B, weight: (t1 - t0) * B, mask: null };
    },
  };
}

/** The token id arrays of data.sources or data.targets, checked. */
function tokenRows(value: unknown, name: string, allowEmpty: boolean): number[][] {
  if (!Array.isArray(value) || value.length === 0) throw typeError(`fit: expected ${name} to be a non-empty array of token id arrays but received ${describe(value)}`);
  return value.map((row, i) => {
    if (!Array.isArray(row) && !(row instanceof Int32Array)) throw typeError(`fit: expected ${name}[${i}] to be an array of token ids but received ${describe(row)}`);
    if (!allowEmpty && row.length === 0) throw rangeError(`fit: ${name}[${i}] is empty`);
    const ids = Array.from(row as ArrayLike<number>);
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0) throw rangeError(`fit: ${name}[${i}][${t}] is ${describe(id)}, not a token id (an integer from 0)`);
    });
    return ids;
  });
}

/**
 * Source and target sequences (sequence to sequence): batches of pairs with similar source
 * lengths (sorted after a shuffle, cut, and the batches shuffled). The model gets the pairs and
 * computes its own loss; input holds the sources' ids time-major (0 past each row's length).
 */
function pairPlan(data: { sources: unknown; targets: unknown }, batchSize: number, shard: Shard | null): Plan & { spec: TargetSpec } {
  const sources = tokenRows(data.sources, 'data.sources', false);
  const targets = tokenRows(data.targets, 'data.targets', true);
  const N = sources.length;
  if (targets.length !== N) throw rangeError(`fit: data.targets must have one target per source (${N}) but has ${targets.length}`, 'ERR_SHAPE_MISMATCH');
  const sourceLengths = sources.map((s) => s.length);
  return {
    spec: { classification: false, perStep: true },
    batchesPerEpoch: Math.ceil(shareSize(N, shard) / batchSize),
    order: (shuffle) => lengthOrder(sourceLengths, batchSize, shard, shuffle),
    batch: (order, index) => {
      const rows = order![index];
      const B = rows.length;
      const S = Math.max(...rows.map((r) => sourceLengths[r]));
      const ids = new Float32Array(S * B);
      rows.forEach((r, b) => sources[r].forEach((id, t) => (ids[t * B + b] = id)));
      // weight: the target tokens (and <end>) the loss averages over
      const tokens = rows.reduce((sum, r) => sum + targets[r].length + 1, 0);
      return {
        input: Tensor.from(ids, [S, B]), target: new Int32Array(0), lengths: rows.map((r) => sources[r].length), carry: false,
        timesteps: rows.reduce((sum, r) => sum + sources[r].length + targets[r].length + 1, 0), weight: tokens, mask: null,
        pairs: { sources: rows.map((r) => sources[r]), targets: rows.map((r) => targets[r]) },
      };
    },
  };
}

export function makePlan(data: unknown, name: string, batchSize: number, bptt: number | undefined, targetMode: string | undefined, classification: boolean, shard: Shard | null = null): Plan & { spec: TargetSpec } {
  const d = expectOptions(data, name);
  if ('inputs' in d) return fixedPlan(d as { inputs: Tensor; targets: Tensor }, batchSize, bptt, targetMode, classification, shard);
  if ('sequences' in d) {
    if (bptt !== undefined) throw rangeError('fit: bpttSteps is for fixed-length inputs and streams, not variable-length sequences');
    return sequencePlan(d as { sequences: Tensor[]; targets: Tensor[] | Tensor }, batchSize, targetMode, classification, shard);
  }
  if ('stream' in d) return streamPlan(d as { stream: Tensor; targets: Tensor }, batchSize, bptt, classification, shard);
  if ('sources' in d) {
    if (bptt !== undefined) throw rangeError('fit: bpttSteps is for fixed-length inputs and streams, not source and target pairs');
    return pairPlan(d as { sources: unknown; targets: unknown }, batchSize, shard);
  }
  throw typeError(`fit: expected ${name} to have inputs, sequences or stream (with targets), or sources and targets, but received keys ${Object.keys(d).join(', ') || '(none)'}`);
}
