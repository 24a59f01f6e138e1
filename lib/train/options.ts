/**
 * fit()'s options: their types, and their checks in one place (parseFitOptions), so that the
 * loop in fit.ts reads settled values only.
 */
import { describe, expectBoolean, expectInteger, expectNumber, expectOptions, expectKnownKeys, rangeError, typeError } from '../core/errors';
import type { DashboardOptions } from '../diagnostics/dashboard';
import type { Module } from '../nn/module';
import { Adam, LRScheduler, Optimizer } from '../optim/optimizers';
import type { Tensor } from '../core/tensor';

/** Training data, in one of three forms (targets follow the inputs' sample order). */
export type FitData =
  /** Fixed-length samples: inputs [N, T, F] (or token ids [N, T]); targets [N, ...] (one per sequence) or [N, T, ...] (one per step). */
  | { inputs: Tensor; targets: Tensor }
  /** Variable-length samples, grouped by length into batches: each [T_i, F] (or token ids [T_i]); targets one per sequence, or [T_i, ...] per step. */
  | { sequences: Tensor[]; targets: Tensor[] | Tensor }
  /** One long stream ([L, F] or token ids [L]) with per-step targets [L, ...], split into batchSize parallel streams and trained with truncated BPTT. */
  | { stream: Tensor; targets: Tensor }
  /** Source and target token sequences, for a sequence-to-sequence model (Seq2Seq), which computes its own loss. */
  | { sources: readonly (readonly number[])[]; targets: readonly (readonly number[])[] };

export interface LossContext {
  /** Valid steps per batch row, when sequences were padded. */
  lengths: number[] | null;
}

export type LossFn = (output: Tensor, target: Tensor, context: LossContext) => Tensor;

export interface Progress {
  /** the epoch under way, counted from 0 (the first epoch is 0; the CLI prints epoch + 1) */
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  step: number;
  loss: number;
  lr: number;
  /** timesteps x samples processed per second, this run */
  timestepSamplesPerSecond: number;
  /** seconds left at the current speed */
  etaSeconds: number;
}

export interface EpochInfo {
  /** the epoch that ended, counted from 0 like Keras' on_epoch_end (the CLI prints epoch + 1) */
  epoch: number;
  loss: number;
  valLoss?: number;
  /** classification (crossEntropy): share of validation targets whose arg-max class is right */
  valAccuracy?: number;
  history: History;
}

export interface FitOptions {
  epochs?: number;
  batchSize?: number;
  /** Default: Adam(model.parameters(), { lr: 1e-3 }). */
  optimizer?: Optimizer;
  /** 'mse' (default), 'crossEntropy' (integer targets), 'huber', or a function. */
  loss?: 'mse' | 'crossEntropy' | 'huber' | LossFn;
  /** Truncated BPTT window (per-step targets): the state is carried across windows and detached. */
  bpttSteps?: number;
  shuffle?: boolean;
  /** Whether targets are one per step or one per sequence; inferred from shapes when absent. */
  targets?: 'perStep' | 'perSequence';
  clipGradNorm?: number;
  clipGradValue?: number;
  validationData?: FitData;
  /** Another name for validationData (one or the other). */
  validation?: FitData;
  /** Stepped once per epoch. */
  scheduler?: LRScheduler;
  /** Stop when the monitored loss (validation if given) has not improved by minDelta for `patience` epochs. */
  earlyStopping?: { patience: number; minDelta?: number };
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
  onBatchEnd?: (info: { epoch: number; batch: number; step: number; loss: number }) => void | Promise<void>;
  onEpochEnd?: (info: EpochInfo) => void | Promise<void>;
  /** Save a checkpoint to `path` every `everySteps` optimizer steps and at every epoch end. */
  checkpoint?: { path: string; everySteps?: number; metadata?: Record<string, string> };
  /** Continue a run from a checkpoint written by `checkpoint` (same data and options). */
  resumeFrom?: string;
  /** Seeds the generator (initialization is the caller's; shuffling and dropout are fit's). */
  seed?: number;
  /** On a NaN or infinite loss or gradient: 'stop' (default) throws a RangeError (code ERR_NON_FINITE) before the update; 'skip' drops the step. */
  nonFinite?: 'stop' | 'skip';
  /**
   * Serve a live dashboard on 127.0.0.1 while training (a port, or { port, every, onReady }):
   * loss, validation, throughput, learning rate, gradient norm, and every `every` steps (50) the
   * gradient flow and gate statistics of the recurrent layers; Pause/Resume hold training.
   */
  dashboard?: number | DashboardOptions;
  /**
   * Data-parallel training across the ranks of an MPI job (see initDistributed): `true`, or
   * { bucketCapMB }. Every rank trains on its share of each epoch (batchSize samples a step,
   * so a step's global batch is batchSize x worldSize); gradients are averaged across ranks;
   * parameters start as rank 0's; the loss and history are global means; checkpoints are
   * written by rank 0 (resume on any world size); onProgress and the dashboard run on rank 0;
   * an error on one rank is thrown on every rank.
   */
  distributed?: boolean | { bucketCapMB?: number };
}

