/**
 * Data-parallel training across processes, on MPI (Open MPI), like PyTorch's
 * torch.distributed + DistributedDataParallel.
 *
 * Start N processes with `npx recurrent launch -n N script.js` (or plain `mpirun`, or `srun`);
 * in each, initDistributed() gives { rank, worldSize }. Every rank holds a whole copy of the
 * model and trains on its own share of each batch; after backward, the gradients are averaged
 * across ranks (all-reduced in buckets while backward is still running), so every rank takes
 * the same optimizer step and the copies stay identical.
 *
 * The addon loads libmpi only when asked (cpp/collective.h): without MPI the package still
 * loads and trains, and backends().distributed says why it is not available. A process started
 * without a launcher is a world of one, where every collective is the identity.
 */
import * as os from 'node:os';
import { registerBackwardEndHook } from '../core/autograd';
import { describe, distributedError, expectInteger, expectKnownKeys, expectNumber, expectOptions, typeError } from '../core/errors';
import { native, WorldInfo } from '../core/native';
import { Module } from '../nn/module';
import { keep } from '../core/memory';
import { Tensor, zerosOn } from '../core/tensor';

export interface DistributedWorld {
  rank: number;
  worldSize: number;
  /** rank among the processes on this host */
  localRank: number;
  /** processes on this host */
  localSize: number;
}

export type ReduceOp = 'sum' | 'mean' | 'max' | 'min';

const OP_CODES: Record<ReduceOp, number> = { sum: 0, mean: 0, max: 1, min: 2 };

let world: WorldInfo | null = null;

/** What backends().distributed reports: whether an MPI engine can be loaded, and why not. */
export function distributedBackend(): { available: boolean; engine?: string; reason?: string; library?: string } {
  const s = native.distributedStatus();
  return {
    available: s.available,
    ...(s.engine ? { engine: s.engine } : {}),
    ...(s.library ? { library: s.library } : {}),
    ...(s.reason ? { reason: s.reason } : {}),
  };
}

/**
 * Joins the job this process was launched into (MPI_Init on a communication thread of the
 * addon's own) and returns this process's place in it. Idempotent. Started without a launcher,
 * the process is a world of one (rank 0 of 1) and MPI is not loaded.
 *
 * Unless RECURRENT_NUM_THREADS is set, the CPU kernels of each rank then use an equal share of
 * this host's cores. When the process exits with a non-zero code (an uncaught error, say), the
 * whole job is aborted, so that the other ranks never wait for it forever.
 */
export function initDistributed(): DistributedWorld {
  if (!world) {
    world = native.distributedInit();
    if (world.mpi) {
      process.on('exit', (code) => {
        if (code === 0) native.distributedShutdown();
        else native.distributedAbort(Math.min(255, Math.max(1, code)));
      });
      if (!process.env.RECURRENT_NUM_THREADS && world.localSize > 1) {
        native.setNumThreads(Math.max(1, Math.floor(os.availableParallelism() / world.localSize)));
      }
    }
  }
  return { rank: world.rank, worldSize: world.worldSize, localRank: world.localRank, localSize: world.localSize };
}

/** Whether initDistributed() was called. */
export function isDistributedInitialized(): boolean {
  return world !== null;
}

function requireWorld(fn: string): WorldInfo {
  if (!world) throw distributedError(`${fn}: call initDistributed() first`);
  return world;
}

/** This process's rank (0 before initDistributed()). */
export function getRank(): number {
  return world?.rank ?? 0;
}

/** The number of processes in the job (1 before initDistributed()). */
export function getWorldSize(): number {
  return world?.worldSize ?? 1;
}

function tensorList(value: unknown, fn: string): Tensor[] {
  const list = Array.isArray(value) ? value : [value];
  return list.map((t, i) => {
    if (!(t instanceof Tensor)) {
      throw typeError(`${fn}: expected ${Array.isArray(value) ? `tensors[${i}]` : 'tensor'} to be a Tensor but received ${describe(t)}`);
    }
    t.live();
    return t;
  });
}

/**
 * Combines `tensor` (or every tensor of an array, as one message) across all ranks, in place,
 * and returns it: 'sum' (default), 'mean', 'max' or 'min'. Every rank must call it with tensors
 * of the same sizes, in the same order. Tensors on 'cuda' are staged through host memory.
 */
export function allReduce<T extends Tensor | Tensor[]>(tensor: T, op: ReduceOp = 'sum'): T {
  const w = requireWorld('allReduce');
  const tensors = tensorList(tensor, 'allReduce');
  if (!(op in OP_CODES)) throw typeError(`allReduce: expected op to be 'sum', 'mean', 'max' or 'min' but received ${describe(op)}`, 'ERR_INVALID_ARG_VALUE');
  if (tensors.length > 0) native.allReduce(tensors.map((t) => t.storage), OP_CODES[op], op === 'mean' ? 1 / w.worldSize : 1);
  return tensor;
}

