/**
 * The one place that loads the native addon. node-gyp-build looks in build/Release,
 * build/Debug, then prebuilds/ (PREBUILDS_ONLY=1 skips local builds). A failed load
 * becomes an error that says what was tried and what to do.
 */
import * as path from 'node:path';
import { typeError } from './errors';

export interface NativeStorage {
  readonly length: number;
  readonly device: string;
  readonly disposed: boolean;
  /** Bumped by every call that may write the storage (PyTorch's tensor._version). */
  readonly version: number;
  /** into `out` (at least count elements; its first count written) when given, else a new array */
  read(offset: number, count: number, out?: Float32Array): Float32Array;
  write(values: Float32Array, offset: number): void;
  dispose(): void;
  /** Adds memory created with report === false to V8's external memory count. */
  report(): void;
}

type S = NativeStorage;
type MaybeS = NativeStorage | null;

export interface CudaStatus {
  compiled: boolean;
  deviceCount: number;
  reason?: string;
  devices?: { name: string; computeCapability: string; totalMemory: number }[];
}

export interface NativeAddon {
  /**
   * uninitialized: skip zero-filling a reused block (for outputs a kernel overwrites entirely);
   * report: false leaves the memory out of V8's external count until report() (scope() memory).
   */
  Storage: new (length: number, uninitialized?: boolean, device?: 'cpu' | 'cuda', report?: boolean) => NativeStorage;
  /** Copies count floats between any two storages, across devices too. */
  copyBetween(dst: S, dstOffset: number, src: S, srcOffset: number, count: number): void;
  setAsync(async: boolean): void;
  isAsync(): boolean;
  synchronize(): Promise<void>;
  setNumThreads(threads: number): void;
  /** 0 auto, 1 on, 2 off (benchmarks and tests): stackForward's pipeline over time */
  setStackPipeline(mode: number): void;
  setRowSplit(minRows: number, grain: number): void;
  setTf32(enabled: boolean): void;
  setBf16Matmul(enabled: boolean): boolean;
  /** V8's count of external memory, which tensors add to as binding/storage.cc's report_external says (tests). */
  externalMemory(): number;
  memoryStats(): { allocatedBytes: number; cachedBytes: number; packedWeightBytes: number; cuda?: { allocatedBytes: number; cachedBytes: number } };
  emptyCache(): number;
  nativeCodes(): { unary: Record<string, number>; binary: Record<string, number>; cell: Record<string, number>; optimizer: Record<string, number>; hyper: Record<string, string[]> };
  backends(): { cpu: { isa: string; threads: number; soloCalls: number; bf16: boolean; bf16Reason?: string; matmul: 'fp32' | 'bf16-avx512' | 'bf16-amx' }; cuda: CudaStatus };
  stridedCopy(dst: S, dstOffset: number, dstStrides: number[], src: S, srcOffset: number, srcStrides: number[], shape: number[], accumulate: boolean): void;
  unary(op: number, out: S, input: S, count: number): void;
  unaryBackward(op: number, gradIn: S, input: S, output: S, gradOut: S, count: number): void;
  binary(op: number, out: S, a: S, aOffset: number, aStrides: number[], b: S, bOffset: number, bStrides: number[], shape: number[]): void;
  affine(out: S, input: S, alpha: number, beta: number, count: number): void;
  fill(out: S, value: number, offset: number, count: number): void;
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
    a: S, aOffset: number, lda: number, b: S, bOffset: number, ldb: number, beta: number,
    c: S, cOffset: number, ldc: number, batch: number, strideA: number, strideB: number, strideC: number): void;
  softmax(out: S, input: S, rows: number, cols: number, log: boolean): void;
  softmaxBackward(gradIn: S, output: S, gradOut: S, rows: number, cols: number, log: boolean): void;
  additiveAttention(scores: S, q: S, k: S, v: S, B: number, T: number, S: number, A: number): void;
  additiveAttentionBackward(dq: S, dk: S, dv: S, grad: S, q: S, k: S, v: S, B: number, T: number, S: number, A: number): void;
  uniformFill(out: S, count: number, low: number, high: number, seed: number): void;
  normalFill(out: S, count: number, mean: number, std: number, seed: number): void;
  dropoutMask(out: S, count: number, p: number, seed: number): void;
  embeddingForward(out: S, weight: S, indices: Int32Array, rows: number, dim: number): void;
  embeddingBackward(gradWeight: S, gradOut: S, indices: Int32Array, rows: number, dim: number): void;
  crossEntropy(losses: S, logits: S, targets: Int32Array, rows: number, classes: number, ignoreIndex: number, labelSmoothing: number): void;
  crossEntropyBackward(gradLogits: S, logits: S, targets: Int32Array, gradLosses: S, rows: number, classes: number, ignoreIndex: number, labelSmoothing: number): void;
  ctcLoss(losses: S, grad: MaybeS, logProbs: S, T: number, B: number, C: number, blank: number, targets: Int32Array,
    targetLengths: Int32Array, inputLengths: Int32Array, zeroInfinity: boolean): void;
  ctcLossReference(logProbs: Float64Array, T: number, B: number, C: number, blank: number, targets: Int32Array,
    targetLengths: Int32Array, inputLengths: Int32Array, wantGrad: boolean): { losses: Float64Array; grad?: Float64Array };
  ctcDecode(logProbs: S, T: number, B: number, C: number, blank: number, inputLengths: Int32Array, beamWidth: number): Int32Array[];
  optimizerStep(kind: number, hyper: number[], steps: number[], params: S[], grads: MaybeS[], state0: MaybeS[], state1: MaybeS[], state2: MaybeS[]): void;
  clipGradNorm(grads: S[], maxNorm: number, normOut: S): void;
  clipGradValue(grads: S[], clip: number): void;
  layerReserveSize(cell: number, T: number, B: number, I: number, H: number, D: number): number;
  layerForward(cell: number, T: number, B: number, I: number, H: number, D: number,
    y: S, hN: S, cN: MaybeS, reserve: MaybeS, x: S, lengths: Int32Array | null, h0: MaybeS, c0: MaybeS,
    weights: MaybeS[], stateOffset?: number): void;
  stackForward(cell: number, T: number, B: number, I: number, H: number, D: number, L: number,
    ys: S[], hN: S, cN: MaybeS, x: S, lengths: Int32Array | null, h0: MaybeS, c0: MaybeS, layers: MaybeS[][]): void;
  layerBackward(cell: number, T: number, B: number, I: number, H: number, D: number,
    dx: MaybeS, dh0: MaybeS, dc0: MaybeS, grads: MaybeS[], dy: MaybeS, dhN: MaybeS, dcN: MaybeS,
    reserve: S, x: S, lengths: Int32Array | null, weights: MaybeS[], dhSteps?: MaybeS, stateOffset?: number): void;
  stepPlan(cell: number, I: number, H: number, L: number, V: number, embedding: MaybeS, layers: MaybeS[][],
    headW: MaybeS, headB: MaybeS): NativeStepPlan;
  stepRun(plan: NativeStepPlan, B: number, out: S, h: S, c: MaybeS, tokens: Int32Array | null, x: MaybeS): void;
  stepSample(plan: NativeStepPlan, B: number, out: S, h: S, c: MaybeS, length: number, temperature: number, topK: number,
    excluded: Uint8Array | null, rng: Uint32Array): Int32Array;
  /** models: one [dims, embedding, layers, attention, encoder] per model of the search (an ensemble where several) */
  seq2seqDecode(models: [number[], S, MaybeS[][], MaybeS[], [number, number, S, S, Int32Array, S, MaybeS]][],
    search: number[]): { tokens: Int32Array[]; logProbs: Float64Array; ended: Uint8Array; counts: Int32Array; scores: Float64Array };
  referenceForward(cell: number, T: number, B: number, I: number, H: number, D: number,
    x: Float64Array, lengths: Int32Array | null, h0: Float64Array | null, c0: Float64Array | null,
    weights: (Float64Array | null)[]): { y: Float64Array; hN: Float64Array; cN?: Float64Array };
  referenceBackward(cell: number, T: number, B: number, I: number, H: number, D: number,
    dy: Float64Array | null, dhN: Float64Array | null, dcN: Float64Array | null, x: Float64Array,
    lengths: Int32Array | null, h0: Float64Array | null, c0: Float64Array | null, weights: (Float64Array | null)[]):
    { dx: Float64Array; dh0: Float64Array; dc0?: Float64Array; grads: (Float64Array | null)[] };
}