export interface History {
  /** mean training loss per epoch */
  loss: number[];
  /** validation loss per epoch (when validationData is given); with crossEntropy, in nats: bits = valLoss / Math.LN2 */
  valLoss: number[];
  /** validation accuracy per epoch (crossEntropy) */
  valAccuracy: number[];
  /** loss of every optimizer step */
  batchLoss: number[];
  /** optimizer steps in a full epoch (so that batchLoss can be placed on an epoch axis) */
  batchesPerEpoch?: number;
  epochs: number;
  steps: number;
  /** steps dropped for a non-finite loss or gradient (nonFinite: 'skip') */
  skippedSteps: number;
  stopReason: 'completed' | 'earlyStopping' | 'aborted';
}

/** FitOptions checked, with their defaults filled in. */
export interface FitConfig {
  nonFinite: 'stop' | 'skip';
  epochs: number;
  batchSize: number;
  bptt: number | undefined;
  shuffle: boolean;
  loss: NonNullable<FitOptions['loss']>;
  targetMode: FitOptions['targets'];
  clipNorm: number | undefined;
  clipValue: number | undefined;
  optimizer: Optimizer;
  scheduler: LRScheduler | undefined;
  signal: AbortSignal | undefined;
  patience: number;
  minDelta: number;
  checkpoint: { path: string; metadata?: Record<string, string> } | null;
  checkpointEvery: number;
  dashboard: DashboardOptions | null;
  /** options.distributed: null when off */
  distributed: { bucketCapMB?: number } | null;
  seed: number | undefined;
  resumeFrom: string | undefined;
  validationData: FitData | undefined;
  onProgress: FitOptions['onProgress'];
  onBatchEnd: FitOptions['onBatchEnd'];
  onEpochEnd: FitOptions['onEpochEnd'];
}

