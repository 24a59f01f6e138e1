/**
 * fit(): the training loop. Mini-batches (variable-length sequences grouped by length),
 * truncated BPTT with the recurrent state carried between windows and detached,
 * shuffling, validation, gradient clipping, callbacks, early stopping, progress,
 * cancellation with an AbortSignal, exact resume from checkpoints, and data-parallel
 * training across the ranks of an MPI job (options.distributed). The batching plans are in
 * batching.ts, the options in options.ts, the step and evaluation in step.ts, and checkpoints
 * in checkpoint.ts; the dashboard is an observer (diagnostics/dashboard.ts) the loop tells of
 * each step and epoch, and the data-parallel setup is distributedRun() below.
 *
 * Each step's native work (forward, loss, backward, clipping, the optimizer update) is
 * queued in async mode and runs on a worker thread; the main thread only builds the
 * graph and reads the loss afterwards, so timers and I/O keep running during training.
 */
import { describe, rangeError, typeError } from '../core/errors';
import { runAsync, synchronize } from '../core/stream';
import { Module } from '../nn/module';
import { clipGradNormTensor, clipGradValue } from '../optim/optimizers';
import { TrainingObserver, startDashboardObserver } from '../diagnostics/dashboard';
import { Generator, random } from '../core/random';
import { scope } from '../core/memory';
import type { Tensor } from '../core/tensor';
import { makePlan } from './batching';
import { DistributedDataParallel, DistributedWorld, GradReducer, agree, broadcastJson, broadcastParameters, initDistributed } from '../distributed/distributed';
import { FitData, FitOptions, History, EpochInfo, parseFitOptions } from './options';
import { callModel, computeLoss, detachState, evaluate, pairLoss } from './step';
import { Position, RunParts, RunState, resumeRun, writeCheckpoint } from './checkpoint';

export type { FitData, FitOptions, History, Progress, EpochInfo, LossFn, LossContext } from './options';

/**
 * Trains `model` on `data`. Resolves with the history once training completes, stops
 * early, or is aborted through options.signal (the model keeps the weights of the last
 * finished step).
 */