export interface DistributedStatus {
  available: boolean;
  engine?: string;
  library?: string;
  reason?: string;
  initialized: boolean;
  rank?: number;
  worldSize?: number;
  mpi?: boolean;
}

export interface WorldInfo {
  rank: number;
  worldSize: number;
  localRank: number;
  localSize: number;
  /** false: a world of one, started without an MPI launcher (no MPI loaded) */
  mpi: boolean;
}

/** The collectives (binding/distributed.cc); op: 0 sum, 1 max, 2 min. */
export interface NativeCollectives {
  distributedStatus(): DistributedStatus;
  distributedInit(): WorldInfo;
  allReduce(storages: S[], op: number, scale: number): void;
  allReduceStart(storages: S[], op: number, scale: number): number;
  allReduceWait(ticket: number): void;
  allReduceScalars(values: Float64Array, op: number): Float64Array;
  broadcast(storage: S, root: number): void;
  broadcastBytes(bytes: Uint8Array | null, root: number): Uint8Array;
  barrier(): void;
  distributedAbort(code: number): never;
  distributedShutdown(): void;
}

function load(): NativeAddon & NativeCollectives {
  const root = path.join(__dirname, '..', '..'); // the package: lib/core/ (or dist/core/) is two below it
  try {
    // an explicit build (the sanitizer build of `npm run test:asan`, say)
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    if (process.env.RECURRENT_ADDON) return require(path.resolve(process.env.RECURRENT_ADDON)) as NativeAddon & NativeCollectives;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(root) as NativeAddon & NativeCollectives;
  } catch (cause) {
    const where = `${process.platform}-${process.arch}`;
    const error = typeError(
      `Could not load the native addon of recurrent for ${where} (Node ${process.version}, ` +
        `Node-API ${process.versions.napi}).\n` +
        `Tried: ${path.join(root, 'build', 'Release')}, ${path.join(root, 'build', 'Debug')} and ` +
        `${path.join(root, 'prebuilds', where)}${process.env.PREBUILDS_ONLY ? ' (PREBUILDS_ONLY set: prebuilds only)' : ''}.\n` +
        'Possible solutions:\n' +
        '  - reinstall: npm install recurrent (uses a prebuilt binary where one fits)\n' +
        '  - compile from source: npm install --build-from-source (needs CMake >= 3.18 and a C++17 compiler)\n' +
        `Cause: ${(cause as Error).message}`,
      'ERR_NATIVE_LOAD',
    );
    throw Object.assign(error, { cause });
  }
}

