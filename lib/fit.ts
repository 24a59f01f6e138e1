/**
 * fit(): the training loop. Mini-batches (variable-length sequences grouped by length),
 * truncated BPTT with the recurrent state carried between windows and detached,
 * shuffling, validation, gradient clipping, callbacks, early stopping, progress,
 * cancellation with an AbortSignal, exact resume from checkpoints, and data-parallel
 * training across the ranks of an MPI job (options.distributed). The batching plans are in
 * batching.ts.
 *
 * Each step's native work (forward, loss, backward, clipping, the optimizer update) is
 * queued in async mode and runs on a worker thread; the main thread only builds the
 * graph and reads the loss afterwards, so timers and I/O keep running during training.
 */
import * as fs from 'node:fs';
import { noGrad } from './autograd';
import { describe, expectBoolean, expectInteger, expectNumber, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from './errors';
import { crossEntropyLoss, huberLoss, mseLoss } from './losses';
import { runAsync, synchronize } from './stream';
import { Module } from './nn/module';
import { GRU, LSTM, RNN } from './nn/recurrent';
import { SequenceModel } from './nn/sequence-model';
import { LRScheduler, Optimizer, Adam, clipGradNormTensor, clipGradValue } from './optim';
import { Dashboard, DashboardOptions, startDashboard } from './dashboard';
import { gateStatistics, gradientFlow } from './diagnostics';
import { Generator, random, RngState } from './random';
import { checkpointFromContent, describeModel, loadCheckpoint, saveCheckpoint, CheckpointContent } from './serialize';
import { parseSafetensors } from './safetensors';
import { scope } from './memory';
import { Tensor } from './tensor';
import { Batch, IGNORE, Plan, TargetSpec, makePlan } from './batching';
import {
  DistributedDataParallel, DistributedWorld, GradReducer, agree, allReduce, allReduceNumbers, broadcastBytes, broadcastJson, broadcastParameters, initDistributed,
} from './distributed';

/** Training data, in one of three forms (targets follow the inputs' sample order). */
export type FitData =
  /** Fixed-length samples: inputs [N, T, F] (or token ids [N, T]); targets [N, ...] (one per sequence) or [N, T, ...] (one per step). */
  | { inputs: Tensor; targets: Tensor }
  /** Variable-length samples, grouped by length into batches: each [T_i, F] (or token ids [T_i]); targets one per sequence, or [T_i, ...] per step. */
  | { sequences: Tensor[]; targets: Tensor[] | Tensor }
  /** One long stream ([L, F] or token ids [L]) with per-step targets [L, ...], split into batchSize parallel streams and trained with truncated BPTT. */
  | { stream: Tensor; targets: Tensor };

export interface LossContext {
  /** Valid steps per batch row, when sequences were padded. */
  lengths: number[] | null;
}

export type LossFn = (output: Tensor, target: Tensor, context: LossContext) => Tensor;

export interface Progress {
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
  /** Stepped once per epoch. */
  scheduler?: LRScheduler;
  /** Stop when the monitored loss (validation if given) has not improved by minDelta for `patience` epochs. */
  earlyStopping?: { patience: number; minDelta?: number };
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
  onBatchEnd?: (info: { epoch: number; batch: number; step: number; loss: number }) => void | Promise<void>;
  onEpochEnd?: (info: EpochInfo) => void | Promise<void>;
  /** Save a checkpoint to `path` every `everySteps` optimizer steps and at every epoch end. */
  checkpoint?: { path: string; everySteps?: number };
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
  epochs: number;
  steps: number;
  /** steps dropped for a non-finite loss or gradient (nonFinite: 'skip') */
  skippedSteps: number;
  stopReason: 'completed' | 'earlyStopping' | 'aborted';
}

// ---------------------------------------------------------------------------
// Model protocol

interface State {
  h: Tensor;
  c?: Tensor;
}

function callModel(model: Module, batchInput: Tensor, state: State | null, lengths: number[] | null): { output: Tensor; state: State | null } {
  // batches are built in host memory; a model on 'cuda' gets its copy there (inside the step's
  // scope), except token ids, which the embedding reads on the host anyway
  const tokens = model instanceof SequenceModel && model.embedding !== null;
  const input = tokens ? batchInput : batchInput.to(model.device);
  if (model instanceof LSTM || model instanceof GRU || model instanceof RNN) {
    const r = model.forward(input, { h0: state?.h ?? null, ...(model instanceof LSTM && state?.c ? { c0: state.c } : {}), lengths });
    return { output: r.output, state: { h: r.h, ...('c' in r ? { c: (r as { c: Tensor }).c } : {}) } };
  }
  const r = (model as unknown as { forward(x: Tensor, o: object): unknown }).forward(input, { state, lengths });
  if (r instanceof Tensor) return { output: r, state: null };
  const out = r as { output?: unknown; state?: State | null };
  if (!out || !(out.output instanceof Tensor)) throw typeError(`fit: the model returned ${describe(r)}; expected a Tensor or { output, state }`);
  return { output: out.output, state: out.state ?? null };
}

function detachState(state: State | null): State | null {
  if (!state) return null;
  return { h: state.h.detach(), ...(state.c ? { c: state.c.detach() } : {}) };
}

function computeLoss(loss: FitOptions['loss'], output: Tensor, batch: Batch): Tensor {
  if (typeof loss === 'function') {
    const target = batch.target instanceof Tensor ? batch.target.to(output.device) : Tensor.from(Float32Array.from(batch.target), [batch.target.length], { device: output.device });
    const value = loss(output, target, { lengths: batch.lengths });
    if (!(value instanceof Tensor) || value.size !== 1) throw typeError(`fit: the loss function must return a one-element Tensor but returned ${describe(value)}`);
    return value;
  }
  if (loss === 'crossEntropy') {
    if (!(batch.target instanceof Int32Array)) throw typeError('fit: crossEntropy needs integer class targets');
    return crossEntropyLoss(output, batch.target, { ignoreIndex: IGNORE });
  }
  const target = (batch.target as Tensor).to(output.device);
  if (output.shape.length !== target.shape.length || output.shape.some((s, i) => s !== target.shape[i])) {
    throw rangeError(`fit: the model's output has shape ${formatShape(output.shape)} but the targets of this batch have shape ${formatShape(target.shape)}`, 'ERR_SHAPE_MISMATCH');
  }
  if (batch.mask) {
    // padded steps contribute nothing; the mean is over valid elements only
    const diff = output.sub(target).mul(batch.mask.to(output.device));
    const count = batch.timesteps * (output.size / (output.shape[0] * output.shape[1]));
    const values = loss === 'huber' ? huberLoss(diff, Tensor.zeros(diff.shape, { device: diff.device }), { reduction: 'sum' }) : diff.square().sum();
    return values.mul(1 / count);
  }
  return loss === 'huber' ? huberLoss(output, target) : mseLoss(output, target);
}

// ---------------------------------------------------------------------------

interface Position {
  epoch: number;
  batch: number;
  step: number;
  order: number[][] | null;
  /** the shared generator's state when this epoch's order was drawn (re-derives it on resume) */
  epochRng?: RngState;
}

/**
 * Trains `model` on `data`. Resolves with the history once training completes, stops
 * early, or is aborted through options.signal (the model keeps the weights of the last
 * finished step).
 */
export async function fit(model: Module, data: FitData, options: FitOptions = {}): Promise<History> {
  if (!(model instanceof Module)) throw typeError(`fit: expected model to be a Module but received ${describe(model)}`);
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['epochs', 'batchSize', 'optimizer', 'loss', 'bpttSteps', 'shuffle', 'targets', 'clipGradNorm', 'clipGradValue', 'validationData',
    'scheduler', 'earlyStopping', 'signal', 'onProgress', 'onBatchEnd', 'onEpochEnd', 'checkpoint', 'resumeFrom', 'seed', 'nonFinite', 'dashboard', 'distributed'], 'options');
  const nonFinite = opts.nonFinite ?? 'stop';
  if (nonFinite !== 'stop' && nonFinite !== 'skip') throw rangeError(`Expected options.nonFinite to be 'stop' or 'skip' but received ${describe(nonFinite)}`);
  const epochs = opts.epochs === undefined ? 1 : expectInteger(opts.epochs, 'options.epochs', 1);
  const batchSize = opts.batchSize === undefined ? 32 : expectInteger(opts.batchSize, 'options.batchSize', 1);
  const bptt = opts.bpttSteps === undefined ? undefined : expectInteger(opts.bpttSteps, 'options.bpttSteps', 1);
  const shuffle = opts.shuffle === undefined ? true : expectBoolean(opts.shuffle, 'options.shuffle');
  const loss = (opts.loss ?? 'mse') as FitOptions['loss'];
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
  if (checkpoint && typeof checkpoint.path !== 'string') throw typeError('Expected options.checkpoint.path to be a file path');
  const checkpointEvery = checkpoint?.everySteps === undefined ? Infinity : expectInteger(checkpoint.everySteps, 'options.checkpoint.everySteps', 1);
  for (const name of ['onProgress', 'onBatchEnd', 'onEpochEnd'] as const) {
    if (opts[name] !== undefined && typeof opts[name] !== 'function') throw typeError(`Expected options.${name} to be a function but received ${describe(opts[name])}`);
  }
  let dashboardOptions: DashboardOptions | null = null;
  if (typeof opts.dashboard === 'number') dashboardOptions = { port: expectInteger(opts.dashboard, 'options.dashboard', 0, 65535) };
  else if (opts.dashboard !== undefined) {
    const d = expectOptions(opts.dashboard, 'options.dashboard');
    expectKnownKeys(d, ['port', 'every', 'onReady'], 'options.dashboard');
    dashboardOptions = {
      ...(d.port !== undefined ? { port: expectInteger(d.port, 'options.dashboard.port', 0, 65535) } : {}),
      ...(d.every !== undefined ? { every: expectInteger(d.every, 'options.dashboard.every', 1) } : {}),
      ...(d.onReady !== undefined ? { onReady: d.onReady as DashboardOptions['onReady'] } : {}),
    };
    if (d.onReady !== undefined && typeof d.onReady !== 'function') throw typeError(`Expected options.dashboard.onReady to be a function but received ${describe(d.onReady)}`);
  }
  let reducer: GradReducer | null = null;
  let ownReducer = false;
  let world: DistributedWorld | null = null;
  if (model instanceof DistributedDataParallel) {
    reducer = model.reducer;
    model = model.module;
    world = initDistributed();
  }
  if (opts.distributed !== undefined && opts.distributed !== false) {
    const d = opts.distributed === true ? {} : expectOptions(opts.distributed, 'options.distributed');
    expectKnownKeys(d, ['bucketCapMB'], 'options.distributed');
    if (d.bucketCapMB !== undefined) expectNumber(d.bucketCapMB, 'options.distributed.bucketCapMB');
    world = initDistributed();
    if (!reducer) {
      broadcastParameters(model, 0);
      reducer = new GradReducer(optimizer.params, d.bucketCapMB === undefined ? {} : { bucketCapMB: d.bucketCapMB as number });
      ownReducer = true;
    }
  }
  const rank = world?.rank ?? 0;
  const worldSize = world?.worldSize ?? 1;
  const lead = rank === 0;
  // this run's own generator (shuffling, dropout): seeded by options.seed, else drawn from the
  // global one, so concurrent fits draw what each would draw alone; every rank shuffles with
  // rank 0's seed, and draws its dropout masks from a generator of its own
  let seed = opts.seed !== undefined ? expectInteger(opts.seed, 'options.seed', 0, 0xffffffff) : Math.floor(random() * 0x100000000);
  if (world) seed = broadcastJson(seed);
  const rng = new Generator(seed);
  const stepRng = worldSize > 1 ? new Generator((seed ^ Math.imul(rank + 1, 0x9e3779b9)) >>> 0) : rng;

  const classification = loss === 'crossEntropy';
  const shard = (pad: boolean) => (world ? { rank, worldSize, pad } : null);
  const plan = makePlan(data, 'data', batchSize, bptt, targetMode, classification, shard(true));
  const validation = opts.validationData === undefined ? null : makePlan(opts.validationData, 'options.validationData', batchSize, bptt, targetMode, classification, shard(false));
  const params = optimizer.params;

  const history: History = { loss: [], valLoss: [], valAccuracy: [], batchLoss: [], epochs: 0, steps: 0, skippedSteps: 0, stopReason: 'completed' };
  let position: Position = { epoch: 0, batch: 0, step: 0, order: null };
  let carried: State | null = null;
  let best = Infinity;
  let badEpochs = 0;
  let epochLossSum = 0;
  let epochWeight = 0;

  if (opts.resumeFrom !== undefined) {
    if (typeof opts.resumeFrom !== 'string') throw typeError('Expected options.resumeFrom to be a checkpoint path');
    const saved = world ? await loadCheckpointShared(opts.resumeFrom, lead) : await loadCheckpoint(opts.resumeFrom);
    const s = saved.state as {
      position: Position; history: History; rng: RngState; optimizer: { type: string; hyper: Record<string, number | boolean>; steps: number[] };
      scheduler?: { lastEpoch: number }; best: number | null; badEpochs: number; epochLossSum: number; epochWeight: number;
      distributed?: { worldSize: number; stepRngs: RngState[] };
    };
    model.loadStateDict(saved.model);
    optimizer.loadStateDict({ ...s.optimizer, buffers: saved.optimizerBuffers });
    if (scheduler && s.scheduler) scheduler.loadStateDict(s.scheduler);
    position = s.position;
    Object.assign(history, s.history, { stopReason: 'completed' });
    best = s.best ?? Infinity;
    badEpochs = s.badEpochs;
    epochLossSum = s.epochLossSum;
    epochWeight = s.epochWeight;
    carried = saved.tensors.h ? { h: saved.tensors.h, ...(saved.tensors.c ? { c: saved.tensors.c } : {}) } : null;
    rng.setState(s.rng);
    const savedWorld = s.distributed?.worldSize ?? 1;
    if (s.distributed) {
      // written by a data-parallel run: states and dropout generators of every rank
      carried = savedWorld === worldSize && carried ? { h: rankSlice(carried.h, rank), ...(carried.c ? { c: rankSlice(carried.c, rank) } : {}) } : null;
      if (savedWorld === worldSize && s.distributed.stepRngs[rank]) stepRng.setState(s.distributed.stepRngs[rank]);
    }
    if (position.batch > 0 && (position.order === null || savedWorld !== worldSize)) {
      // this epoch's order again, from the same draw, cut for this rank (data-parallel
      // checkpoints keep only the draw); on another world size the batches already trained
      // are skipped (as many samples) and the carried state restarts
      if (position.epochRng) {
        const draw = new Generator();
        draw.setState(position.epochRng);
        position.order = draw.run(() => plan.order(shuffle));
        if (savedWorld !== worldSize) position.batch = Math.min(plan.batchesPerEpoch, Math.round((position.batch * savedWorld) / worldSize));
      } else if (savedWorld !== worldSize) {
        position = { ...position, epoch: position.epoch + 1, batch: 0, order: null };
      }
    }
    if (savedWorld !== worldSize) carried = null;
  }

  const writeCheckpoint = async (): Promise<void> => {
    if (!checkpoint) return;
    if (world) {
      // every rank's carried state and dropout generator go to rank 0, which writes the file;
      // a failure there is thrown on every rank
      const states = gatherState(carried, rank, worldSize);
      const rngs = gatherRng(stepRng.getState(), rank, worldSize);
      await agree(() => (lead ? writeFile(states, { worldSize, stepRngs: rngs }) : undefined));
      return;
    }
    await writeFile(carried, undefined);
  };

  const writeFile = async (states: State | null, distributed: { worldSize: number; stepRngs: RngState[] } | undefined): Promise<void> => {
    const optState = optimizer.stateDict();
    let modelSpec = null;
    try {
      modelSpec = describeModel(model);
    } catch {
      modelSpec = null; // custom modules without config() still checkpoint their weights
    }
    await saveCheckpoint(checkpoint!.path as string, {
      model: model.stateDict(),
      modelSpec,
      optimizerBuffers: optState.buffers,
      tensors: states ? { h: states.h, ...(states.c ? { c: states.c } : {}) } : {},
      state: {
        position: distributed ? { ...position, order: null } : position, history, rng: rng.getState(),
        optimizer: { type: optState.type, hyper: optState.hyper, steps: optState.steps },
        scheduler: scheduler?.stateDict(), best: Number.isFinite(best) ? best : null, badEpochs, epochLossSum, epochWeight,
        ...(distributed ? { distributed } : {}),
      },
    });
  };

  const dashboard = dashboardOptions && lead ? await startDashboard(dashboardOptions) : null;
  const wasTraining = model.training;
  const started = performance.now();
  let timestepsDone = 0;
  let batchesThisRun = 0;
  const totalBatches = epochs * plan.batchesPerEpoch;
  try {
    for (; position.epoch < epochs; position.epoch += 1, position.batch = 0, position.order = null) {
      if (position.order === null && position.batch === 0) {
        position.epochRng = rng.getState();
        position.order = rng.run(() => plan.order(shuffle));
        epochLossSum = 0;
        epochWeight = 0;
      }
      model.train();
      for (; position.batch < plan.batchesPerEpoch; ) {
        if (dashboard) await dashboard.waitIfPaused();
        if (signal?.aborted && !reducer) {
          history.stopReason = 'aborted';
          return history;
        }
        const batch = plan.batch(position.order, position.batch);
        if (!batch.carry) carried = null;
        // forward and backward, then (after reading the loss and the gradient norm) the update:
        // a non-finite loss or gradient never reaches the weights
        // scope(): the step's intermediates go back to the allocator's cache as soon as the
        // queued work that uses them has run, not at the next garbage collection
        const runStep = () => runAsync(() => stepRng.run(() => scope(() => {
          const { output, state } = callModel(model, batch.input, carried, batch.lengths);
          const lossValue = computeLoss(loss, output, batch);
          // the last step's gradients are fit's own: their memory goes straight back to the cache
          for (const p of params) p.grad?.dispose();
          optimizer.zeroGrad();
          // data-parallel: the gradients are averaged across ranks as backward produces them
          // (the reducer's waits are queued at its end, before the norm is computed)
          lossValue.backward();
          return { lossTensor: lossValue, gradNorm: clipGradNormTensor(params, clipNorm ?? Number.MAX_VALUE), nextState: detachState(state) };
        })));
        let stepResult: Awaited<ReturnType<typeof runStep>>;
        let value: number;
        let stopRequested = false;
        if (!reducer) {
          stepResult = await runStep();
          value = stepResult.lossTensor.item();
        } else {
          // every rank reduces the same buckets even when its step failed, then all agree on
          // the outcome: the mean loss, whether a rank failed (all throw its error), whether
          // one was aborted (all stop after this step)
          const r = reducer;
          const before = r.finishedSteps;
          const agreed = await agree(async () => {
            try {
              return await runStep();
            } finally {
              if (r.finishedSteps === before) {
                r.finish();
                await synchronize().catch(() => undefined);
              }
            }
          }, (done) => [done ? done.lossTensor.item() : 0, signal?.aborted ? 1 : 0]);
          stepResult = agreed.result;
          value = agreed.totals[0] / worldSize;
          stopRequested = agreed.totals[1] > 0;
        }
        const { gradNorm, nextState } = stepResult;
        const norm = gradNorm.item();
        if (!Number.isFinite(value) || !Number.isFinite(norm)) {
          const what = Number.isFinite(value) ? `a non-finite gradient (norm ${norm})` : `a non-finite loss (${value})`;
          if (nonFinite === 'stop') {
            throw rangeError(`fit: step ${position.step + 1} (epoch ${position.epoch + 1}, batch ${position.batch + 1}) produced ${what}; ` +
              "the weights are those of the last good step. Lower the learning rate, clip gradients, or pass nonFinite: 'skip'", 'ERR_NON_FINITE');
          }
          optimizer.zeroGrad();
          history.skippedSteps += 1;
          position.batch += 1;
          position.step += 1;
          history.steps = position.step;
          continue;
        }
        await runAsync(() => {
          if (clipValue !== undefined) clipGradValue(params, clipValue);
          optimizer.step();
        });
        carried = nextState;
        history.batchLoss.push(value);
        epochLossSum += value * batch.weight;
        epochWeight += batch.weight;
        position.batch += 1;
        position.step += 1;
        history.steps = position.step;
        timestepsDone += batch.timesteps * worldSize;
        batchesThisRun += 1;
        if (opts.onProgress && lead) {
          const elapsed = (performance.now() - started) / 1000;
          const done = position.epoch * plan.batchesPerEpoch + position.batch;
          (opts.onProgress as (p: Progress) => void)({
            epoch: position.epoch, epochs, batch: position.batch, batches: plan.batchesPerEpoch, step: position.step, loss: value, lr: optimizer.lr,
            timestepSamplesPerSecond: timestepsDone / Math.max(elapsed, 1e-9),
            etaSeconds: (elapsed / batchesThisRun) * (totalBatches - done),
          });
        }
        if (dashboard) {
          dashboard.send('step', {
            step: position.step, epoch: position.epoch, loss: value, lr: optimizer.lr, gradNorm: norm,
            samplesPerSecond: timestepsDone / Math.max((performance.now() - started) / 1000, 1e-9),
          });
          if (position.step % dashboard.every === 0 || position.step === 1) {
            if (reducer) reducer.enabled = false;  // the diagnostics' own backward stays on this rank
            try {
              sendDiagnostics(dashboard, model, batch.input, position.step);
            } finally {
              if (reducer) reducer.enabled = true;
            }
          }
        }
        if (opts.onBatchEnd) await (opts.onBatchEnd as NonNullable<FitOptions['onBatchEnd']>)({ epoch: position.epoch, batch: position.batch - 1, step: position.step, loss: value });
        if (position.step % checkpointEvery === 0) await writeCheckpoint();
        if (stopRequested) {
          history.stopReason = 'aborted';
          return history;
        }
      }
      history.loss.push(epochLossSum / Math.max(epochWeight, 1e-12));
      let monitored = history.loss[history.loss.length - 1];
      let valAccuracy: number | null = null;
      if (validation) {
        const result = await evaluate(model, validation, loss, world !== null);
        history.valLoss.push(result.loss);
        if (result.accuracy !== null) history.valAccuracy.push((valAccuracy = result.accuracy));
        monitored = result.loss;
      }
      history.epochs = position.epoch + 1;
      scheduler?.step();
      if (monitored < best - minDelta) {
        best = monitored;
        badEpochs = 0;
      } else {
        badEpochs += 1;
      }
      const info: EpochInfo = { epoch: position.epoch, loss: history.loss[history.loss.length - 1], history };
      if (validation) info.valLoss = history.valLoss[history.valLoss.length - 1];
      if (valAccuracy !== null) info.valAccuracy = valAccuracy;
      dashboard?.send('epoch', { epoch: position.epoch, step: position.step, loss: info.loss, valLoss: info.valLoss ?? null });
      if (opts.onEpochEnd) await (opts.onEpochEnd as NonNullable<FitOptions['onEpochEnd']>)(info);
      if (checkpoint) {
        // the next run starts the following epoch
        const next = { ...position, epoch: position.epoch + 1, batch: 0, order: null };
        const saved = position;
        position = next;
        await writeCheckpoint();
        position = saved;
      }
      if (badEpochs >= patience) {
        history.stopReason = 'earlyStopping';
        return history;
      }
    }
    return history;
  } finally {
    model.train(wasTraining);
    if (ownReducer) reducer!.dispose();
    if (dashboard) {
      dashboard.send('done', { steps: history.steps, stopReason: history.stopReason });
      await dashboard.close();
    }
  }
}

