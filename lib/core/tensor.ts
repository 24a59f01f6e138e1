/**
 * Tensor: an n-dimensional float32 array whose memory is owned natively, with
 * reverse-mode autograd. Shapes and the graph live in JS; the data never does: an op is one
 * native call (a few compose several), and only toArray()/item() copy values out.
 *
 * Tensors are always contiguous (row-major). `reshape`/`view`/`detach` share memory
 * with their source; every other op returns new memory.
 */
import { inspect } from 'node:util';
import { BackwardFn, BackwardOptions, GradNode, isGradEnabled, noGrad, registerPostAccumulateGradHook, runBackward, sameShape } from './autograd';
import {
  describe,
  expectBoolean,
  expectInteger,
  expectNumber,
  expectOptions,
  expectKnownKeys,
  formatShape,
  rangeError,
  typeError,
} from './errors';
import { Device, checkDevice, expectSameDevice } from './device';
import { allocate, transferKept } from './memory';
import { BinaryOp as Binary, UnaryOp as Unary, gemm, native, NativeStorage } from './native';
import { nextSeed } from './random';
import { NestedArray, broadcastShapes, broadcastStrides, checkShape, contiguousStrides, flatten, inferShape, normalizeDim, numel } from './shape';

export interface TensorOptions {
  /** Record operations on this tensor for autograd. Default false. */
  requiresGrad?: boolean;
  /** Where the memory lives. Default 'cpu'. */
  device?: Device;
}

export type { Device };
export type TensorData = Float32Array | Float64Array | Int32Array | readonly number[] | NestedArray;

function tensorOptions(options: unknown): { requiresGrad: boolean; device: Device } {
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['requiresGrad', 'device'], 'options');
  const requiresGrad = opts.requiresGrad === undefined ? false : expectBoolean(opts.requiresGrad, 'options.requiresGrad');
  return { requiresGrad, device: checkDevice(opts.device) };
}

/** `value` as a live Tensor, or a TypeError naming `name`. */
export function expectTensor(value: unknown, name: string): Tensor {
  if (!(value instanceof Tensor)) throw typeError(`Expected ${name} to be a Tensor but received ${describe(value)}`);
  if (value.storage.disposed) throw typeError(`${name} is a disposed Tensor`, 'ERR_DISPOSED');
  return value;
}

// ---------------------------------------------------------------------------

export class Tensor {
  /** @internal native memory; shared by views. */
  readonly storage: NativeStorage;
  /** @internal the op that produced this tensor, when it requires grad and is not a leaf. */
  gradFn: GradNode | null = null;
  /** @internal which output of gradFn this tensor is. */
  outputIndex = 0;

  readonly device: Device;
  /** Whether autograd tracks this tensor. Settable on leaf tensors. */
  requiresGrad: boolean;
  // The accumulated gradient, and whether it has been handed out: read through `grad` or set by
  // the caller. One that never was is the library's alone, so zeroGrad() frees its memory at
  // once instead of leaving it to the garbage collector (a hand-written loop that drops 400 KB
  // of gradients a step started a full collection every 100 steps, and ran 13-16% slower).
  private gradTensor: Tensor | null = null;
  private gradHandedOut = false;

  /** Accumulated gradient (leaf tensors that require grad), or null. */
  get grad(): Tensor | null {
    if (this.gradTensor) this.gradHandedOut = true;
    return this.gradTensor;
  }
  set grad(value: Tensor | null) {
    this.gradTensor = value;
    this.gradHandedOut = value !== null;
  }

  /** @internal .grad without handing it out (the optimizers, clipping, reductions). */
  get ownGrad(): Tensor | null {
    return this.gradTensor;
  }

  /** @internal installs a gradient the library made and holds alone (backward's accumulation). */
  setOwnGrad(value: Tensor): void {
    this.gradTensor = value;
    this.gradHandedOut = false;
  }

  /** @internal takes .grad out with whether it was handed out, for restoreGrad to put back. */
  takeGrad(): { tensor: Tensor | null; handedOut: boolean } {
    const saved = { tensor: this.gradTensor, handedOut: this.gradHandedOut };
    this.gradTensor = null;
    this.gradHandedOut = false;
    return saved;
  }

  /** @internal puts back what takeGrad took. */
  restoreGrad(saved: { tensor: Tensor | null; handedOut: boolean }): void {
    this.gradTensor = saved.tensor;
    this.gradHandedOut = saved.handedOut;
  }

  /**
   * @internal clears .grad (zeroGrad): its memory goes now when it was never handed out, else
   * with the last reference to it, as PyTorch's set_to_none leaves a gradient someone holds.
   */
  releaseGrad(): void {
    if (this.gradTensor && !this.gradHandedOut) this.gradTensor.dispose();
    this.gradTensor = null;
    this.gradHandedOut = false;
  }