export async function fit(model: Module, data: FitData, options: FitOptions = {}): Promise<History> {
  if (!(model instanceof Module)) throw typeError(`fit: expected model to be a Module but received ${describe(model)}`);
  const config = parseFitOptions(model, options);
  const { nonFinite, epochs, batchSize, bptt, shuffle, loss, targetMode, clipNorm, clipValue, optimizer, scheduler, signal, patience, minDelta } = config;
  const { checkpoint, checkpointEvery, dashboard: dashboardOptions, onProgress, onBatchEnd, onEpochEnd } = config;
  const distributed = distributedRun(model, config.distributed, optimizer.params);
  const { reducer, ownReducer, world } = distributed;
  model = distributed.model;
  const rank = world?.rank ?? 0;
  const worldSize = world?.worldSize ?? 1;
  const lead = rank === 0;
  // this run's own generator (shuffling, dropout): seeded by options.seed, else drawn from the
  // global one, so concurrent fits draw what each would draw alone; every rank shuffles with
  // rank 0's seed, and draws its dropout masks from a generator of its own
  let seed = config.seed ?? Math.floor(random() * 0x100000000);
  if (world) seed = broadcastJson(seed);
  const rng = new Generator(seed);
  const stepRng = worldSize > 1 ? new Generator((seed ^ Math.imul(rank + 1, 0x9e3779b9)) >>> 0) : rng;

  const classification = loss === 'crossEntropy';
  const shard = (pad: boolean) => (world ? { rank, worldSize, pad } : null);
  const plan = makePlan(data, 'data', batchSize, bptt, targetMode, classification, shard(true));
  const validation = config.validationData === undefined ? null : makePlan(config.validationData, 'options.validationData', batchSize, bptt, targetMode, classification, shard(false));
  const params = optimizer.params;

  const history: History = { loss: [], valLoss: [], valAccuracy: [], batchLoss: [], epochs: 0, steps: 0, skippedSteps: 0, stopReason: 'completed' };
  const run: RunState = { position: { epoch: 0, batch: 0, step: 0, order: null }, history, carried: null, best: Infinity, badEpochs: 0, epochLossSum: 0, epochWeight: 0 };
  const parts: RunParts = { model, optimizer, scheduler, rng, stepRng, world };
  if (config.resumeFrom !== undefined) await resumeRun(config.resumeFrom, run, parts, plan, shuffle);
  const save = async (position?: Position): Promise<void> => {
    if (checkpoint) await writeCheckpoint(checkpoint, run, parts, position);
  };
  history.batchesPerEpoch = plan.batchesPerEpoch;
  const position = run.position; // mutated in place from here on

  // the diagnostics' own backward stays on this rank
  const local = <T>(fn: () => T): T => {
    if (reducer) reducer.enabled = false;
    try {
      return fn();
    } finally {
      if (reducer) reducer.enabled = true;
    }
  };
  const observers: TrainingObserver[] = dashboardOptions && lead ? [await startDashboardObserver(dashboardOptions, model, local)] : [];
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
        run.epochLossSum = 0;
        run.epochWeight = 0;
      }
      model.train();
      for (; position.batch < plan.batchesPerEpoch; ) {
        for (const o of observers) await o.beforeStep?.();
        if (signal?.aborted && !reducer) {
          history.stopReason = 'aborted';
          return history;
        }
        const batch = plan.batch(position.order, position.batch);
        if (!batch.carry) run.carried = null;
        // forward and backward, then (after reading the loss and the gradient norm) the update:
        // a non-finite loss or gradient never reaches the weights
        // scope(): the step's intermediates go back to the allocator's cache as soon as the
        // queued work that uses them has run, not at the next garbage collection
        const runStep = () => runAsync(() => stepRng.run(() => scope(() => {
          const pairs = pairLoss(model, batch);
          const { output, state } = pairs ? { output: null, state: null } : callModel(model, batch.input, run.carried, batch.lengths);
          const lossValue = pairs ?? computeLoss(loss, output!, batch);
          // the last step's gradients are fit's own: their memory goes straight back to the cache
          for (const p of params) p.ownGrad?.dispose();
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
        run.carried = nextState;
        history.batchLoss.push(value);
        run.epochLossSum += value * batch.weight;
        run.epochWeight += batch.weight;
        position.batch += 1;
        position.step += 1;
        history.steps = position.step;
        timestepsDone += batch.timesteps * worldSize;
        batchesThisRun += 1;
        if (onProgress && lead) {
          const elapsed = (performance.now() - started) / 1000;
          const done = position.epoch * plan.batchesPerEpoch + position.batch;
          onProgress({
            epoch: position.epoch, epochs, batch: position.batch, batches: plan.batchesPerEpoch, step: position.step, loss: value, lr: optimizer.lr,
            timestepSamplesPerSecond: timestepsDone / Math.max(elapsed, 1e-9),
            etaSeconds: (elapsed / batchesThisRun) * (totalBatches - done),
          });
        }
        for (const o of observers) {
          o.afterStep?.({
            step: position.step, epoch: position.epoch, loss: value, lr: optimizer.lr, gradNorm: norm,
            samplesPerSecond: timestepsDone / Math.max((performance.now() - started) / 1000, 1e-9), input: batch.input,
          });
        }
        if (onBatchEnd) await onBatchEnd({ epoch: position.epoch, batch: position.batch - 1, step: position.step, loss: value });
        if (position.step % checkpointEvery === 0) await save();
        if (stopRequested) {
          history.stopReason = 'aborted';
          return history;
        }
      }
      history.loss.push(run.epochLossSum / Math.max(run.epochWeight, 1e-12));
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
      if (monitored < run.best - minDelta) {
        run.best = monitored;
        run.badEpochs = 0;
      } else {
        run.badEpochs += 1;
      }
      const info: EpochInfo = { epoch: position.epoch, loss: history.loss[history.loss.length - 1], history };
      if (validation) info.valLoss = history.valLoss[history.valLoss.length - 1];
      if (valAccuracy !== null) info.valAccuracy = valAccuracy;
      for (const o of observers) o.afterEpoch?.({ epoch: position.epoch, step: position.step, loss: info.loss, valLoss: info.valLoss ?? null });
      if (onEpochEnd) await onEpochEnd(info);
      // the next run starts the following epoch
      await save({ ...position, epoch: position.epoch + 1, batch: 0, order: null });
      if (run.badEpochs >= patience) {
        history.stopReason = 'earlyStopping';
        return history;
      }
    }
    return history;
  } finally {
    model.train(wasTraining);
    if (ownReducer) reducer!.dispose();
    for (const o of observers) await o.close?.({ steps: history.steps, stopReason: history.stopReason });
  }
}

/**
 * The data-parallel side of a run: the module a DistributedDataParallel wraps, the world, and
 * the gradient reducer (fit's own when it made one, which it disposes at the end). Parameters
 * start as rank 0's.
 */
function distributedRun(model: Module, options: { bucketCapMB?: number } | null, params: Tensor[]):
  { model: Module; world: DistributedWorld | null; reducer: GradReducer | null; ownReducer: boolean } {
  let reducer: GradReducer | null = null;
  let world: DistributedWorld | null = null;
  if (model instanceof DistributedDataParallel) {
    reducer = model.reducer;
    model = model.module;
    world = initDistributed();
  }
  if (!options) return { model, world, reducer, ownReducer: false };
  world = initDistributed();
  if (reducer) return { model, world, reducer, ownReducer: false };
  broadcastParameters(model, 0);
  return { model, world, reducer: new GradReducer(params, options), ownReducer: true };
}