/**
 * The dashboard's gradient flow and gate statistics on the current batch (recurrent models on
 * the CPU), in evaluation mode so that no dropout mask draws from fit's generator; a failure
 * here never stops training.
 */
function sendDiagnostics(dashboard: Dashboard, model: Module, input: Tensor, step: number): void {
  const rnn = model instanceof SequenceModel ? model.rnn : model instanceof LSTM || model instanceof GRU || model instanceof RNN ? model : null;
  if (!rnn || rnn.device !== 'cpu') return;
  const wasTraining = model.training;
  model.eval();
  try {
    const x = model instanceof SequenceModel && model.embedding ? noGrad(() => model.embedding!.forward(input)) : input;
    dashboard.send('flow', { step, ...gradientFlow(rnn, x) });
    dashboard.send('gates', { step, ...gateStatistics(rnn, x) });
  } catch (error) {
    dashboard.send('diagnostics-error', { step, message: (error as Error).message });
  } finally {
    model.train(wasTraining);
  }
}

/** Mean loss of `model` over a dataset, in evaluation mode, without gradients. */
async function evaluate(model: Module, plan: Plan & { spec: TargetSpec }, loss: FitOptions['loss'], distributed = false): Promise<{ loss: number; accuracy: number | null }> {
  const wasTraining = model.training;
  model.eval();
  let sum = 0;
  let weight = 0;
  let correct = 0;
  let counted = 0;
  let carried: State | null = null;
  const order = plan.order(false);
  try {
    for (let i = 0; i < plan.batchesPerEpoch; ++i) {
      const batch = plan.batch(order, i);
      if (!batch.carry) carried = null;
      const previous = carried;
      const { value, output, state } = await runAsync(() =>
        noGrad(() => scope(() => {
          const result = callModel(model, batch.input, previous, batch.lengths);
          return { value: computeLoss(loss, result.output, batch), output: result.output, state: result.state };
        })),
      );
      carried = state;
      sum += value.item() * batch.weight;
      weight += batch.weight;
      if (batch.target instanceof Int32Array) {
        // accuracy: the arg-max class against the target, padded steps excluded
        const scores = output.toArray();
        const classes = output.shape[output.ndim - 1];
        batch.target.forEach((target, row) => {
          if (target === IGNORE) return;
          let best = 0;
          for (let k = 1; k < classes; ++k) if (scores[row * classes + k] > scores[row * classes + best]) best = k;
          correct += best === target ? 1 : 0;
          counted += 1;
        });
      }
    }
  } finally {
    model.train(wasTraining);
  }
  // data-parallel: each rank evaluated its share; the totals are the whole set's
  if (distributed) [sum, weight, correct, counted] = allReduceNumbers([sum, weight, correct, counted]);
  return { loss: sum / Math.max(weight, 1e-12), accuracy: counted > 0 ? correct / counted : null };
}