export const native: NativeAddon & NativeCollectives = load();

/** One call of the GEMM kernel, by name: C (m x n) = alpha op(A) op(B) + beta C, row-major. */
export interface GemmCall {
  a: S;
  b: S;
  c: S;
  m: number;
  n: number;
  k: number;
  /** op(A) = A^T: A is stored (k, m). Default false. */
  transA?: boolean;
  /** op(B) = B^T: B is stored (n, k). Default false. */
  transB?: boolean;
  /** Default 1. */
  alpha?: number;
  /** 0 (the default): C is overwritten, never read. */
  beta?: number;
  /** Products at once; the next product's A, B and C follow the previous one's (tightly packed). Default 1. */
  batch?: number;
}

/**
 * The GEMM with its 20 positional arguments worked out: leading dimensions and batch strides
 * are those of tightly packed operands (at least 1 where a size is 0).
 */
export function gemm({ a, b, c, m, n, k, transA = false, transB = false, alpha = 1, beta = 0, batch = 1 }: GemmCall): void {
  const lda = Math.max(transA ? m : k, 1);
  const ldb = Math.max(transB ? k : n, 1);
  const ldc = Math.max(n, 1);
  const strided = batch > 1;
  native.gemm(transA, transB, m, n, k, alpha, a, 0, lda, b, 0, ldb, beta, c, 0, ldc, batch,
    strided ? m * k : 0, strided ? k * n : 0, strided ? m * n : 0);
}