  private readonly dims: readonly number[];

  /** @internal use Tensor.from / zeros / ones. */
  constructor(storage: NativeStorage, shape: readonly number[], requiresGrad = false, device: Device = 'cpu') {
    this.storage = storage;
    this.dims = Object.freeze([...shape]);
    this.requiresGrad = requiresGrad;
    this.device = device;
  }

  // ---- creation -----------------------------------------------------------

  /**
   * A tensor holding a copy of `data` (Float32Array, a typed array, or nested number
   * arrays). `shape` defaults to the data's own shape.
   */
  static from(data: TensorData, shape?: readonly number[], options?: TensorOptions): Tensor {
    const opts = tensorOptions(options);
    let values: Float32Array;
    let inferred: number[];
    if (data instanceof Float32Array) {
      values = data;
      inferred = [data.length];
    } else if (ArrayBuffer.isView(data) && !(data instanceof DataView) && !(data instanceof BigInt64Array) && !(data instanceof BigUint64Array)) {
      values = Float32Array.from(data as ArrayLike<number>);
      inferred = [values.length];
    } else if (Array.isArray(data)) {
      inferred = inferShape(data);
      values = new Float32Array(numel(inferred));
      flatten(data as NestedArray, inferred, values);
    } else {
      throw typeError(`Expected data to be a Float32Array or an array of numbers but received ${describe(data)}`);
    }
    const finalShape = shape === undefined ? inferred : checkShape(shape);
    if (numel(finalShape) !== values.length) {
      throw rangeError(
        `Expected data with ${numel(finalShape)} elements for shape ${formatShape(finalShape)} but received ${values.length}`,
        'ERR_SHAPE_MISMATCH',
      );
    }
    const storage = allocate(values.length, true, opts.device);
    storage.write(values, 0);
    return new Tensor(storage, finalShape, opts.requiresGrad, opts.device);
  }

  /** A zero-filled tensor. */
  static zeros(shape: readonly number[], options?: TensorOptions): Tensor {
    const checked = checkShape(shape);
    const opts = tensorOptions(options);
    return new Tensor(allocate(numel(checked), false, opts.device), checked, opts.requiresGrad, opts.device);
  }

  /**
   * A tensor whose values are unspecified (memory reused from freed tensors is not cleared),
   * like torch.empty: for outputs that are about to be overwritten entirely.
   */
  static empty(shape: readonly number[], options?: TensorOptions): Tensor {
    const checked = checkShape(shape);
    const opts = tensorOptions(options);
    return new Tensor(allocate(numel(checked), true, opts.device), checked, opts.requiresGrad, opts.device);
  }

  /** A tensor filled with `value`. */
  static full(shape: readonly number[], value: number, options?: TensorOptions): Tensor {
    const t = Tensor.zeros(shape, options);
    native.fill(t.storage, expectNumber(value, 'value'), 0, t.size);
    return t;
  }

  static ones(shape: readonly number[], options?: TensorOptions): Tensor {
    return Tensor.full(shape, 1, options);
  }

  /** Uniform samples in [low, high) from the global generator (see manualSeed). */
  static rand(shape: readonly number[], options?: TensorOptions & { low?: number; high?: number }): Tensor {
    const { low = 0, high = 1, ...rest } = options ?? {};
    const t = Tensor.zeros(shape, rest);
    native.uniformFill(t.storage, t.size, expectNumber(low, 'options.low'), expectNumber(high, 'options.high'), nextSeed());
    return t;
  }

  /** Normal samples (mean 0, std 1 unless given) from the global generator. */
  static randn(shape: readonly number[], options?: TensorOptions & { mean?: number; std?: number }): Tensor {
    const { mean = 0, std = 1, ...rest } = options ?? {};
    const t = Tensor.zeros(shape, rest);
    native.normalFill(t.storage, t.size, expectNumber(mean, 'options.mean'), expectNumber(std, 'options.std'), nextSeed());
    return t;
  }

  /** A zero-dimensional tensor holding one number. */
  static scalar(value: number, options?: TensorOptions): Tensor {
    return Tensor.full([], value, options);
  }