/** Copies `tensor` of rank `root` (default 0) into `tensor` of every other rank, in place. */
export function broadcast(tensor: Tensor, root = 0): Tensor {
  const w = requireWorld('broadcast');
  const [t] = tensorList(tensor, 'broadcast');
  native.broadcast(t.storage, expectInteger(root, 'root', 0, w.worldSize - 1));
  return tensor;
}

/** Waits until every rank has called barrier(). */
export function barrier(): void {
  requireWorld('barrier');
  native.barrier();
}

/** Copies every parameter of `module` from rank `root` to all ranks (same architecture everywhere). */
export function broadcastParameters(module: Module | Tensor[], root = 0): void {
  const params = module instanceof Module ? module.parameters() : tensorList(module, 'broadcastParameters');
  for (const p of params) broadcast(p, root);
}

/** @internal sums (or max/min) a few numbers across ranks */
export function allReduceNumbers(values: number[], op: 'sum' | 'max' | 'min' = 'sum'): number[] {
  requireWorld('allReduceNumbers');
  return Array.from(native.allReduceScalars(Float64Array.from(values), OP_CODES[op]));
}

/** @internal the JSON value of rank `root` on every rank */
export function broadcastJson<T>(value: T | undefined, root = 0): T {
  const w = requireWorld('broadcastJson');
  const bytes = w.rank === root ? new Uint8Array(Buffer.from(JSON.stringify(value ?? null), 'utf8')) : null;
  return JSON.parse(Buffer.from(native.broadcastBytes(bytes, root)).toString('utf8')) as T;
}

/** @internal the bytes of rank `root` on every rank */
export function broadcastBytes(bytes: Uint8Array | null, root = 0): Uint8Array {
  requireWorld('broadcastBytes');
  return native.broadcastBytes(bytes, root);
}

/**
 * Runs `fn` on this rank, then agrees with every other rank on whether all of them succeeded
 * (one small all-reduce). If one failed, every rank throws that error (code and message, the
 * message prefixed with its rank; the failing rank rethrows its own error object), so the ranks
 * leave together instead of waiting for each other forever.
 */
export async function agree<R>(fn: () => R | Promise<R>, extra?: (result: R | undefined) => number[]): Promise<{ result: R; totals: number[] }> {
  const w = requireWorld('agree');
  let result: R | undefined;
  let failure: unknown = null;
  try {
    result = await fn();
  } catch (error) {
    failure = error;
  }
  let more: number[] = [];
  if (extra) {
    try {
      more = extra(failure ? undefined : result);
    } catch (error) {
      failure ??= error;
      more = extra(undefined);
    }
  }
  const totals = allReduceNumbers([failure ? 1 : 0, ...more]);
  if (totals[0] > 0) {
    const [first] = allReduceNumbers([failure ? w.rank : w.worldSize], 'min');
    const e = failure as { name?: string; message?: string; code?: string } | null;
    const info = broadcastJson<{ name: string; message: string; code?: string }>(
      w.rank === first ? { name: e?.name ?? 'Error', message: String(e?.message ?? failure), ...(e?.code ? { code: e.code } : {}) } : undefined,
      first,
    );
    if (failure) throw failure;
    const Kind = info.name === 'TypeError' ? TypeError : info.name === 'RangeError' ? RangeError : Error;
    throw Object.assign(new Kind(`rank ${first} failed: ${info.message}`), { code: info.code ?? 'ERR_DISTRIBUTED', rank: first });
  }
  return { result: result as R, totals: totals.slice(1) };
}

export interface GradReducerOptions {
  /** Gradients are all-reduced in buckets of about this many MB (default 4), last layers first. */
  bucketCapMB?: number;
}

/**
 * Averages the gradients of `params` across ranks as backward produces them. Buckets (in
 * reverse parameter order, the order backward finishes them) start their all-reduce as soon as
 * all their gradients are accumulated; the reduction runs on the communication thread while
 * the stream goes on with backward. At the end of backward the rest is started (a parameter
 * that received no gradient reduces zeros) and the waits are queued, so the optimizer step, in
 * stream order, sees averaged gradients.
 */
export class GradReducer {
  readonly params: readonly Tensor[];
  /** Indices into params, in launch order. */
  readonly buckets: readonly number[][];
  /** While false, backward leaves gradients alone (accumulate locally, like PyTorch's no_sync). */
  enabled = true;
  /** How many times finish() ran (one per training step). */
  finishedSteps = 0;
  private readonly bucketOf: number[];
  private remaining: number[];
  private launched = 0;
  private tickets: number[] = [];
  private active = false;
  private readonly removers: (() => void)[] = [];
  private readonly scale: number;