/** Checks every option of fit() (a coded TypeError or RangeError naming the first bad one). */
export function parseFitOptions(model: Module, options: FitOptions): FitConfig {
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['epochs', 'batchSize', 'optimizer', 'loss', 'bpttSteps', 'shuffle', 'targets', 'clipGradNorm', 'clipGradValue', 'validationData', 'validation',
    'scheduler', 'earlyStopping', 'signal', 'onProgress', 'onBatchEnd', 'onEpochEnd', 'checkpoint', 'resumeFrom', 'seed', 'nonFinite', 'dashboard', 'distributed'], 'options');
  const nonFinite = opts.nonFinite ?? 'stop';
  if (nonFinite !== 'stop' && nonFinite !== 'skip') throw rangeError(`Expected options.nonFinite to be 'stop' or 'skip' but received ${describe(nonFinite)}`);
  const epochs = opts.epochs === undefined ? 1 : expectInteger(opts.epochs, 'options.epochs', 1);
  const batchSize = opts.batchSize === undefined ? 32 : expectInteger(opts.batchSize, 'options.batchSize', 1);
  const bptt = opts.bpttSteps === undefined ? undefined : expectInteger(opts.bpttSteps, 'options.bpttSteps', 1);
  const shuffle = opts.shuffle === undefined ? true : expectBoolean(opts.shuffle, 'options.shuffle');
  const loss = (opts.loss ?? 'mse') as NonNullable<FitOptions['loss']>;
  if (typeof loss !== 'function' && !['mse', 'crossEntropy', 'huber'].includes(loss as string)) {
    throw rangeError(`Expected options.loss to be 'mse', 'crossEntropy', 'huber' or a function but received ${describe(loss)}`);
  }
  const targetMode = opts.targets as string | undefined;
  if (targetMode !== undefined && targetMode !== 'perStep' && targetMode !== 'perSequence') throw rangeError(`Expected options.targets to be 'perStep' or 'perSequence' but received ${describe(targetMode)}`);
  const clipNorm = opts.clipGradNorm === undefined ? undefined : expectNumber(opts.clipGradNorm, 'options.clipGradNorm');
  const clipValue = opts.clipGradValue === undefined ? undefined : expectNumber(opts.clipGradValue, 'options.clipGradValue');
  const optimizer = (opts.optimizer as Optimizer | undefined) ?? new Adam(model.parameters(), { lr: 1e-3 });
  if (!(optimizer instanceof Optimizer)) throw typeError(`Expected options.optimizer to be an Optimizer but received ${describe(optimizer)}`);
  const scheduler = opts.scheduler as LRScheduler | undefined;
  if (scheduler !== undefined && !(scheduler instanceof LRScheduler)) throw typeError(`Expected options.scheduler to be an LRScheduler but received ${describe(scheduler)}`);
  const signal = opts.signal as AbortSignal | undefined;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError(`Expected options.signal to be an AbortSignal but received ${describe(signal)}`);
  const early = opts.earlyStopping === undefined ? null : expectOptions(opts.earlyStopping, 'options.earlyStopping');
  const patience = early ? expectInteger(early.patience, 'options.earlyStopping.patience', 1) : Infinity;
  const minDelta = early?.minDelta === undefined ? 0 : expectNumber(early.minDelta, 'options.earlyStopping.minDelta');
  const checkpoint = opts.checkpoint === undefined ? null : expectOptions(opts.checkpoint, 'options.checkpoint');
  if (checkpoint) expectKnownKeys(checkpoint, ['path', 'everySteps', 'metadata'], 'options.checkpoint');
  if (checkpoint && typeof checkpoint.path !== 'string') throw typeError('Expected options.checkpoint.path to be a file path');
  if (checkpoint?.metadata !== undefined && (!checkpoint.metadata || typeof checkpoint.metadata !== 'object' || Object.values(checkpoint.metadata).some((v) => typeof v !== 'string'))) {
    throw typeError(`Expected options.checkpoint.metadata to be an object of strings but received ${describe(checkpoint.metadata)}`);
  }
  const checkpointEvery = checkpoint?.everySteps === undefined ? Infinity : expectInteger(checkpoint.everySteps, 'options.checkpoint.everySteps', 1);
  for (const name of ['onProgress', 'onBatchEnd', 'onEpochEnd'] as const) {
    if (opts[name] !== undefined && typeof opts[name] !== 'function') throw typeError(`Expected options.${name} to be a function but received ${describe(opts[name])}`);
  }
  let dashboardOptions: DashboardOptions | null = null;
  if (typeof opts.dashboard === 'number') dashboardOptions = { port: expectInteger(opts.dashboard, 'options.dashboard', 0, 65535) };
  else if (opts.dashboard !== undefined) {
    const d = expectOptions(opts.dashboard, 'options.dashboard');
    expectKnownKeys(d, ['port', 'every', 'onReady', 'lossTitle', 'lossScale'], 'options.dashboard');
    if (d.lossTitle !== undefined && typeof d.lossTitle !== 'string') throw typeError(`Expected options.dashboard.lossTitle to be a string but received ${describe(d.lossTitle)}`);
    dashboardOptions = {
      ...(d.port !== undefined ? { port: expectInteger(d.port, 'options.dashboard.port', 0, 65535) } : {}),
      ...(d.every !== undefined ? { every: expectInteger(d.every, 'options.dashboard.every', 1) } : {}),
      ...(d.onReady !== undefined ? { onReady: d.onReady as DashboardOptions['onReady'] } : {}),
      ...(d.lossTitle !== undefined ? { lossTitle: d.lossTitle as string } : {}),
      ...(d.lossScale !== undefined ? { lossScale: expectNumber(d.lossScale, 'options.dashboard.lossScale') } : {}),
    };
    if (d.onReady !== undefined && typeof d.onReady !== 'function') throw typeError(`Expected options.dashboard.onReady to be a function but received ${describe(d.onReady)}`);
  }
  // the page names the loss and its unit unless told otherwise
  if (dashboardOptions && dashboardOptions.lossTitle === undefined) {
    dashboardOptions.lossTitle = loss === 'crossEntropy' ? 'cross entropy (nats)' : loss === 'mse' ? 'mean squared error' : typeof loss === 'string' ? `${loss} loss` : 'loss';
  }
  let distributed: FitConfig['distributed'] = null;
  if (opts.distributed !== undefined && opts.distributed !== false) {
    const d = opts.distributed === true ? {} : expectOptions(opts.distributed, 'options.distributed');
    expectKnownKeys(d, ['bucketCapMB'], 'options.distributed');
    distributed = d.bucketCapMB === undefined ? {} : { bucketCapMB: expectNumber(d.bucketCapMB, 'options.distributed.bucketCapMB') };
  }
  const seed = opts.seed !== undefined ? expectInteger(opts.seed, 'options.seed', 0, 0xffffffff) : undefined;
  if (opts.validationData !== undefined && opts.validation !== undefined) throw rangeError('fit: pass options.validationData or options.validation (the same thing), not both');
  if (opts.resumeFrom !== undefined && typeof opts.resumeFrom !== 'string') throw typeError('Expected options.resumeFrom to be a checkpoint path');
  return {
    nonFinite, epochs, batchSize, bptt, shuffle, loss, targetMode: targetMode as FitOptions['targets'], clipNorm, clipValue, optimizer, scheduler, signal,
    patience, minDelta, checkpoint: checkpoint as FitConfig['checkpoint'], checkpointEvery, dashboard: dashboardOptions, distributed, seed,
    resumeFrom: opts.resumeFrom as string | undefined, validationData: (opts.validationData ?? opts.validation) as FitData | undefined,
    onProgress: opts.onProgress as FitOptions['onProgress'], onBatchEnd: opts.onBatchEnd as FitOptions['onBatchEnd'],
    onEpochEnd: opts.onEpochEnd as FitOptions['onEpochEnd'],
  };
}