  /** Concatenates tensors along `dim` (all other sizes must match). */
  static concat(tensors: readonly Tensor[], dim = 0): Tensor {
    if (!Array.isArray(tensors as unknown) || tensors.length === 0) {
      throw typeError(`Expected tensors to be a non-empty array of Tensors but received ${describe(tensors)}`);
    }
    tensors.forEach((t, i) => expectTensor(t, `tensors[${i}]`));
    const first = tensors[0].dims;
    const d = normalizeDim(dim, first.length);
    tensors.forEach((t, i) => {
      if (t.dims.length !== first.length || t.dims.some((s, k) => k !== d && s !== first[k])) {
        throw rangeError(
          `concat: expected tensors[${i}] of shape ${formatShape(first.map((s, k) => (k === d ? '*' : s)))} ` +
            `but received ${formatShape(t.dims)}`,
          'ERR_SHAPE_MISMATCH',
        );
      }
    });
    const device = expectSameDevice('concat', tensors.map((t, i) => [`tensors[${i}]`, t] as const));
    const sizes = tensors.map((t) => t.dims[d]);
    const outShape = [...first];
    outShape[d] = sizes.reduce((a, b) => a + b, 0);
    const out = emptyOn(outShape, device);
    const outStrides = contiguousStrides(outShape);
    let start = 0;
    for (const t of tensors) {
      native.stridedCopy(out.storage, start * outStrides[d], outStrides, t.storage, 0, contiguousStrides(t.dims), [...t.dims], false);
      start += t.dims[d];
    }
    return record('concat', [...tensors], out, ([g]) => {
      let offset = 0;
      return sizes.map((size) => {
        const part = g!.slice(d, offset, offset + size);
        offset += size;
        return part;
      });
    });
  }

  /** Alias of concat, as in PyTorch. */
  static cat(tensors: readonly Tensor[], dim = 0): Tensor {
    return Tensor.concat(tensors, dim);
  }

  // ---- properties ---------------------------------------------------------