  constructor(params: readonly Tensor[], options: GradReducerOptions = {}) {
    const w = requireWorld('GradReducer');
    expectKnownKeys(expectOptions(options, 'options'), ['bucketCapMB'], 'options');
    const capBytes = (options.bucketCapMB === undefined ? 4 : expectNumber(options.bucketCapMB, 'options.bucketCapMB')) * 1024 * 1024;
    this.params = tensorList([...params], 'GradReducer');
    const buckets: number[][] = [];
    let current: number[] = [];
    let bytes = 0;
    for (let i = this.params.length - 1; i >= 0; --i) {
      current.push(i);
      bytes += this.params[i].size * 4;
      if (bytes >= capBytes) {
        buckets.push(current);
        current = [];
        bytes = 0;
      }
    }
    if (current.length) buckets.push(current);
    this.buckets = buckets;
    this.bucketOf = new Array<number>(this.params.length);
    buckets.forEach((bucket, b) => bucket.forEach((i) => (this.bucketOf[i] = b)));
    this.remaining = buckets.map((bucket) => bucket.length);
    this.scale = 1 / w.worldSize;
    this.params.forEach((p, i) => this.removers.push(p.registerPostAccumulateGradHook(() => this.onReady(i)).remove));
    this.removers.push(registerBackwardEndHook(() => {
      if (this.active) this.finish();
    }));
  }

  /** Whether a backward has produced gradients that finish() has not yet reduced. */
  get pending(): boolean {
    return this.active;
  }

  private onReady(index: number): void {
    if (!this.enabled) return;
    this.active = true;
    this.remaining[this.bucketOf[index]] -= 1;
    while (this.launched < this.buckets.length && this.remaining[this.launched] === 0) this.launch(this.launched++);
  }

  private launch(bucket: number): void {
    const storages = this.buckets[bucket].map((i) => {
      const p = this.params[i];
      if (!p.ownGrad) p.setOwnGrad(keep(zerosOn(p.shape, p.device)));
      return p.ownGrad!.storage;
    });
    this.tickets.push(native.allReduceStart(storages, 0, this.scale));
  }

  /**
   * Starts every bucket not started yet and queues the waits for all of them; after it, in
   * stream order, every gradient is the mean over ranks. Runs by itself at the end of backward;
   * call it when a step fails before backward ends, so that every rank still reduces the same
   * buckets.
   */
  finish(): void {
    while (this.launched < this.buckets.length) this.launch(this.launched++);
    for (const ticket of this.tickets) native.allReduceWait(ticket);
    this.tickets = [];
    this.launched = 0;
    this.remaining = this.buckets.map((bucket) => bucket.length);
    this.active = false;
    this.finishedSteps += 1;
  }

  /** Removes the hooks. */
  dispose(): void {
    for (const remove of this.removers) remove();
    this.removers.length = 0;
  }
}

export interface DistributedDataParallelOptions extends GradReducerOptions {
  /** Copy rank 0's parameters to every rank first (default true). */
  broadcastParameters?: boolean;
}

/**
 * Wraps a model for data-parallel training in a loop of one's own, like PyTorch's
 * DistributedDataParallel: the parameters start as rank 0's, and every backward() ends with
 * gradients averaged over ranks (reduced in buckets while backward runs), ready for the
 * optimizer. Each rank feeds its own share of the data. forward() is the wrapped module's;
 * parameters are named `module.*`, as in PyTorch. fit(model, data, { distributed: true }) does
 * all of this (and the sharding) by itself.
 */
export class DistributedDataParallel<M extends Module = Module> extends Module {
  readonly module: M;
  readonly reducer: GradReducer;

  constructor(module: M, options: DistributedDataParallelOptions = {}) {
    super();
    if (!(module instanceof Module)) throw typeError(`DistributedDataParallel: expected module to be a Module but received ${describe(module)}`);
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['bucketCapMB', 'broadcastParameters'], 'options');
    initDistributed();
    this.module = this.registerModule('module', module);
    if (opts.broadcastParameters !== false) broadcastParameters(module, 0);
    this.reducer = new GradReducer(module.parameters(), opts.bucketCapMB === undefined ? {} : { bucketCapMB: opts.bucketCapMB as number });
  }

  forward(...args: unknown[]): unknown {
    return (this.module.forward as (...a: unknown[]) => unknown)(...args);
  }

  override config(): Record<string, unknown> {
    return this.module.config();
  }

  /** Runs `fn` (synchronously) with gradients accumulated locally, not reduced (gradient accumulation). */
  noSync<R>(fn: () => R): R {
    const previous = this.reducer.enabled;
    this.reducer.enabled = false;
    try {
      return fn();
    } finally {
      this.reducer.enabled = previous;
    }
  }

  /** Removes the gradient hooks (the module trains on alone). */
  dispose(): void {
    this.reducer.dispose();
  }
}