// ---------------------------------------------------------------------------
// The codes and layouts the kernels read, each defined once on this side: cpp/ops.h (UnaryOp,
// BinaryOp), cpp/cells.h (CellKind), cpp/optim.h (OptimizerKind, k*HyperFields). The addon
// reports its own (nativeCodes()); test/10 checks that the two agree.

export enum UnaryOp { Tanh = 0, Sigmoid = 1, Relu = 2, Exp = 3, Log = 4, Neg = 5, Abs = 6, Sqrt = 7 }
export enum BinaryOp { Add = 0, Sub = 1, Mul = 2, Div = 3 }
export enum CellKind { RnnTanh = 0, RnnRelu = 1, Lstm = 2, Gru = 3 }

/** Each optimizer's code and the order of its hyperparameters in optimizerStep's array. */
export const OPTIMIZERS = {
  SGD: { code: 0, hyper: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'] },
  Adam: { code: 1, hyper: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'decoupled'] },
  RMSprop: { code: 2, hyper: ['lr', 'alpha', 'eps', 'weightDecay', 'momentum', 'centered'] },
} as const;
export type NativeOptimizer = keyof typeof OPTIMIZERS;
/** The hyperparameters of `N`, by name (flags as booleans). */
export type NativeHyper<N extends NativeOptimizer> = Record<(typeof OPTIMIZERS)[N]['hyper'][number], number | boolean>;

/** An optimizer and its hyperparameters, by name. */
export type OptimizerUpdate = { [N in NativeOptimizer]: { optimizer: N; hyper: NativeHyper<N> } }[NativeOptimizer];

/**
 * One fused update of every parameter with a gradient (cpp/optim.h): `steps[i]` is parameter
 * i's step count after it; `state` the optimizer's buffers (up to three, null where unused).
 */
export function optimizerStep(call: OptimizerUpdate & { steps: number[]; params: S[]; grads: MaybeS[]; state: MaybeS[][] }): void {
  const { code, hyper: fields } = OPTIMIZERS[call.optimizer];
  const hyper = (fields as readonly string[]).map((f) => Number((call.hyper as Record<string, number | boolean>)[f]));
  native.optimizerStep(code, hyper, call.steps, call.params, call.grads, call.state[0], call.state[1], call.state[2]);
}

/** What every layer call names: the cell, the sizes, the input and the weights. */
interface LayerCall {
  cell: CellKind;
  timeSteps: number;
  batch: number;
  inputSize: number;
  hiddenSize: number;
  directions: number;
  /** [T, B, I], time-major */
  x: S;
  /** valid steps per row (null: all T) */
  lengths: Int32Array | null;
  /** per direction: weight_ih, weight_hh, bias_ih, bias_hh (null biases: none) */
  weights: MaybeS[];
  /** first element of this layer's rows in the [L*D, B, H] state tensors (and their gradients) */
  stateOffset?: number;
}

/** A layer's forward over the whole sequence: y [T, B, D*H], the final states, and the reserve backward reads. */
export function layerForward(call: LayerCall & { y: S; hN: S; cN: MaybeS; reserve: MaybeS; h0: MaybeS; c0: MaybeS }): void {
  native.layerForward(call.cell, call.timeSteps, call.batch, call.inputSize, call.hiddenSize, call.directions,
    call.y, call.hN, call.cN, call.reserve, call.x, call.lengths, call.h0, call.c0, call.weights, call.stateOffset ?? 0);
}