// ---------------------------------------------------------------------------
// Data-parallel helpers

/** Rank 0 reads the checkpoint; every rank parses the same bytes. */
async function loadCheckpointShared(path: string, lead: boolean): Promise<CheckpointContent> {
  const { result } = await agree(async () => (lead ? new Uint8Array(await fs.promises.readFile(path)) : null));
  const bytes = broadcastBytes(result, 0);
  return checkpointFromContent(parseSafetensors(bytes, path), path);
}

/** Every rank's state stacked as [worldSize, ...] on every rank (a sum of disjoint slots). */
function gatherState(state: State | null, rank: number, worldSize: number): State | null {
  if (!state) return null;
  const stack = (t: Tensor): Tensor => {
    const all = Tensor.zeros([worldSize, ...t.shape]);
    all.storage.write(t.toArray(), rank * t.size);
    return allReduce(all, 'sum');
  };
  return { h: stack(state.h), ...(state.c ? { c: stack(state.c) } : {}) };
}

function gatherRng(state: RngState, rank: number, worldSize: number): RngState[] {
  const slots = new Array<number>(2 * worldSize).fill(0);
  slots[2 * rank] = state.counter;
  slots[2 * rank + 1] = state.high;
  const all = allReduceNumbers(slots);
  return [...Array(worldSize).keys()].map((r) => ({ counter: all[2 * r], high: all[2 * r + 1] }));
}

/** Rank `rank`'s slice of a state stacked by gatherState. */
function rankSlice(t: Tensor, rank: number): Tensor {
  const shape = t.shape.slice(1);
  const size = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(t.toArray().slice(rank * size, (rank + 1) * size), shape);
}