  /** The sizes of the dimensions (a copy). */
  get shape(): number[] {
    return [...this.dims];
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.dims.length;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.dims);
  }

  numel(): number {
    return this.size;
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  get disposed(): boolean {
    return this.storage.disposed;
  }

  /**
   * How many calls that may write this tensor's memory have been made (PyTorch's `_version`;
   * shared by views of the same memory). Every write bumps it when it is called: optimizer
   * steps, loadStateDict, initializers, copies, `storage.write`. The recurrent layers keep their
   * weights packed for the matrix products between calls and pack them again when it changes.
   */
  get version(): number {
    return this.storage.version;
  }

  /**
   * A copy of the data as a Float32Array (row-major): a new one, or `out` (a Float32Array of
   * exactly this tensor's size), which a loop that reads a result every step can reuse.
   *
   * @example
   * const values = new Float32Array(vocabSize);
   * for (...) model.step(token, state, { out: logits }).toArray(values);   // no allocation per step
   */
  toArray(out?: Float32Array): Float32Array {
    this.live();
    if (out === undefined) return this.storage.read(0, this.size);
    if (!(out instanceof Float32Array) || out.length !== this.size) {
      const got = out instanceof Float32Array ? `a Float32Array of ${out.length} elements` : describe(out);
      throw typeError(`toArray: expected out to be a Float32Array of ${this.size} elements but received ${got}`);
    }
    return this.storage.read(0, this.size, out);
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw rangeError(`item() needs a one-element tensor but this one has shape ${formatShape(this.dims)}`, 'ERR_SHAPE_MISMATCH');
    return this.toArray()[0];
  }

  /**
   * This tensor on `device`: itself when it is already there (no copy, as in PyTorch),
   * else a copy there that autograd sees through (the gradient travels back). 'cuda'
   * without a usable GPU throws ERR_CUDA_UNAVAILABLE with the reason.
   */
  to(device: Device): Tensor {
    this.live();
    const target = checkDevice(device, 'device');
    if (target === this.device) return this;
    const out = emptyOn(this.dims, target);
    native.copyBetween(out.storage, 0, this.storage, 0, this.size);
    const from = this.device;
    return record('to', [this], out, ([g]) => [g!.to(from)]);
  }

  /** to('cpu'). */
  cpu(): Tensor {
    return this.to('cpu');
  }

  /** to('cuda'). */
  cuda(): Tensor {
    return this.to('cuda');
  }

  /** @internal moves this tensor's memory (and its gradient) to `device` in place: Module.to. */
  moveTo_(device: Device): void {
    if (device === this.device) return;
    const moved = allocate(this.size, true, device);
    native.copyBetween(moved, 0, this.storage, 0, this.size);
    const old = this.storage;
    const self = this as unknown as { storage: NativeStorage; device: Device };
    self.storage = moved;
    self.device = device;
    transferKept(old, moved);
    this.gradTensor?.moveTo_(device);
    old.dispose();
  }

  /** Frees the native memory now (also that of views sharing it). */
  dispose(): void {
    this.storage.dispose();
    this.gradTensor?.dispose();
    this.gradTensor = null;
    this.gradFn = null;
  }

  // ---- autograd -----------------------------------------------------------

  /**
   * Backpropagates from this tensor. `grad` may be omitted for a one-element tensor.
   */
  backward(grad?: Tensor, options?: { retainGraph?: boolean }): void {
    backward([this], grad === undefined ? null : [grad], options);
  }

  /** A tensor sharing this memory, cut from the graph. */
  detach(): Tensor {
    this.live();
    return new Tensor(this.storage, this.dims, false, this.device);
  }

  /** Sets requiresGrad on a leaf tensor and returns it. */
  requiresGrad_(requiresGrad = true): this {
    expectBoolean(requiresGrad, 'requiresGrad');
    if (!this.isLeaf) throw typeError('requiresGrad can only be changed on leaf tensors', 'ERR_GRAPH');
    this.requiresGrad = requiresGrad;
    return this;
  }

  /**
   * Runs `hook(this)` after backward() has accumulated the last gradient it computes for this
   * leaf into `.grad` (PyTorch's register_post_accumulate_grad_hook). Data-parallel training
   * starts reducing a bucket of gradients as soon as backward has produced them.
   */
  registerPostAccumulateGradHook(hook: (tensor: Tensor) => void): { remove(): void } {
    if (typeof hook !== 'function') throw typeError(`Expected hook to be a function but received ${describe(hook)}`);
    if (this.gradFn) throw typeError('registerPostAccumulateGradHook: only leaf tensors accumulate gradients', 'ERR_GRAPH');
    return registerPostAccumulateGradHook(this, hook);
  }

  // ---- shape ops ----------------------------------------------------------

  /** A tensor with the same data and a new shape; one size may be -1 (inferred). */
  reshape(shape: readonly number[]): Tensor {
    this.live();
    if (!Array.isArray(shape)) throw typeError(`Expected shape to be an array of sizes but received ${describe(shape)}`);
    const sizes: readonly number[] = shape;
    const inferredAt = shape.indexOf(-1);
    const resolved = [...shape];
    if (inferredAt >= 0) {
      const rest = numel(sizes.filter((_, k) => k !== inferredAt).map((s, k) => expectInteger(s, `shape[${k}]`, 0)));
      if (rest === 0 || this.size % rest !== 0) {
        throw rangeError(`Cannot reshape a tensor of shape ${formatShape(this.dims)} into ${formatShape(shape)}`, 'ERR_SHAPE_MISMATCH');
      }
      resolved[inferredAt] = this.size / rest;
    }
    checkShape(resolved);
    if (numel(resolved) !== this.size) {
      throw rangeError(`Cannot reshape a tensor of shape ${formatShape(this.dims)} into ${formatShape(shape)}`, 'ERR_SHAPE_MISMATCH');
    }
    const out = new Tensor(this.storage, resolved, false, this.device);
    const inShape = this.dims;
    return record('reshape', [this], out, ([g]) => [g!.reshape(inShape)]);
  }

  /** Same as reshape (tensors are always contiguous). */
  view(shape: readonly number[]): Tensor {
    return this.reshape(shape);
  }

  /** Dimensions reordered: output dim k is input dim dims[k]. */
  permute(dims: readonly number[]): Tensor {
    this.live();
    const rank = this.dims.length;
    if (!Array.isArray(dims) || dims.length !== rank) {
      throw rangeError(`Expected dims to list all ${rank} dimensions but received ${describe(dims)}`);
    }
    const order = dims.map((d, k) => normalizeDim(d, rank, `dims[${k}]`));
    if (new Set(order).size !== rank) throw rangeError(`Expected dims to be a permutation but received ${formatShape(dims)}`);
    const outShape = order.map((d) => this.dims[d]);
    const out = emptyOn(outShape, this.device);
    // walk the input in order; input dim order[k] lands at output dim k
    const outStrides = contiguousStrides(outShape);
    const dstStrides = new Array<number>(rank);
    order.forEach((d, k) => (dstStrides[d] = outStrides[k]));
    native.stridedCopy(out.storage, 0, dstStrides, this.storage, 0, contiguousStrides(this.dims), [...this.dims], false);
    const inverse = new Array<number>(rank);
    order.forEach((d, k) => (inverse[d] = k));
    return record('permute', [this], out, ([g]) => [g!.permute(inverse)]);
  }

  /** Swaps two dimensions. */
  transpose(dim0: number, dim1: number): Tensor {
    const rank = this.dims.length;
    const a = normalizeDim(dim0, rank, 'dim0');
    const b = normalizeDim(dim1, rank, 'dim1');
    const order = [...Array(rank).keys()];
    order[a] = b;
    order[b] = a;
    return this.permute(order);
  }

  /** Transpose of a 2-D tensor. */
  t(): Tensor {
    if (this.dims.length !== 2) throw rangeError(`t() expects a 2-D tensor but received shape ${formatShape(this.dims)}`, 'ERR_SHAPE_MISMATCH');
    return this.transpose(0, 1);
  }

  /** The slice at `index` along `dim`, with that dimension removed. */
  select(dim: number, index: number): Tensor {
    this.live();
    const d = normalizeDim(dim, this.dims.length);
    const size = this.dims[d];
    expectInteger(index, 'index', -size, size - 1);
    const i = index < 0 ? index + size : index;
    const strides = contiguousStrides(this.dims);
    const outShape = this.dims.filter((_, k) => k !== d);
    const walkStrides = strides.filter((_, k) => k !== d);
    const out = emptyOn(outShape, this.device);
    native.stridedCopy(out.storage, 0, contiguousStrides(outShape), this.storage, i * strides[d], walkStrides, outShape, false);
    const inShape = this.dims;
    return record('select', [this], out, ([g]) => {
      const gin = zerosOn(inShape, g!.device);
      native.stridedCopy(gin.storage, i * strides[d], walkStrides, g!.storage, 0, contiguousStrides(outShape), outShape, false);
      return [gin];
    });
  }

  /** Elements [start, end) along `dim` (end defaults to the size; negatives count from the end). */
  slice(dim: number, start: number, end?: number): Tensor {
    this.live();
    const d = normalizeDim(dim, this.dims.length);
    const size = this.dims[d];
    expectInteger(start, 'start', -size, size);
    const from = start < 0 ? start + size : start;
    const stop = end === undefined ? size : expectInteger(end, 'end', -size, size) < 0 ? end + size : end;
    if (stop < from) throw rangeError(`slice: end (${end}) is before start (${start})`);
    const strides = contiguousStrides(this.dims);
    const outShape = [...this.dims];
    outShape[d] = stop - from;
    const out = emptyOn(outShape, this.device);
    native.stridedCopy(out.storage, 0, contiguousStrides(outShape), this.storage, from * strides[d], strides, outShape, false);
    const inShape = this.dims;
    return record('slice', [this], out, ([g]) => {
      const gin = zerosOn(inShape, g!.device);
      native.stridedCopy(gin.storage, from * strides[d], strides, g!.storage, 0, contiguousStrides(outShape), outShape, false);
      return [gin];
    });
  }

  /** This tensor repeated along broadcast dimensions to `shape`. */
  expand(shape: readonly number[]): Tensor {
    this.live();
    const target = checkShape(shape);
    const out = broadcastShapes(this.dims, target, 'expand');
    if (!sameShape(out, target)) {
      throw rangeError(`Cannot expand shape ${formatShape(this.dims)} to ${formatShape(target)}`, 'ERR_SHAPE_MISMATCH');
    }
    return expandTo(this, target);
  }

  // ---- elementwise --------------------------------------------------------

  add(other: Tensor | number): Tensor {
    return binaryOp(this, other, Binary.Add, 'add');
  }

  sub(other: Tensor | number): Tensor {
    return binaryOp(this, other, Binary.Sub, 'sub');
  }

  mul(other: Tensor | number): Tensor {
    return binaryOp(this, other, Binary.Mul, 'mul');
  }

  div(other: Tensor | number): Tensor {
    return binaryOp(this, other, Binary.Div, 'div');
  }

  neg(): Tensor {
    return unaryOp(this, Unary.Neg, 'neg');
  }

  exp(): Tensor {
    return unaryOp(this, Unary.Exp, 'exp');
  }

  log(): Tensor {
    return unaryOp(this, Unary.Log, 'log');
  }

  abs(): Tensor {
    return unaryOp(this, Unary.Abs, 'abs');
  }

  sqrt(): Tensor {
    return unaryOp(this, Unary.Sqrt, 'sqrt');
  }

  tanh(): Tensor {
    return unaryOp(this, Unary.Tanh, 'tanh');
  }

  sigmoid(): Tensor {
    return unaryOp(this, Unary.Sigmoid, 'sigmoid');
  }

  relu(): Tensor {
    return unaryOp(this, Unary.Relu, 'relu');
  }

  /** Elementwise square. */
  square(): Tensor {
    return this.mul(this);
  }

  // ---- reductions ---------------------------------------------------------

  /** Sum over all elements, or over `dim` (a dimension or a list of them). */
  sum(dim?: number | readonly number[], keepDim = false): Tensor {
    this.live();
    expectBoolean(keepDim, 'keepDim');
    const rank = this.dims.length;
    const reduced = new Set<number>(
      dim === undefined ? [...Array(rank).keys()] : (Array.isArray(dim) ? dim : [dim]).map((d, k) => normalizeDim(d, rank, Array.isArray(dim) ? `dim[${k}]` : 'dim')),
    );
    const keptShape = this.dims.map((s, k) => (reduced.has(k) ? 1 : s));
    const outShape = keepDim ? keptShape : this.dims.filter((_, k) => !reduced.has(k));
    const out = zerosOn(outShape, this.device);
    const dstStrides = broadcastStrides(keptShape, this.dims);
    native.stridedCopy(out.storage, 0, dstStrides, this.storage, 0, contiguousStrides(this.dims), [...this.dims], true);
    const inShape = this.dims;
    return record('sum', [this], out, ([g]) => [expandTo(g!.reshape(keptShape), inShape)]);
  }

  /** Mean over all elements, or over `dim`. */
  mean(dim?: number | readonly number[], keepDim = false): Tensor {
    const total = this.sum(dim, keepDim);
    const count = this.size / Math.max(total.size, 1);
    return total.mul(1 / count);
  }

  /**
   * Indices of the largest values along `dim` (default: the last; the first index on ties), as
   * a tensor of integer values that is not differentiable: class predictions from logits, class
   * ids from one-hot rows. Computed on the host (a CUDA tensor's result comes back to 'cuda').
   */
  argmax(dim = -1, keepDim = false): Tensor {
    this.live();
    expectBoolean(keepDim, 'keepDim');
    const rank = this.dims.length;
    if (rank === 0) throw rangeError('argmax expects a tensor of at least 1 dimension but received a scalar', 'ERR_SHAPE_MISMATCH');
    const d = normalizeDim(dim, rank);
    const size = this.dims[d];
    if (size === 0) throw rangeError(`argmax: dimension ${d} is empty (shape ${formatShape(this.dims)})`, 'ERR_SHAPE_MISMATCH');
    const inner = numel(this.dims.slice(d + 1));
    const outer = numel(this.dims.slice(0, d));
    const x = this.toArray();
    const out = new Float32Array(outer * inner);
    for (let o = 0; o < outer; ++o) {
      for (let i = 0; i < inner; ++i) {
        const base = o * size * inner + i;
        let best = 0;
        for (let k = 1; k < size; ++k) if (x[base + k * inner] > x[base + best * inner] || (Number.isNaN(x[base + k * inner]) && !Number.isNaN(x[base + best * inner]))) best = k;
        out[o * inner + i] = best;
      }
    }
    const shape = keepDim ? this.dims.map((s, k) => (k === d ? 1 : s)) : this.dims.filter((_, k) => k !== d);
    const result = Tensor.from(out, shape);
    return this.device === 'cpu' ? result : result.to(this.device);
  }

  // ---- linear algebra -----------------------------------------------------

  /**
   * Matrix product. Supports (M, K) x (K, N), (..., M, K) x (K, N), and batched
   * (B, M, K) x (B, K, N).
   */
  matmul(other: Tensor): Tensor {
    this.live();
    const b = expectTensor(other, 'other');
    if (b.device !== this.device) expectSameDevice('matmul', [['this tensor', this], ['other', b]]);
    const as = this.dims;
    const bs = b.dims;
    if (as.length < 2 || bs.length < 2) {
      throw rangeError(`matmul expects tensors of at least 2 dimensions but received ${formatShape(as)} and ${formatShape(bs)}`, 'ERR_SHAPE_MISMATCH');
    }
    const k = as[as.length - 1];
    if (bs[bs.length - 2] !== k) {
      throw rangeError(`matmul: expected other of shape ${formatShape([k, '*'])} (last dims) but received ${formatShape(bs)}`, 'ERR_SHAPE_MISMATCH');
    }
    const n = bs[bs.length - 1];
    let batch = 1;
    let m: number;
    let outShape: number[];
    if (bs.length === 2) {
      m = this.size / Math.max(k, 1) || numel(as.slice(0, -1));
      outShape = [...as.slice(0, -1), n];
    } else {
      if (as.length !== 3 || bs.length !== 3 || as[0] !== bs[0]) {
        throw rangeError(`matmul: batched operands must both be (B, M, K) and (B, K, N) but received ${formatShape(as)} and ${formatShape(bs)}`, 'ERR_SHAPE_MISMATCH');
      }
      [batch, m] = as;
      outShape = [batch, m, n];
    }
    const out = zerosOn(outShape, this.device);
    gemm({ a: this.storage, b: b.storage, c: out.storage, m, n, k, batch });
    const a = this;
    return record(bs.length === 2 ? 'matmul' : 'bmm', [this, b], out, ([g]) => {
      let ga: Tensor | null = null;
      let gb: Tensor | null = null;
      if (a.requiresGrad) {
        ga = zerosOn(as, a.device);
        gemm({ a: g!.storage, b: b.storage, c: ga.storage, m, n: k, k: n, transB: true, batch });
      }
      if (b.requiresGrad) {
        gb = zerosOn(bs, a.device);
        gemm({ a: a.storage, b: g!.storage, c: gb.storage, m: k, n, k: m, transA: true, batch });
      }
      return [ga, gb];
    });
  }

  // ---- softmax ------------------------------------------------------------

  /** Softmax along `dim` (default: the last). */
  softmax(dim = -1): Tensor {
    return softmaxOp(this, dim, false);
  }

  /** Log-softmax along `dim` (default: the last), computed stably. */
  logSoftmax(dim = -1): Tensor {
    return softmaxOp(this, dim, true);
  }

  // ---- misc ---------------------------------------------------------------

  /** A copy with its own memory (differentiable). */
  clone(): Tensor {
    const out = this.copyData();
    return record('clone', [this], out, ([g]) => [g]);
  }

  /** @internal a fresh copy of the data, outside the graph. */
  copyData(): Tensor {
    this.live();
    const out = emptyOn(this.dims, this.device);
    native.stridedCopy(out.storage, 0, [1], this.storage, 0, [1], [this.size], false);
    return out;
  }

  /** @internal throws when this tensor's memory was disposed. */
  live(): void {
    if (this.storage.disposed) throw typeError('This Tensor has been disposed', 'ERR_DISPOSED');
  }

  toString(): string {
    return `Tensor(shape=${formatShape(this.dims)}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  [inspect.custom](): string {
    if (this.storage.disposed) return `Tensor(shape=${formatShape(this.dims)}, disposed)`;
    const data = this.storage.read(0, Math.min(this.size, 12));
    const values = Array.from(data, (v) => Number(v.toPrecision(5))).join(', ');
    return `Tensor(shape=${formatShape(this.dims)}, data=[${values}${this.size > 12 ? ', …' : ''}]${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

// ---------------------------------------------------------------------------
// Op plumbing

/**
 * Computes the gradients of `tensors` with respect to the graph leaves, like
 * torch.autograd.backward. `grads[i]` is the gradient of `tensors[i]` (same shape);
 * it may be omitted (or null) only for a one-element tensor, where it means 1.
 */
export function backward(
  tensors: Tensor | Tensor[],
  grads?: Tensor | (Tensor | null | undefined)[] | null,
  options: BackwardOptions = {},
): void {
  const roots = Array.isArray(tensors) ? tensors : [tensors];
  const rootGrads: (Tensor | null | undefined)[] = grads == null ? [] : Array.isArray(grads) ? grads : [grads];
  if (roots.length === 0) throw rangeError('backward: tensors must not be empty');
  if (rootGrads.length > roots.length) {
    throw rangeError(`backward: received ${rootGrads.length} grads for ${roots.length} tensors`, 'ERR_SHAPE_MISMATCH');
  }
    const seeds: Tensor[] = roots.map((root, i) => {
    if (!(root instanceof Tensor)) {
      throw typeError(`backward: expected tensors[${i}] to be a Tensor but received ${describe(root)}`);
    }
    if (!root.requiresGrad) {
      throw typeError(`backward: tensors[${i}] does not require grad and has no grad function`, 'ERR_GRAPH');
    }
    const grad = rootGrads[i];
    if (grad == null) {
      if (root.size !== 1) {
        throw typeError(
          `backward: grads[${i}] can be omitted only for a one-element tensor, but tensors[${i}] has shape ` +
            formatShape(root.shape),
          'ERR_SHAPE_MISMATCH',
        );
      }
      return Tensor.ones(root.shape, { device: root.device });
    }
    if (!(grad instanceof Tensor)) {
      throw typeError(`backward: expected grads[${i}] to be a Tensor but received ${describe(grad)}`);
    }
    if (!sameShape(grad.shape, root.shape)) {
      throw rangeError(
        `backward: expected grads[${i}] of shape ${formatShape(root.shape)} but received ${formatShape(grad.shape)}`,
        'ERR_SHAPE_MISMATCH',
      );
    }
    return grad;
  });
  runBackward(roots, seeds, options.retainGraph ?? false);
}


/**
 * Attaches a backward function to `outputs` when gradients are being recorded and an
 * input requires them. Returns the first output.
 */
export function record<T extends Tensor>(name: string, inputs: Tensor[], output: T, backwardFn: BackwardFn, saved?: NativeStorage[]): T;
export function record(name: string, inputs: Tensor[], outputs: Tensor[], backwardFn: BackwardFn, saved?: NativeStorage[]): Tensor[];
export function record(
  name: string, inputs: Tensor[], outputs: Tensor | Tensor[], backwardFn: BackwardFn, saved: NativeStorage[] = [],
): Tensor | Tensor[] {
  const list = Array.isArray(outputs) ? outputs : [outputs];
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    const node = new GradNode(name, inputs, list.length, backwardFn, saved);
    list.forEach((t, i) => {
      t.requiresGrad = true;
      t.gradFn = node;
      t.outputIndex = i;
    });
  } else {
    // no graph will read what the op saved for backward
    for (const storage of saved) storage.dispose();
  }
  return outputs;
}

/** `t` broadcast (copied) to `shape`; its gradient sums back. */
function expandTo(t: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(t.shape, shape)) return t;
  const out = emptyOn(shape, t.device);
  native.stridedCopy(out.storage, 0, contiguousStrides(shape), t.storage, 0, broadcastStrides(t.shape, shape), [...shape], false);
  const inShape = t.shape;
  return record('expand', [t], out, ([g]) => [sumTo(g!, inShape)]);
}

/** Sums `g` over broadcast dimensions down to `shape`. */
function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const out = zerosOn(shape, g.device);
  native.stridedCopy(out.storage, 0, broadcastStrides(shape, g.shape), g.storage, 0, contiguousStrides(g.shape), g.shape, true);
  return record('sumTo', [g], out, ([gg]) => [expandTo(gg!, g.shape)]);
}

function affine(x: Tensor, alpha: number, beta: number, name: string): Tensor {
  const out = emptyOn(x.shape, x.device);
  native.affine(out.storage, x.storage, alpha, beta, x.size);
  return record(name, [x], out, ([g]) => [g!.mul(alpha)]);
}

function binaryOp(a: Tensor, other: Tensor | number, op: Binary, name: string): Tensor {
  a.live();
  if (typeof other === 'number') {
    expectNumber(other, 'other');
    switch (op) {
      case Binary.Add: return affine(a, 1, other, name);
      case Binary.Sub: return affine(a, 1, -other, name);
      case Binary.Mul: return affine(a, other, 0, name);
      case Binary.Div: return affine(a, 1 / other, 0, name);
    }
  }
  const b = expectTensor(other, 'other');
  if (b.device !== a.device) expectSameDevice(name, [['this tensor', a], ['other', b]]); // builds the message only on a mismatch
  const outShape = broadcastShapes(a.shape, b.shape, name);
  const out = emptyOn(outShape, a.device);
  native.binary(op, out.storage, a.storage, 0, broadcastStrides(a.shape, outShape), b.storage, 0, broadcastStrides(b.shape, outShape), outShape);
  return record(name, [a, b], out, ([g]) => {
    const grad = g!;
    switch (op) {
      case Binary.Add: return [sumTo(grad, a.shape), sumTo(grad, b.shape)];
      case Binary.Sub: return [sumTo(grad, a.shape), sumTo(grad.neg(), b.shape)];
      case Binary.Mul: return [a.requiresGrad ? sumTo(grad.mul(b), a.shape) : null, b.requiresGrad ? sumTo(grad.mul(a), b.shape) : null];
      case Binary.Div: return [
        a.requiresGrad ? sumTo(grad.div(b), a.shape) : null,
        b.requiresGrad ? sumTo(grad.mul(a).div(b.mul(b)).neg(), b.shape) : null,
      ];
    }
  });
}

function unaryOp(x: Tensor, op: Unary, name: string): Tensor {
  x.live();
  const out = emptyOn(x.shape, x.device);
  native.unary(op, out.storage, x.storage, x.size);
  return record(name, [x], out, ([g]) => {
    const gin = emptyOn(x.shape, x.device);
    native.unaryBackward(op, gin.storage, x.storage, out.storage, g!.storage, x.size);
    return [gin];
  });
}

function softmaxOp(x: Tensor, dim: number, log: boolean): Tensor {
  x.live();
  const rank = x.ndim;
  if (rank === 0) throw rangeError('softmax needs at least one dimension', 'ERR_SHAPE_MISMATCH');
  const d = normalizeDim(dim, rank);
  if (d !== rank - 1) return softmaxOp(x.transpose(d, rank - 1), -1, log).transpose(d, rank - 1);
  const cols = x.shape[rank - 1];
  if (cols === 0) return x.clone();
  const rows = x.size / cols;
  const out = emptyOn(x.shape, x.device);
  native.softmax(out.storage, x.storage, rows, cols, log);
  return record(log ? 'logSoftmax' : 'softmax', [x], out, ([g]) => {
    const gin = emptyOn(x.shape, x.device);
    native.softmaxBackward(gin.storage, out.storage, g!.storage, rows, cols, log);
    return [gin];
  });
}

export { noGrad };

/** @internal a zero-filled tensor of a shape the library computed itself (no checks). */
export function zerosOn(shape: readonly number[], device: Device): Tensor {
  return new Tensor(allocate(numel(shape), false, device), shape, false, device);
}

/** @internal an uninitialized tensor that a kernel overwrites entirely (no checks). */
export function emptyOn(shape: readonly number[], device: Device): Tensor {
  return new Tensor(allocate(numel(shape), true, device), shape, false, device);
}