/**
 * Inference through a stack of one-direction layers in one call (CPU): ys[l] [T, B, H] receives
 * layer l's output (the last one is the stack's), hN, cN, h0, c0 are [L, B, H]. With two threads
 * and small steps the layers run as a pipeline over chunks of time steps (cpp/recurrent.h).
 */
export function stackForward(call: Omit<LayerCall, 'weights' | 'directions' | 'stateOffset'> & {
  /** per layer: weight_ih, weight_hh, bias_ih, bias_hh */
  layers: MaybeS[][]; ys: S[]; hN: S; cN: MaybeS; h0: MaybeS; c0: MaybeS;
}): void {
  native.stackForward(call.cell, call.timeSteps, call.batch, call.inputSize, call.hiddenSize, 1, call.layers.length,
    call.ys, call.hN, call.cN, call.x, call.lengths, call.h0, call.c0, call.layers);
}

/**
 * A layer's backward from its reserve: dx, the initial states' and the weights' gradients (and dL/dh_t per step).
 * dx null (CPU only): the input needs no gradient, and its product with w_ih is skipped.
 */
export function layerBackward(call: LayerCall & {
  dx: MaybeS; dh0: MaybeS; dc0: MaybeS; grads: MaybeS[]; dy: MaybeS; dhN: MaybeS; dcN: MaybeS; reserve: S; dhSteps?: MaybeS;
}): void {
  native.layerBackward(call.cell, call.timeSteps, call.batch, call.inputSize, call.hiddenSize, call.directions,
    call.dx, call.dh0, call.dc0, call.grads, call.dy, call.dhN, call.dcN, call.reserve, call.x, call.lengths, call.weights,
    call.dhSteps ?? null, call.stateOffset ?? 0);
}

/** A step plan (binding/recurrent.cc): the weights of a stacked model, checked once for stepRun. */
export interface NativeStepPlan {
  readonly __brand: 'NativeStepPlan';
}

/**
 * The plan for one step of a stacked one-directional model for inference (cpp/step.h): its layers'
 * weights, the embedding (token ids in) or none (x [B, inputSize] in), and the head or none.
 */
export function stepPlan(model: {
  cell: CellKind; inputSize: number; hiddenSize: number;
  /** per layer: weight_ih, weight_hh, bias_ih, bias_hh (null biases: none) */
  layers: MaybeS[][];
  embedding: MaybeS;
  head: { weight: S; bias: MaybeS; outputs: number } | null;
}): NativeStepPlan {
  return native.stepPlan(model.cell, model.inputSize, model.hiddenSize, model.layers.length, model.head?.outputs ?? 0,
    model.embedding, model.layers, model.head?.weight ?? null, model.head?.bias ?? null);
}

/**
 * One step of a plan's model: the embedding rows of `tokens` (or `x` [B, inputSize]) through every
 * layer at T = 1, the state [L, B, H] updated in place, then the head when there is one: out
 * [B, outputs], else the last layer's h [B, H].
 */
export function stepRun(plan: NativeStepPlan, call: { batch: number; h: S; c: MaybeS; out: S; tokens: Int32Array | null; x: MaybeS }): void {
  native.stepRun(plan, call.batch, call.out, call.h, call.c, call.tokens, call.x);
}

/**
 * Autoregressive sampling with a plan that has an embedding and a head (cpp/step.h): `length` times,
 * each row of `out` [B, V] (the logits to draw from) draws a token, as sampleLogits draws (topK 0:
 * every token; `excluded`: one flag per token, 1 never drawn), and the drawn tokens are the next
 * step's input. Returns the tokens [length, B]; `rng` (the generator's [counter, high]) is moved on.
 */
export function stepSample(plan: NativeStepPlan, call: {
  batch: number; h: S; c: MaybeS; out: S; length: number; temperature: number; topK: number; excluded: Uint8Array | null; rng: Uint32Array;
}): Int32Array {
  return native.stepSample(plan, call.batch, call.out, call.h, call.c, call.length, call.temperature, call.topK, call.excluded, call.rng);
}
